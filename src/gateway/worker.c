/* Workers, the router, the access log and the drain.
 *
 * Start-up binds every worker's listener on the main thread, so a bad address or a port in use
 * stops the process before anything runs. Then each worker thread runs its own loop, and the
 * main thread's loop only waits for signals.
 *
 * Drain (SIGTERM/SIGINT): every worker stops accepting and closes idle connections; requests and
 * streams in progress run to completion; a worker's loop ends when it has no connection left.
 * At drain_timeout the main thread tells the workers to close what is left. A second signal
 * forces the same at once. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/log.h"
#include "../auth/credential.h"
#include "gateway.h"
#include "messages.h"

enum worker_command {
    CMD_NONE = 0,
    CMD_DRAIN = 1,
    CMD_FORCE = 2,
};

/* ---- router ---- */

struct route {
    const char *path;
    const char *method;
    void (*handler)(struct ibex_worker *w, struct ibex_req *req);
    enum ibex_route route;
    ibex_http_error_fn *error_body; /* the route's error shape; NULL: OpenAI's */
};

/* Anthropic's Messages API in front of the chat pipeline. */
static void messages_handle(struct ibex_worker *w, struct ibex_req *req)
{
    ibex_chat_handle_dialect(w, req, &ibex_messages_dialect);
}

static const struct route routes[] = {
    {"/v1/chat/completions", "POST", ibex_chat_handle, IBEX_ROUTE_CHAT, NULL},
    {"/v1/messages", "POST", messages_handle, IBEX_ROUTE_MESSAGES, ibex_messages_append_error},
    {"/v1/models", "GET", ibex_ops_models, IBEX_ROUTE_MODELS, NULL},
    {"/health", "GET", ibex_ops_health, IBEX_ROUTE_HEALTH, NULL},
    {"/ready", "GET", ibex_ops_ready, IBEX_ROUTE_READY, NULL},
    {"/status", "GET", ibex_ops_status, IBEX_ROUTE_STATUS, NULL},
    {"/metrics", "GET", ibex_ops_metrics, IBEX_ROUTE_METRICS, NULL},
};

/* Administration collections: the path and everything below it (docs/identity.md). */
static const struct {
    const char *prefix;
    enum ibex_route route;
} admin_routes[] = {
    {"/v1/tenants", IBEX_ROUTE_TENANTS},
    {"/v1/agents", IBEX_ROUTE_AGENTS},
    {"/v1/keys", IBEX_ROUTE_KEYS},
    {"/v1/audit", IBEX_ROUTE_AUDIT},
    {"/v1/traces", IBEX_ROUTE_TRACES},
    {"/v1/sessions", IBEX_ROUTE_SESSIONS},
    {"/v1/tasks", IBEX_ROUTE_TASKS},
    {"/v1/approvals", IBEX_ROUTE_APPROVALS},
    {"/v1/credentials", IBEX_ROUTE_CREDENTIALS},
};

static void handle(struct ibex_req *req, void *data)
{
    struct ibex_worker *w = data;
    ibex_metrics_gauge_add(&w->metrics->in_flight, 1);
    for (size_t i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++) {
        size_t n = strlen(admin_routes[i].prefix);
        if (req->path.len >= n && memcmp(req->path.p, admin_routes[i].prefix, n) == 0 &&
            (req->path.len == n || req->path.p[n] == '/')) {
            ibex_admin_handle(w, req, admin_routes[i].route);
            return;
        }
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        if (!ibex_str_eq_cstr(req->path, r->path))
            continue;
        if (ibex_str_eq_cstr(req->method, r->method)) {
            r->handler(w, req);
            return;
        }
        struct ibex_req_info *info = ibex_arena_calloc(req->arena, sizeof(*info));
        info->route = r->route;
        info->code = "METHOD_NOT_ALLOWED";
        req->user = info;
        req->error_body = r->error_body;
        char allow[48];
        snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->method);
        ibex_res_error(req, 405, "METHOD_NOT_ALLOWED", "method not allowed on this route", NULL,
                       NULL, allow);
        return;
    }
    struct ibex_req_info *info = ibex_arena_calloc(req->arena, sizeof(*info));
    info->route = IBEX_ROUTE_OTHER;
    info->code = "NOT_FOUND";
    req->user = info;
    ibex_res_error(req, 404, "NOT_FOUND", "no such route", NULL, NULL, NULL);
}

/* ---- access log and request metrics ---- */

/* Access-log lines are collected per worker and written once per loop iteration (after the
 * I/O callbacks of that iteration), or earlier when this much has piled up: one write(2) for
 * many requests under load, and at most one iteration of delay when idle. */
#define ACCESS_LOG_FLUSH_BYTES 2048 /* + one line (< 1.5 KB, fields capped) < PIPE_BUF */
#define LOG_FIELD_MAX 256

static void flush_access_log(struct ibex_worker *w)
{
    if (w->access_log.len == 0)
        return;
    ibex_log_write(w->access_log.p, w->access_log.len);
    ibex_buf_reset(&w->access_log);
}

static void on_log_flush(uv_check_t *h)
{
    flush_access_log(h->data);
}

/* Appends ,"key":<ns as milliseconds with three decimals>. */
static void log_ms(struct ibex_buf *b, const char *key, uint64_t ns)
{
    ibex_buf_append_cstr(b, ",\"");
    ibex_buf_append_cstr(b, key);
    ibex_buf_append_cstr(b, "\":");
    ibex_buf_append_milli(b, ns / 1000);
}

static void on_request_done(struct ibex_req *req, void *data)
{
    struct ibex_worker *w = data;
    struct ibex_req_info *info = req->user;
    uint64_t now = ibex_clock_mono_ns();
    uint64_t total = now - req->start_ns;
    enum ibex_route route = info ? info->route : IBEX_ROUTE_OTHER;
    uint64_t bytes_in = req->body.len;
    for (size_t i = 0; i < req->nheaders; i++)
        bytes_in += req->headers[i].name.len + req->headers[i].value.len + 4;

    if (info) /* requests rejected by the parser never reached the router */
        ibex_metrics_gauge_add(&w->metrics->in_flight, -1);
    ibex_metrics_request(w->metrics, route, req->status, bytes_in, req->bytes_out);
    if (info && info->provider && info->provider->ops->build_request && info->upstream_ns)
        ibex_metrics_overhead(w->metrics,
                              total > info->upstream_ns ? total - info->upstream_ns : 0);
    if (info && info->on_done)
        info->on_done(req, total);

    if (!w->rt->cfg.access_log || !ibex_log_enabled(IBEX_LOG_INFO))
        return;
    struct ibex_buf *b = &w->access_log;
    ibex_log_begin(b, IBEX_LOG_INFO, "request");
    ibex_buf_append_cstr(b, ",\"request_id\":");
    ibex_buf_append_json_str(b, req->request_id, strlen(req->request_id));
    ibex_buf_append_cstr(b, ",\"method\":");
    ibex_buf_append_json_str(b, req->method.p ? req->method.p : "", req->method.len);
    ibex_buf_append_cstr(b, ",\"path\":");
    ibex_buf_append_json_str(b, req->path.p ? req->path.p : "",
                             req->path.len < LOG_FIELD_MAX ? req->path.len : LOG_FIELD_MAX);
    ibex_buf_append_cstr(b, ",\"route\":\"");
    ibex_buf_append_cstr(b, ibex_metrics_route_name(route));
    ibex_buf_append_cstr(b, "\",\"status\":");
    ibex_buf_append_u64(b, (uint64_t)req->status);
    log_ms(b, "duration_ms", total);
    if (info && info->provider) {
        ibex_buf_append_cstr(b, ",\"provider\":");
        ibex_buf_append_json_str(b, info->provider->cfg->name, strlen(info->provider->cfg->name));
        if (info->model) {
            ibex_buf_append_cstr(b, ",\"model\":");
            size_t mlen = strlen(info->model);
            ibex_buf_append_json_str(b, info->model, mlen < LOG_FIELD_MAX ? mlen : LOG_FIELD_MAX);
        }
        ibex_buf_append_cstr(b, info->stream ? ",\"stream\":true" : ",\"stream\":false");
        if (info->upstream_ns) {
            log_ms(b, "upstream_ms", info->upstream_ns);
            log_ms(b, "overhead_ms", total > info->upstream_ns ? total - info->upstream_ns : 0);
        }
        if (info->ttft_ns)
            log_ms(b, "ttft_ms", info->ttft_ns);
    }
    if (info && info->code) {
        ibex_buf_append_cstr(b, ",\"code\":\"");
        ibex_buf_append_cstr(b, info->code);
        ibex_buf_append_cstr(b, "\"");
    }
    ibex_buf_append_cstr(b, ",\"bytes_in\":");
    ibex_buf_append_u64(b, bytes_in);
    ibex_buf_append_cstr(b, ",\"bytes_out\":");
    ibex_buf_append_u64(b, req->bytes_out);
    ibex_buf_append_cstr(b, ",\"worker\":");
    ibex_buf_append_u64(b, w->id);
    ibex_log_end(b);
    if (b->len >= ACCESS_LOG_FLUSH_BYTES)
        flush_access_log(w);
}

/* ---- worker threads ---- */

static void on_http_closed(void *arg)
{
    struct ibex_worker *w = arg;
    uv_timer_stop(&w->drain_timer);
    ibex_upstream_free(w->upstream);
    w->upstream = NULL;
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
    flush_access_log(w);
    uv_close((uv_handle_t *)&w->log_flush, NULL);
}

static void drain_check(uv_timer_t *t)
{
    struct ibex_worker *w = t->data;
    if (ibex_http_server_connections(w->http) == 0 && ibex_upstream_active(w->upstream) == 0) {
        uv_timer_stop(t);
        ibex_http_server_close(w->http, on_http_closed, w);
    }
}

static void on_wakeup(uv_async_t *a)
{
    struct ibex_worker *w = a->data;
    int cmd = atomic_load(&w->command);
    if (cmd == CMD_DRAIN) {
        ibex_http_server_drain(w->http);
        uv_timer_start(&w->drain_timer, drain_check, 0, 20);
    } else if (cmd == CMD_FORCE) {
        uv_timer_stop(&w->drain_timer);
        ibex_http_server_close(w->http, on_http_closed, w);
    }
}

static int worker_init(struct ibex_worker *w, struct ibex_runtime *rt, size_t id)
{
    const struct ibex_config *cfg = &rt->cfg;
    w->id = id;
    w->rt = rt;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    ibex_buf_init(&w->access_log);
    uv_check_init(&w->loop, &w->log_flush);
    w->log_flush.data = w;
    uv_check_start(&w->log_flush, on_log_flush);
    w->metrics = ibex_metrics_register();
    ibex_auth_caches_init(&w->auth_caches, w->rt->auth);
    w->sessions = ibex_lru_new((size_t)cfg->auth_cache_size, IBEX_ID_LEN + 1, NULL);
    if (rt->vault)
        w->credentials =
            ibex_lru_new((size_t)cfg->auth_cache_size, sizeof(struct ibex_credential_choice),
                         ibex_credential_choice_dispose);
    w->upstream = ibex_upstream_new(&w->loop, !strcmp(cfg->upstream_http_client, "native"));
    struct ibex_http_config hc = {
        .max_header_bytes = cfg->max_header_bytes,
        .max_headers = (size_t)cfg->max_headers,
        .max_body_bytes = cfg->max_body_bytes,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .write_high_water = cfg->stream_buffer,
        .server_header = "ibex",
        .handler = handle,
        .on_done = on_request_done,
        .data = w,
    };
    w->http = ibex_http_server_new(&w->loop, &hc);
    return ibex_http_server_listen(w->http, cfg->listen, true);
}

static void worker_dispose(struct ibex_worker *w)
{
    ibex_http_server_free(w->http);
    uv_loop_close(&w->loop);
    ibex_auth_caches_dispose(&w->auth_caches);
    ibex_lru_free(w->sessions);
    if (w->credentials)
        ibex_lru_free(w->credentials);
    ibex_buf_dispose(&w->access_log);
}

/* ---- the main thread ---- */

struct serve {
    struct ibex_runtime *rt;
    struct ibex_worker *workers;
    uv_signal_t sigterm, sigint;
    uv_timer_t deadline;
    uv_async_t worker_exit;
    atomic_size_t exited;
    size_t signals;
};

static void command_all(struct serve *s, enum worker_command cmd)
{
    for (size_t i = 0; i < s->rt->nworkers; i++) {
        atomic_store(&s->workers[i].command, cmd);
        uv_async_send(&s->workers[i].wakeup);
    }
}

static void on_deadline(uv_timer_t *t)
{
    struct serve *s = t->data;
    ibex_log(IBEX_LOG_WARN, "drain deadline reached: closing remaining connections", NULL);
    command_all(s, CMD_FORCE);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    if (s->signals++ == 0) {
        char timeout[32];
        snprintf(timeout, sizeof(timeout), "%llu", (unsigned long long)s->rt->cfg.drain_timeout_ms);
        ibex_log(IBEX_LOG_INFO, "draining", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT",
                 "drain_timeout_ms", timeout, NULL);
        atomic_store(&s->rt->draining, true);
        command_all(s, CMD_DRAIN);
        uv_timer_start(&s->deadline, on_deadline, s->rt->cfg.drain_timeout_ms, 0);
    } else {
        ibex_log(IBEX_LOG_WARN, "second signal: closing remaining connections now", NULL);
        command_all(s, CMD_FORCE);
    }
}

/* A worker's loop has ended; once all have, the main loop closes its handles and returns. */
static void on_worker_exit(uv_async_t *a)
{
    struct serve *s = a->data;
    if (atomic_load(&s->exited) < s->rt->nworkers)
        return;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->deadline, NULL);
    uv_close((uv_handle_t *)&s->worker_exit, NULL);
}

static void worker_thread(void *arg)
{
    struct ibex_worker *w = arg;
    pthread_setname_np(pthread_self(), "ibex-worker");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    struct serve *s = w->owner;
    atomic_fetch_add(&s->exited, 1);
    uv_async_send(&s->worker_exit);
}

int ibex_serve(struct ibex_runtime *rt)
{
    struct serve s;
    memset(&s, 0, sizeof(s));
    s.rt = rt;
    s.workers = ibex_xcalloc(rt->nworkers, sizeof(*s.workers));
    for (size_t i = 0; i < rt->nworkers; i++) {
        s.workers[i].owner = &s;
        int r = worker_init(&s.workers[i], rt, i);
        if (r != 0) {
            ibex_log(IBEX_LOG_ERROR, "cannot listen", "listen", rt->cfg.listen, "error",
                     uv_strerror(r), NULL);
            return 1; /* the process exits; no worker ran */
        }
    }
    char port[16], nworkers[16];
    snprintf(port, sizeof(port), "%d", ibex_http_server_port(s.workers[0].http));
    snprintf(nworkers, sizeof(nworkers), "%zu", rt->nworkers);
    ibex_log(IBEX_LOG_INFO, "listening", "listen", rt->cfg.listen, "port", port, "workers",
             nworkers, "default_provider",
             rt->providers.default_provider ? rt->providers.default_provider->cfg->name : NULL,
             NULL);

    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &s.sigterm);
    uv_signal_init(main_loop, &s.sigint);
    s.sigterm.data = s.sigint.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_timer_init(main_loop, &s.deadline);
    s.deadline.data = &s;
    uv_async_init(main_loop, &s.worker_exit, on_worker_exit);
    s.worker_exit.data = &s;
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < rt->nworkers; i++)
        uv_thread_create(&s.workers[i].thread, worker_thread, &s.workers[i]);
    uv_run(main_loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < rt->nworkers; i++) {
        uv_thread_join(&s.workers[i].thread);
        worker_dispose(&s.workers[i]);
    }
    uv_loop_close(main_loop);
    free(s.workers);
    ibex_log(IBEX_LOG_INFO, "stopped", NULL);
    return 0;
}
