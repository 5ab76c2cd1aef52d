/* libFuzzer target: task and approval request bodies and list queries (src/api/tasks.c,
 * src/api/approvals.c) on an in-memory SQLite store. Any input must be answered with a 2xx and
 * a JSON object, or a 4xx with a code: never a store error, never a crash. The first input byte
 * picks the operation; the rest is the body (JSON) or the query string. */
#include <assert.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/api/approvals.h"
#include "../../src/api/tasks.h"
#include "../../src/auth/identity.h"
#include "../../src/gateway/chat_request.h"

static struct ibex_store *store;
static char tenant[IBEX_ID_LEN + 1], task[IBEX_ID_LEN + 1], approval[IBEX_ID_LEN + 1];

static void must(int status, struct ibex_buf *out, const char *key, char id[IBEX_ID_LEN + 1])
{
    assert(status == 200 || status == 201);
    json_object *j = json_tokener_parse(out->p);
    json_object *v = NULL;
    assert(j && json_object_object_get_ex(j, key, &v));
    memcpy(id, json_object_get_string(v), IBEX_ID_LEN + 1);
    json_object_put(j);
    ibex_buf_reset(out);
}

static void setup(void)
{
    char err[256], agent[IBEX_ID_LEN + 1];
    assert(ibex_store_open("sqlite::memory:", &store, err, sizeof(err)) == 0);
    assert(ibex_store_migrate(store, NULL, NULL, NULL) == 0);
    struct ibex_buf out;
    ibex_buf_init(&out);
    assert(ibex_identity_dev_bootstrap(store, NULL, NULL, tenant, &out, err, sizeof(err)) == 0);
    ibex_buf_reset(&out);
    struct ibex_actor a = {.tenant_id = tenant, .subject = "fuzz", .scopes = IBEX_SCOPE_ALL};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    json_object *b = json_tokener_parse("{\"name\":\"w\",\"role\":\"coder\"}");
    must(ibex_agent_create(store, &a, b, NULL, &out, &r), &out, "id", agent);
    json_object_put(b);
    b = json_tokener_parse("{\"name\":\"t\",\"agent_role\":\"coder\",\"phases\":[\"a\",\"b\"]}");
    must(ibex_task_create(store, &a, b, &out, &r), &out, "id", task);
    json_object_put(b);
    b = json_tokener_parse("{\"action\":\"x\"}");
    must(ibex_approval_request(store, &a, b, &out, &r), &out, "id", approval);
    json_object_put(b);
    ibex_api_result_dispose(&r);
    ibex_buf_dispose(&out);
}

static void query(uint8_t op, const char *p, size_t len, struct ibex_api_result *r)
{
    struct ibex_str q = {p, len};
    int rc;
    if (op % 2) {
        struct ibex_approval_query aq;
        if ((rc = ibex_approval_query_parse(q, &aq, r)) == 0) {
            assert(aq.page >= 1 && aq.page_size >= 1 && aq.page_size <= 100);
            assert(strlen(aq.state) < sizeof(aq.state));
        }
    } else {
        struct ibex_task_query tq;
        if ((rc = ibex_task_query_parse(q, &tq, r)) == 0) {
            assert(tq.page >= 1 && tq.page_size >= 1 && tq.page_size <= 100);
            assert(strlen(tq.agent_role) <= IBEX_TASK_ROLE_MAX);
        }
    }
    assert(rc == 0 || (rc == 400 && r->code != NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL)
        setup();
    if (size < 1)
        return 0;
    struct ibex_actor a = {.tenant_id = tenant, .subject = "fuzz", .scopes = IBEX_SCOPE_ALL};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf out;
    ibex_buf_init(&out);
    uint8_t op = data[0] % 8;
    json_object *body = NULL;
    char msg[160];
    if (op >= 6) {
        query(op, (const char *)data + 1, size - 1, &r);
    } else if (ibex_json_parse((const char *)data + 1, size - 1, &body, msg, sizeof(msg)) == 0) {
        switch (op) {
        case 0:
            ibex_task_create(store, &a, body, &out, &r);
            break;
        case 1:
            ibex_task_update(store, &a, task, body, &out, &r);
            break;
        case 2:
            ibex_task_route(store, &a, body, &out, &r);
            break;
        case 3:
            ibex_approval_request(store, &a, body, &out, &r);
            break;
        case 4:
            ibex_approval_approve(store, &a, approval, body, &out, &r);
            break;
        default:
            ibex_approval_reject(store, &a, approval, body, &out, &r);
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
    }
    json_object_put(body);
    ibex_buf_dispose(&out);
    ibex_api_result_dispose(&r);
    return 0;
}
