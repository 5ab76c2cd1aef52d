/* Operational routes: /health (liveness), /ready (dependencies and upstream reachability),
 * /status (version, build, uptime), /metrics (Prometheus) and GET /v1/models.
 * /ready reads the store (off-loop, on the store pool) and opens a real connection (TCP and TLS)
 * to every remote provider, concurrently, each bounded by min(its connect timeout, 2 s); it
 * answers 503 while draining, when the store does not answer, or when no remote provider is
 * reachable, and 200 otherwise, listing each check. */
#include <stdlib.h>
#include <string.h>

#include "../auth/vault.h"
#include "../core/clock.h"
#include "../gateway/gateway.h"
#include "../store/writer.h"

#include "../version.h"

#define PROBE_TIMEOUT_MS 2000

static struct ibex_req_info *info_for(struct ibex_req *req, enum ibex_route route)
{
    struct ibex_req_info *info = ibex_arena_calloc(req->arena, sizeof(*info));
    info->route = route;
    req->user = info;
    return info;
}

static void send_json(struct ibex_req *req, int status, const struct ibex_buf *b)
{
    ibex_res_send(req, status, "application/json", "Cache-Control: no-store\r\n", b->p, b->len);
}

void ibex_ops_health(struct ibex_worker *w, struct ibex_req *req)
{
    info_for(req, IBEX_ROUTE_HEALTH);
    static const char body[] = "{\"status\":\"ok\"}";
    ibex_res_send(req, 200, "application/json", "Cache-Control: no-store\r\n", body,
                  sizeof(body) - 1);
}

void ibex_ops_status(struct ibex_worker *w, struct ibex_req *req)
{
    info_for(req, IBEX_ROUTE_STATUS);
    const struct ibex_runtime *rt = w->rt;
    char started[25];
    ibex_clock_rfc3339(rt->start_wall_ms, started);
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_appendf(
        &b,
        "{\"name\":\"ibex\",\"version\":\"%s\",\"build\":{\"commit\":\"%s\",\"date\":\"%s\"},"
        "\"started_at\":\"%s\",\"uptime_s\":%.3f,\"workers\":%zu,\"draining\":%s,"
        "\"providers\":[",
        IBEX_VERSION, IBEX_GIT_COMMIT, __DATE__, started,
        (double)(ibex_clock_mono_ns() - rt->start_mono_ns) / 1e9, rt->nworkers,
        atomic_load(&rt->draining) ? "true" : "false");
    for (size_t i = 0; i < rt->providers.n; i++) {
        const struct ibex_provider *p = &rt->providers.list[i];
        ibex_buf_appendf(&b, "%s{\"name\":", i ? "," : "");
        ibex_buf_append_json_str(&b, p->cfg->name, strlen(p->cfg->name));
        ibex_buf_appendf(&b, ",\"type\":\"%s\",\"default\":%s}", p->ops->type,
                         p == rt->providers.default_provider ? "true" : "false");
    }
    ibex_buf_appendf(&b, "],\"models\":%zu,\"store\":{\"backend\":\"%s\",\"url\":", rt->cfg.nmodels,
                     rt->store_backend);
    ibex_buf_append_json_str(&b, rt->store_url_shown, strlen(rt->store_url_shown));
    ibex_buf_appendf(
        &b, ",\"schema_version\":%lld},\"auth\":{\"modes\":", (long long)rt->store_version);
    ibex_buf_append_json_str(&b, rt->cfg.auth_modes, strlen(rt->cfg.auth_modes));
    ibex_buf_appendf(&b, ",\"identity_epoch\":%lld", (long long)atomic_load(&rt->auth->epoch));
    if (rt->revocation) {
        struct ibex_revocation_stats rs;
        ibex_revocation_stats(rt->revocation, &rs);
        ibex_buf_appendf(&b,
                         ",\"revocation\":{\"redis\":%s,\"redis_connected\":%s,\"polls\":%llu,"
                         "\"poll_errors\":%llu,\"messages\":%llu}",
                         rt->cfg.redis_url[0] ? "true" : "false",
                         rs.redis_connected ? "true" : "false", (unsigned long long)rs.polls,
                         (unsigned long long)rs.poll_errors, (unsigned long long)rs.messages);
    }
    /* which master keys this instance holds, by key id (never a key): a rotation's progress */
    ibex_buf_appendf(&b,
                     "},\"credentials\":{\"enabled\":%s,\"key_id\":", rt->vault ? "true" : "false");
    if (rt->vault) {
        ibex_buf_appendf(&b, "\"%s\",\"previous_key_ids\":[", ibex_vault_key_id(rt->vault));
        for (size_t i = 1; i < ibex_vault_nkeys(rt->vault); i++)
            ibex_buf_appendf(&b, "%s\"%s\"", i > 1 ? "," : "", ibex_vault_key_id_at(rt->vault, i));
        ibex_buf_append_cstr(&b, "]}}");
    } else {
        ibex_buf_append_cstr(&b, "null,\"previous_key_ids\":[]}}");
    }
    send_json(req, 200, &b);
    ibex_buf_dispose(&b);
}

static const char *outcome_name(int outcome)
{
    return ibex_upstream_result_name((enum ibex_upstream_result)outcome);
}

/* The store writer (traces, checkpoints, audit events): what it accepted, committed, lost. */
static void append_writer_metrics(struct ibex_buf *b, struct ibex_store_writer *writer)
{
    struct ibex_store_writer_stats st;
    ibex_store_writer_stats(writer, &st);
    uint64_t resolved = st.committed + st.failed;
    ibex_buf_appendf(
        b,
        "# HELP ibex_store_writer_records_total Records (trace, checkpoint, session, audit rows) "
        "by outcome: accepted, committed, failed (refused by the database), dropped (queue "
        "full).\n"
        "# TYPE ibex_store_writer_records_total counter\n"
        "ibex_store_writer_records_total{outcome=\"accepted\"} %llu\n"
        "ibex_store_writer_records_total{outcome=\"committed\"} %llu\n"
        "ibex_store_writer_records_total{outcome=\"failed\"} %llu\n"
        "ibex_store_writer_records_total{outcome=\"dropped\"} %llu\n"
        "# HELP ibex_store_writer_batches_total Transactions the store writer committed.\n"
        "# TYPE ibex_store_writer_batches_total counter\nibex_store_writer_batches_total %llu\n"
        "# HELP ibex_store_writer_queue_depth Records accepted and not yet committed.\n"
        "# TYPE ibex_store_writer_queue_depth gauge\nibex_store_writer_queue_depth %llu\n",
        (unsigned long long)st.enqueued, (unsigned long long)st.committed,
        (unsigned long long)st.failed, (unsigned long long)st.dropped,
        (unsigned long long)st.batches,
        (unsigned long long)(st.enqueued > resolved ? st.enqueued - resolved : 0));
}

void ibex_ops_metrics(struct ibex_worker *w, struct ibex_req *req)
{
    info_for(req, IBEX_ROUTE_METRICS);
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_metrics_render(&b, outcome_name);
    if (w->rt->writer)
        append_writer_metrics(&b, w->rt->writer);
    ibex_res_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.p, b.len);
    ibex_buf_dispose(&b);
}

static void append_model(struct ibex_buf *b, bool *first, const char *id, const char *owner)
{
    ibex_buf_append_cstr(b, *first ? "{\"id\":" : ",{\"id\":");
    *first = false;
    ibex_buf_append_json_str(b, id, strlen(id));
    ibex_buf_append_cstr(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":");
    ibex_buf_append_json_str(b, owner, strlen(owner));
    ibex_buf_append_cstr(b, "}");
}

static void models_authorized(struct ibex_worker *w, struct ibex_req *req,
                              const struct ibex_principal *p, const struct ibex_agent_ref *agent,
                              void *data)
{
    const struct ibex_config *cfg = &w->rt->cfg;
    struct ibex_buf b;
    bool first = true;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < cfg->nmodels; i++)
        append_model(&b, &first, cfg->models[i].name, cfg->models[i].deployments[0].provider);
    const struct ibex_provider_config *mock = ibex_config_provider(cfg, "mock");
    if (mock && mock->type == IBEX_PROVIDER_MOCK)
        append_model(&b, &first, "mock", "mock");
    ibex_buf_append_cstr(&b, "]}");
    send_json(req, 200, &b);
    ibex_buf_dispose(&b);
}

void ibex_ops_models(struct ibex_worker *w, struct ibex_req *req)
{
    info_for(req, IBEX_ROUTE_MODELS);
    ibex_auth_request(w, req, IBEX_SCOPE_CHAT, models_authorized, NULL);
}

/* ---- /ready ---- */

struct probe {
    struct ready *ready;
    const struct ibex_provider *provider;
    struct ibex_upstream_call *call;
    enum ibex_upstream_result result;
    uint64_t latency_ns;
    bool done;
};

struct ready {
    struct ibex_req_info info;
    struct ibex_worker *w;
    struct ibex_req *req;
    struct probe *probes;
    size_t nprobes;
    size_t pending; /* probes and the store check still running */
    struct ibex_store_job store_job;
    bool store_pending, store_ok, aborted;
    uint64_t store_started_ns, store_latency_ns;
};

static void ready_answer(struct ready *r)
{
    bool draining = atomic_load(&r->w->rt->draining);
    size_t reachable = 0;
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "{\"checks\":{");
    ibex_buf_appendf(&b, "\"accepting\":{\"status\":\"%s\"}", draining ? "draining" : "ok");
    if (!draining)
        ibex_buf_appendf(&b, ",\"store\":{\"status\":\"%s\",\"latency_ms\":%.3f}",
                         r->store_ok ? "ok" : "unavailable", (double)r->store_latency_ns / 1e6);
    for (size_t i = 0; i < r->nprobes; i++) {
        struct probe *p = &r->probes[i];
        bool ok = p->result == IBEX_UPSTREAM_OK;
        reachable += ok;
        ibex_buf_append_cstr(&b, ",");
        char key[160];
        snprintf(key, sizeof(key), "provider:%s", p->provider->cfg->name);
        ibex_buf_append_json_str(&b, key, strlen(key));
        ibex_buf_appendf(&b, ":{\"status\":\"%s\",\"latency_ms\":%.3f}",
                         ok ? "ok" : ibex_upstream_result_name(p->result),
                         (double)p->latency_ns / 1e6);
    }
    bool ready = !draining && r->store_ok && (r->nprobes == 0 || reachable > 0);
    ibex_buf_appendf(&b, "},\"status\":\"%s\"}", ready ? "ready" : "unready");
    r->req->on_abort = NULL;
    send_json(r->req, ready ? 200 : 503, &b);
    ibex_buf_dispose(&b);
}

static void on_probe_done(struct ibex_upstream_call *call, enum ibex_upstream_result result,
                          void *data)
{
    struct probe *p = data;
    p->result = result;
    p->latency_ns = ibex_clock_mono_ns() - ibex_upstream_started_ns(call);
    p->call = NULL;
    p->done = true;
    if (--p->ready->pending == 0)
        ready_answer(p->ready);
}

static void on_ready_abort(struct ibex_req *req)
{
    struct ready *r = req->user;
    for (size_t i = 0; i < r->nprobes; i++)
        if (r->probes[i].call)
            ibex_upstream_cancel(r->probes[i].call);
    r->aborted = true;
    if (!r->store_pending) /* else the store check's completion finishes the request */
        ibex_res_stream_end(req);
}

/* on a pool thread: one cheap read proves the store answers */
static int run_store_check(struct ibex_store_job *job, struct ibex_store *s)
{
    return ibex_store_exec(s, "SELECT epoch FROM identity_epoch WHERE id = 1", NULL, 0, NULL, NULL);
}

static void store_check_done(struct ibex_store_job *job, int rc)
{
    struct ready *r = job->data;
    r->store_pending = false;
    if (r->aborted) {
        ibex_res_stream_end(r->req);
        return;
    }
    r->store_ok = rc == 0;
    r->store_latency_ns = ibex_clock_mono_ns() - r->store_started_ns;
    if (--r->pending == 0)
        ready_answer(r);
}

void ibex_ops_ready(struct ibex_worker *w, struct ibex_req *req)
{
    struct ready *r = ibex_arena_calloc(req->arena, sizeof(*r));
    r->info.route = IBEX_ROUTE_READY;
    r->w = w;
    r->req = req;
    req->user = r;
    const struct ibex_providers *ps = &w->rt->providers;
    r->probes = ibex_arena_calloc(req->arena, (ps->n + 1) * sizeof(*r->probes));
    for (size_t i = 0; i < ps->n; i++)
        if (ps->list[i].ops->build_request)
            r->probes[r->nprobes++].provider = &ps->list[i];
    if (atomic_load(&w->rt->draining)) {
        r->nprobes = 0;
        ready_answer(r);
        return;
    }
    static const struct ibex_upstream_callbacks cb = {.on_done = on_probe_done};
    r->pending = r->nprobes + 1;
    r->store_job.run = run_store_check;
    r->store_job.done = store_check_done;
    r->store_job.data = r;
    r->store_started_ns = ibex_clock_mono_ns();
    r->store_pending = ibex_store_pool_submit(&w->loop, w->rt->store_pool, &r->store_job) == 0;
    if (!r->store_pending)
        r->pending--;
    for (size_t i = 0; i < r->nprobes; i++) {
        struct probe *p = &r->probes[i];
        p->ready = r;
        struct ibex_upstream_timeouts t = p->provider->cfg->timeouts;
        if (t.connect_ms > PROBE_TIMEOUT_MS)
            t.connect_ms = PROBE_TIMEOUT_MS;
        t.header_ms = t.total_ms = PROBE_TIMEOUT_MS + 100;
        struct ibex_upstream_request ur = {
            .url = p->provider->chat_url,
            .timeouts = t,
            .connect_only = true,
        };
        p->call = ibex_upstream_start(w->upstream, &ur, &cb, p);
        if (p->call == NULL) {
            p->result = IBEX_UPSTREAM_FAILED;
            p->done = true;
            r->pending--;
        }
    }
    if (r->pending == 0) {
        ready_answer(r);
        return;
    }
    req->on_abort = on_ready_abort;
}
