/* src/api/tasks.c and src/api/approvals.c on a real store: every case runs on SQLite (a migrated
 * temp file) and, when IBEX_TEST_PG_URL is set, on Postgres (a schema per case); without it the
 * Postgres half prints SKIP and the reason.
 *
 * Covers the list query parsers; task create (shape, references of the tenant only, one answer
 * for every reference that is not), get (isolation, malformed ids), the state machine (6 x 6,
 * the task unchanged after each refusal), phases and checkpoints, update validation, the list
 * (paging, filters, isolation); routing (least loaded, ties by id, revoked and role-less agents
 * and other tenants' agents skipped, role override, no agent, finished tasks); approvals
 * (request, the task held while one is pending, approve and reject with their effects and audit
 * events, already decided, expiry, isolation, list and the pending_approvals view, two
 * decisions racing on two handles). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/api/approvals.h"
#include "../../src/api/sessions.h"
#include "../../src/api/tasks.h"
#include "../../src/auth/identity.h"
#include "../../src/core/clock.h"
#include "../../src/core/id.h"
#include "testutil.h"
#include "storeutil.h"

#define TU_API_SUITE "tasks"
#include "apiutil.h"

#define UNKNOWN_ID "0f0e0d0c-0b0a-4908-8706-050403020100"

/* ---- raw SQL ---- */

static void sql_exec_id_int(struct fx *f, const char *sql, const char *id, int64_t v)
{
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_int(v)};
    tu_store_must(f->st, ibex_store_exec(f->st, sql, p, 2, NULL, NULL));
}

static int row_text(void *data, const struct ibex_store_value *c, size_t n)
{
    struct ibex_buf *b = data;
    if (n && c[0].type == IBEX_STORE_TEXT)
        ibex_buf_append(b, c[0].p, c[0].len);
    return 0;
}

/* The text of the first column of the first row (sql has $1 = p1), in out. */
static void sql_text(struct fx *f, const char *sql, const char *p1, struct ibex_buf *out)
{
    struct ibex_store_value p[] = {ibex_store_text(p1)};
    ibex_buf_reset(out);
    tu_store_must(f->st, ibex_store_exec(f->st, sql, p, 1, row_text, out));
}

/* ---- actors and fixtures ---- */

static struct ibex_actor actor_of(const char *tenant_id)
{
    return (struct ibex_actor){.tenant_id = tenant_id,
                               .subject = "key-tasks",
                               .scopes = IBEX_SCOPE_ADMIN,
                               .request_id = "req-tasks-1"};
}

/* An agent with a role (role NULL: none). */
static void agent_new(struct fx *f, const struct ibex_actor *a, const char *role, char id[ID_BUF])
{
    struct res x;
    res_init(&x);
    json_object *b =
        role ? jbody("{\"name\":\"agent\",\"role\":\"%s\"}", role) : jbody("{\"name\":\"agent\"}");
    expect(&x, ibex_agent_create(f->st, a, b, NULL, &x.out, &x.r), 201, NULL, "agent create");
    json_object_put(b);
    snprintf(id, ID_BUF, "%s", jstr(x.j, "id"));
    res_dispose(&x);
}

static void agent_revoke(struct fx *f, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_agent_revoke(f->st, a, id, &x.out, &x.r), 200, NULL, "agent revoke");
    res_dispose(&x);
}

static void session_new(struct fx *f, const struct ibex_actor *a, char id[ID_BUF])
{
    struct res x;
    res_init(&x);
    json_object *b = jbody("{\"agent_role\":\"r\"}");
    expect(&x, ibex_session_create(f->st, a, b, &x.out, &x.r), 201, NULL, "session create");
    json_object_put(b);
    snprintf(id, ID_BUF, "%s", jstr(x.j, "session_id"));
    res_dispose(&x);
}

static void task_new_body(struct fx *f, const struct ibex_actor *a, const char *body,
                          char id[ID_BUF])
{
    struct res x;
    res_init(&x);
    json_object *b = jbody("%s", body);
    expect(&x, ibex_task_create(f->st, a, b, &x.out, &x.r), 201, NULL, body);
    json_object_put(b);
    snprintf(id, ID_BUF, "%s", jstr(x.j, "id"));
    res_dispose(&x);
}

static void task_new(struct fx *f, const struct ibex_actor *a, const char *role, char id[ID_BUF])
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"job\",\"agent_role\":\"%s\",\"phases\":[\"plan\",\"build\"]}", role);
    task_new_body(f, a, body, id);
}

/* GET (200 expected): the raw answer in out. */
static void task_snapshot(struct fx *f, const struct ibex_actor *a, const char *id,
                          struct ibex_buf *out)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_task_get(f->st, a, id, &x.out, &x.r), 200, NULL, "task get");
    ibex_buf_reset(out);
    ibex_buf_append(out, x.out.p, x.out.len);
    res_dispose(&x);
}

/* GET (200 expected), parsed: json_object_put it. */
static json_object *task_json(struct fx *f, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_task_get(f->st, a, id, &x.out, &x.r), 200, NULL, "task get");
    json_object *j = json_object_get(x.j);
    res_dispose(&x);
    return j;
}

/* PUT with body text into x (which the caller checks). */
static int task_put(struct fx *f, const struct ibex_actor *a, const char *id, const char *body,
                    struct res *x)
{
    json_object *b = body ? jbody("%s", body) : NULL;
    int rc = ibex_task_update(f->st, a, id, b, &x->out, &x->r);
    json_object_put(b);
    return rc;
}

static void task_set(struct fx *f, const struct ibex_actor *a, const char *id, const char *state)
{
    struct res x;
    res_init(&x);
    char body[64];
    snprintf(body, sizeof(body), "{\"state\":\"%s\"}", state);
    expect(&x, task_put(f, a, id, body, &x), 200, NULL, body);
    assert_string_equal(jstr(x.j, "state"), state);
    res_dispose(&x);
}

static void approval_new(struct fx *f, const struct ibex_actor *a, const char *body,
                         char id[ID_BUF])
{
    struct res x;
    res_init(&x);
    json_object *b = jbody("%s", body);
    expect(&x, ibex_approval_request(f->st, a, b, &x.out, &x.r), 201, NULL, body);
    json_object_put(b);
    assert_string_equal(jstr(x.j, "state"), "pending");
    snprintf(id, ID_BUF, "%s", jstr(x.j, "id"));
    res_dispose(&x);
}

/* An approval that task (running) now waits on. */
static void approval_for(struct fx *f, const struct ibex_actor *a, const char *task,
                         char id[ID_BUF])
{
    char body[160];
    snprintf(body, sizeof(body), "{\"action\":\"deploy\",\"task_id\":\"%s\"}", task);
    approval_new(f, a, body, id);
}

static json_object *approval_json(struct fx *f, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_approval_get(f->st, a, id, &x.out, &x.r), 200, NULL, "approval get");
    json_object *j = json_object_get(x.j);
    res_dispose(&x);
    return j;
}

/* approve (reason may be NULL: no body) or reject, expecting status (and code on failure). */
static void decide(struct fx *f, const struct ibex_actor *a, const char *id, bool approve,
                   const char *body, int status, const char *code, struct res *x)
{
    json_object *b = body ? jbody("%s", body) : NULL;
    int rc = approve ? ibex_approval_approve(f->st, a, id, b, &x->out, &x->r)
                     : ibex_approval_reject(f->st, a, id, b, &x->out, &x->r);
    json_object_put(b);
    expect(x, rc, status, code, approve ? "approve" : "reject");
}

static const char *const all_states[] = {"pending",   "running", "waiting_approval",
                                         "completed", "failed",  "cancelled"};
enum { NSTATES = 6 };

/* A new task of a's tenant driven to st through allowed transitions (approval id, when st is
 * waiting_approval, in approval; may be NULL). */
static void task_in_state(struct fx *f, const struct ibex_actor *a, const char *st, char id[ID_BUF],
                          char *approval)
{
    char ap[ID_BUF];
    task_new(f, a, "worker", id);
    if (strcmp(st, "pending") == 0)
        return;
    if (strcmp(st, "cancelled") == 0) {
        task_set(f, a, id, "cancelled");
        return;
    }
    task_set(f, a, id, "running");
    if (strcmp(st, "waiting_approval") == 0) {
        approval_for(f, a, id, approval ? approval : ap);
        return;
    }
    if (strcmp(st, "running") != 0)
        task_set(f, a, id, st);
}

static json_object *phase_at(json_object *task, size_t i)
{
    json_object *arr = jget(task, "phases");
    assert_true(json_object_is_type(arr, json_type_array));
    assert_true(i < json_object_array_length(arr));
    return json_object_array_get_idx(arr, i);
}

/* Phase i of task: its name and state, and whether its times are set. */
static void expect_phase(json_object *task, size_t i, const char *name, const char *state)
{
    json_object *p = phase_at(task, i);
    assert_string_equal(jstr(p, "name"), name);
    if (strcmp(jstr(p, "state"), state) != 0)
        fail_msg("phase %s: %s, wanted %s in %s", name, jstr(p, "state"), state,
                 json_object_to_json_string(task));
    bool started = strcmp(state, "pending") != 0, ended = strcmp(state, "done") == 0;
    assert_true(jis_null(p, "started_at") == !started);
    assert_true(jis_null(p, "ended_at") == !ended);
    if (started)
        assert_true(jint(p, "started_at") >= now_s() - 60 && jint(p, "started_at") <= now_s());
    if (ended)
        assert_true(jint(p, "ended_at") >= jint(p, "started_at"));
}

/* ---- query parsers ---- */

static int parse_tq(const char *text, struct ibex_task_query *q, struct ibex_api_result *r)
{
    ibex_api_result_init(r);
    struct ibex_str s = {text, text ? strlen(text) : 0};
    return ibex_task_query_parse(s, q, r);
}

static int parse_aq(const char *text, struct ibex_approval_query *q, struct ibex_api_result *r)
{
    ibex_api_result_init(r);
    struct ibex_str s = {text, text ? strlen(text) : 0};
    return ibex_approval_query_parse(s, q, r);
}

static void test_task_query_parse(void **state)
{
    (void)state;
    struct ibex_task_query q;
    struct ibex_api_result r;
    const char *defaults[] = {NULL, "", "foo=bar", "&", "role=x&State=running"};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        memset(&q, 0x5a, sizeof(q));
        if (parse_tq(defaults[i], &q, &r) != 0)
            fail_msg("%s: %s", defaults[i] ? defaults[i] : "(null)", r.message);
        assert_int_equal(q.page, 1);
        assert_int_equal(q.page_size, 20);
        assert_string_equal(q.state, "");
        assert_string_equal(q.agent_id, "");
        assert_string_equal(q.agent_role, "");
        ibex_api_result_dispose(&r);
    }
    for (size_t i = 0; i < NSTATES; i++) {
        char text[64];
        snprintf(text, sizeof(text), "page=2&state=%s&page_size=100", all_states[i]);
        if (parse_tq(text, &q, &r) != 0)
            fail_msg("%s: %s", text, r.message);
        assert_string_equal(q.state, all_states[i]);
        assert_int_equal(q.page, 2);
        assert_int_equal(q.page_size, 100);
        ibex_api_result_dispose(&r);
    }
    static const struct {
        const char *q, *role;
    } roles[] = {
        {"agent_role=coder", "coder"},
        {"agent_role=code%20review", "code review"},
        {"agent_role=code+review", "code review"},
        {"agent_role=a%2Bb%26c%3Dd", "a+b&c=d"},
        {"agent_role=%C3%A9t%C3%A9", "\xc3\xa9t\xc3\xa9"},
        {"agent_role=x&agent_role=y", "y"},
    };
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (parse_tq(roles[i].q, &q, &r) != 0)
            fail_msg("%s: %s", roles[i].q, r.message);
        assert_string_equal(q.agent_role, roles[i].role);
        ibex_api_result_dispose(&r);
    }
    /* a role of exactly 200 bytes */
    char text[300] = "agent_role=";
    memset(text + strlen(text), 'r', 200);
    assert_int_equal(parse_tq(text, &q, &r), 0);
    assert_int_equal(strlen(q.agent_role), 200);
    ibex_api_result_dispose(&r);
    assert_int_equal(parse_tq("agent_id=0F0E0D0C-0B0A-4908-8706-050403020100", &q, &r), 0);
    assert_string_equal(q.agent_id, UNKNOWN_ID);
    ibex_api_result_dispose(&r);
    /* a repeated state: the last one wins, and is checked */
    assert_int_equal(parse_tq("state=waiting_approval&state=failed", &q, &r), 0);
    assert_string_equal(q.state, "failed");
    ibex_api_result_dispose(&r);

    char long_role[300] = "agent_role=";
    memset(long_role + strlen(long_role), 'r', 201);
    static const struct {
        const char *q, *field;
    } bad[] = {
        {"page=0", "page"},
        {"page_size=101", "page_size"},
        {"page_size=x", "page_size"},
        {"state=", "state"},
        {"state=active", "state"}, /* a session state, not a task state */
        {"state=RUNNING", "state"},
        {"state=running&state=run", "state"},
        {"agent_id=abc", "agent_id"},
        {"agent_id=", "agent_id"},
        {"agent_role=", "agent_role"},
        {"agent_role=%", "agent_role"},
        {"agent_role=%2", "agent_role"},
        {"agent_role=%zz", "agent_role"},
        {"agent_role=a%00b", "agent_role"},
        {"agent_role=a%0Ab", "agent_role"},
        {"agent_role=%09", "agent_role"},
        {"agent_role=%FF", "agent_role"},
        {"", "agent_role"}, /* replaced by long_role */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *t = bad[i].q[0] ? bad[i].q : long_role;
        int rc = parse_tq(t, &q, &r);
        if (rc != 400 || r.code == NULL || strcmp(r.code, "VALIDATION_ERROR") != 0 ||
            strcmp(r.param, bad[i].field) != 0)
            fail_msg("%s: %d %s [%s], wanted 400 VALIDATION_ERROR on %s", t, rc,
                     r.code ? r.code : "-", r.param, bad[i].field);
        ibex_api_result_dispose(&r);
    }
}

static void test_approval_query_parse(void **state)
{
    (void)state;
    struct ibex_approval_query q;
    struct ibex_api_result r;
    assert_int_equal(parse_aq("", &q, &r), 0);
    assert_int_equal(q.page, 1);
    assert_int_equal(q.page_size, 20);
    assert_string_equal(q.state, "");
    ibex_api_result_dispose(&r);
    const char *ok[] = {"pending", "approved", "rejected", "expired", "cancelled"};
    for (size_t i = 0; i < 5; i++) {
        char text[64];
        snprintf(text, sizeof(text), "state=%s&page=3&page_size=7", ok[i]);
        assert_int_equal(parse_aq(text, &q, &r), 0);
        assert_string_equal(q.state, ok[i]);
        assert_int_equal(q.page, 3);
        assert_int_equal(q.page_size, 7);
        ibex_api_result_dispose(&r);
    }
    const char *bad[] = {"state=",         "state=running", "state=Pending",
                         "state=pendingx", "page=-1",       "page_size=0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_aq(bad[i], &q, &r) != 400 || strcmp(r.code, "VALIDATION_ERROR") != 0)
            fail_msg("%s: %d, wanted 400", bad[i], r.status);
        ibex_api_result_dispose(&r);
    }
}

/* ---- create ---- */

static void test_task_create(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], A[ID_BUF], S[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    agent_new(f, &ta, "coder", A);
    session_new(f, &ta, S);

    struct res x;
    res_init(&x);
    int64_t before = now_s();
    json_object *b = jbody("{\"name\":\"build \\\"it\\\" \\u00e9\",\"agent_role\":\"coder\","
                           "\"phases\":[\"plan\",\"build\",\"verify\"],\"input\":{\"repo\":\"r\","
                           "\"n\":[1,2]},\"metadata\":{\"team\":\"x\"}}");
    expect(&x, ibex_task_create(f->st, &ta, b, &x.out, &x.r), 201, NULL, "create");
    json_object_put(b);
    const char *id = jstr(x.j, "id");
    assert_true(ibex_id_is_uuid(id, strlen(id)));
    assert_string_equal(jstr(x.j, "object"), "task");
    assert_string_equal(jstr(x.j, "tenant_id"), T);
    assert_string_equal(jstr(x.j, "name"), "build \"it\" \xc3\xa9");
    assert_string_equal(jstr(x.j, "state"), "pending");
    assert_string_equal(jstr(x.j, "agent_role"), "coder");
    assert_true(jis_null(x.j, "agent_id"));
    assert_true(jis_null(x.j, "session_id"));
    assert_int_equal(json_object_array_length(jget(x.j, "phases")), 3);
    expect_phase(x.j, 0, "plan", "pending");
    expect_phase(x.j, 1, "build", "pending");
    expect_phase(x.j, 2, "verify", "pending");
    assert_true(jis_null(x.j, "phase"));
    assert_true(jis_null(x.j, "checkpoint"));
    assert_true(jis_null(x.j, "checkpoint_at"));
    expect_json_equal(jget(x.j, "input"), "{\"repo\":\"r\",\"n\":[1,2]}", "input");
    expect_json_equal(jget(x.j, "metadata"), "{\"team\":\"x\"}", "metadata");
    assert_true(jis_null(x.j, "error"));
    assert_true(jis_null(x.j, "approval_id"));
    int64_t c = jint(x.j, "created_at");
    assert_true(c >= before && c <= now_s());
    assert_int_equal(jint(x.j, "updated_at"), c);

    struct ibex_buf snap;
    ibex_buf_init(&snap);
    task_snapshot(f, &ta, id, &snap);
    expect_same_text(&snap, &x.out, "get after create");
    ibex_buf_dispose(&snap);
    res_reset(&x);

    /* the defaults; an agent and a session of the tenant */
    b = jbody("{\"name\":\"n\",\"agent_role\":\"coder\",\"agent_id\":\"%s\",\"session_id\":\"%s\"}",
              A, S);
    expect(&x, ibex_task_create(f->st, &ta, b, &x.out, &x.r), 201, NULL, "with refs");
    json_object_put(b);
    assert_string_equal(jstr(x.j, "agent_id"), A);
    assert_string_equal(jstr(x.j, "session_id"), S);
    expect_json_equal(jget(x.j, "phases"), "[]", "no phases");
    expect_json_equal(jget(x.j, "input"), "{}", "input default");
    expect_json_equal(jget(x.j, "metadata"), "{}", "metadata default");
    res_reset(&x);

    /* limits: 32 phases of 64 bytes, a name and a role of 200 bytes; null fields are absent */
    struct ibex_buf body;
    ibex_buf_init(&body);
    char name[201], phase[65];
    memset(name, 'n', 200);
    name[200] = '\0';
    memset(phase, 'p', 64);
    phase[64] = '\0';
    ibex_buf_appendf(&body, "{\"name\":\"%s\",\"agent_role\":\"%s\",\"input\":null,\"phases\":[",
                     name, name);
    for (int i = 0; i < 32; i++)
        ibex_buf_appendf(&body, "%s\"%02d%s\"", i ? "," : "", i, phase + 2);
    ibex_buf_append_cstr(&body, "]}");
    b = jbody("%s", body.p);
    expect(&x, ibex_task_create(f->st, &ta, b, &x.out, &x.r), 201, NULL, "limits");
    json_object_put(b);
    assert_int_equal(json_object_array_length(jget(x.j, "phases")), 32);
    assert_int_equal(strlen(jstr(phase_at(x.j, 31), "name")), 64);
    assert_string_equal(jstr(x.j, "name"), name);
    expect_json_equal(jget(x.j, "input"), "{}", "input null");
    res_dispose(&x);
    ibex_buf_dispose(&body);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks WHERE tenant_id = $1", T, NULL), 3);
}

/* Every agent or session id that is not the tenant's gets one answer. */
static void test_task_create_refs(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], Arev[ID_BUF], Aother[ID_BUF], Sother[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    agent_new(f, &ta, "coder", Arev);
    agent_revoke(f, &ta, Arev);
    agent_new(f, &ua, "coder", Aother);
    session_new(f, &ua, Sother);

    const char *fields[] = {"agent_id", "session_id"};
    const char *bad[2][5] = {{UNKNOWN_ID, "not-a-uuid", Arev, Aother, ""},
                             {UNKNOWN_ID, "not-a-uuid", Sother, "", Aother}};
    for (size_t k = 0; k < 2; k++) {
        struct res first;
        res_init(&first);
        for (size_t i = 0; i < 5; i++) {
            struct res y;
            res_init(&y);
            json_object *b =
                jbody("{\"name\":\"n\",\"agent_role\":\"r\",\"%s\":\"%s\"}", fields[k], bad[k][i]);
            expect_field(&y, ibex_task_create(f->st, &ta, b, &y.out, &y.r), fields[k], bad[k][i]);
            json_object_put(b);
            assert_int_equal(y.out.len, 0);
            if (i == 0) {
                first = y;
                continue;
            }
            expect_same_error(&first, &y, bad[k][i]);
            res_dispose(&y);
        }
        res_dispose(&first);
    }
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks", NULL, NULL), 0);
    /* the owner may use them */
    char body[200], id[ID_BUF];
    snprintf(body, sizeof(body),
             "{\"name\":\"n\",\"agent_role\":\"r\",\"agent_id\":\"%s\",\"session_id\":\"%s\"}",
             Aother, Sother);
    task_new_body(f, &ua, body, id);
}

static void test_task_create_validation(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    struct ibex_buf big;
    ibex_buf_init(&big);
    ibex_buf_append_cstr(&big, "{\"name\":\"n\",\"agent_role\":\"r\",\"input\":{\"x\":\"");
    for (int i = 0; i < 64 * 1024; i++)
        ibex_buf_append_cstr(&big, "x");
    ibex_buf_append_cstr(&big, "\"}}");
    struct ibex_buf many;
    ibex_buf_init(&many);
    ibex_buf_append_cstr(&many, "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[");
    for (int i = 0; i < 33; i++)
        ibex_buf_appendf(&many, "%s\"p%d\"", i ? "," : "", i);
    ibex_buf_append_cstr(&many, "]}");
    char long_name[260], long_phase[120];
    snprintf(long_name, sizeof(long_name), "{\"name\":\"%0201d\",\"agent_role\":\"r\"}", 0);
    snprintf(long_phase, sizeof(long_phase),
             "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[\"%065d\"]}", 0);
    char long_role[260];
    snprintf(long_role, sizeof(long_role), "{\"name\":\"n\",\"agent_role\":\"%0201d\"}", 0);
    static const char *const field[] = {
        "name",       "name",       "name",   "name",   "name",     "agent_role", "agent_role",
        "agent_role", "phases",     "phases", "phases", "phases",   "phases",     "phases",
        "phases",     "input",      "input",  "input",  "metadata", "agent_id",   "session_id",
        "name",       "agent_role", "phases", "phases"};
    const char *bodies[] = {
        NULL,
        "{}",
        "{\"agent_role\":\"r\"}",
        "{\"name\":\"\",\"agent_role\":\"r\"}",
        "{\"name\":42,\"agent_role\":\"r\"}",
        "{\"name\":\"n\"}",
        "{\"name\":\"n\",\"agent_role\":\"\"}",
        "{\"name\":\"n\",\"agent_role\":[\"r\"]}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":\"plan\"}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":{\"a\":1}}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[1]}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[\"\"]}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[\"a\",\"b\",\"a\"]}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[null]}",
        many.p,
        "{\"name\":\"n\",\"agent_role\":\"r\",\"input\":\"x\"}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"input\":[1]}",
        big.p,
        "{\"name\":\"n\",\"agent_role\":\"r\",\"metadata\":[1]}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"agent_id\":7}",
        "{\"name\":\"n\",\"agent_role\":\"r\",\"session_id\":true}",
        long_name,
        long_role,
        long_phase,
        "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[[\"a\"]]}",
    };
    assert_int_equal(sizeof(bodies) / sizeof(bodies[0]), sizeof(field) / sizeof(field[0]));
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_object *b = bodies[i] ? jbody("%s", bodies[i]) : NULL;
        struct res x;
        res_init(&x);
        char what[64];
        snprintf(what, sizeof(what), "case %zu (%.40s)", i, bodies[i] ? bodies[i] : "no body");
        expect_field(&x, ibex_task_create(f->st, &ta, b, &x.out, &x.r), field[i], what);
        json_object_put(b);
        res_dispose(&x);
    }
    const char *not_objects[] = {"[1]", "\"s\"", "7"};
    for (size_t i = 0; i < 3; i++) {
        struct res x;
        res_init(&x);
        json_object *b = jbody("%s", not_objects[i]);
        expect(&x, ibex_task_create(f->st, &ta, b, &x.out, &x.r), 400, "VALIDATION_ERROR",
               not_objects[i]);
        json_object_put(b);
        res_dispose(&x);
    }
    struct ibex_actor op = operator_actor();
    struct res x;
    res_init(&x);
    json_object *b = jbody("{\"name\":\"n\",\"agent_role\":\"r\"}");
    expect(&x, ibex_task_create(f->st, &op, b, &x.out, &x.r), 400, "VALIDATION_ERROR", "operator");
    json_object_put(b);
    res_dispose(&x);
    ibex_buf_dispose(&big);
    ibex_buf_dispose(&many);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks", NULL, NULL), 0);
}

/* ---- get ---- */

static void test_task_get(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], X[ID_BUF], XU[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    task_new(f, &ta, "mine", X);
    task_new(f, &ua, "theirs", XU);

    struct res own, unknown, foreign;
    res_init(&own);
    res_init(&unknown);
    res_init(&foreign);
    expect(&own, ibex_task_get(f->st, &ta, X, &own.out, &own.r), 200, NULL, "own");
    assert_string_equal(jstr(own.j, "id"), X);
    assert_string_equal(jstr(own.j, "agent_role"), "mine");
    expect(&unknown, ibex_task_get(f->st, &ta, UNKNOWN_ID, &unknown.out, &unknown.r), 404,
           "TASK_NOT_FOUND", "unknown");
    expect(&foreign, ibex_task_get(f->st, &ta, XU, &foreign.out, &foreign.r), 404, "TASK_NOT_FOUND",
           "foreign");
    expect_same_error(&unknown, &foreign, "unknown vs another tenant's task");
    assert_int_equal(foreign.out.len, 0);
    res_dispose(&own);
    res_dispose(&unknown);
    res_dispose(&foreign);
    /* the attempt is on the operator's trail, not on T's */
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE target = $1 AND tenant_id "
                             "IS NULL AND action = 'access.denied'",
                             XU, NULL),
                     1);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND target = $2", T, XU),
        0);
    const char *malformed[] = {"", "abc", "' OR 1=1 --", "0f0e0d0c-0b0a-4908-8706-05040302010"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        struct res x;
        res_init(&x);
        expect_field(&x, ibex_task_get(f->st, &ta, malformed[i], &x.out, &x.r), "id", malformed[i]);
        res_dispose(&x);
    }
    struct ibex_actor op = operator_actor();
    struct res x;
    res_init(&x);
    expect(&x, ibex_task_get(f->st, &op, X, &x.out, &x.r), 400, "VALIDATION_ERROR", "operator");
    res_dispose(&x);
}

/* ---- the state machine ---- */

/* docs/tasks.md, written out independently of tasks.c */
static bool transition_allowed(const char *from, const char *to)
{
    static const char *const ok[][2] = {
        {"pending", "running"}, {"pending", "cancelled"}, {"running", "completed"},
        {"running", "failed"},  {"running", "cancelled"}, {"waiting_approval", "cancelled"}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(ok[i][0], from) == 0 && strcmp(ok[i][1], to) == 0)
            return true;
    return false;
}

static void test_task_transitions(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    struct ibex_buf before, after;
    ibex_buf_init(&before);
    ibex_buf_init(&after);
    int allowed_n = 0, refused_n = 0, held_n = 0, same_n = 0;
    for (size_t i = 0; i < NSTATES; i++) {
        for (size_t k = 0; k < NSTATES; k++) {
            const char *from = all_states[i], *to = all_states[k];
            char what[64], X[ID_BUF], ap[ID_BUF] = "", body[64];
            snprintf(what, sizeof(what), "%s -> %s", from, to);
            task_in_state(f, &ta, from, X, ap);
            task_snapshot(f, &ta, X, &before);
            struct res x;
            res_init(&x);
            snprintf(body, sizeof(body), "{\"state\":\"%s\"}", to);
            int rc = task_put(f, &ta, X, body, &x);
            if (strcmp(from, to) == 0) {
                expect(&x, rc, 200, NULL, what);
                assert_string_equal(jstr(x.j, "state"), from);
                same_n++;
            } else if (transition_allowed(from, to)) {
                expect(&x, rc, 200, NULL, what);
                allowed_n++;
                assert_string_equal(jstr(x.j, "state"), to);
                json_object *g = task_json(f, &ta, X);
                assert_string_equal(jstr(g, "state"), to);
                assert_true(jis_null(g, "approval_id"));
                assert_true(jis_null(g, "error"));
                json_object_put(g);
            } else if (strcmp(from, "waiting_approval") == 0) {
                /* anything but cancelling would let the task proceed */
                expect(&x, rc, 409, "APPROVAL_PENDING", what);
                held_n++;
                if (strstr(x.r.message, ap) == NULL)
                    fail_msg("%s: message does not name the approval: %s", what, x.r.message);
                task_snapshot(f, &ta, X, &after);
                expect_same_text(&before, &after, what);
            } else {
                expect(&x, rc, 422, "INVALID_STATE_TRANSITION", what);
                refused_n++;
                assert_string_equal(x.r.param, "state");
                if (strstr(x.r.message, from) == NULL)
                    fail_msg("%s: message does not name the current state: %s", what, x.r.message);
                assert_int_equal(x.out.len, 0);
                task_snapshot(f, &ta, X, &after);
                expect_same_text(&before, &after, what);
                /* with metadata too: nothing of the update is applied */
                res_reset(&x);
                snprintf(body, sizeof(body), "{\"state\":\"%s\",\"metadata\":{\"x\":1}}", to);
                expect(&x, task_put(f, &ta, X, body, &x), 422, "INVALID_STATE_TRANSITION", what);
                task_snapshot(f, &ta, X, &after);
                expect_same_text(&before, &after, what);
            }
            res_dispose(&x);
            if (ap[0] && strcmp(to, "cancelled") == 0) {
                /* cancelled while waiting: the approval is withdrawn */
                json_object *g = approval_json(f, &ta, ap);
                assert_string_equal(jstr(g, "state"), "cancelled");
                assert_false(jis_null(g, "decided_at"));
                assert_true(jis_null(g, "decided_by"));
                json_object_put(g);
            }
        }
    }
    assert_int_equal(allowed_n, 6);
    assert_int_equal(same_n, 6);
    assert_int_equal(held_n, 4);
    assert_int_equal(refused_n, 20);
    ibex_buf_dispose(&before);
    ibex_buf_dispose(&after);
}

/* ---- phases and checkpoints ---- */

static void test_task_phases_and_checkpoint(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], X[ID_BUF], Y[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    task_new_body(
        f, &ta, "{\"name\":\"n\",\"agent_role\":\"r\",\"phases\":[\"plan\",\"build\",\"verify\"]}",
        X);
    struct res x;
    res_init(&x);

    /* pending: neither a phase nor a checkpoint */
    expect(&x, task_put(f, &ta, X, "{\"phase\":\"plan\"}", &x), 409, "TASK_NOT_RUNNING",
           "phase while pending");
    assert_string_equal(x.r.param, "phase");
    res_reset(&x);
    expect(&x, task_put(f, &ta, X, "{\"checkpoint\":{\"step\":1}}", &x), 409, "TASK_NOT_RUNNING",
           "checkpoint while pending");
    assert_string_equal(x.r.param, "checkpoint");
    res_reset(&x);

    /* started with its first phase in one request */
    expect(&x, task_put(f, &ta, X, "{\"state\":\"running\",\"phase\":\"plan\"}", &x), 200, NULL,
           "start in plan");
    assert_string_equal(jstr(x.j, "state"), "running");
    assert_string_equal(jstr(x.j, "phase"), "plan");
    expect_phase(x.j, 0, "plan", "running");
    expect_phase(x.j, 1, "build", "pending");
    expect_phase(x.j, 2, "verify", "pending");
    res_reset(&x);

    /* a checkpoint: saved with its time; the phase stays */
    int64_t before = now_s();
    expect(&x, task_put(f, &ta, X, "{\"checkpoint\":{\"step\":1,\"files\":[\"a.c\"]}}", &x), 200,
           NULL, "checkpoint");
    expect_json_equal(jget(x.j, "checkpoint"), "{\"step\":1,\"files\":[\"a.c\"]}", "checkpoint");
    int64_t cp_at = jint(x.j, "checkpoint_at");
    assert_true(cp_at >= before && cp_at <= now_s());
    assert_string_equal(jstr(x.j, "phase"), "plan");
    res_reset(&x);

    /* the next phase ends the previous one; with a checkpoint in the same request */
    expect(&x, task_put(f, &ta, X, "{\"phase\":\"build\",\"checkpoint\":{\"step\":2}}", &x), 200,
           NULL, "build");
    assert_string_equal(jstr(x.j, "phase"), "build");
    expect_phase(x.j, 0, "plan", "done");
    expect_phase(x.j, 1, "build", "running");
    expect_phase(x.j, 2, "verify", "pending");
    assert_true(jint(phase_at(x.j, 1), "started_at") >= jint(phase_at(x.j, 0), "ended_at"));
    expect_json_equal(jget(x.j, "checkpoint"), "{\"step\":2}", "second checkpoint");
    res_reset(&x);

    /* the current phase again: nothing moves */
    struct ibex_buf snap, again;
    ibex_buf_init(&snap);
    ibex_buf_init(&again);
    task_snapshot(f, &ta, X, &snap);
    json_object *s0 = tu_parse_json(snap.p, snap.len);
    expect(&x, task_put(f, &ta, X, "{\"phase\":\"build\"}", &x), 200, NULL, "same phase");
    assert_true(json_object_equal(jget(x.j, "phases"), jget(s0, "phases")));
    json_object_put(s0);
    res_reset(&x);

    /* an undeclared phase, and a checkpoint that is not an object or is too large */
    const char *bad[][2] = {{"{\"phase\":\"deploy\"}", "phase"},
                            {"{\"phase\":\"PLAN\"}", "phase"},
                            {"{\"phase\":\"\"}", "phase"},
                            {"{\"phase\":7}", "phase"},
                            {"{\"checkpoint\":[1]}", "checkpoint"},
                            {"{\"checkpoint\":\"s\"}", "checkpoint"},
                            {NULL, "checkpoint"}};
    struct ibex_buf big;
    ibex_buf_init(&big);
    ibex_buf_append_cstr(&big, "{\"checkpoint\":{\"x\":\"");
    for (int i = 0; i < 64 * 1024; i++)
        ibex_buf_append_cstr(&big, "y");
    ibex_buf_append_cstr(&big, "\"}}");
    task_snapshot(f, &ta, X, &snap);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *body = bad[i][0] ? bad[i][0] : big.p;
        expect_field(&x, task_put(f, &ta, X, body, &x), bad[i][1], bad[i][0] ? body : "big");
        res_reset(&x);
        task_snapshot(f, &ta, X, &again);
        expect_same_text(&snap, &again, bad[i][0] ? body : "big");
    }
    ibex_buf_dispose(&big);

    /* "checkpoint": null and "metadata" only leave the checkpoint as it is */
    expect(&x, task_put(f, &ta, X, "{\"checkpoint\":null,\"metadata\":{\"m\":1}}", &x), 200, NULL,
           "checkpoint null");
    expect_json_equal(jget(x.j, "checkpoint"), "{\"step\":2}", "checkpoint kept");
    expect_json_equal(jget(x.j, "metadata"), "{\"m\":1}", "metadata");
    res_reset(&x);

    /* back to an ended phase: it starts again and the running one ends */
    expect(&x, task_put(f, &ta, X, "{\"phase\":\"plan\"}", &x), 200, NULL, "plan again");
    expect_phase(x.j, 0, "plan", "running");
    expect_phase(x.j, 1, "build", "done");
    expect_phase(x.j, 2, "verify", "pending");
    res_reset(&x);

    /* completing ends the running phase; the last phase is still named */
    expect(&x,
           task_put(f, &ta, X,
                    "{\"state\":\"completed\",\"phase\":\"verify\",\"checkpoint\":{\"step\":3}}",
                    &x),
           200, NULL, "complete");
    assert_string_equal(jstr(x.j, "state"), "completed");
    assert_string_equal(jstr(x.j, "phase"), "verify");
    expect_phase(x.j, 0, "plan", "done");
    expect_phase(x.j, 1, "build", "done");
    expect_phase(x.j, 2, "verify", "done");
    expect_json_equal(jget(x.j, "checkpoint"), "{\"step\":3}", "final checkpoint");
    res_reset(&x);

    /* finished: no phase, no checkpoint, but metadata still */
    task_snapshot(f, &ta, X, &snap);
    expect(&x, task_put(f, &ta, X, "{\"phase\":\"plan\"}", &x), 409, "TASK_NOT_RUNNING", "done");
    res_reset(&x);
    expect(&x, task_put(f, &ta, X, "{\"checkpoint\":{}}", &x), 409, "TASK_NOT_RUNNING", "done");
    res_reset(&x);
    task_snapshot(f, &ta, X, &again);
    expect_same_text(&snap, &again, "finished task");
    expect(&x, task_put(f, &ta, X, "{\"metadata\":{\"after\":true}}", &x), 200, NULL, "metadata");
    res_reset(&x);

    /* a task without phases has none to enter; failing a task ends its phase too */
    task_new_body(f, &ta, "{\"name\":\"n\",\"agent_role\":\"r\"}", Y);
    task_set(f, &ta, Y, "running");
    expect_field(&x, task_put(f, &ta, Y, "{\"phase\":\"plan\"}", &x), "phase", "no phases");
    res_reset(&x);
    char Z[ID_BUF];
    task_new(f, &ta, "r", Z);
    expect(&x, task_put(f, &ta, Z, "{\"state\":\"running\",\"phase\":\"build\"}", &x), 200, NULL,
           "skip to build");
    expect_phase(x.j, 0, "plan", "pending");
    expect_phase(x.j, 1, "build", "running");
    res_reset(&x);
    task_set(f, &ta, Z, "failed");
    json_object *g = task_json(f, &ta, Z);
    expect_phase(g, 0, "plan", "pending");
    expect_phase(g, 1, "build", "done");
    json_object_put(g);
    res_dispose(&x);
    ibex_buf_dispose(&snap);
    ibex_buf_dispose(&again);
}

static void test_task_update_validation(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], X[ID_BUF], XU[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    task_new(f, &ta, "mine", X);
    task_set(f, &ta, X, "running");
    task_new(f, &ua, "theirs", XU);
    struct ibex_buf before, after;
    ibex_buf_init(&before);
    ibex_buf_init(&after);
    task_snapshot(f, &ta, X, &before);

    const char *bad[][2] = {{"{\"state\":\"done\"}", "state"},
                            {"{\"state\":\"\"}", "state"},
                            {"{\"state\":\"RUNNING\"}", "state"},
                            {"{\"state\":42}", "state"},
                            {"{\"state\":\"waiting_approvalwaiting_approval\"}", "state"},
                            {"{\"state\":\"bogus\",\"metadata\":{\"x\":1}}", "state"},
                            {"{\"metadata\":\"x\"}", "metadata"},
                            {"{\"metadata\":[1],\"state\":\"completed\"}", "metadata"},
                            {"{\"phase\":[\"plan\"]}", "phase"},
                            {"{\"checkpoint\":3}", "checkpoint"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct res x;
        res_init(&x);
        expect_field(&x, task_put(f, &ta, X, bad[i][0], &x), bad[i][1], bad[i][0]);
        res_dispose(&x);
        task_snapshot(f, &ta, X, &after);
        expect_same_text(&before, &after, bad[i][0]);
    }
    const char *nothing[] = {
        NULL, "{}", "{\"other\":1}", "{\"checkpoint\":null}", "{\"metadata\":null}", "[1]"};
    for (size_t i = 0; i < sizeof(nothing) / sizeof(nothing[0]); i++) {
        struct res x;
        res_init(&x);
        expect(&x, task_put(f, &ta, X, nothing[i], &x), 400, "VALIDATION_ERROR",
               nothing[i] ? nothing[i] : "(no body)");
        res_dispose(&x);
    }
    task_snapshot(f, &ta, X, &after);
    expect_same_text(&before, &after, "nothing to update");

    struct res x, unknown, foreign;
    res_init(&x);
    res_init(&unknown);
    res_init(&foreign);
    expect_field(&x, task_put(f, &ta, "nope", "{\"state\":\"running\"}", &x), "id", "malformed");
    expect(&unknown, task_put(f, &ta, UNKNOWN_ID, "{\"state\":\"running\"}", &unknown), 404,
           "TASK_NOT_FOUND", "unknown");
    struct ibex_buf theirs_before, theirs_after;
    ibex_buf_init(&theirs_before);
    ibex_buf_init(&theirs_after);
    task_snapshot(f, &ua, XU, &theirs_before);
    expect(&foreign, task_put(f, &ta, XU, "{\"state\":\"running\"}", &foreign), 404,
           "TASK_NOT_FOUND", "foreign");
    expect_same_error(&unknown, &foreign, "update: unknown vs another tenant's task");
    res_reset(&foreign);
    expect(&foreign, task_put(f, &ta, XU, "{\"metadata\":{\"by\":\"T\"}}", &foreign), 404,
           "TASK_NOT_FOUND", "foreign metadata");
    task_snapshot(f, &ua, XU, &theirs_after);
    expect_same_text(&theirs_before, &theirs_after, "another tenant's task");
    res_dispose(&x);
    res_dispose(&unknown);
    res_dispose(&foreign);
    ibex_buf_dispose(&theirs_before);
    ibex_buf_dispose(&theirs_after);
    ibex_buf_dispose(&before);
    ibex_buf_dispose(&after);
}

/* ---- list ---- */

static void task_list_q(struct fx *f, const struct ibex_actor *a, const char *query, struct res *x)
{
    struct ibex_task_query q;
    struct ibex_api_result pr;
    if (parse_tq(query, &q, &pr) != 0)
        fail_msg("%s: %s", query, pr.message);
    ibex_api_result_dispose(&pr);
    expect(x, ibex_task_list(f->st, a, &q, &x->out, &x->r), 200, NULL, query);
    assert_string_equal(jstr(x->j, "object"), "list");
    assert_int_equal(jint(x->j, "page"), q.page);
    assert_int_equal(jint(x->j, "page_size"), q.page_size);
    json_object *arr = jget(x->j, "tasks");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        assert_string_equal(jstr(e, "object"), "task");
        assert_string_equal(jstr(e, "tenant_id"), a->tenant_id);
        /* lists leave the large fields out */
        assert_false(json_object_object_get_ex(e, "checkpoint", NULL));
        assert_false(json_object_object_get_ex(e, "input", NULL));
        assert_true(json_object_object_get_ex(e, "checkpoint_at", NULL));
        assert_true(json_object_is_type(jget(e, "phases"), json_type_array));
    }
}

static void expect_list_ids(struct res *x, const char *key, const char *const *want, size_t n,
                            int64_t total, const char *what)
{
    json_object *arr = jget(x->j, key);
    size_t got = json_object_array_length(arr);
    if (got != n || jint(x->j, "total") != total)
        fail_msg("%s: %zu items (total %lld), wanted %zu (total %lld): %.*s", what, got,
                 (long long)jint(x->j, "total"), n, (long long)total, (int)x->out.len, x->out.p);
    for (size_t i = 0; i < n; i++) {
        const char *id = jstr(json_object_array_get_idx(arr, i), "id");
        if (strcmp(id, want[i]) != 0)
            fail_msg("%s: [%zu] is %s, wanted %s", what, i, id, want[i]);
    }
}

static void test_task_list(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], A1[ID_BUF], A2[ID_BUF], UA[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    agent_new(f, &ta, NULL, A1);
    agent_new(f, &ta, NULL, A2);
    agent_new(f, &ua, NULL, UA);

    enum { N = 7 };
    char X[N][ID_BUF], XU[3][ID_BUF];
    const char *agent_of[N] = {A1, NULL, A2, A1, NULL, A1, A2};
    const char *role_of[N] = {"coder", "code review", "coder",      "code review",
                              "coder", "coder",       "code review"};
    const char *state_of[N] = {"running",   "pending", "running", "completed",
                               "cancelled", "running", "pending"};
    for (size_t i = 0; i < N; i++) {
        char body[256];
        if (agent_of[i])
            snprintf(body, sizeof(body),
                     "{\"name\":\"n%zu\",\"agent_role\":\"%s\",\"agent_id\":\"%s\",\"input\":{"
                     "\"i\":%zu}}",
                     i, role_of[i], agent_of[i], i);
        else
            snprintf(body, sizeof(body), "{\"name\":\"n%zu\",\"agent_role\":\"%s\"}", i,
                     role_of[i]);
        task_new_body(f, &ta, body, X[i]);
        if (i < 3) {
            snprintf(body, sizeof(body), "{\"name\":\"u\",\"agent_role\":\"coder\"%s%s%s}",
                     i == 0 ? ",\"agent_id\":\"" : "", i == 0 ? UA : "", i == 0 ? "\"" : "");
            task_new_body(f, &ua, body, XU[i]);
            task_set(f, &ua, XU[i], "running");
        }
        sleep_ms(3); /* distinct created_at, so "newest first" has one answer */
    }
    for (size_t i = 0; i < N; i++) {
        if (strcmp(state_of[i], "cancelled") == 0) {
            task_set(f, &ta, X[i], "cancelled");
        } else if (strcmp(state_of[i], "pending") != 0) {
            task_set(f, &ta, X[i], "running");
            if (strcmp(state_of[i], "running") != 0)
                task_set(f, &ta, X[i], state_of[i]);
        }
    }
    const char *newest[N];
    for (size_t i = 0; i < N; i++)
        newest[i] = X[N - 1 - i];

    struct res x;
    res_init(&x);
    task_list_q(f, &ta, "", &x);
    expect_list_ids(&x, "tasks", newest, N, N, "default");
    res_reset(&x);
    task_list_q(f, &ta, "page_size=3", &x);
    expect_list_ids(&x, "tasks", newest, 3, N, "page 1");
    res_reset(&x);
    task_list_q(f, &ta, "page=2&page_size=3", &x);
    expect_list_ids(&x, "tasks", newest + 3, 3, N, "page 2");
    res_reset(&x);
    task_list_q(f, &ta, "page=3&page_size=3", &x);
    expect_list_ids(&x, "tasks", newest + 6, 1, N, "page 3");
    res_reset(&x);
    task_list_q(f, &ta, "page=4&page_size=3", &x);
    expect_list_ids(&x, "tasks", NULL, 0, N, "page 4");
    res_reset(&x);

    const char *running[] = {X[5], X[2], X[0]};
    task_list_q(f, &ta, "state=running", &x);
    expect_list_ids(&x, "tasks", running, 3, 3, "state=running");
    res_reset(&x);
    task_list_q(f, &ta, "state=running&page=2&page_size=2", &x);
    expect_list_ids(&x, "tasks", running + 2, 1, 3, "state=running page 2");
    res_reset(&x);
    task_list_q(f, &ta, "state=failed", &x);
    expect_list_ids(&x, "tasks", NULL, 0, 0, "state=failed");
    res_reset(&x);
    char qt[160];
    const char *of_a1[] = {X[5], X[3], X[0]};
    snprintf(qt, sizeof(qt), "agent_id=%s", A1);
    task_list_q(f, &ta, qt, &x);
    expect_list_ids(&x, "tasks", of_a1, 3, 3, "agent A1");
    res_reset(&x);
    const char *review[] = {X[6], X[3], X[1]};
    task_list_q(f, &ta, "agent_role=code%20review", &x);
    expect_list_ids(&x, "tasks", review, 3, 3, "role code review");
    res_reset(&x);
    task_list_q(f, &ta, "agent_role=code+review&state=pending", &x);
    const char *review_pending[] = {X[6], X[1]};
    expect_list_ids(&x, "tasks", review_pending, 2, 2, "role and state");
    res_reset(&x);
    const char *all3[] = {X[5], X[0]};
    snprintf(qt, sizeof(qt), "agent_role=coder&state=running&agent_id=%s", A1);
    task_list_q(f, &ta, qt, &x);
    expect_list_ids(&x, "tasks", all3, 2, 2, "three filters");
    res_reset(&x);
    task_list_q(f, &ta, "agent_role=cod", &x);
    expect_list_ids(&x, "tasks", NULL, 0, 0, "no prefix match");
    res_reset(&x);
    /* another tenant's agent: nothing, not its tasks */
    snprintf(qt, sizeof(qt), "agent_id=%s", UA);
    task_list_q(f, &ta, qt, &x);
    expect_list_ids(&x, "tasks", NULL, 0, 0, "foreign agent");
    res_reset(&x);
    const char *theirs[] = {XU[2], XU[1], XU[0]};
    task_list_q(f, &ua, "agent_role=coder", &x);
    expect_list_ids(&x, "tasks", theirs, 3, 3, "tenant U");
    res_reset(&x);

    struct ibex_actor op = operator_actor();
    struct ibex_task_query q;
    struct ibex_api_result pr;
    assert_int_equal(parse_tq("", &q, &pr), 0);
    ibex_api_result_dispose(&pr);
    expect(&x, ibex_task_list(f->st, &op, &q, &x.out, &x.r), 400, "VALIDATION_ERROR", "operator");
    res_dispose(&x);
}

/* ---- routing ---- */

static int route(struct fx *f, const struct ibex_actor *a, const char *body, struct res *x)
{
    json_object *b = body ? jbody("%s", body) : NULL;
    int rc = ibex_task_route(f->st, a, b, &x->out, &x->r);
    json_object_put(b);
    return rc;
}

/* Routes task (role: NULL for the task's own) and returns the agent it went to, in agent. */
static void route_ok(struct fx *f, const struct ibex_actor *a, const char *task, const char *role,
                     char agent[ID_BUF])
{
    char body[200];
    if (role)
        snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"agent_role\":\"%s\"}", task, role);
    else
        snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", task);
    struct res x;
    res_init(&x);
    expect(&x, route(f, a, body, &x), 200, NULL, body);
    assert_string_equal(jstr(x.j, "id"), task);
    snprintf(agent, ID_BUF, "%s", jstr(x.j, "agent_id"));
    if (role)
        assert_string_equal(jstr(x.j, "agent_role"), role);
    res_dispose(&x);
}

static const char *lower_id(const char *a, const char *b)
{
    return strcmp(a, b) < 0 ? a : b;
}

static void test_task_route(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], C1[ID_BUF], C2[ID_BUF], Crev[ID_BUF], R1[ID_BUF], N1[ID_BUF],
        UC[ID_BUF], got[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    agent_new(f, &ta, "coder", C1);
    agent_new(f, &ta, "coder", C2);
    agent_new(f, &ta, "coder", Crev);
    agent_new(f, &ta, "reviewer", R1);
    agent_new(f, &ta, NULL, N1);
    agent_revoke(f, &ta, Crev);
    agent_new(f, &ua, "coder", UC); /* idle, but another tenant's */
    const char *first = lower_id(C1, C2), *second = strcmp(first, C1) == 0 ? C2 : C1;

    /* both idle: the lower id; then the other; then the lower again */
    char X1[ID_BUF], X2[ID_BUF], X3[ID_BUF], X4[ID_BUF];
    task_new(f, &ta, "coder", X1);
    task_new(f, &ta, "coder", X2);
    task_new(f, &ta, "coder", X3);
    task_new(f, &ta, "coder", X4);
    route_ok(f, &ta, X1, NULL, got);
    assert_string_equal(got, first);
    route_ok(f, &ta, X2, NULL, got);
    assert_string_equal(got, second);
    route_ok(f, &ta, X3, NULL, got);
    assert_string_equal(got, first);
    /* first has 2 unfinished, second 1: second; finishing first's tasks turns it around */
    task_set(f, &ta, X1, "running");
    task_set(f, &ta, X1, "completed");
    task_set(f, &ta, X3, "cancelled");
    task_set(f, &ta, X2, "running");
    route_ok(f, &ta, X4, NULL, got);
    assert_string_equal(got, first); /* first 0 (finished ones do not count), second 1 */
    /* a waiting task counts */
    char ap[ID_BUF], X5[ID_BUF];
    approval_for(f, &ta, X2, ap);
    task_new(f, &ta, "coder", X5);
    route_ok(f, &ta, X5, NULL, got);
    assert_string_equal(got, lower_id(first, second)); /* 1 each: ties by id */

    /* routing again leaves the task itself out of its agent's load: it stays where it is when
     * that is the least loaded */
    char Y[ID_BUF];
    task_new(f, &ta, "coder", Y);
    route_ok(f, &ta, Y, NULL, got); /* first: X4, X5 -> 2; second: X2 -> 1 */
    assert_string_equal(got, second);
    route_ok(f, &ta, Y, NULL, got);
    assert_string_equal(got, second); /* without Y: first 2, second 1 */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks WHERE agent_id = $1", Crev, NULL), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks WHERE agent_id = $1", UC, NULL), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM tasks WHERE agent_id = $1", N1, NULL), 0);

    /* another role, named in the request: the task takes it */
    char Z[ID_BUF];
    task_new(f, &ta, "coder", Z);
    route_ok(f, &ta, Z, "reviewer", got);
    assert_string_equal(got, R1);
    json_object *g = task_json(f, &ta, Z);
    assert_string_equal(jstr(g, "agent_role"), "reviewer");
    json_object_put(g);

    /* no live agent of the role: 422, the task unchanged */
    struct ibex_buf before, after;
    ibex_buf_init(&before);
    ibex_buf_init(&after);
    char D[ID_BUF];
    task_new(f, &ta, "designer", D);
    task_snapshot(f, &ta, D, &before);
    struct res x;
    res_init(&x);
    char body[200];
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", D);
    expect(&x, route(f, &ta, body, &x), 422, "NO_AGENT_FOR_ROLE", "designer");
    assert_string_equal(x.r.param, "agent_role");
    res_reset(&x);
    /* a role only a revoked agent, or only another tenant's agent, has */
    agent_new(f, &ua, "tester", got);
    char old[ID_BUF];
    agent_new(f, &ta, "tester", old);
    agent_revoke(f, &ta, old);
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"agent_role\":\"tester\"}", D);
    expect(&x, route(f, &ta, body, &x), 422, "NO_AGENT_FOR_ROLE", "tester");
    res_reset(&x);
    task_snapshot(f, &ta, D, &after);
    expect_same_text(&before, &after, "no agent");
    /* an agent given the role later is found */
    struct res y;
    res_init(&y);
    json_object *b = jbody("{\"role\":\"designer\"}");
    expect(&y, ibex_agent_update(f->st, &ta, N1, b, &y.out, &y.r), 200, NULL, "give role");
    json_object_put(b);
    res_dispose(&y);
    route_ok(f, &ta, D, NULL, got);
    assert_string_equal(got, N1);

    /* finished tasks are not routed */
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", X1);
    task_snapshot(f, &ta, X1, &before);
    expect(&x, route(f, &ta, body, &x), 409, "TASK_FINISHED", "completed");
    res_reset(&x);
    task_snapshot(f, &ta, X1, &after);
    expect_same_text(&before, &after, "finished");
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", X3);
    expect(&x, route(f, &ta, body, &x), 409, "TASK_FINISHED", "cancelled");
    res_reset(&x);
    /* a waiting task may move */
    route_ok(f, &ta, X2, NULL, got);

    /* unknown and foreign tasks: one 404; malformed and missing: 400 */
    char XU[ID_BUF];
    task_new(f, &ua, "coder", XU);
    struct res unknown, foreign;
    res_init(&unknown);
    res_init(&foreign);
    expect(&unknown, route(f, &ta, "{\"task_id\":\"" UNKNOWN_ID "\"}", &unknown), 404,
           "TASK_NOT_FOUND", "unknown");
    assert_string_equal(unknown.r.param, "task_id");
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", XU);
    expect(&foreign, route(f, &ta, body, &foreign), 404, "TASK_NOT_FOUND", "foreign");
    expect_same_error(&unknown, &foreign, "route: unknown vs foreign");
    res_dispose(&unknown);
    res_dispose(&foreign);
    g = task_json(f, &ua, XU);
    assert_true(jis_null(g, "agent_id"));
    json_object_put(g);
    const char *bad[] = {NULL,
                         "{}",
                         "{\"task_id\":\"x\"}",
                         "{\"task_id\":7}",
                         "{\"task_id\":\"" UNKNOWN_ID "\",\"agent_role\":\"\"}",
                         "{\"task_id\":\"" UNKNOWN_ID "\",\"agent_role\":5}"};
    const char *field[] = {"task_id", "task_id", "task_id", "task_id", "agent_role", "agent_role"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_field(&x, route(f, &ta, bad[i], &x), field[i], bad[i] ? bad[i] : "no body");
        res_reset(&x);
    }
    /* an id in capitals names the same task */
    char upper[ID_BUF];
    for (size_t i = 0; i < IBEX_ID_LEN; i++)
        upper[i] = (char)(Z[i] >= 'a' && Z[i] <= 'f' ? Z[i] - 32 : Z[i]);
    upper[IBEX_ID_LEN] = '\0';
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\"}", upper);
    expect(&x, route(f, &ta, body, &x), 200, NULL, "upper-case id");
    assert_string_equal(jstr(x.j, "id"), Z);
    res_dispose(&x);
    ibex_buf_dispose(&before);
    ibex_buf_dispose(&after);
}

/* ---- approvals ---- */

static void test_approval_request(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], S[ID_BUF], S2[ID_BUF], SU[ID_BUF], X[ID_BUF], XU[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    session_new(f, &ta, S);
    session_new(f, &ta, S2);
    session_new(f, &ua, SU);

    /* on its own: no task */
    struct res x;
    res_init(&x);
    int64_t before = now_s();
    json_object *b = jbody("{\"action\":\"send the email\",\"detail\":{\"to\":\"x@y\"},"
                           "\"session_id\":\"%s\",\"expires_in\":3600}",
                           S);
    expect(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), 201, NULL, "standalone");
    json_object_put(b);
    const char *id = jstr(x.j, "id");
    assert_true(ibex_id_is_uuid(id, strlen(id)));
    assert_string_equal(jstr(x.j, "object"), "approval");
    assert_string_equal(jstr(x.j, "tenant_id"), T);
    assert_string_equal(jstr(x.j, "state"), "pending");
    assert_string_equal(jstr(x.j, "action"), "send the email");
    assert_true(jis_null(x.j, "task_id"));
    assert_string_equal(jstr(x.j, "session_id"), S);
    expect_json_equal(jget(x.j, "detail"), "{\"to\":\"x@y\"}", "detail");
    assert_true(jis_null(x.j, "reason"));
    assert_string_equal(jstr(x.j, "requested_by"), "key-tasks");
    assert_true(jis_null(x.j, "decided_by"));
    assert_true(jis_null(x.j, "decided_at"));
    int64_t c = jint(x.j, "created_at");
    assert_true(c >= before && c <= now_s());
    assert_true(jint(x.j, "expires_at") >= c + 3599 && jint(x.j, "expires_at") <= c + 3601);
    struct res g;
    res_init(&g);
    expect(&g, ibex_approval_get(f->st, &ta, id, &g.out, &g.r), 200, NULL, "get");
    expect_same_text(&x.out, &g.out, "get after request");
    res_dispose(&g);
    res_reset(&x);

    /* for a running task: the task waits, and the approval takes the task's session */
    char body[300];
    snprintf(body, sizeof(body), "{\"name\":\"n\",\"agent_role\":\"r\",\"session_id\":\"%s\"}", S);
    task_new_body(f, &ta, body, X);
    snprintf(body, sizeof(body), "{\"action\":\"deploy\",\"task_id\":\"%s\"}", X);
    b = jbody("%s", body);
    expect(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), 409, "TASK_NOT_RUNNING",
           "pending task");
    assert_string_equal(x.r.param, "task_id");
    res_reset(&x);
    task_set(f, &ta, X, "running");
    expect(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), 201, NULL, "for a task");
    assert_string_equal(jstr(x.j, "task_id"), X);
    assert_string_equal(jstr(x.j, "session_id"), S);
    expect_json_equal(jget(x.j, "detail"), "{}", "detail default");
    assert_true(jis_null(x.j, "expires_at"));
    char A1[ID_BUF];
    snprintf(A1, sizeof(A1), "%s", jstr(x.j, "id"));
    res_reset(&x);
    json_object *t = task_json(f, &ta, X);
    assert_string_equal(jstr(t, "state"), "waiting_approval");
    assert_string_equal(jstr(t, "approval_id"), A1);
    json_object_put(t);
    /* a second approval for the waiting task */
    expect(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), 409, "APPROVAL_PENDING",
           "already waiting");
    if (strstr(x.r.message, A1) == NULL)
        fail_msg("the refusal does not name the pending approval: %s", x.r.message);
    res_reset(&x);
    json_object_put(b);
    /* a session named explicitly wins over the task's */
    char Y[ID_BUF];
    task_new(f, &ta, "r", Y);
    task_set(f, &ta, Y, "running");
    snprintf(body, sizeof(body), "{\"action\":\"a\",\"task_id\":\"%s\",\"session_id\":\"%s\"}", Y,
             S2);
    b = jbody("%s", body);
    expect(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), 201, NULL, "explicit session");
    json_object_put(b);
    assert_string_equal(jstr(x.j, "session_id"), S2);
    res_reset(&x);

    /* tasks and sessions that are not the tenant's: one answer each; nothing written */
    task_new(f, &ua, "r", XU);
    task_set(f, &ua, XU, "running");
    int64_t n_before = sql_int(f, "SELECT count(*) FROM approvals", NULL, NULL);
    const char *bad_task[] = {UNKNOWN_ID, "nope", XU, ""};
    struct res first;
    res_init(&first);
    for (size_t i = 0; i < 4; i++) {
        struct res y;
        res_init(&y);
        b = jbody("{\"action\":\"a\",\"task_id\":\"%s\"}", bad_task[i]);
        expect_field(&y, ibex_approval_request(f->st, &ta, b, &y.out, &y.r), "task_id",
                     bad_task[i]);
        json_object_put(b);
        if (i == 0) {
            first = y;
            continue;
        }
        expect_same_error(&first, &y, bad_task[i]);
        res_dispose(&y);
    }
    res_dispose(&first);
    t = task_json(f, &ua, XU);
    assert_string_equal(jstr(t, "state"), "running");
    json_object_put(t);
    const char *bad_session[] = {UNKNOWN_ID, "nope", SU};
    for (size_t i = 0; i < 3; i++) {
        b = jbody("{\"action\":\"a\",\"session_id\":\"%s\"}", bad_session[i]);
        expect_field(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), "session_id",
                     bad_session[i]);
        json_object_put(b);
        res_reset(&x);
    }

    /* validation */
    char long_action[300];
    snprintf(long_action, sizeof(long_action), "{\"action\":\"%0201d\"}", 0);
    const char *bad[][2] = {
        {"{}", "action"},
        {"{\"action\":\"\"}", "action"},
        {"{\"action\":3}", "action"},
        {NULL, "action"},
        {"{\"action\":\"a\",\"detail\":\"x\"}", "detail"},
        {"{\"action\":\"a\",\"detail\":[]}", "detail"},
        {"{\"action\":\"a\",\"expires_in\":0}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":-5}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":1.5}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":\"60\"}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":true}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":2592001}", "expires_in"},
        {"{\"action\":\"a\",\"expires_in\":99999999999999999999}", "expires_in"},
        {"{\"action\":\"a\",\"task_id\":5}", "task_id"},
        {long_action, "action"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = bad[i][0] ? jbody("%s", bad[i][0]) : NULL;
        expect_field(&x, ibex_approval_request(f->st, &ta, b, &x.out, &x.r), bad[i][1],
                     bad[i][0] ? bad[i][0] : "no body");
        json_object_put(b);
        res_reset(&x);
    }
    assert_int_equal(sql_int(f, "SELECT count(*) FROM approvals", NULL, NULL), n_before);
    /* the bounds themselves are accepted */
    char a1[ID_BUF], a2[ID_BUF];
    approval_new(f, &ta, "{\"action\":\"a\",\"expires_in\":1}", a1);
    approval_new(f, &ta, "{\"action\":\"a\",\"expires_in\":2592000,\"detail\":null}", a2);
    struct ibex_actor op = operator_actor();
    b = jbody("{\"action\":\"a\"}");
    expect(&x, ibex_approval_request(f->st, &op, b, &x.out, &x.r), 400, "VALIDATION_ERROR",
           "operator");
    json_object_put(b);
    res_dispose(&x);
}

/* While an approval is pending, nothing that lets the task proceed is accepted. */
static void test_approval_blocks_task(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], X[ID_BUF], ap[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    task_new(f, &ta, "r", X);
    struct res x;
    res_init(&x);
    expect(&x,
           task_put(f, &ta, X,
                    "{\"state\":\"running\",\"phase\":\"plan\",\"checkpoint\":{\"s\":1}}", &x),
           200, NULL, "start");
    res_reset(&x);
    approval_for(f, &ta, X, ap);
    struct ibex_buf before, after;
    ibex_buf_init(&before);
    ibex_buf_init(&after);
    task_snapshot(f, &ta, X, &before);
    const char *proceed[] = {"{\"state\":\"running\"}",
                             "{\"state\":\"completed\"}",
                             "{\"state\":\"failed\"}",
                             "{\"phase\":\"build\"}",
                             "{\"phase\":\"plan\"}",
                             "{\"checkpoint\":{\"s\":2}}",
                             "{\"state\":\"cancelled\",\"checkpoint\":{\"s\":2}}",
                             "{\"metadata\":{\"m\":1},\"phase\":\"build\"}"};
    for (size_t i = 0; i < sizeof(proceed) / sizeof(proceed[0]); i++) {
        expect(&x, task_put(f, &ta, X, proceed[i], &x), 409, "APPROVAL_PENDING", proceed[i]);
        res_reset(&x);
        task_snapshot(f, &ta, X, &after);
        expect_same_text(&before, &after, proceed[i]);
    }
    /* metadata alone, and the current state, are fine */
    expect(&x,
           task_put(f, &ta, X,
                    "{\"metadata\":{\"note\":\"waiting\"},\"state\":\"waiting_approval\"}", &x),
           200, NULL, "metadata while waiting");
    assert_string_equal(jstr(x.j, "state"), "waiting_approval");
    assert_string_equal(jstr(x.j, "approval_id"), ap);
    res_reset(&x);
    /* cancelling is allowed; the approval is withdrawn and cannot be decided any more */
    expect(&x, task_put(f, &ta, X, "{\"state\":\"cancelled\"}", &x), 200, NULL, "cancel");
    assert_string_equal(jstr(x.j, "state"), "cancelled");
    assert_true(jis_null(x.j, "approval_id"));
    expect_phase(x.j, 0, "plan", "done");
    res_reset(&x);
    decide(f, &ta, ap, true, NULL, 409, "APPROVAL_ALREADY_DECIDED", &x);
    if (strstr(x.r.message, "cancelled") == NULL)
        fail_msg("the refusal does not name the state: %s", x.r.message);
    res_reset(&x);
    json_object *t = task_json(f, &ta, X);
    assert_string_equal(jstr(t, "state"), "cancelled");
    json_object_put(t);
    res_dispose(&x);
    ibex_buf_dispose(&before);
    ibex_buf_dispose(&after);
}

static void test_approval_approve(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], X[ID_BUF], ap[ID_BUF], solo[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    struct ibex_actor human = {
        .tenant_id = T, .subject = "alice", .scopes = IBEX_SCOPE_APPROVALS_DECIDE};
    task_new(f, &ta, "r", X);
    struct res x;
    res_init(&x);
    expect(&x, task_put(f, &ta, X, "{\"state\":\"running\",\"phase\":\"build\"}", &x), 200, NULL,
           "start");
    res_reset(&x);
    approval_for(f, &ta, X, ap);

    int64_t before = now_s();
    decide(f, &human, ap, true, "{\"reason\":\"looks good, secret-ish words\"}", 200, NULL, &x);
    assert_string_equal(jstr(x.j, "id"), ap);
    assert_string_equal(jstr(x.j, "state"), "approved");
    assert_string_equal(jstr(x.j, "reason"), "looks good, secret-ish words");
    assert_string_equal(jstr(x.j, "decided_by"), "alice");
    assert_string_equal(jstr(x.j, "requested_by"), "key-tasks");
    assert_true(jint(x.j, "decided_at") >= before && jint(x.j, "decided_at") <= now_s());
    res_reset(&x);
    /* the task proceeds where it was */
    json_object *t = task_json(f, &ta, X);
    assert_string_equal(jstr(t, "state"), "running");
    assert_true(jis_null(t, "approval_id"));
    assert_true(jis_null(t, "error"));
    assert_string_equal(jstr(t, "phase"), "build");
    expect_phase(t, 1, "build", "running");
    json_object_put(t);
    expect(&x, task_put(f, &ta, X, "{\"checkpoint\":{\"after\":1}}", &x), 200, NULL,
           "checkpoint after approval");
    res_reset(&x);

    /* audited for the tenant, without the reason's text */
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND target = "
                             "$2 AND action = 'approval.approved' AND actor = 'alice'",
                             T, ap),
                     1);
    struct ibex_buf detail;
    ibex_buf_init(&detail);
    sql_text(f, "SELECT detail FROM audit_events WHERE target = $1", ap, &detail);
    json_object *d = tu_parse_json(detail.p, detail.len);
    assert_non_null(d);
    assert_string_equal(jstr(d, "task_id"), X);
    assert_int_equal(jint(d, "reason_length"), strlen("looks good, secret-ish words"));
    json_object_put(d);
    assert_null(strstr(detail.p, "looks good"));

    /* decided once: approve or reject again is 409, and nothing changes */
    struct ibex_buf snap, again;
    ibex_buf_init(&snap);
    ibex_buf_init(&again);
    struct res g;
    res_init(&g);
    expect(&g, ibex_approval_get(f->st, &ta, ap, &g.out, &g.r), 200, NULL, "get");
    ibex_buf_append(&snap, g.out.p, g.out.len);
    res_dispose(&g);
    decide(f, &ta, ap, true, NULL, 409, "APPROVAL_ALREADY_DECIDED", &x);
    assert_non_null(strstr(x.r.message, "approved"));
    res_reset(&x);
    decide(f, &ta, ap, false, "{\"reason\":\"no\"}", 409, "APPROVAL_ALREADY_DECIDED", &x);
    res_reset(&x);
    res_init(&g);
    expect(&g, ibex_approval_get(f->st, &ta, ap, &g.out, &g.r), 200, NULL, "get again");
    ibex_buf_append(&again, g.out.p, g.out.len);
    res_dispose(&g);
    expect_same_text(&snap, &again, "decided twice");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM audit_events WHERE target = $1", ap, NULL),
                     1);

    /* without a body or a reason, and without a task */
    approval_new(f, &ta, "{\"action\":\"a\"}", solo);
    decide(f, &ta, solo, true, NULL, 200, NULL, &x);
    assert_string_equal(jstr(x.j, "state"), "approved");
    assert_true(jis_null(x.j, "reason"));
    assert_string_equal(jstr(x.j, "decided_by"), "key-tasks");
    res_reset(&x);
    sql_text(f, "SELECT detail FROM audit_events WHERE target = $1", solo, &detail);
    d = tu_parse_json(detail.p, detail.len);
    assert_true(jis_null(d, "task_id"));
    assert_int_equal(jint(d, "reason_length"), 0);
    json_object_put(d);
    /* validation of the body */
    char other[ID_BUF];
    approval_new(f, &ta, "{\"action\":\"a\"}", other);
    json_object *b = jbody("{\"reason\":5}");
    expect_field(&x, ibex_approval_approve(f->st, &ta, other, b, &x.out, &x.r), "reason", "5");
    json_object_put(b);
    res_reset(&x);
    b = jbody("[1]");
    expect(&x, ibex_approval_approve(f->st, &ta, other, b, &x.out, &x.r), 400, "VALIDATION_ERROR",
           "array body");
    json_object_put(b);
    res_reset(&x);
    expect_field(&x, ibex_approval_approve(f->st, &ta, "nope", NULL, &x.out, &x.r), "id",
                 "malformed");
    res_dispose(&x);
    json_object *o = approval_json(f, &ta, other);
    assert_string_equal(jstr(o, "state"), "pending");
    json_object_put(o);
    ibex_buf_dispose(&detail);
    ibex_buf_dispose(&snap);
    ibex_buf_dispose(&again);
}

static void test_approval_reject(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], X[ID_BUF], ap[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    task_new(f, &ta, "r", X);
    struct res x;
    res_init(&x);
    expect(&x, task_put(f, &ta, X, "{\"state\":\"running\",\"phase\":\"plan\"}", &x), 200, NULL,
           "start");
    res_reset(&x);
    approval_for(f, &ta, X, ap);

    /* a reason is required */
    const char *no_reason[] = {NULL, "{}", "{\"reason\":\"\"}", "{\"reason\":null}",
                               "{\"reason\":[\"x\"]}"};
    for (size_t i = 0; i < sizeof(no_reason) / sizeof(no_reason[0]); i++) {
        json_object *b = no_reason[i] ? jbody("%s", no_reason[i]) : NULL;
        expect_field(&x, ibex_approval_reject(f->st, &ta, ap, b, &x.out, &x.r), "reason",
                     no_reason[i] ? no_reason[i] : "no body");
        json_object_put(b);
        res_reset(&x);
    }
    char long_reason[1100];
    snprintf(long_reason, sizeof(long_reason), "{\"reason\":\"%01001d\"}", 0);
    decide(f, &ta, ap, false, long_reason, 400, "VALIDATION_ERROR", &x);
    res_reset(&x);
    json_object *o = approval_json(f, &ta, ap);
    assert_string_equal(jstr(o, "state"), "pending");
    json_object_put(o);

    decide(f, &ta, ap, false, "{\"reason\":\"too risky on a Friday\"}", 200, NULL, &x);
    assert_string_equal(jstr(x.j, "state"), "rejected");
    assert_string_equal(jstr(x.j, "reason"), "too risky on a Friday");
    assert_string_equal(jstr(x.j, "decided_by"), "key-tasks");
    assert_false(jis_null(x.j, "decided_at"));
    res_reset(&x);
    json_object *t = task_json(f, &ta, X);
    assert_string_equal(jstr(t, "state"), "failed");
    assert_string_equal(jstr(t, "error"), "approval rejected: too risky on a Friday");
    assert_true(jis_null(t, "approval_id"));
    expect_phase(t, 0, "plan", "done");
    json_object_put(t);
    /* a failed task stays failed */
    expect(&x, task_put(f, &ta, X, "{\"state\":\"running\"}", &x), 422, "INVALID_STATE_TRANSITION",
           "failed -> running");
    res_reset(&x);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND target = "
                             "$2 AND action = 'approval.rejected'",
                             T, ap),
                     1);
    struct ibex_buf detail;
    ibex_buf_init(&detail);
    sql_text(f, "SELECT detail FROM audit_events WHERE target = $1", ap, &detail);
    assert_null(strstr(detail.p, "Friday"));
    json_object *d = tu_parse_json(detail.p, detail.len);
    assert_int_equal(jint(d, "reason_length"), strlen("too risky on a Friday"));
    json_object_put(d);
    ibex_buf_dispose(&detail);
    decide(f, &ta, ap, false, "{\"reason\":\"again\"}", 409, "APPROVAL_ALREADY_DECIDED", &x);
    res_reset(&x);
    decide(f, &ta, ap, true, NULL, 409, "APPROVAL_ALREADY_DECIDED", &x);
    res_dispose(&x);
}

static void test_approval_expiry(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF], X[ID_BUF], ap[ID_BUF], later[ID_BUF], back[ID_BUF], Y[ID_BUF],
        yap[ID_BUF], uap[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);

    /* the real clock: one second */
    task_new(f, &ta, "r", X);
    struct res x;
    res_init(&x);
    expect(&x, task_put(f, &ta, X, "{\"state\":\"running\",\"phase\":\"plan\"}", &x), 200, NULL,
           "start");
    res_reset(&x);
    char body[200];
    snprintf(body, sizeof(body), "{\"action\":\"a\",\"task_id\":\"%s\",\"expires_in\":1}", X);
    approval_new(f, &ta, body, ap);
    approval_new(f, &ta, "{\"action\":\"later\",\"expires_in\":3600}", later);
    approval_new(f, &ua, "{\"action\":\"theirs\",\"expires_in\":1}", uap);
    json_object *o = approval_json(f, &ta, ap);
    assert_string_equal(jstr(o, "state"), "pending");
    int64_t expires = jint(o, "expires_at");
    json_object_put(o);
    sleep_ms(1150);
    /* seen by a read: expired, at its expiry time; the task failed */
    o = approval_json(f, &ta, ap);
    assert_string_equal(jstr(o, "state"), "expired");
    assert_int_equal(jint(o, "decided_at"), expires);
    assert_true(jis_null(o, "decided_by"));
    json_object_put(o);
    json_object *t = task_json(f, &ta, X);
    assert_string_equal(jstr(t, "state"), "failed");
    assert_string_equal(jstr(t, "error"), "approval expired");
    assert_true(jis_null(t, "approval_id"));
    expect_phase(t, 0, "plan", "done");
    json_object_put(t);
    decide(f, &ta, ap, true, NULL, 409, "APPROVAL_ALREADY_DECIDED", &x);
    assert_non_null(strstr(x.r.message, "expired"));
    res_reset(&x);
    /* the other one is not due, and the other tenant's is left to its own operations */
    o = approval_json(f, &ta, later);
    assert_string_equal(jstr(o, "state"), "pending");
    json_object_put(o);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM approvals WHERE id = $1 AND state = 'pending'", uap, NULL),
        1);
    o = approval_json(f, &ua, uap);
    assert_string_equal(jstr(o, "state"), "expired");
    json_object_put(o);

    /* past due but never read: deciding it finds it expired first */
    approval_new(f, &ta, "{\"action\":\"b\",\"expires_in\":600}", back);
    sql_exec_id_int(f, "UPDATE approvals SET expires_at = $2 WHERE id = $1", back,
                    (int64_t)ibex_clock_wall_ms() - 1);
    decide(f, &ta, back, false, "{\"reason\":\"late\"}", 409, "APPROVAL_ALREADY_DECIDED", &x);
    res_reset(&x);
    o = approval_json(f, &ta, back);
    assert_string_equal(jstr(o, "state"), "expired");
    assert_true(jis_null(o, "reason"));
    json_object_put(o);
    /* a task update sees the expiry before it checks anything */
    task_new(f, &ta, "r", Y);
    task_set(f, &ta, Y, "running");
    snprintf(body, sizeof(body), "{\"action\":\"a\",\"task_id\":\"%s\",\"expires_in\":600}", Y);
    approval_new(f, &ta, body, yap);
    sql_exec_id_int(f, "UPDATE approvals SET expires_at = $2 WHERE id = $1", yap,
                    (int64_t)ibex_clock_wall_ms() - 1);
    expect(&x, task_put(f, &ta, Y, "{\"state\":\"cancelled\"}", &x), 422,
           "INVALID_STATE_TRANSITION", "cancel after expiry");
    assert_non_null(strstr(x.r.message, "failed"));
    res_reset(&x);
    /* and the lists count it as expired */
    struct ibex_approval_query q;
    struct ibex_api_result pr;
    assert_int_equal(parse_aq("state=expired", &q, &pr), 0);
    ibex_api_result_dispose(&pr);
    expect(&x, ibex_approval_list(f->st, &ta, &q, &x.out, &x.r), 200, NULL, "expired list");
    assert_int_equal(jint(x.j, "total"), 3);
    res_reset(&x);
    assert_int_equal(parse_aq("state=pending", &q, &pr), 0);
    ibex_api_result_dispose(&pr);
    expect(&x, ibex_approval_list(f->st, &ta, &q, &x.out, &x.r), 200, NULL, "pending list");
    const char *pending[] = {later};
    expect_list_ids(&x, "approvals", pending, 1, 1, "pending after expiry");
    res_dispose(&x);
}

static void test_approval_isolation_and_list(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF], U[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor ta = actor_of(T), ua = actor_of(U);
    enum { N = 6 };
    char A[N][ID_BUF], AU[2][ID_BUF];
    for (size_t i = 0; i < N; i++) {
        approval_new(f, &ta, "{\"action\":\"a\"}", A[i]);
        if (i < 2)
            approval_new(f, &ua, "{\"action\":\"u\"}", AU[i]);
        sleep_ms(3);
    }
    struct res x;
    res_init(&x);
    decide(f, &ta, A[1], true, NULL, 200, NULL, &x);
    res_reset(&x);
    decide(f, &ta, A[3], false, "{\"reason\":\"no\"}", 200, NULL, &x);
    res_reset(&x);
    decide(f, &ta, A[4], true, NULL, 200, NULL, &x);
    res_reset(&x);

    /* another tenant's approval: the answer of an unknown id, for every operation */
    struct res unknown, foreign;
    res_init(&unknown);
    res_init(&foreign);
    expect(&unknown, ibex_approval_get(f->st, &ta, UNKNOWN_ID, &unknown.out, &unknown.r), 404,
           "APPROVAL_NOT_FOUND", "get unknown");
    expect(&foreign, ibex_approval_get(f->st, &ta, AU[0], &foreign.out, &foreign.r), 404,
           "APPROVAL_NOT_FOUND", "get foreign");
    expect_same_error(&unknown, &foreign, "get");
    res_reset(&unknown);
    res_reset(&foreign);
    decide(f, &ta, UNKNOWN_ID, true, NULL, 404, "APPROVAL_NOT_FOUND", &unknown);
    decide(f, &ta, AU[0], true, NULL, 404, "APPROVAL_NOT_FOUND", &foreign);
    expect_same_error(&unknown, &foreign, "approve");
    res_reset(&unknown);
    res_reset(&foreign);
    decide(f, &ta, UNKNOWN_ID, false, "{\"reason\":\"r\"}", 404, "APPROVAL_NOT_FOUND", &unknown);
    decide(f, &ta, AU[1], false, "{\"reason\":\"r\"}", 404, "APPROVAL_NOT_FOUND", &foreign);
    expect_same_error(&unknown, &foreign, "reject");
    res_dispose(&unknown);
    res_dispose(&foreign);
    for (size_t i = 0; i < 2; i++) {
        json_object *o = approval_json(f, &ua, AU[i]);
        assert_string_equal(jstr(o, "state"), "pending");
        assert_true(jis_null(o, "decided_by"));
        json_object_put(o);
    }
    assert_true(sql_int(f,
                        "SELECT count(*) FROM audit_events WHERE tenant_id IS NULL AND action = "
                        "'access.denied' AND (target = $1 OR target = $2)",
                        AU[0], AU[1]) >= 3);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action "
                             "LIKE 'approval.%'",
                             U, NULL),
                     0);

    /* lists: newest first, paged, by state, the tenant's only */
    struct ibex_approval_query q;
    struct ibex_api_result pr;
    const char *all[] = {A[5], A[4], A[3], A[2], A[1], A[0]};
    static const struct {
        const char *q;
        size_t from, n;
        int64_t total;
    } cases[] = {{"", 0, 6, 6}, {"page_size=4", 0, 4, 6}, {"page=2&page_size=4", 4, 2, 6}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse_aq(cases[i].q, &q, &pr), 0);
        ibex_api_result_dispose(&pr);
        expect(&x, ibex_approval_list(f->st, &ta, &q, &x.out, &x.r), 200, NULL, cases[i].q);
        assert_string_equal(jstr(x.j, "object"), "list");
        expect_list_ids(&x, "approvals", all + cases[i].from, cases[i].n, cases[i].total,
                        cases[i].q);
        res_reset(&x);
    }
    static const struct {
        const char *q;
        int idx[3];
        size_t n;
    } by_state[] = {{"state=pending", {5, 2, 0}, 3},
                    {"state=approved", {4, 1}, 2},
                    {"state=rejected", {3}, 1},
                    {"state=cancelled", {0}, 0},
                    {"state=pending&page=2&page_size=2", {0}, 1}};
    for (size_t i = 0; i < sizeof(by_state) / sizeof(by_state[0]); i++) {
        const char *want[3];
        for (size_t k = 0; k < by_state[i].n; k++)
            want[k] = A[by_state[i].idx[k]];
        assert_int_equal(parse_aq(by_state[i].q, &q, &pr), 0);
        ibex_api_result_dispose(&pr);
        expect(&x, ibex_approval_list(f->st, &ta, &q, &x.out, &x.r), 200, NULL, by_state[i].q);
        int64_t total = i == 4 ? 3 : (int64_t)by_state[i].n;
        expect_list_ids(&x, "approvals", want, by_state[i].n, total, by_state[i].q);
        json_object *arr = jget(x.j, "approvals");
        for (size_t k = 0; k < json_object_array_length(arr); k++)
            assert_string_equal(jstr(json_object_array_get_idx(arr, k), "tenant_id"), T);
        res_reset(&x);
    }
    const char *want_u[] = {AU[1], AU[0]};
    assert_int_equal(parse_aq("state=pending", &q, &pr), 0);
    ibex_api_result_dispose(&pr);
    expect(&x, ibex_approval_list(f->st, &ua, &q, &x.out, &x.r), 200, NULL, "tenant U");
    expect_list_ids(&x, "approvals", want_u, 2, 2, "tenant U");
    res_reset(&x);
    struct ibex_actor op = operator_actor();
    expect(&x, ibex_approval_list(f->st, &op, &q, &x.out, &x.r), 400, "VALIDATION_ERROR",
           "operator");
    res_dispose(&x);

    /* the views, filtered by tenant as the API filters them */
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM pending_approvals WHERE tenant_id = $1", T, NULL), 3);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM pending_approvals WHERE tenant_id = $1", U, NULL), 2);
    char S1[ID_BUF], S2[ID_BUF], S3[ID_BUF];
    session_new(f, &ta, S1);
    session_new(f, &ta, S2);
    session_new(f, &ta, S3);
    res_init(&x);
    json_object *b = jbody("{\"status\":\"active\"}");
    expect(&x, ibex_session_update(f->st, &ta, S2, b, &x.out, &x.r), 200, NULL, "active");
    json_object_put(b);
    res_reset(&x);
    b = jbody("{\"status\":\"cancelled\"}");
    expect(&x, ibex_session_update(f->st, &ta, S3, b, &x.out, &x.r), 200, NULL, "cancelled");
    json_object_put(b);
    res_dispose(&x);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM active_sessions WHERE tenant_id = $1", T, NULL), 2);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM active_sessions WHERE tenant_id = $1", U, NULL), 0);
}

/* ---- concurrency ---- */

/* An approval's decision by one subject, as one side of a race. */
struct decision {
    const char *tenant, *approval;
    bool approve;
};

static int decide_race(struct ibex_store *st, void *arg, struct ibex_buf *out,
                       struct ibex_api_result *r)
{
    struct decision *d = arg;
    struct ibex_actor a = {.tenant_id = d->tenant, .subject = d->approve ? "yes" : "no"};
    json_object *b = json_tokener_parse("{\"reason\":\"race\"}");
    int rc = d->approve ? ibex_approval_approve(st, &a, d->approval, b, out, r)
                        : ibex_approval_reject(st, &a, d->approval, b, out, r);
    json_object_put(b);
    return rc;
}

/* An approval decided at once by two handles: exactly one decision wins, and the task follows
 * it. */
static void test_approval_concurrent_decisions(void **state)
{
    struct fx *f = *state;
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor ta = actor_of(T);
    for (int round = 0; round < 6; round++) {
        char X[ID_BUF], ap[ID_BUF];
        task_new(f, &ta, "r", X);
        task_set(f, &ta, X, "running");
        approval_for(f, &ta, X, ap);
        struct decision d[2] = {{T, ap, true}, {T, ap, false}};
        struct race_side w[2] = {{.call = decide_race, .arg = &d[0]},
                                 {.call = decide_race, .arg = &d[1]}};
        race_two(f, w);
        int winner = w[0].status == 200 ? 0 : 1, loser = 1 - winner;
        if (w[winner].status != 200 || w[loser].status != 409 ||
            strcmp(w[loser].code, "APPROVAL_ALREADY_DECIDED") != 0)
            fail_msg("round %d: approve %d %s, reject %d %s", round, w[0].status, w[0].code,
                     w[1].status, w[1].code);
        json_object *o = approval_json(f, &ta, ap);
        json_object *t = task_json(f, &ta, X);
        assert_string_equal(jstr(o, "state"), d[winner].approve ? "approved" : "rejected");
        assert_string_equal(jstr(o, "decided_by"), d[winner].approve ? "yes" : "no");
        assert_string_equal(jstr(t, "state"), d[winner].approve ? "running" : "failed");
        assert_true(jis_null(t, "approval_id"));
        json_object_put(o);
        json_object_put(t);
        assert_int_equal(
            sql_int(f, "SELECT count(*) FROM audit_events WHERE target = $1", ap, NULL), 1);
    }
}

#define BOTH(fn)                                                                                   \
    {"sqlite: " #fn, fn, setup_sqlite, teardown, NULL},                                            \
    {                                                                                              \
        "postgres: " #fn, fn, setup_pg, teardown, NULL                                             \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_query_parse),
        cmocka_unit_test(test_approval_query_parse),
        BOTH(test_task_create),
        BOTH(test_task_create_refs),
        BOTH(test_task_create_validation),
        BOTH(test_task_get),
        BOTH(test_task_transitions),
        BOTH(test_task_phases_and_checkpoint),
        BOTH(test_task_update_validation),
        BOTH(test_task_list),
        BOTH(test_task_route),
        BOTH(test_approval_request),
        BOTH(test_approval_blocks_task),
        BOTH(test_approval_approve),
        BOTH(test_approval_reject),
        BOTH(test_approval_expiry),
        BOTH(test_approval_isolation_and_list),
        BOTH(test_approval_concurrent_decisions),
    };
    return tu_store_run_tests("tasks_test", tests, sizeof(tests) / sizeof(tests[0]), setup_pg,
                              &pg_url);
}
