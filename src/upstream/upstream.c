/* libcurl multi_socket on a libuv loop, after curl's multi-uv example: curl tells us which
 * sockets to watch (on_socket) and when to wake it (on_multi_timer); we tell curl what happened.
 *
 * Invariants:
 * - Each call owns one uv_timer that enforces the header, first-token, idle and total timeouts.
 *   The timer is re-armed only on phase changes (headers, first byte, pause, resume); on every
 *   chunk only last_byte_ns moves, and an early wake-up re-arms for the rest (lazy deadline).
 * - A call is removed from the multi handle outside curl's callbacks (after socket_action
 *   returns, or from our own timers), and freed in its timer's close callback.
 * - Easy handles are reset and reused from a small per-worker pool; curl's connection cache
 *   lives in the multi handle, so upstream keep-alive connections are per worker. */
#include "call.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/log.h"

#define EASY_POOL (sizeof(((struct ibex_upstream *)0)->pool) / sizeof(CURL *))

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct ibex_upstream *u;
};

const char *ibex_upstream_result_name(enum ibex_upstream_result r)
{
    switch (r) {
    case IBEX_UPSTREAM_OK:
        return "ok";
    case IBEX_UPSTREAM_CONNECT_FAILED:
        return "connect_failed";
    case IBEX_UPSTREAM_CONNECT_TIMEOUT:
        return "connect_timeout";
    case IBEX_UPSTREAM_HEADER_TIMEOUT:
        return "header_timeout";
    case IBEX_UPSTREAM_FIRST_TOKEN_TIMEOUT:
        return "first_token_timeout";
    case IBEX_UPSTREAM_IDLE_TIMEOUT:
        return "idle_timeout";
    case IBEX_UPSTREAM_TOTAL_TIMEOUT:
        return "total_timeout";
    case IBEX_UPSTREAM_RESET:
        return "reset";
    case IBEX_UPSTREAM_ABORTED:
        return "aborted";
    case IBEX_UPSTREAM_FAILED:
        return "failed";
    }
    return "unknown";
}

/* ---- per-call deadlines ---- */

static uint64_t ms_to_ns(uint64_t ms)
{
    return ms * 1000000u;
}

/* The next deadline and the result it means when missed. */
static uint64_t call_deadline(const struct ibex_upstream_call *c, enum ibex_upstream_result *why)
{
    uint64_t total = c->start_ns + ms_to_ns(c->t.total_ms);
    uint64_t phase;
    enum ibex_upstream_result phase_why;
    if (!c->connected &&
        c->start_ns + ms_to_ns(c->t.connect_ms) < c->start_ns + ms_to_ns(c->t.header_ms)) {
        phase = c->start_ns + ms_to_ns(c->t.connect_ms); /* native transport only */
        phase_why = IBEX_UPSTREAM_CONNECT_TIMEOUT;
    } else if (!c->headers_done) {
        phase = c->start_ns + ms_to_ns(c->t.header_ms);
        phase_why = IBEX_UPSTREAM_HEADER_TIMEOUT;
    } else if (c->req.streaming && c->first_byte_ns == 0) {
        phase = c->headers_ns + ms_to_ns(c->t.first_token_ms);
        phase_why = IBEX_UPSTREAM_FIRST_TOKEN_TIMEOUT;
    } else if (c->paused) {
        phase = UINT64_MAX; /* a slow client is not the upstream's fault */
        phase_why = IBEX_UPSTREAM_IDLE_TIMEOUT;
    } else {
        uint64_t last = c->last_byte_ns ? c->last_byte_ns : c->headers_ns;
        phase = last + ms_to_ns(c->t.idle_ms);
        phase_why = IBEX_UPSTREAM_IDLE_TIMEOUT;
    }
    if (total <= phase) {
        *why = IBEX_UPSTREAM_TOTAL_TIMEOUT;
        return total;
    }
    *why = phase_why;
    return phase;
}

static void on_call_timer(uv_timer_t *t);

static void call_arm(struct ibex_upstream_call *c)
{
    enum ibex_upstream_result why;
    uint64_t deadline = call_deadline(c, &why);
    uint64_t now = ibex_clock_mono_ns();
    uint64_t ms = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
    uv_timer_start(&c->timer, on_call_timer, ms, 0);
}

/* ---- finishing ---- */

static void on_call_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Detaches the transport and unlinks the call; the call itself is freed on its timer close. */
static void release(struct ibex_upstream_call *c)
{
    struct ibex_upstream *u = c->u;
    if (c->native) {
        h1_release(c);
        h1_recycle(u->h1, &c->wire);
    } else if (c->easy) {
        curl_multi_remove_handle(u->multi, c->easy);
        if (!c->req.connect_only && u->npool < EASY_POOL) {
            u->pool[u->npool++] = c->easy; /* options are overwritten by the next call */
        } else {
            curl_easy_cleanup(c->easy);
        }
        c->easy = NULL;
        curl_slist_free_all(c->headers);
        c->headers = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        u->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    u->active--;
    uv_timer_stop(&c->timer);
}

void upstream_call_finish(struct ibex_upstream_call *c, enum ibex_upstream_result r)
{
    /* A transfer that ended without complete response headers has no answer, whatever the
     * transport says (libcurl reports success when the peer closes inside the headers). */
    if (r == IBEX_UPSTREAM_OK && !c->headers_done && !c->req.connect_only)
        r = IBEX_UPSTREAM_RESET;
    release(c);
    if (c->cb.on_done)
        c->cb.on_done(c, r, c->data);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

void upstream_call_connected(struct ibex_upstream_call *c)
{
    c->connected = true;
    call_arm(c);
}

void upstream_call_headers(struct ibex_upstream_call *c, int status)
{
    if (c->headers_done)
        return;
    c->headers_done = true;
    c->headers_ns = ibex_clock_mono_ns();
    call_arm(c);
    if (c->cb.on_headers)
        c->cb.on_headers(c, status, c->data);
}

int upstream_call_data(struct ibex_upstream_call *c, const char *p, size_t len)
{
    uint64_t now = ibex_clock_mono_ns();
    bool first = c->first_byte_ns == 0;
    c->last_byte_ns = now;
    if (first) {
        c->first_byte_ns = now;
        call_arm(c);
    }
    int r = c->cb.on_data ? c->cb.on_data(c, p, len, c->data) : 0;
    if (r < 0)
        c->aborted = true;
    else if (r > 0 && !c->paused) {
        c->paused = true;
        call_arm(c);
    }
    return r;
}

static void on_call_timer(uv_timer_t *t)
{
    struct ibex_upstream_call *c = t->data;
    enum ibex_upstream_result why;
    uint64_t deadline = call_deadline(c, &why);
    if (ibex_clock_mono_ns() + 500000 < deadline) {
        call_arm(c); /* activity moved the deadline: sleep again */
        return;
    }
    upstream_call_finish(c, why);
}

static enum ibex_upstream_result map_curl(struct ibex_upstream_call *c, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return IBEX_UPSTREAM_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return IBEX_UPSTREAM_CONNECT_FAILED;
    case CURLE_OPERATION_TIMEDOUT:
        return IBEX_UPSTREAM_CONNECT_TIMEOUT; /* the only timeout curl itself enforces */
    case CURLE_WRITE_ERROR:
        return c->aborted ? IBEX_UPSTREAM_ABORTED : IBEX_UPSTREAM_FAILED;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return IBEX_UPSTREAM_RESET;
    default:
        return IBEX_UPSTREAM_FAILED;
    }
}

static void check_multi_info(struct ibex_upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct ibex_upstream_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode rc = msg->data.result;
        if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR && ibex_log_enabled(IBEX_LOG_DEBUG))
            ibex_log(IBEX_LOG_DEBUG, "upstream transfer failed", "curl", curl_easy_strerror(rc),
                     NULL);
        upstream_call_finish(c, map_curl(c, rc));
    }
}

/* ---- curl <-> libuv ---- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *ctx = h->data;
    struct ibex_upstream *u = ctx->u;
    int flags = 0;
    /* libuv reports a pending socket error (a reset) with no events, but data the peer sent
     * before the reset may still be queued: let curl read it before it sees the error. */
    if (status < 0)
        flags = CURL_CSELECT_ERR | CURL_CSELECT_IN;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(u->multi, ctx->fd, flags, &running);
    check_multi_info(u);
}

static void on_ctx_closed(uv_handle_t *h)
{
    free(h->data);
}

/* curl reports CURL_POLL_REMOVE whenever a connection goes back to its cache, so closing the
 * poll handle there would cost a uv_poll_init (ioctl and two epoll_ctl) and a close per
 * transfer. Instead the handle is only stopped, and closed when curl closes the socket. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct ibex_upstream *u = userp;
    struct sock_ctx *ctx = (size_t)s < u->nsocks ? u->socks[s] : NULL;
    if (what == CURL_POLL_REMOVE) {
        if (ctx)
            uv_poll_stop(&ctx->poll);
        return 0;
    }
    if (ctx == NULL) {
        if ((size_t)s >= u->nsocks) {
            size_t n = u->nsocks ? u->nsocks : 64;
            while (n <= (size_t)s)
                n *= 2;
            u->socks = ibex_xrealloc(u->socks, n * sizeof(*u->socks));
            memset(u->socks + u->nsocks, 0, (n - u->nsocks) * sizeof(*u->socks));
            u->nsocks = n;
        }
        ctx = ibex_xcalloc(1, sizeof(*ctx));
        ctx->fd = s;
        ctx->u = u;
        if (uv_poll_init_socket(u->loop, &ctx->poll, s) != 0) {
            free(ctx);
            return -1;
        }
        ctx->poll.data = ctx;
        u->socks[s] = ctx;
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, on_poll);
    return 0;
}

static int on_close_socket(void *userp, curl_socket_t s)
{
    struct ibex_upstream *u = userp;
    if ((size_t)s < u->nsocks && u->socks[s]) {
        uv_close((uv_handle_t *)&u->socks[s]->poll, on_ctx_closed); /* unwatches the fd now */
        u->socks[s] = NULL;
    }
    return close(s);
}

static void on_multi_timeout(uv_timer_t *t)
{
    struct ibex_upstream *u = t->data;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(u);
}

static int on_multi_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct ibex_upstream *u = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&u->timer);
    else
        uv_timer_start(&u->timer, on_multi_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- transfer callbacks (inside curl: never remove handles here) ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *userp)
{
    struct ibex_upstream_call *c = userp;
    size_t len = size * n;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        c->retry_after[0] = '\0';
    } else if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200)
            upstream_call_headers(c, (int)code);
    } else if (len > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
        size_t i = 12, end = len;
        while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        while (end > i && (buf[end - 1] == '\r' || buf[end - 1] == '\n' || buf[end - 1] == ' '))
            end--;
        size_t vlen = end - i < sizeof(c->retry_after) - 1 ? end - i : sizeof(c->retry_after) - 1;
        memcpy(c->retry_after, buf + i, vlen);
        c->retry_after[vlen] = '\0';
    }
    return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *userp)
{
    struct ibex_upstream_call *c = userp;
    size_t len = size * n;
    bool was_paused = c->paused;
    int r = upstream_call_data(c, p, len);
    if (r < 0)
        return 0; /* makes curl end the transfer with CURLE_WRITE_ERROR */
    if (r > 0 && !was_paused)
        curl_easy_pause(c->easy, CURLPAUSE_RECV);
    return len;
}

/* ---- API ---- */

/* A handle with the options every call shares. */
static CURL *new_easy(struct ibex_upstream *u)
{
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        return NULL;
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, u);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
    return easy;
}

int ibex_upstream_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void ibex_upstream_global_cleanup(void)
{
    curl_global_cleanup();
}

struct ibex_upstream *ibex_upstream_new(uv_loop_t *loop, bool native_http)
{
    struct ibex_upstream *u = ibex_xcalloc(1, sizeof(*u));
    u->loop = loop;
    u->multi = curl_multi_init();
    if (u->multi == NULL) {
        ibex_log(IBEX_LOG_ERROR, "curl_multi_init failed", NULL);
        abort();
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    u->h1 = native_http ? h1_pool_new(loop) : NULL;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_multi_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return u;
}

static void on_upstream_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void ibex_upstream_free(struct ibex_upstream *u)
{
    if (u == NULL)
        return;
    while (u->calls)
        ibex_upstream_cancel(u->calls);
    h1_pool_free(u->h1);
    for (size_t i = 0; i < u->npool; i++)
        curl_easy_cleanup(u->pool[i]);
    curl_multi_cleanup(u->multi); /* closes every cached connection through on_close_socket */
    free(u->socks);
    uv_close((uv_handle_t *)&u->timer, on_upstream_timer_closed);
}

size_t ibex_upstream_active(const struct ibex_upstream *u)
{
    return u->active;
}

/* libcurl transport: https (and anything not http://). */
static int curl_start(struct ibex_upstream *u, struct ibex_upstream_call *c)
{
    const struct ibex_upstream_request *req = &c->req;
    /* Pooled handles only ever carry POST calls with the same option set, so reuse needs no
     * curl_easy_reset (which frees and reallocates curl's 80 KB of transfer buffers). */
    CURL *easy = req->connect_only || u->npool == 0 ? new_easy(u) : u->pool[--u->npool];
    if (easy == NULL)
        return -1;
    c->easy = easy;
    c->connected = true; /* curl enforces the connect timeout itself */
    for (const char *const *h = req->headers; h && *h; h++)
        c->headers = curl_slist_append(c->headers, *h);
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */

    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)req->timeouts.connect_ms);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
    if (req->connect_only)
        curl_easy_setopt(easy, CURLOPT_CONNECT_ONLY, 1L);
    if (req->body) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L); /* a pooled handle may remember a POST */
    }
    CURLMcode mrc = curl_multi_add_handle(u->multi, easy);
    if (mrc != CURLM_OK) {
        ibex_log(IBEX_LOG_ERROR, "curl_multi_add_handle failed", "curl", curl_multi_strerror(mrc),
                 NULL);
        curl_slist_free_all(c->headers);
        c->headers = NULL;
        curl_easy_cleanup(easy);
        c->easy = NULL;
        return -1;
    }
    return 0;
}

struct ibex_upstream_call *ibex_upstream_start(struct ibex_upstream *u,
                                               const struct ibex_upstream_request *req,
                                               const struct ibex_upstream_callbacks *cb, void *data)
{
    struct ibex_upstream_call *c = ibex_xcalloc(1, sizeof(*c));
    c->u = u;
    c->req = *req;
    c->cb = *cb;
    c->data = data;
    c->t = req->timeouts;
    c->start_ns = ibex_clock_mono_ns();
    c->native = u->h1 != NULL && h1_handles(req->url);
    uv_timer_init(u->loop, &c->timer);
    c->timer.data = c;
    c->next = u->calls;
    if (u->calls)
        u->calls->prev = c;
    u->calls = c;
    u->active++;
    call_arm(c);
    /* Neither transport reports on_done before this returns (failures come from the loop). */
    if ((c->native ? h1_start(u->h1, c) : curl_start(u, c)) != 0) {
        c->native = false;
        release(c);
        uv_close((uv_handle_t *)&c->timer, on_call_closed);
        return NULL;
    }
    return c;
}

void ibex_upstream_resume(struct ibex_upstream_call *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    c->last_byte_ns = ibex_clock_mono_ns();
    call_arm(c);
    if (c->native)
        h1_resume(c);
    else
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
}

void ibex_upstream_cancel(struct ibex_upstream_call *c)
{
    release(c);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

const char *ibex_upstream_retry_after(const struct ibex_upstream_call *c)
{
    return c->retry_after[0] ? c->retry_after : NULL;
}

uint64_t ibex_upstream_started_ns(const struct ibex_upstream_call *c)
{
    return c->start_ns;
}

uint64_t ibex_upstream_first_byte_ns(const struct ibex_upstream_call *c)
{
    return c->first_byte_ns;
}
