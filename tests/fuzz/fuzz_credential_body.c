/* libFuzzer target: provider credential request bodies and list queries (src/api/credentials.c)
 * on an in-memory SQLite store with a fixed master key. Any input must be answered with a 2xx
 * and a JSON object, or a 4xx with a code: never a store error, never a crash; and no answer
 * ever carries the secret the body gave (unless the name or provider holds the same text). The
 * first input byte picks the operation; the rest is the body (JSON) or the query string. */
#include <assert.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/api/credentials.h"
#include "../../src/auth/identity.h"
#include "../../src/gateway/chat_request.h"

static struct ibex_store *store;
static struct ibex_vault *vault;
static char tenant[IBEX_ID_LEN + 1], own[IBEX_ID_LEN + 1], wide[IBEX_ID_LEN + 1];
static struct ibex_provider_config providers[] = {
    {.name = (char *)"openai",
     .type = IBEX_PROVIDER_OPENAI,
     .base_url = (char *)"http://127.0.0.1:9/v1"},
    {.name = (char *)"anthropic",
     .type = IBEX_PROVIDER_ANTHROPIC,
     .base_url = (char *)"http://127.0.0.1:9"},
    {.name = (char *)"mock", .type = IBEX_PROVIDER_MOCK},
};
static struct ibex_credentials_env env;

static void must(int status, struct ibex_buf *out, char id[IBEX_ID_LEN + 1])
{
    assert(status == 201);
    json_object *j = json_tokener_parse(out->p);
    json_object *v = NULL;
    assert(j && json_object_object_get_ex(j, "id", &v));
    memcpy(id, json_object_get_string(v), IBEX_ID_LEN + 1);
    json_object_put(j);
    ibex_buf_reset(out);
}

static void setup(void)
{
    char err[256];
    assert(ibex_store_open("sqlite::memory:", &store, err, sizeof(err)) == 0);
    assert(ibex_store_migrate(store, NULL, NULL, NULL) == 0);
    uint8_t key[IBEX_VAULT_KEY_LEN];
    for (int i = 0; i < IBEX_VAULT_KEY_LEN; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    vault = ibex_vault_new(key, NULL, 0);
    env = (struct ibex_credentials_env){vault, providers, 3, NULL};
    struct ibex_buf out;
    ibex_buf_init(&out);
    assert(ibex_identity_dev_bootstrap(store, NULL, NULL, tenant, &out, err, sizeof(err)) == 0);
    ibex_buf_reset(&out);
    struct ibex_actor a = {.tenant_id = tenant, .subject = "fuzz", .scopes = IBEX_SCOPE_ALL};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    json_object *b =
        json_tokener_parse("{\"provider\":\"openai\",\"name\":\"o\",\"secret\":\"sk-own-0001\"}");
    must(ibex_credentials_create(store, &env, &a, b, &out, &r), &out, own);
    json_object_put(b);
    b = json_tokener_parse("{\"provider\":\"anthropic\",\"name\":\"w\",\"secret\":\"sk-wide-0002\","
                           "\"scope\":\"tenant\"}");
    must(ibex_credentials_create(store, &env, &a, b, &out, &r), &out, wide);
    json_object_put(b);
    ibex_api_result_dispose(&r);
    ibex_buf_dispose(&out);
}

static const char *str_field(json_object *body, const char *key)
{
    json_object *v = NULL;
    if (body && json_object_is_type(body, json_type_object) &&
        json_object_object_get_ex(body, key, &v) && v && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL)
        setup();
    if (size < 1)
        return 0;
    /* the caller: an admin of credentials, or a user who may see only its own */
    bool admin = data[0] & 0x80;
    struct ibex_actor a = {.tenant_id = tenant,
                           .subject = "fuzz",
                           .scopes = admin ? IBEX_SCOPE_CREDENTIALS_ADMIN : IBEX_SCOPE_CHAT};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf out;
    ibex_buf_init(&out);
    uint8_t op = (uint8_t)(data[0] & 0x7f) % 6;
    json_object *body = NULL;
    char msg[160];
    if (op == 5) {
        struct ibex_credentials_query q;
        int rc = ibex_credentials_query_parse((struct ibex_str){(const char *)data + 1, size - 1},
                                              &q, &r);
        if (rc == 0) {
            assert(q.page >= 1 && q.page_size >= 1 && q.page_size <= 100);
            assert(strlen(q.provider) <= IBEX_CREDENTIAL_PROVIDER_MAX);
            ibex_credentials_list(store, &a, &q, &out, &r);
        } else {
            assert(rc == 400 && r.code != NULL);
        }
    } else if (ibex_json_parse((const char *)data + 1, size - 1, &body, msg, sizeof(msg)) == 0) {
        const char *target = (data[0] & 0x40) ? wide : own;
        switch (op) {
        case 0:
        case 1:
            ibex_credentials_create(store, &env, &a, body, &out, &r);
            break;
        case 2:
            ibex_credentials_update(store, &env, &a, target, body, &out, &r);
            break;
        case 3: {
            struct ibex_credential_probe p = {0};
            ibex_credentials_validate_prepare(store, &env, &a, target, &p, &r);
            assert(r.code != NULL || p.ready);
            ibex_credential_probe_dispose(&p);
            break;
        }
        default:
            ibex_credentials_make_default(store, &a, target, &out, &r);
            break;
        }
    }
    if (r.status) {
        if (r.code == NULL) {
            assert(r.status == 200 || r.status == 201);
            if (out.len) {
                json_object *answer = NULL;
                assert(ibex_json_parse(out.p, out.len, &answer, msg, sizeof(msg)) == 0);
                assert(json_object_is_type(answer, json_type_object));
                json_object_put(answer);
            }
        } else {
            assert(r.status >= 400 && r.status < 500);
        }
        /* the secret of the body is in no answer, error messages included */
        const char *secret = str_field(body, "secret");
        const char *name = str_field(body, "name"), *provider = str_field(body, "provider");
        if (secret && strlen(secret) >= 8 && !(name && strstr(name, secret)) &&
            !(provider && strstr(provider, secret))) {
            assert(memmem(out.p ? out.p : "", out.len, secret, strlen(secret)) == NULL);
            assert(strstr(r.message, secret) == NULL);
        }
    }
    ibex_credentials_body_wipe(body);
    json_object_put(body);
    ibex_buf_dispose(&out);
    ibex_api_result_dispose(&r);
    return 0;
}
