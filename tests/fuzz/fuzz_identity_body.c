/* libFuzzer target: administration request bodies (src/auth/identity.c) on an in-memory SQLite
 * store. Any body must be answered with a 2xx and a JSON object, or a 4xx with a code: never a
 * store error, never a crash. The first input byte picks the operation. */
#include <assert.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/auth/identity.h"
#include "../../src/gateway/chat_request.h"

static struct ibex_store *store;
static char tenant[IBEX_ID_LEN + 1], agent[IBEX_ID_LEN + 1];

static void setup(void)
{
    char err[256];
    int64_t version;
    assert(ibex_store_open("sqlite::memory:", &store, err, sizeof(err)) == 0);
    assert(ibex_store_migrate(store, NULL, NULL, &version) == 0);
    struct ibex_buf out;
    ibex_buf_init(&out);
    assert(ibex_identity_dev_bootstrap(store, NULL, "00000000-0000-4000-8000-000000000001", tenant,
                                       &out, err, sizeof(err)) == 0);
    memcpy(agent, "00000000-0000-4000-8000-000000000001", IBEX_ID_LEN + 1);
    ibex_buf_dispose(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL)
        setup();
    if (size < 1)
        return 0;
    json_object *body = NULL;
    char msg[160];
    if (ibex_json_parse((const char *)data + 1, size - 1, &body, msg, sizeof(msg)) != 0)
        return 0;
    struct ibex_actor actor = {.tenant_id = tenant,
                               .subject = "fuzz",
                               .scopes = data[0] & 0x80 ? IBEX_SCOPE_ALL : IBEX_SCOPE_KEYS_ADMIN};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf out;
    ibex_buf_init(&out);
    switch (data[0] % 4) {
    case 0:
        ibex_tenant_create(store, &actor, body, &out, &r);
        break;
    case 1:
        ibex_agent_create(store, &actor, body, NULL, &out, &r);
        break;
    case 2:
        ibex_agent_update(store, &actor, agent, body, &out, &r);
        break;
    default:
        ibex_key_create(store, &actor, body, NULL, &out, &r);
        break;
    }
    if (r.code == NULL) {
        assert(r.status == 200 || r.status == 201);
        json_object *answer = NULL;
        assert(ibex_json_parse(out.p, out.len, &answer, msg, sizeof(msg)) == 0);
        assert(json_object_is_type(answer, json_type_object));
        json_object_put(answer);
    } else {
        assert(r.status >= 400 && r.status < 500);
    }
    ibex_buf_dispose(&out);
    ibex_api_result_dispose(&r);
    json_object_put(body);
    return 0;
}
