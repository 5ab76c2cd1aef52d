/* POST /v1/chat/completions: validate, route, call the provider, relay the answer.
 *
 * Invariants:
 * - The client's response starts at the first upstream body byte (the first translated one),
 *   so every failure before it may be retried, on the same deployment or the next one of the
 *   model's plan; after it, a failure ends the stream with an error event.
 * - Streaming bytes are relayed as they arrive (through the provider's translator when it does
 *   not speak OpenAI's format); when the client's write buffer is over the
 *   high-water mark the upstream transfer is paused and resumed on drain, so memory per stream
 *   is bounded by stream_buffer plus one curl buffer.
 * - A client that goes away cancels the upstream call at once.
 * - Exactly one finishing call per request: from on_upstream_done, or from on_client_abort
 *   when the upstream call is cancelled.
 * - Every authenticated request leaves a trace; every turn that was sent (to a provider or the
 *   local model) belongs to a session and leaves a checkpoint. Both are queued on the store
 *   writer by chat_done, after the response, so the loop never waits for them. */
#include <stdlib.h>
#include <string.h>

#include "../api/checkpoints.h"
#include "../auth/credential.h"
#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/id.h"
#include "../auth/keys.h"
#include "../core/lru.h"
#include "answer.h"
#include "idempotent.h"
#include "chat_request.h"
#include "dialect.h"
#include "gateway.h"

#define MAX_ERROR_BODY (64 * 1024)
/* The answer text and tool calls a checkpoint keeps per turn; beyond, it is marked truncated. */
#define ANSWER_MAX_BYTES ((size_t)1 << 20)
/* How long a worker keeps the provider credential a (tenant, subject, provider) chose: a
 * credential deleted, deactivated or replaced elsewhere stops being used within this
 * (docs/credentials.md). */
#define CREDENTIAL_CACHE_TTL_MS 2000
/* How long a worker trusts that a session it saw active still is (docs/sessions.md). */
#define SESSION_CACHE_TTL_MS 2000
/* An unknown session id younger than this may be one this process's writer has not committed
 * yet: the lookup waits for the writer (at most this long) and looks again. */
#define SESSION_JUST_CREATED_MS 1000

struct chat {
    struct ibex_req_info info; /* first: the access log reads req->user as this */
    struct ibex_worker *w;
    struct ibex_req *req;
    struct ibex_chat_request chat;
    struct ibex_upstream_call *call;
    struct ibex_buf body;            /* non-streaming answer, or an upstream error body */
    struct ibex_buf sendbody;        /* the request body rewritten for an alias */
    struct ibex_provider_stream *xs; /* a translating provider's stream decoder, or NULL */
    struct ibex_buf xlat;            /* translated bytes on their way to the client */
    bool stream_broken;              /* the translator found the provider's stream broken */
    int status;
    bool upstream_error; /* non-2xx status: buffer the body for the error */
    bool too_large;
    bool stream_open;
    char trace_id[IBEX_UUID_LEN + 1];
    char tenant_id[IBEX_ID_LEN + 1];
    char agent_id[IBEX_ID_LEN + 1];
    char session_id[IBEX_ID_LEN + 1];     /* "" until the turn's session is known */
    const struct ibex_provider *provider; /* the current attempt's */
    /* the deployments to try, in order (providers.c), and where the request is in that plan */
    struct ibex_deployment *plan[IBEX_ALIAS_MAX_DEPLOYMENTS];
    size_t nplan, at;
    int64_t tries;           /* attempts on plan[at] before the current one */
    uv_timer_t *retry_timer; /* the wait before the next attempt, or NULL */
    uint64_t attempt_start_ns;
    struct ibex_buf attempts; /* JSON array of every attempt, for the trace */
    bool directive;           /* the agent's directive is in the document */
    /* the current attempt's provider credential: where it came from, and its secret (one
     * reference; NULL: the provider's own key) */
    enum ibex_credential_source cred_source;
    struct ibex_secret *cred_secret;
    struct ibex_credential_choice cred_found; /* a resolve job's answer */
    int cred_rc;
    struct ibex_provider view; /* the provider with the caller's credential as its key */
    bool sent;                 /* the turn went to the provider (or the local model) */
    bool recorded;             /* it leaves a trace (recording is not off) */
    struct ibex_answer answer; /* what the model answered, collected as it is relayed */
    struct ibex_actor actor;
    /* store-pool jobs on the way: claiming the Idempotency-Key, joining the session the client
     * named (X-IBEX-Session-ID) */
    struct ibex_store_job job;
    bool aborted;
    struct ibex_idem_request idem;
    struct ibex_api_result join_result;
    char join_state[16];
    /* A client API in front other than OpenAI's (dialect.h), or NULL: its translator of the
     * stream once it opens, and translated bytes on their way to the client. */
    const struct ibex_chat_dialect *dialect;
    void *egress;
    struct ibex_buf egress_out;
};

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void close_retry_timer(struct chat *c)
{
    if (c->retry_timer) {
        uv_timer_stop(c->retry_timer);
        uv_close((uv_handle_t *)c->retry_timer, free_handle);
        c->retry_timer = NULL;
    }
}

/* The response headers naming the turn's trace and, when not NULL, its session, in the
 * request's arena. */
static const char *ids_header(struct ibex_arena *a, const char *trace_id, const char *session_id)
{
    static const char trace_name[] = "X-IBEX-Trace-ID: ", session_name[] = "X-IBEX-Session-ID: ";
    size_t tl = sizeof(trace_name) - 1, sl = sizeof(session_name) - 1;
    char *h = ibex_arena_alloc(a, tl + sl + 2 * (IBEX_UUID_LEN + 2) + 1), *p = h;
    memcpy(p, trace_name, tl);
    memcpy(p += tl, trace_id, IBEX_UUID_LEN);
    memcpy(p += IBEX_UUID_LEN, "\r\n", 2);
    p += 2;
    if (session_id) {
        memcpy(p, session_name, sl);
        memcpy(p += sl, session_id, IBEX_UUID_LEN);
        memcpy(p += IBEX_UUID_LEN, "\r\n", 2);
        p += 2;
    }
    *p = '\0';
    return h;
}

static void chat_cleanup(void *data)
{
    struct chat *c = data;
    ibex_chat_request_dispose(&c->chat);
    ibex_buf_dispose(&c->body);
    ibex_buf_dispose(&c->sendbody);
    ibex_buf_dispose(&c->xlat);
    ibex_buf_dispose(&c->attempts);
    close_retry_timer(c);
    ibex_secret_release(c->cred_secret);
    ibex_credential_choice_dispose(&c->cred_found);
    ibex_answer_dispose(&c->answer);
    ibex_api_result_dispose(&c->join_result);
    ibex_idem_request_dispose(&c->idem);
    ibex_buf_dispose(&c->egress_out);
}

static void fail(struct chat *c, int status, const char *code, const char *message,
                 const char *extra_headers)
{
    c->info.code = code;
    ibex_res_error(c->req, status, code, message, NULL, NULL, extra_headers);
}

/* Headers listed in forward_headers, except those that describe this hop or carry the client's
 * own credentials. */
static const char *const *forwarded_headers(struct chat *c)
{
    char **patterns = c->w->rt->forward_headers;
    if (patterns == NULL || patterns[0] == NULL)
        return NULL;
    static const char *const never[] = {
        "authorization",     "host",       "content-length", "content-type",
        "transfer-encoding", "connection", "keep-alive",     "te",
        "upgrade",           "expect",     "accept",         "proxy-authorization",
        "x-api-key"}; /* /v1/messages takes the client's ibex key there */
    struct ibex_req *req = c->req;
    const char **out = ibex_arena_alloc(req->arena, (req->nheaders + 1) * sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        struct ibex_header *h = &req->headers[i];
        bool blocked = false;
        for (size_t k = 0; k < sizeof(never) / sizeof(never[0]) && !blocked; k++)
            blocked = ibex_str_caseeq_cstr(h->name, never[k]);
        if (blocked)
            continue;
        for (char **p = patterns; *p; p++) {
            if (ibex_str_glob_prefix(h->name, *p)) {
                size_t len = h->name.len + 2 + h->value.len;
                char *line = ibex_arena_alloc(req->arena, len + 1);
                memcpy(line, h->name.p, h->name.len);
                memcpy(line + h->name.len, ": ", 2);
                memcpy(line + h->name.len + 2, h->value.p, h->value.len);
                line[len] = '\0';
                out[n++] = line;
                break;
            }
        }
    }
    out[n] = NULL;
    return out;
}

static void stream_gauge(struct chat *c, int delta)
{
    ibex_metrics_gauge_add(&c->w->metrics->streams_open, delta);
}

/* ---- upstream callbacks ---- */

static void on_upstream_headers(struct ibex_upstream_call *call, int status, void *data)
{
    struct chat *c = data;
    c->status = status;
    c->upstream_error = status < 200 || status > 299;
}

/* ---- the dialect's egress: what a client of another API receives (dialect.h) ---- */

/* OpenAI-format SSE bytes to the client, through the dialect's stream translator when there is
 * one. Returns what ibex_res_stream_write does. */
static int stream_out(struct chat *c, const char *p, size_t len)
{
    if (c->dialect == NULL)
        return ibex_res_stream_write(c->req, p, len);
    if (c->egress == NULL)
        c->egress = c->dialect->stream_open(&c->chat, c->req->arena);
    ibex_buf_reset(&c->egress_out);
    c->dialect->stream_feed(c->egress, p, len, &c->egress_out);
    return c->egress_out.len ? ibex_res_stream_write(c->req, c->egress_out.p, c->egress_out.len)
                             : 0;
}

/* Ends a stream that went well: the dialect's translator closes its message first. */
static void stream_close(struct chat *c)
{
    if (c->dialect && c->egress) {
        ibex_buf_reset(&c->egress_out);
        c->dialect->stream_end(c->egress, &c->egress_out);
        if (c->egress_out.len)
            ibex_res_stream_write(c->req, c->egress_out.p, c->egress_out.len);
    }
    ibex_res_stream_end(c->req);
}

/* A chat.completion in c->body to the client, through the dialect's translator when there is
 * one; c->body then holds the bytes sent (what an Idempotency-Key replays). */
static void send_answer(struct chat *c)
{
    if (c->dialect) {
        ibex_buf_reset(&c->egress_out);
        if (c->dialect->translate_answer(&c->chat, c->body.p, c->body.len, &c->egress_out) != 0) {
            c->info.code = "UPSTREAM_ERROR";
            ibex_res_error(c->req, 502, "UPSTREAM_ERROR", "the answer could not be translated",
                           NULL, NULL, NULL);
            return;
        }
        struct ibex_buf sent = c->egress_out;
        c->egress_out = c->body;
        c->body = sent;
    }
    ibex_res_send(c->req, 200, "application/json", NULL, c->body.p, c->body.len);
}

/* Streams OpenAI-format SSE bytes to the client, opening the stream at the first of them. */
static int relay(struct chat *c, const char *p, size_t len)
{
    if (!c->stream_open) {
        c->stream_open = true;
        c->info.ttft_ns = ibex_clock_mono_ns() - c->req->start_ns;
        stream_gauge(c, 1);
        ibex_res_stream_start(c->req, 200, "text/event-stream", "Cache-Control: no-cache\r\n");
    }
    if (c->recorded)
        ibex_answer_feed_sse(&c->answer, p, len);
    return stream_out(c, p, len);
}

/* The translator's output so far, relayed (nothing is sent while it has none). */
static int relay_translated(struct chat *c)
{
    if (c->xlat.len == 0)
        return 0;
    int rc = relay(c, c->xlat.p, c->xlat.len);
    ibex_buf_reset(&c->xlat);
    return rc;
}

static int on_upstream_data(struct ibex_upstream_call *call, const char *p, size_t len, void *data)
{
    struct chat *c = data;
    if (c->upstream_error || !c->chat.stream) {
        size_t cap = c->upstream_error ? MAX_ERROR_BODY : c->w->rt->cfg.max_upstream_response;
        if (c->body.len + len > cap) {
            c->too_large = true;
            return -1;
        }
        ibex_buf_append(&c->body, p, len);
        return 0;
    }
    if (c->xs == NULL)
        return relay(c, p, len);
    if (c->provider->ops->stream_feed(c->xs, p, len, &c->xlat) != 0) {
        c->stream_broken = true;
        relay_translated(c);
        return -1;
    }
    return relay_translated(c);
}

struct failure {
    int status;
    const char *code;
    const char *message;
};

static struct failure failure_of(enum ibex_upstream_result r)
{
    switch (r) {
    case IBEX_UPSTREAM_CONNECT_FAILED:
        return (struct failure){502, "UPSTREAM_CONNECT_FAILED",
                                "could not connect to the provider"};
    case IBEX_UPSTREAM_CONNECT_TIMEOUT:
        return (struct failure){504, "UPSTREAM_CONNECT_TIMEOUT",
                                "connecting to the provider timed out"};
    case IBEX_UPSTREAM_HEADER_TIMEOUT:
        return (struct failure){504, "UPSTREAM_HEADERS_TIMEOUT",
                                "the provider did not answer in time"};
    case IBEX_UPSTREAM_FIRST_TOKEN_TIMEOUT:
        return (struct failure){504, "UPSTREAM_FIRST_TOKEN_TIMEOUT",
                                "the provider sent no first token in time"};
    case IBEX_UPSTREAM_IDLE_TIMEOUT:
        return (struct failure){504, "UPSTREAM_IDLE_TIMEOUT", "the provider stopped sending"};
    case IBEX_UPSTREAM_TOTAL_TIMEOUT:
        return (struct failure){504, "UPSTREAM_TIMEOUT", "the provider's answer took too long"};
    case IBEX_UPSTREAM_RESET:
        return (struct failure){502, "UPSTREAM_RESET", "the provider closed the connection"};
    default:
        return (struct failure){502, "UPSTREAM_ERROR", "the provider call failed"};
    }
}

/* The message of an OpenAI-shaped upstream error body, copied into the request's arena. */
static const char *upstream_message(struct chat *c)
{
    json_object *root = json_tokener_parse(c->body.p ? c->body.p : "");
    json_object *err = NULL, *msg = NULL;
    const char *out = NULL;
    if (root && json_object_object_get_ex(root, "error", &err) &&
        json_object_object_get_ex(err, "message", &msg) &&
        json_object_is_type(msg, json_type_string)) {
        size_t n = (size_t)json_object_get_string_len(msg);
        if (n > 512)
            n = 512;
        out = ibex_arena_strndup(c->req->arena, json_object_get_string(msg), n);
    }
    json_object_put(root);
    return out;
}

static void answer_upstream_error(struct chat *c)
{
    char msg[700];
    if (c->status == 429) {
        char extra[96] = "";
        const char *ra = ibex_upstream_retry_after(c->call);
        if (ra && strlen(ra) < 40)
            snprintf(extra, sizeof(extra), "Retry-After: %s\r\n", ra);
        fail(c, 429, "UPSTREAM_RATE_LIMITED", "the provider is rate limiting requests", extra);
        return;
    }
    if (c->status >= 500 || c->status < 400) {
        snprintf(msg, sizeof(msg), "the provider answered with status %d", c->status);
        fail(c, 502, "UPSTREAM_ERROR", msg, NULL);
        return;
    }
    const char *um = upstream_message(c);
    snprintf(msg, sizeof(msg), "the provider rejected the request (status %d)%s%s", c->status,
             um ? ": " : "", um ? um : "");
    fail(c, c->status, "UPSTREAM_REJECTED", msg, NULL);
}

static void end_stream_with_error(struct chat *c, struct failure f)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    if (c->dialect && c->egress) {
        c->dialect->stream_error(c->egress, f.status, f.code, f.message, c->req->request_id, &b);
    } else {
        ibex_buf_append_cstr(&b, "data: ");
        ibex_http_append_error(&b, f.status, f.code, f.message, NULL, NULL, c->req->request_id);
        ibex_buf_append_cstr(&b, "\n\n");
    }
    ibex_res_stream_write(c->req, b.p, b.len);
    ibex_buf_dispose(&b);
    c->info.code = f.code;
    ibex_res_stream_end(c->req);
}

/* ---- attempts: retries, fallback, the circuit breaker ---- */

enum attempt_outcome {
    ATTEMPT_OK = 0,
    ATTEMPT_REJECTED,     /* a 4xx other than 429: the request's fault, answered as it is */
    ATTEMPT_RATE_LIMITED, /* 429 */
    ATTEMPT_SERVER_ERROR, /* 5xx (or another non-2xx) */
    ATTEMPT_TIMEOUT,
    ATTEMPT_CONNECT,
    ATTEMPT_RESET,
    ATTEMPT_STREAM_ERROR, /* the provider's stream reported an error or stopped short */
    ATTEMPT_TOO_LARGE,
    ATTEMPT_ERROR,
};

const char *const ibex_attempt_outcome_names[IBEX_METRICS_NATTEMPT] = {
    "ok",    "rejected",     "rate_limited", "server_error", "timeout", "connect_error",
    "reset", "stream_error", "too_large",    "error",
};

static enum attempt_outcome classify(const struct chat *c, enum ibex_upstream_result r)
{
    if (c->stream_broken)
        return ATTEMPT_STREAM_ERROR;
    switch (r) {
    case IBEX_UPSTREAM_OK:
        if (!c->upstream_error)
            return ATTEMPT_OK;
        if (c->status == 429)
            return ATTEMPT_RATE_LIMITED;
        return c->status >= 400 && c->status < 500 ? ATTEMPT_REJECTED : ATTEMPT_SERVER_ERROR;
    case IBEX_UPSTREAM_CONNECT_FAILED:
        return ATTEMPT_CONNECT;
    case IBEX_UPSTREAM_CONNECT_TIMEOUT:
    case IBEX_UPSTREAM_HEADER_TIMEOUT:
    case IBEX_UPSTREAM_FIRST_TOKEN_TIMEOUT:
    case IBEX_UPSTREAM_IDLE_TIMEOUT:
    case IBEX_UPSTREAM_TOTAL_TIMEOUT:
        return ATTEMPT_TIMEOUT;
    case IBEX_UPSTREAM_RESET:
        return ATTEMPT_RESET;
    case IBEX_UPSTREAM_ABORTED:
        return c->too_large ? ATTEMPT_TOO_LARGE : ATTEMPT_ERROR;
    default:
        return ATTEMPT_ERROR;
    }
}

/* A failure another attempt may fix (and that counts against the deployment's health). */
static bool transient(enum attempt_outcome o)
{
    return o != ATTEMPT_OK && o != ATTEMPT_REJECTED && o != ATTEMPT_TOO_LARGE;
}

/* The attempt in the trace, the metrics and the deployment's circuit breaker. */
static void note_attempt(struct chat *c, enum attempt_outcome o, int64_t now_ms)
{
    struct ibex_deployment *d = c->plan[c->at];
    struct ibex_buf *b = &c->attempts;
    ibex_buf_append_cstr(b, b->len ? ",{\"provider\":" : "[{\"provider\":");
    ibex_buf_append_json_str(b, d->provider->cfg->name, strlen(d->provider->cfg->name));
    ibex_buf_append_cstr(b, ",\"model\":");
    ibex_buf_append_json_str(b, c->chat.model, c->chat.model_len);
    if (c->cred_source == IBEX_CREDENTIAL_OWN || c->cred_source == IBEX_CREDENTIAL_TENANT)
        ibex_buf_append_cstr(b, c->cred_source == IBEX_CREDENTIAL_OWN
                                    ? ",\"credential\":\"own\""
                                    : ",\"credential\":\"tenant\"");
    ibex_buf_append_cstr(b, ",\"outcome\":\"");
    ibex_buf_append_cstr(b, ibex_attempt_outcome_names[o]);
    ibex_buf_append_cstr(b, "\",\"status\":");
    ibex_buf_append_u64(b, (uint64_t)c->status); /* 0, or the HTTP status */
    ibex_buf_append_cstr(b, ",\"ms\":");
    ibex_buf_append_milli(b, (ibex_clock_mono_ns() - c->attempt_start_ns) / 1000);
    ibex_buf_append_cstr(b, "}");
    ibex_metrics_attempt(c->w->metrics, d->index, (int)o);
    ibex_deployment_report(d, transient(o), &c->w->rt->cfg.routing, now_ms);
}

static void send_turn(struct chat *c);

static uint64_t random_u64(void)
{
    uint64_t r;
    ibex_id_random(&r, sizeof(r));
    return r;
}

static void on_retry_timer(uv_timer_t *t)
{
    struct chat *c = t->data;
    close_retry_timer(c);
    c->req->on_abort = NULL;
    send_turn(c);
}

/* Seconds of a Retry-After header as milliseconds; -1 when absent or an HTTP date. */
static int64_t retry_after_ms(const char *v)
{
    if (v == NULL || *v < '0' || *v > '9')
        return -1;
    char *end = NULL;
    unsigned long long s = strtoull(v, &end, 10);
    while (end && (*end == ' ' || *end == '\t'))
        end++;
    return end && *end == '\0' && s < 86400 ? (int64_t)s * 1000 : -1;
}

static void on_client_abort(struct ibex_req *req);

/* After a transient failure before anything reached the client: schedules the next attempt,
 * on the same deployment (up to upstream_retries more, after a jittered back-off or the
 * provider's Retry-After) or on the next deployment of the plan. Returns false when there is
 * none left: the failure is then the answer. */
static bool try_again(struct chat *c)
{
    const struct ibex_routing_config *rc = &c->w->rt->cfg.routing;
    uint64_t wait_ms = 0;
    int64_t ra = c->status == 429 || c->status == 503
                     ? retry_after_ms(ibex_upstream_retry_after(c->call))
                     : -1;
    bool same = c->tries < rc->retries && (ra < 0 || (uint64_t)ra <= rc->retry_after_max_ms);
    if (same) {
        uint64_t base = rc->backoff_ms << (c->tries < 10 ? c->tries : 10);
        wait_ms = base / 2 + random_u64() % (base + 1); /* base, +-50% */
        if (ra > 0 && (uint64_t)ra > wait_ms)
            wait_ms = (uint64_t)ra;
        c->tries++;
    } else if (c->at + 1 < c->nplan) {
        c->at++;
        c->tries = 0;
    } else {
        return false;
    }
    c->retry_timer = ibex_xmalloc(sizeof(*c->retry_timer));
    uv_timer_init(&c->w->loop, c->retry_timer);
    c->retry_timer->data = c;
    uv_timer_start(c->retry_timer, on_retry_timer, wait_ms, 0);
    c->req->on_abort = on_client_abort;
    return true;
}

static void on_upstream_done(struct ibex_upstream_call *call, enum ibex_upstream_result r,
                             void *data)
{
    struct chat *c = data;
    uint64_t now = ibex_clock_mono_ns();
    uint64_t first = ibex_upstream_first_byte_ns(call);
    c->info.upstream_ns = now - ibex_upstream_started_ns(call);
    ibex_metrics_upstream(c->w->metrics, c->info.provider->index, (int)r, c->info.upstream_ns,
                          c->chat.stream && first ? first - ibex_upstream_started_ns(call) : 0);
    c->req->on_abort = NULL;
    c->req->on_drain = NULL;

    if (c->xs && r == IBEX_UPSTREAM_OK && !c->upstream_error) {
        if (c->provider->ops->stream_end(c->xs, &c->xlat) != 0)
            c->stream_broken = true;
        relay_translated(c);
    }
    enum attempt_outcome o = classify(c, r);
    note_attempt(c, o, (int64_t)ibex_clock_wall_ms());
    if (!c->stream_open && transient(o) && try_again(c)) {
        c->call = NULL;
        return;
    }
    if (c->stream_broken) {
        /* the provider's stream itself reported an error or stopped short */
        struct failure f = {502, "UPSTREAM_STREAM_ERROR", c->xs->error};
        c->call = NULL;
        if (c->stream_open) {
            stream_gauge(c, -1);
            end_stream_with_error(c, f);
        } else {
            fail(c, f.status, f.code, f.message, NULL);
        }
        return;
    }
    if (c->stream_open) {
        stream_gauge(c, -1);
        c->call = NULL;
        if (r == IBEX_UPSTREAM_OK || r == IBEX_UPSTREAM_ABORTED)
            stream_close(c);
        else
            end_stream_with_error(c, failure_of(r));
        return;
    }
    if (r == IBEX_UPSTREAM_ABORTED && c->too_large) {
        c->call = NULL;
        fail(c, 502, "UPSTREAM_RESPONSE_TOO_LARGE",
             "the provider's answer exceeds max_upstream_response", NULL);
        return;
    }
    if (r != IBEX_UPSTREAM_OK) {
        c->call = NULL;
        struct failure f = failure_of(r);
        fail(c, f.status, f.code, f.message, NULL);
        return;
    }
    if (c->upstream_error) {
        answer_upstream_error(c); /* reads Retry-After from the call: still valid here */
        c->call = NULL;
        return;
    }
    c->call = NULL;
    if (c->chat.stream) {
        fail(c, 502, "UPSTREAM_ERROR", "the provider sent an empty stream", NULL);
        return;
    }
    if (c->provider->ops->translate_answer) {
        if (c->provider->ops->translate_answer(c->provider, &c->chat, c->body.p, c->body.len,
                                               &c->xlat) != 0) {
            fail(c, 502, "UPSTREAM_ERROR", "the provider's answer is not in its format", NULL);
            return;
        }
        struct ibex_buf answer = c->xlat; /* the translation becomes the body */
        c->xlat = c->body;
        c->body = answer;
        ibex_buf_reset(&c->xlat);
    }
    if (c->recorded)
        ibex_answer_from_json(&c->answer, c->body.p, c->body.len);
    send_answer(c);
}

/* ---- client callbacks ---- */

static void on_client_abort(struct ibex_req *req)
{
    struct chat *c = req->user;
    close_retry_timer(c);
    if (c->call) {
        ibex_upstream_cancel(c->call);
        c->call = NULL;
        ibex_metrics_upstream(c->w->metrics, c->info.provider->index, IBEX_UPSTREAM_ABORTED,
                              ibex_clock_mono_ns() - req->start_ns, 0);
    }
    if (c->stream_open)
        stream_gauge(c, -1);
    c->info.code = "CLIENT_CLOSED";
    ibex_res_stream_end(req);
}

static void on_client_drain(struct ibex_req *req)
{
    struct chat *c = req->user;
    if (c->call)
        ibex_upstream_resume(c->call);
}

/* ---- the handler ---- */

/* The local model's answer, kept in c->body like an upstream one. */
static void answer_locally(struct chat *c, const struct ibex_provider *p)
{
    struct ibex_buf *out = &c->body;
    p->ops->answer(p, &c->chat, out);
    if (c->recorded && c->chat.stream)
        ibex_answer_feed_sse(&c->answer, out->p, out->len);
    else if (c->recorded)
        ibex_answer_from_json(&c->answer, out->p, out->len);
    if (c->chat.stream) {
        ibex_res_stream_start(c->req, 200, "text/event-stream", "Cache-Control: no-cache\r\n");
        stream_out(c, out->p, out->len);
        stream_close(c);
    } else {
        send_answer(c);
    }
}

/* The request document for plan[at]: the deployment's model name (a provider serving the name
 * unchanged keeps the client's), serialised again when it differs from what the client sent. */
static void prepare_attempt(struct chat *c)
{
    struct ibex_deployment *d = c->plan[c->at];
    c->provider = d->provider;
    c->info.provider = d->provider;
    const char *model = d->model && d->provider->ops->answer == NULL ? d->model : c->info.model;
    bool rename = strcmp(model, c->chat.model) != 0;
    if (rename)
        ibex_chat_request_set_model(&c->chat, model);
    if (rename || (c->directive && c->sendbody.len == 0)) {
        ibex_buf_reset(&c->sendbody);
        ibex_chat_request_serialize(&c->chat, &c->sendbody);
    }
    /* what the last attempt left behind */
    ibex_buf_reset(&c->body);
    ibex_buf_reset(&c->xlat);
    c->status = 0;
    c->upstream_error = c->too_large = c->stream_broken = false;
    c->xs = NULL;
    c->attempt_start_ns = ibex_clock_mono_ns();
}

/* ---- the provider credential of an attempt (docs/credentials.md) ---- */

static void call_upstream(struct chat *c, const struct ibex_provider *p);

/* A store job's done callback, first: the client-abort hook goes, and when the client left
 * while the job ran, the request is finished here (true: nothing more to do). */
static bool store_job_aborted(struct chat *c)
{
    c->req->on_abort = NULL;
    if (!c->aborted)
        return false;
    c->info.code = "CLIENT_CLOSED";
    ibex_res_stream_end(c->req);
    return true;
}

static void on_store_abort(struct ibex_req *req);

/* Calls upstream with the key ibex was configured with: the deployment's own, else the
 * provider's. */
static void call_with_system_key(struct chat *c)
{
    const char *own = c->plan[c->at]->auth_header;
    if (own == NULL) {
        call_upstream(c, c->provider);
        return;
    }
    c->view = *c->provider;
    c->view.auth_header = (char *)own;
    call_upstream(c, &c->view);
}

static void wipe_header(void *data)
{
    char *h = data;
    explicit_bzero(h, strlen(h));
}

static void credential_digest(const struct chat *c, uint8_t out[IBEX_LRU_KEY_LEN])
{
    ibex_credential_lookup_key(c->tenant_id, c->actor.subject, c->provider->cfg->name, out);
}

/* Calls upstream with the chosen credential: the caller's own or the tenant's default in the
 * provider's key header, or the provider's configured key when none was chosen. */
static void use_credential(struct chat *c, const struct ibex_credential_choice *choice)
{
    c->cred_source = choice->source;
    ibex_secret_release(c->cred_secret);
    c->cred_secret = choice->secret ? ibex_secret_retain(choice->secret) : NULL;
    if (c->cred_secret == NULL) {
        call_with_system_key(c);
        return;
    }
    /* the header line lives in the arena, wiped when it is freed */
    size_t plen = strlen(c->provider->auth_prefix), n = plen + c->cred_secret->len;
    char *h = ibex_arena_alloc(c->req->arena, n + 1);
    memcpy(h, c->provider->auth_prefix, plen);
    memcpy(h + plen, c->cred_secret->p, c->cred_secret->len);
    h[n] = '\0';
    ibex_arena_on_free(c->req->arena, wipe_header, h);
    c->view = *c->provider;
    c->view.auth_header = h;
    call_upstream(c, &c->view);
}

static int resolve_run(struct ibex_store_job *job, struct ibex_store *s)
{
    struct chat *c = job->data;
    struct ibex_runtime *rt = c->w->rt;
    c->cred_rc = ibex_credential_resolve(s, rt->vault, rt->credential_cache, c->tenant_id,
                                         c->actor.subject, c->provider->cfg->name, &c->cred_found);
    return 0;
}

static void resolve_done(struct ibex_store_job *job, int rc)
{
    struct chat *c = job->data;
    if (store_job_aborted(c))
        return;
    bool unreadable = c->cred_rc == IBEX_EVAULT_NOKEY || c->cred_rc == IBEX_EVAULT_AUTH ||
                      c->cred_rc == IBEX_EVAULT_CRYPTO;
    if (rc || (c->cred_rc != 0 && !unreadable)) {
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
        return;
    }
    if (c->cred_rc != 0) {
        /* the chosen credential does not open: never fall back to the provider's key */
        fail(c, 500, "CREDENTIAL_UNREADABLE",
             "the provider credential chosen for this request cannot be decrypted", NULL);
        return;
    }
    uint8_t key[IBEX_LRU_KEY_LEN];
    credential_digest(c, key);
    struct ibex_credential_choice choice = c->cred_found;
    if (choice.secret)
        ibex_secret_retain(choice.secret); /* one for the request, one moves into the cache */
    ibex_lru_put(c->w->credentials, key, &c->cred_found,
                 (int64_t)ibex_clock_wall_ms() + CREDENTIAL_CACHE_TTL_MS, 0);
    memset(&c->cred_found, 0, sizeof(c->cred_found));
    use_credential(c, &choice);
    ibex_secret_release(choice.secret);
}

/* The credential this attempt's provider is called with: from the worker's cache, else chosen
 * in the store (a job: the loop never waits on the store). */
static void find_credential(struct chat *c)
{
    uint8_t key[IBEX_LRU_KEY_LEN];
    credential_digest(c, key);
    const struct ibex_credential_choice *hit =
        ibex_lru_get(c->w->credentials, key, (int64_t)ibex_clock_wall_ms(), 0);
    if (hit) {
        use_credential(c, hit);
        return;
    }
    c->job.run = resolve_run;
    c->job.done = resolve_done;
    c->job.data = c;
    c->req->on_abort = on_store_abort;
    if (ibex_store_pool_submit(&c->w->loop, c->w->rt->store_pool, &c->job) != 0) {
        c->req->on_abort = NULL;
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
    }
}

/* Sends the turn to plan[at]: the local model, or upstream. */
static void send_turn(struct chat *c)
{
    prepare_attempt(c);
    const struct ibex_provider *p = c->provider;
    if (p->ops->answer) {
        c->sent = true;
        answer_locally(c, p);
        return;
    }
    if (c->w->credentials) {
        find_credential(c);
        return;
    }
    call_with_system_key(c);
}

/* Calls the provider, authenticated as p says (p is c->view when the caller's credential
 * stands in for the provider's key). */
static void call_upstream(struct chat *c, const struct ibex_provider *p)
{
    struct ibex_req *req = c->req;
    const char *body = c->sendbody.len ? c->sendbody.p : req->body.p;
    size_t body_len = c->sendbody.len ? c->sendbody.len : req->body.len;
    struct ibex_upstream_request ur;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (p->ops->build_request(p, &c->chat, body, body_len, forwarded_headers(c), req->arena, &ur,
                              &e) != 0) {
        c->info.code = e.code;
        ibex_res_error(req, 400, e.code, e.message, e.param[0] ? e.param : NULL,
                       e.field_errors.len ? e.field_errors.p : NULL, NULL);
        ibex_chat_error_dispose(&e);
        return;
    }
    ibex_chat_error_dispose(&e);
    c->sent = true;
    if (c->chat.stream && p->ops->stream_open)
        c->xs = p->ops->stream_open(p, &c->chat, req->arena);
    static const struct ibex_upstream_callbacks cb = {
        .on_headers = on_upstream_headers,
        .on_data = on_upstream_data,
        .on_done = on_upstream_done,
    };
    c->call = ibex_upstream_start(c->w->upstream, &ur, &cb, c);
    if (c->call == NULL) {
        fail(c, 502, "UPSTREAM_ERROR", "the provider call could not be started", NULL);
        return;
    }
    req->on_abort = on_client_abort;
    req->on_drain = on_client_drain;
}

/* ---- the turn's session ---- */

/* The session cache's key: the session id's 16 bytes, its random half first (the cache hashes
 * the first 8; session ids are UUIDv7, minted by ibex), then zeros. A session id is unique
 * across tenants, so the key needs no tenant: the entry's value is the session's tenant. */
static void session_key(const struct chat *c, uint8_t out[IBEX_LRU_KEY_LEN])
{
    uint8_t raw[16];
    ibex_id_uuid_bytes(c->session_id, raw);
    memcpy(out, raw + 8, 8);
    memcpy(out + 8, raw, 8);
    memset(out + 16, 0, IBEX_LRU_KEY_LEN - 16);
}

/* The turn belongs to c->session_id: say so in the response headers and send it. remember:
 * the session was just created or read from the store, so this worker may trust it is active
 * for SESSION_CACHE_TTL_MS (a hit is not renewed, so the store is read again that often). */
static void session_ready(struct chat *c, bool remember)
{
    c->req->response_headers = ids_header(c->req->arena, c->trace_id, c->session_id);
    c->info.session_id = c->session_id;
    if (remember) {
        uint8_t key[IBEX_LRU_KEY_LEN];
        session_key(c, key);
        ibex_lru_put(c->w->sessions, key, c->tenant_id,
                     (int64_t)ibex_clock_wall_ms() + SESSION_CACHE_TTL_MS, 0);
    }
    send_turn(c);
}

static int join_run(struct ibex_store_job *job, struct ibex_store *s)
{
    struct chat *c = job->data;
    struct ibex_store_writer *writer = c->w->rt->writer;
    ibex_session_join(s, &c->actor, c->session_id, c->join_state, &c->join_result);
    /* A session a turn on another worker of this process created a moment ago may still wait in
     * the writer's queue: once the writer has committed what it holds, look again. */
    int64_t born = ibex_id_uuid7_ms(c->session_id);
    if (c->join_state[0] == '\0' && born >= 0 &&
        (int64_t)ibex_clock_wall_ms() - born < SESSION_JUST_CREATED_MS &&
        ibex_store_writer_flush(writer, SESSION_JUST_CREATED_MS) == 0) {
        ibex_api_result_dispose(&c->join_result);
        ibex_api_result_init(&c->join_result);
        ibex_session_join(s, &c->actor, c->session_id, c->join_state, &c->join_result);
    }
    return 0;
}

static void join_done(struct ibex_store_job *job, int rc)
{
    struct chat *c = job->data;
    struct ibex_api_result *r = &c->join_result;
    if (store_job_aborted(c))
        return;
    if (rc) {
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
        return;
    }
    if (r->code) {
        c->info.code = r->code;
        ibex_res_error(c->req, r->status, r->code, r->message, "X-IBEX-Session-ID", NULL, NULL);
        return;
    }
    if (strcmp(c->join_state, "active") != 0) {
        char msg[120];
        snprintf(msg, sizeof(msg), "the session is %s: it takes no more turns", c->join_state);
        fail(c, 409, "SESSION_NOT_ACTIVE", msg, NULL);
        return;
    }
    session_ready(c, true);
}

static void on_store_abort(struct ibex_req *req)
{
    ((struct chat *)req->user)->aborted = true;
}

/* X-IBEX-Session-ID names the session to join (checked in the store unless this worker saw it
 * active lately); without it the turn starts a new session. */
static void resolve_session(struct chat *c)
{
    struct ibex_req *req = c->req;
    struct ibex_str h = ibex_req_header(req, "x-ibex-session-id");
    int64_t now = (int64_t)ibex_clock_wall_ms();
    if (h.p == NULL) {
        ibex_id_uuid7((uint64_t)now, c->session_id);
        ibex_session_record_new(c->w->rt->writer, c->session_id, c->tenant_id, c->info.agent_id,
                                now);
        session_ready(c, true);
        return;
    }
    if (!ibex_id_is_uuid(h.p, h.len)) {
        c->info.code = "VALIDATION_ERROR";
        ibex_res_error(req, 400, "VALIDATION_ERROR", "X-IBEX-Session-ID must be a session id",
                       "X-IBEX-Session-ID", NULL, NULL);
        return;
    }
    for (size_t i = 0; i < IBEX_ID_LEN; i++) /* ids are stored in lowercase */
        c->session_id[i] = (char)(h.p[i] >= 'A' && h.p[i] <= 'F' ? h.p[i] + 32 : h.p[i]);
    uint8_t key[IBEX_LRU_KEY_LEN];
    session_key(c, key);
    const char *tenant = ibex_lru_get(c->w->sessions, key, now, 0);
    if (tenant && strcmp(tenant, c->tenant_id) == 0) {
        session_ready(c, false);
        return;
    }
    c->job.run = join_run;
    c->job.done = join_done;
    c->job.data = c;
    req->on_abort = on_store_abort;
    if (ibex_store_pool_submit(&c->w->loop, c->w->rt->store_pool, &c->job) != 0) {
        req->on_abort = NULL;
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
    }
}

/* The turn's session when turns are recorded, then the call. */
static void start_turn(struct chat *c)
{
    if (c->w->rt->cfg.record_turns && c->recorded)
        resolve_session(c);
    else
        send_turn(c);
}

static int claim_run(struct ibex_store_job *job, struct ibex_store *s)
{
    struct chat *c = job->data;
    ibex_idem_request_begin(c->w->rt->idem, s, c->tenant_id, &c->idem);
    return 0;
}

static void claim_done(struct ibex_store_job *job, int rc)
{
    struct chat *c = job->data;
    if (store_job_aborted(c))
        return;
    if (rc) {
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
        return;
    }
    if (ibex_idem_request_proceed(&c->idem, c->req, &c->info.code))
        start_turn(c);
}

static void claim_key(struct chat *c)
{
    c->job.run = claim_run;
    c->job.done = claim_done;
    c->job.data = c;
    c->req->on_abort = on_store_abort;
    if (ibex_store_pool_submit(&c->w->loop, c->w->rt->store_pool, &c->job) != 0) {
        c->req->on_abort = NULL;
        fail(c, 503, "STORE_UNAVAILABLE", "the store is unavailable", "Retry-After: 1\r\n");
    }
}

/* ---- after the response ---- */

/* What the answer cost in billionths of a dollar, from the price of the model that answered at
 * its provider; -1 when there is no price or no usage. */
static int64_t cost_of(struct chat *c)
{
    if (c->provider == NULL || !c->sent || c->answer.prompt_tokens < 0)
        return -1;
    const struct ibex_price_config *price =
        ibex_config_price(&c->w->rt->cfg, c->provider->cfg->name, c->chat.model);
    if (price == NULL)
        return -1;
    double completion = c->answer.completion_tokens > 0 ? (double)c->answer.completion_tokens : 0;
    /* USD per million tokens is 1000 nano-USD per token */
    return (int64_t)((double)c->answer.prompt_tokens * price->input * 1000.0 +
                     completion * price->output * 1000.0 + 0.5);
}

/* The trace of every authenticated request and the checkpoint of every turn sent. */
static void chat_done(struct ibex_req *req, uint64_t total_ns)
{
    struct chat *c = req->user;
    struct ibex_idem_outcome o = {c->info.code ? 500 : req->status, "application/json",
                                  req->response_headers ? req->response_headers : "", c->body.p,
                                  c->body.len};
    ibex_idem_request_finish_async(&c->w->loop, c->w->rt->store_pool, c->w->rt->idem, c->tenant_id,
                                   &c->idem, &o);
    if (!c->recorded)
        return;
    struct ibex_store_writer *writer = c->w->rt->writer;
    if (c->xs && c->answer.prompt_tokens < 0 && c->xs->prompt_tokens >= 0) {
        /* the client asked for no usage chunk: the translator still saw the usage */
        c->answer.prompt_tokens = c->xs->prompt_tokens;
        c->answer.completion_tokens = c->xs->completion_tokens;
        if (c->xs->completion_tokens >= 0)
            c->answer.total_tokens = c->xs->prompt_tokens + c->xs->completion_tokens;
    }
    if (c->attempts.len)
        ibex_buf_append_cstr(&c->attempts, "]");
    struct ibex_trace t = {
        .id = c->trace_id,
        .tenant_id = c->tenant_id,
        .request_id = req->request_id,
        .agent_id = c->info.agent_id,
        .session_id = c->info.session_id,
        .model = c->info.model,
        .provider = c->provider ? c->provider->cfg->name : NULL,
        .stream = c->info.stream,
        .status = req->status,
        .code = c->info.code,
        .duration_ns = total_ns,
        .upstream_ns = c->info.upstream_ns,
        .ttft_ns = c->info.ttft_ns,
        .prompt_tokens = c->answer.prompt_tokens,
        .completion_tokens = c->answer.completion_tokens,
        .total_tokens = c->answer.total_tokens,
        .attempts = c->attempts.len ? c->attempts.p : NULL,
        .attempts_len = c->attempts.len,
        .cost_nanousd = cost_of(c),
    };
    if (c->provider && c->sent)
        ibex_metrics_usage(c->w->metrics, c->provider->index, c->tenant_id, c->info.agent_id,
                           t.prompt_tokens, t.completion_tokens, t.cost_nanousd);
    int64_t now = (int64_t)ibex_clock_wall_ms();
    ibex_trace_record(writer, &t, now);
    if (c->info.session_id == NULL || !c->sent)
        return;
    char id[IBEX_UUID_LEN + 1];
    ibex_id_uuid7((uint64_t)now, id);
    struct ibex_checkpoint cp = {
        .id = id,
        .trace = &t,
        .request = c->sendbody.len ? c->sendbody.p : req->body.p,
        .request_len = c->sendbody.len ? c->sendbody.len : req->body.len,
        .content = c->answer.content.p,
        .content_len = c->answer.content.len,
        .tool_calls = c->answer.tool_calls.p,
        .tool_calls_len = c->answer.tool_calls.len,
        .finish_reason = c->answer.finish_reason,
        .truncated = c->answer.truncated,
    };
    ibex_checkpoint_record(writer, &cp, now);
}

/* Authenticated, with the agent resolved: validate, apply the agent's directive, route, find the
 * turn's session, call. */
static void chat_authorized(struct ibex_worker *w, struct ibex_req *req,
                            const struct ibex_principal *principal,
                            const struct ibex_agent_ref *agent, void *data)
{
    struct chat *c = data;
    const struct ibex_config *cfg = &w->rt->cfg;
    memcpy(c->tenant_id, principal->tenant_id, sizeof(c->tenant_id));
    if (agent->id) {
        memcpy(c->agent_id, agent->id, sizeof(c->agent_id));
        c->info.agent_id = c->agent_id;
    }
    /* From here the request leaves a trace, whatever its outcome (unless recording is off). */
    c->info.on_done = chat_done;
    if (cfg->record_traces && w->rt->writer) {
        c->recorded = true;
        ibex_id_uuid7(ibex_clock_wall_ms(), c->trace_id);
        req->response_headers = ids_header(req->arena, c->trace_id, NULL);
    }
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    const char *body = req->body.p;
    size_t body_len = req->body.len;
    if (c->dialect) {
        /* the translation goes upstream as a body rewritten for an alias does */
        if (c->dialect->translate_request(body, body_len, &c->sendbody, &e) != 0) {
            c->info.code = e.code;
            ibex_res_error(req, 400, e.code, e.message, e.param[0] ? e.param : NULL,
                           e.field_errors.len ? e.field_errors.p : NULL, NULL);
            ibex_chat_error_dispose(&e);
            return;
        }
        body = c->sendbody.p;
        body_len = c->sendbody.len;
    }
    if (ibex_chat_request_parse(&c->chat, body, body_len, &e) != 0) {
        c->info.code = e.code;
        ibex_res_error(req, 400, e.code, e.message, e.param[0] ? e.param : NULL,
                       e.field_errors.len ? e.field_errors.p : NULL, NULL);
        ibex_chat_error_dispose(&e);
        return;
    }
    ibex_chat_error_dispose(&e);
    /* the client's name for the model: the document's changes with each deployment */
    c->info.model = ibex_arena_strndup(req->arena, c->chat.model, c->chat.model_len);
    c->info.stream = c->chat.stream;

    const struct ibex_alias *alias = ibex_providers_route(&w->rt->providers, c->chat.model);
    if (alias == NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "model '%.200s' is not configured and there is no default provider",
                 c->chat.model);
        c->info.code = "MODEL_NOT_FOUND";
        ibex_res_error(req, 404, "MODEL_NOT_FOUND", msg, "model", NULL, NULL);
        return;
    }
    int64_t retry_ms = 0;
    c->nplan =
        ibex_alias_plan(alias, (int64_t)ibex_clock_wall_ms(), random_u64(), c->plan, &retry_ms);
    if (c->nplan == 0) {
        char msg[300], extra[64];
        snprintf(msg, sizeof(msg),
                 "every deployment of model '%.200s' is out after repeated failures",
                 c->chat.model);
        snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", (long long)(retry_ms / 1000 + 1));
        fail(c, 503, "UPSTREAM_UNAVAILABLE", msg, extra);
        return;
    }
    c->provider = c->plan[0]->provider;
    c->info.provider = c->provider;
    /* The directive is in the document before the session is looked up (it belongs to the
     * agent cache, which a store job could outlive). */
    if (agent->directive[0]) {
        ibex_chat_request_add_directive(&c->chat, agent->directive, w->rt->auth->directive_replace);
        c->directive = true;
        ibex_buf_reset(&c->sendbody); /* a dialect's translation: serialised again */
    }
    c->actor.tenant_id = c->tenant_id;
    c->actor.subject =
        ibex_arena_strndup(req->arena, principal->subject, strlen(principal->subject));
    c->actor.scopes = principal->scopes;
    c->actor.request_id = req->request_id;
    /* Idempotency-Key: non-streaming requests only (docs/sessions.md) */
    if (!c->chat.stream && w->rt->idem) {
        if (ibex_idem_request_init(&c->idem, req, &c->info.code) != 0)
            return;
        if (c->idem.active) {
            claim_key(c);
            return;
        }
    }
    start_turn(c);
}

void ibex_chat_handle(struct ibex_worker *w, struct ibex_req *req)
{
    ibex_chat_handle_dialect(w, req, NULL);
}

void ibex_chat_handle_dialect(struct ibex_worker *w, struct ibex_req *req,
                              const struct ibex_chat_dialect *dialect)
{
    struct chat *c = ibex_arena_calloc(req->arena, sizeof(*c));
    c->info.route = dialect ? dialect->route : IBEX_ROUTE_CHAT;
    c->info.api_key_header = dialect && dialect->api_key_header;
    c->dialect = dialect;
    if (dialect)
        req->error_body = dialect->error_body;
    c->w = w;
    c->req = req;
    ibex_buf_init(&c->body);
    ibex_buf_init(&c->sendbody);
    ibex_buf_init(&c->xlat);
    ibex_buf_init(&c->attempts);
    ibex_buf_init(&c->egress_out);
    /* the answer's text is kept for checkpoints only; a trace needs the usage alone */
    ibex_answer_init(&c->answer, w->rt->cfg.record_turns ? ANSWER_MAX_BYTES : 0);
    ibex_api_result_init(&c->join_result);
    ibex_arena_on_free(req->arena, chat_cleanup, c);
    req->user = c;
    ibex_auth_request_agent(w, req, IBEX_SCOPE_CHAT, chat_authorized, c);
}
