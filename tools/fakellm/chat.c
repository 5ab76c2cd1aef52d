/* The generation engine of fakellm: reads the x-fakellm-* knobs, plans the answer (error, reset,
 * full body or stream), then plays it out on the loop with one uv timer per request: delay,
 * first token, interval between chunks, stall and reset, pausing on backpressure. The wire format
 * (struct fakellm_format) only renders bytes, so every dialect gets the same faults and timing.
 *
 * Invariants: a job owns its request until release() detaches it, which happens exactly once and
 * right before the finishing call (send, stream_end or reset). The job itself outlives the
 * request until its timer handle is closed, so no callback ever sees freed memory; on_abort that
 * arrives while the job is inside step() is only noted, and run() finishes the request after
 * step() returns. Content is deterministic: text chunk i is "tok<i> " padded, a tool call always
 * carries FAKELLM_TOOL_ARGS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../src/core/alloc.h"
#include "../../src/core/clock.h"
#include "fakellm.h"

/* Chunks written back to back before yielding to the loop, so one fast stream cannot starve
 * the other connections. */
#define BURST 64

enum outcome {
    OUT_COMPLETED = 1,
    OUT_ABORTED,
    OUT_RESET,
};

enum phase {
    PH_START = 1, /* before the response headers (the delay runs here) */
    PH_STREAM,    /* headers sent, chunks flowing */
    PH_STALLED,   /* stall-after reached: wait for the client to leave */
};

enum wait {
    WAIT_NONE = 0,
    WAIT_TIMER,
    WAIT_DRAIN,
};

struct job {
    struct ibex_req *req; /* NULL once released */
    const struct fakellm_format *fmt;
    struct fakellm_knobs k;
    struct fakellm_gen g;
    struct fakellm_error err; /* planned error answer when err.status != 0 */
    bool reset_now;           /* non-streaming x-fakellm-reset-after: 0 */
    enum phase phase;
    enum wait wait;
    uint64_t sent; /* content chunks written */
    bool need_interval;
    bool busy;
    bool aborted;
    uv_timer_t timer;
    struct ibex_buf out;
};

static uint64_t next_seq;

/* max stays far below UINT64_MAX / 10 (the caps above), so v * 10 + 9 cannot wrap. */
int fakellm_parse_u64(struct ibex_str s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        if (v <= max) /* saturate: keep scanning so trailing garbage is still rejected */
            v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    *out = v < max ? v : max;
    return 0;
}

/* One optional knob: absent keeps *out; present must be a decimal number (clamped to max). */
static int knob(const struct ibex_req *req, const char *name, uint64_t max, uint64_t *out,
                struct fakellm_error *err)
{
    struct ibex_str v = ibex_req_header(req, name);

    if (v.p == NULL || fakellm_parse_u64(ibex_str_trim(v), max, out) == 0)
        return 0;
    return fakellm_body_invalid(err, "x-fakellm-* headers take a non-negative decimal integer.",
                                name);
}

/* A function name as every dialect accepts it: a letter or '_', then letters, digits, '_' or
 * '-', at most FAKELLM_TOOL_NAME_MAX characters. */
static bool tool_name_ok(struct ibex_str s)
{
    if (s.len == 0 || s.len > FAKELLM_TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        bool more = (c >= '0' && c <= '9') || c == '-';
        if (!alpha && (i == 0 || !more))
            return false;
    }
    return true;
}

static int tool_knob(const struct ibex_req *req, struct fakellm_knobs *k, struct fakellm_error *err)
{
    struct ibex_str v = ibex_req_header(req, "x-fakellm-tool-call");

    if (v.p == NULL)
        return 0;
    v = ibex_str_trim(v);
    if (!tool_name_ok(v))
        return fakellm_body_invalid(err,
                                    "x-fakellm-tool-call takes a function name: a letter or '_', "
                                    "then letters, digits, '_' or '-', at most 64 characters.",
                                    "x-fakellm-tool-call");
    memcpy(k->tool, v.p, v.len);
    k->tool[v.len] = '\0';
    return 0;
}

int fakellm_knobs_parse(const struct ibex_req *req, struct fakellm_knobs *k,
                        struct fakellm_error *err)
{
    uint64_t status = fakellm_defaults.status;

    *k = (struct fakellm_knobs){
        .retry_after = fakellm_defaults.retry_after,
        .delay_ms = fakellm_defaults.delay_ms,
        .chunks = fakellm_defaults.chunks,
        .chunk_bytes = fakellm_defaults.chunk_bytes,
        .interval_ms = fakellm_defaults.interval_ms,
        .stall_after = FAKELLM_NEVER,
        .reset_after = fakellm_defaults.reset_after,
    };
    if (knob(req, "x-fakellm-status", 1000, &status, err) < 0 ||
        knob(req, "x-fakellm-retry-after", FAKELLM_MAX_RETRY_AFTER, &k->retry_after, err) < 0 ||
        knob(req, "x-fakellm-delay-ms", FAKELLM_MAX_MS, &k->delay_ms, err) < 0 ||
        knob(req, "x-fakellm-chunks", FAKELLM_MAX_CHUNKS, &k->chunks, err) < 0 ||
        knob(req, "x-fakellm-chunk-bytes", FAKELLM_MAX_CHUNK_BYTES, &k->chunk_bytes, err) < 0 ||
        knob(req, "x-fakellm-interval-ms", FAKELLM_MAX_MS, &k->interval_ms, err) < 0 ||
        knob(req, "x-fakellm-first-token-ms", FAKELLM_MAX_MS, &k->first_token_ms, err) < 0 ||
        /* One past the chunk cap, so a clamped value still means "later than the last chunk". */
        knob(req, "x-fakellm-stall-after", FAKELLM_MAX_CHUNKS + 1, &k->stall_after, err) < 0 ||
        knob(req, "x-fakellm-reset-after", FAKELLM_MAX_CHUNKS + 1, &k->reset_after, err) < 0)
        return -1;
    if (ibex_req_header(req, "x-fakellm-status").p != NULL && (status < 400 || status > 599))
        return fakellm_body_invalid(err,
                                    "x-fakellm-status must be an error status between 400 and 599.",
                                    "x-fakellm-status");
    k->status = (int)status;
    return tool_knob(req, k, err);
}

static size_t digits(uint64_t v)
{
    size_t n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

uint64_t fakellm_chunk_len(uint64_t i, uint64_t chunk_bytes)
{
    uint64_t n = 4 + digits(i); /* "tok" <i> " " */

    return chunk_bytes > n ? chunk_bytes : n;
}

void fakellm_chunk_text(struct ibex_buf *b, uint64_t i, uint64_t chunk_bytes)
{
    size_t n = 4 + digits(i);

    ibex_buf_append_cstr(b, "tok");
    ibex_buf_append_u64(b, i);
    ibex_buf_append(b, " ", 1);
    if (chunk_bytes > n) {
        size_t pad = (size_t)chunk_bytes - n;
        ibex_buf_reserve(b, pad);
        memset(b->p + b->len, 'x', pad);
        b->len += pad;
        b->p[b->len] = '\0';
    }
}

void fakellm_gen_text(struct ibex_buf *b, const struct fakellm_gen *g)
{
    uint64_t total = 0;

    for (uint64_t i = 0; i < g->chunks; i++)
        total += fakellm_chunk_len(i, g->chunk_bytes);
    ibex_buf_reserve(b, (size_t)total);
    for (uint64_t i = 0; i < g->chunks; i++)
        fakellm_chunk_text(b, i, g->chunk_bytes);
}

struct ibex_str fakellm_tool_piece(uint64_t i, uint64_t n)
{
    static const char args[] = FAKELLM_TOOL_ARGS;
    const uint64_t len = sizeof(args) - 1;
    uint64_t from, to;

    if (n == 0 || i >= n)
        return (struct ibex_str){args, 0};
    from = len * i / n;
    to = len * (i + 1) / n;
    return (struct ibex_str){args + from, (size_t)(to - from)};
}

static void on_closed(uv_handle_t *h)
{
    struct job *j = h->data;

    ibex_buf_dispose(&j->out);
    free(j->g.model);
    free(j);
}

/* Detaches the request from the job for the finishing call the caller makes next, and counts
 * the outcome. The job is freed once its timer handle is closed, after this callback chain. */
static struct ibex_req *release(struct job *j, enum outcome o)
{
    struct ibex_req *req = j->req;

    j->req = NULL;
    req->user = NULL;
    req->on_abort = NULL;
    req->on_drain = NULL;
    fakellm_stats.active--;
    if (o == OUT_COMPLETED)
        fakellm_stats.completed++;
    else if (o == OUT_ABORTED)
        fakellm_stats.aborted++;
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, on_closed);
    return req;
}

static void on_timer(uv_timer_t *t);

static void arm(struct job *j, uint64_t ms)
{
    j->wait = WAIT_TIMER;
    uv_timer_start(&j->timer, on_timer, ms, 0);
}

/* The client left: whatever was planned, end the request (writes are discarded by now). */
static void finish_aborted(struct job *j)
{
    ibex_res_stream_end(release(j, OUT_ABORTED));
}

static bool retry_status(const struct fakellm_format *fmt, int status)
{
    for (size_t i = 0; i < sizeof(fmt->retry_statuses) / sizeof(fmt->retry_statuses[0]); i++)
        if (fmt->retry_statuses[i] == status)
            return true;
    return false;
}

static void send_error(struct job *j, const struct fakellm_error *err)
{
    struct fakellm_error e = *err;
    char extra[64] = "";

    if (retry_status(j->fmt, e.status)) {
        e.retry_after = j->k.retry_after;
        snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
                 (unsigned long long)j->k.retry_after);
    }
    ibex_buf_reset(&j->out);
    j->fmt->error_body(&j->out, &e);
    ibex_res_send(release(j, OUT_COMPLETED), e.status, "application/json", extra[0] ? extra : NULL,
                  j->out.p, j->out.len);
}

/* Writes j->out as one stream write. Returns what ibex_res_stream_write() returned, after
 * recording a wait for on_drain when it asked for one. */
static int put(struct job *j)
{
    int rc = ibex_res_stream_write(j->req, j->out.p, j->out.len);

    if (rc == 1)
        j->wait = WAIT_DRAIN;
    return rc;
}

static void pump(struct job *j)
{
    for (unsigned int burst = 0;; burst++) {
        if (j->aborted)
            return;
        if (j->sent == j->k.reset_after) {
            ibex_res_reset(release(j, OUT_RESET));
            return;
        }
        if (j->sent == j->k.stall_after) {
            j->phase = PH_STALLED; /* until the client gives up: on_abort finishes */
            return;
        }
        if (j->sent == j->g.chunks) {
            ibex_buf_reset(&j->out);
            j->fmt->stream_tail(&j->out, &j->g);
            if (put(j) < 0)
                return; /* on_abort comes from the server's close callback */
            ibex_res_stream_end(release(j, OUT_COMPLETED));
            return;
        }
        if (j->need_interval) {
            j->need_interval = false;
            arm(j, j->k.interval_ms);
            return;
        }
        if (burst == BURST) {
            arm(j, 0);
            return;
        }
        ibex_buf_reset(&j->out);
        j->fmt->stream_chunk(&j->out, &j->g, j->sent);
        j->sent++;
        j->need_interval = j->k.interval_ms > 0;
        if (put(j) != 0)
            return; /* gone (on_abort follows) or above the high-water mark (on_drain follows) */
    }
}

static void step(struct job *j)
{
    if (j->aborted)
        return;
    if (j->phase == PH_STREAM) {
        pump(j);
        return;
    }
    if (j->phase != PH_START)
        return;
    if (j->err.status != 0) {
        send_error(j, &j->err);
        return;
    }
    if (j->reset_now) {
        ibex_res_reset(release(j, OUT_RESET));
        return;
    }
    if (!j->g.stream) {
        ibex_buf_reset(&j->out);
        j->fmt->response(&j->out, &j->g);
        ibex_res_send(release(j, OUT_COMPLETED), 200, "application/json", NULL, j->out.p,
                      j->out.len);
        return;
    }
    ibex_res_stream_start(j->req, 200, j->g.json_array ? "application/json" : "text/event-stream",
                          "Cache-Control: no-cache\r\n");
    ibex_res_stream_flush(j->req); /* headers now, like a provider: first-token-ms starts here */
    j->phase = PH_STREAM;
    if (j->aborted)
        return;
    if (j->fmt->stream_head != NULL) {
        ibex_buf_reset(&j->out);
        j->fmt->stream_head(&j->out, &j->g);
        if (put(j) < 0) /* an empty preamble writes nothing */
            return;
        j->wait = WAIT_NONE; /* a preamble is small: the first chunk's write will tell */
    }
    if (j->k.first_token_ms > 0) {
        arm(j, j->k.first_token_ms);
        return;
    }
    pump(j);
}

/* Every entry from the loop (handler, timer, drain) goes through here. */
static void run(struct job *j)
{
    j->busy = true;
    step(j);
    j->busy = false;
    if (j->req != NULL && j->aborted)
        finish_aborted(j);
}

static void on_timer(uv_timer_t *t)
{
    struct job *j = t->data;

    j->wait = WAIT_NONE;
    run(j);
}

static void on_drain(struct ibex_req *req)
{
    struct job *j = req->user;

    if (j->wait != WAIT_DRAIN)
        return;
    j->wait = WAIT_NONE;
    run(j);
}

static void on_abort(struct ibex_req *req)
{
    struct job *j = req->user;

    j->aborted = true;
    j->wait = WAIT_NONE;
    uv_timer_stop(&j->timer);
    if (!j->busy)
        finish_aborted(j);
}

/* Content bytes of a non-streaming answer, to hold it under FAKELLM_MAX_FULL_BYTES. */
static uint64_t full_bytes(const struct fakellm_gen *g)
{
    uint64_t total = 0;

    for (uint64_t i = 0; i < g->chunks && total <= FAKELLM_MAX_FULL_BYTES; i++)
        total += fakellm_chunk_len(i, g->chunk_bytes);
    return total;
}

void fakellm_gen_start(struct ibex_req *req, const struct fakellm_format *fmt, json_object *body)
{
    struct fakellm_knobs k;
    struct fakellm_error err;
    struct job *j;

    fakellm_stats.chat++;
    if (fakellm_knobs_parse(req, &k, &err) < 0) {
        /* Answered at once: the delay knob itself may be the broken one. */
        struct ibex_buf b;
        ibex_buf_init(&b);
        fmt->error_body(&b, &err);
        fakellm_stats.completed++;
        ibex_res_send(req, err.status, "application/json", NULL, b.p, b.len);
        ibex_buf_dispose(&b);
        return;
    }

    j = ibex_xcalloc(1, sizeof(*j));
    j->req = req;
    j->fmt = fmt;
    j->k = k;
    j->phase = PH_START;
    ibex_buf_init(&j->out);
    uv_timer_init(ibex_req_loop(req), &j->timer);
    j->timer.data = j;
    req->user = j;
    req->on_abort = on_abort;
    req->on_drain = on_drain;
    fakellm_stats.active++;

    j->g.seq = ++next_seq;
    j->g.created = ibex_clock_wall_ms() / 1000;
    j->g.chunks = k.chunks;
    j->g.chunk_bytes = k.chunk_bytes;
    if (k.tool[0] != '\0') {
        memcpy(j->g.tool, k.tool, sizeof(j->g.tool));
        j->g.chunks = fmt->tool_pieces;
    }
    if (fmt->authenticate(req, &j->err) < 0) {
        /* planned: 401 */
    } else if (k.status != 0) {
        j->err = (struct fakellm_error){
            .status = k.status,
            .code = "fakellm_injected",
            .message = "Error injected by fakellm (x-fakellm-status).",
        };
    } else if (fmt->parse(req, body, &j->g, &j->err) < 0) {
        /* planned: 400 */
    } else if (j->g.tool[0] != '\0' && !fmt->declares_tool(body, j->g.tool)) {
        /* The knob checks the gateway's translation too: the tool must have made it upstream. */
        fakellm_body_invalid(&j->err,
                             "x-fakellm-tool-call names a function tool that the request does "
                             "not declare.",
                             "x-fakellm-tool-call");
    } else if (!j->g.stream && full_bytes(&j->g) > FAKELLM_MAX_FULL_BYTES) {
        fakellm_body_invalid(&j->err,
                             "A non-streaming fakellm answer is limited to 64 MiB of content: "
                             "lower x-fakellm-chunks or x-fakellm-chunk-bytes, or stream.",
                             "x-fakellm-chunks");
    } else if (!j->g.stream && k.reset_after == 0) {
        j->reset_now = true;
    }

    if (k.delay_ms > 0)
        arm(j, k.delay_ms);
    else
        run(j);
}
