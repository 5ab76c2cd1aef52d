/* src/http/server.c over loopback: a real server on a libuv loop in the test thread, and a
 * blocking client socket in a helper thread. The client records what it saw; the test thread
 * asserts once the client is done (cmocka asserts only run on the test thread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>

#include "../../src/core/buf.h"
#include "../../src/core/clock.h"
#include "../../src/http/server.h"
#include "testutil.h"

#define CLIENT_TIMEOUT_MS 5000

/* ---- blocking HTTP client (helper thread) ---- */

struct conn {
    int fd;
    struct ibex_buf in;
    size_t bytes; /* every byte received */
};

struct resp {
    int status;
    char head[4096];
    struct ibex_buf body;
    bool chunked;
    size_t wire_bytes; /* head + framed body as received */
};

static int conn_open_rcvbuf(struct conn *c, int port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    ibex_buf_init(&c->in);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct timeval tv = {CLIENT_TIMEOUT_MS / 1000, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(c->fd);
        c->fd = -1;
        errno = e;
        return -1;
    }
    return 0;
}

static int conn_open(struct conn *c, int port)
{
    return conn_open_rcvbuf(c, port, 0);
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ibex_buf_dispose(&c->in);
}

static int conn_send(struct conn *c, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Reads more bytes into c->in: >0 read, 0 EOF, -1 error or timeout (errno set). */
static ssize_t conn_fill(struct conn *c)
{
    ibex_buf_reserve(&c->in, 16384);
    ssize_t n = recv(c->fd, c->in.p + c->in.len, 16384, 0);
    if (n > 0) {
        c->in.len += (size_t)n;
        c->in.p[c->in.len] = '\0';
        c->bytes += (size_t)n;
    }
    return n;
}

/* Waits until the peer closes: 1 on a clean EOF with nothing more to read, 0 otherwise. */
static int conn_wait_eof(struct conn *c)
{
    if (c->in.len > 0)
        return 0;
    ssize_t n = conn_fill(c);
    return n == 0 ? 1 : 0;
}

static int ensure(struct conn *c, size_t n)
{
    while (c->in.len < n)
        if (conn_fill(c) <= 0)
            return -1;
    return 0;
}

/* Index just past the next CRLF in c->in, reading more as needed; -1 on EOF. */
static long line_end(struct conn *c, size_t from)
{
    for (;;) {
        char *p = c->in.len > from ? memmem(c->in.p + from, c->in.len - from, "\r\n", 2) : NULL;
        if (p)
            return (long)(p - c->in.p) + 2;
        if (conn_fill(c) <= 0)
            return -1;
    }
}

static bool head_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
        l += 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            if (out) {
                if (vl >= outlen)
                    vl = outlen - 1;
                memcpy(out, v, vl);
                out[vl] = '\0';
            }
            return true;
        }
    }
    return false;
}

/* Reads one response (interim 1xx responses included, as responses of their own).
 * Bodies: Content-Length, chunked, or up to EOF. Returns 0 or -1. */
static int read_response(struct conn *c, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    ibex_buf_init(&r->body);
    char *end;
    for (;;) {
        end = c->in.len ? memmem(c->in.p, c->in.len, "\r\n\r\n", 4) : NULL;
        if (end)
            break;
        if (conn_fill(c) <= 0)
            return -1;
    }
    size_t hlen = (size_t)(end - c->in.p) + 4;
    if (hlen >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->in.p, hlen);
    r->head[hlen] = '\0';
    r->wire_bytes = hlen;
    ibex_buf_consume(&c->in, hlen);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    if (r->status < 200)
        return 0;
    char v[64];
    if (head_header(r->head, "content-length", v, sizeof(v))) {
        size_t n = strtoul(v, NULL, 10);
        if (ensure(c, n))
            return -1;
        ibex_buf_append(&r->body, c->in.p, n);
        ibex_buf_consume(&c->in, n);
        r->wire_bytes += n;
        return 0;
    }
    if (head_header(r->head, "transfer-encoding", v, sizeof(v))) {
        if (strcasecmp(v, "chunked") != 0)
            return -1;
        r->chunked = true;
        for (;;) {
            long le = line_end(c, 0);
            if (le < 0)
                return -1;
            size_t size = strtoul(c->in.p, NULL, 16);
            if (ensure(c, (size_t)le + size + 2))
                return -1;
            if (memcmp(c->in.p + le + size, "\r\n", 2) != 0)
                return -1;
            ibex_buf_append(&r->body, c->in.p + le, size);
            ibex_buf_consume(&c->in, (size_t)le + size + 2);
            r->wire_bytes += (size_t)le + size + 2;
            if (size == 0)
                return 0;
        }
    }
    while (conn_fill(c) > 0)
        ;
    ibex_buf_append(&r->body, c->in.p, c->in.len);
    r->wire_bytes += c->in.len;
    ibex_buf_reset(&c->in);
    return 0;
}

static void resp_dispose(struct resp *r)
{
    ibex_buf_dispose(&r->body);
}

/* ---- fixture: server with a scriptable handler ---- */

struct fx {
    uv_loop_t loop;
    struct ibex_http_server *srv;
    int port;
    uv_timer_t timer;
    struct ibex_req *held; /* request the handler has not finished yet */
    int stream_step;
    int handled;
    int max_inflight;
    int aborts;
    int abort_write_rc;
    int drains;
    int done_calls;
    int done_status;
    uint64_t done_bytes_out;
    size_t flood_bytes;
    int flood_rc;
    atomic_int flood_paused;  /* read by the client thread */
    int burst_rc;             /* what the burst's last write returned */
    atomic_int burst_verdict; /* client: 1 nothing arrived while the handler ran, 2 data did */
    int burst_seen;           /* burst_verdict as the handler saw it before returning */
    bool closed;
    bool close_started;
};

static struct ibex_http_config base_cfg(void)
{
    return (struct ibex_http_config){
        .max_header_bytes = 1024,
        .max_headers = 16,
        .max_body_bytes = 1024,
        /* longer than the client's own 5 s socket timeout: a close the test waits for
         * cannot come from a timeout it did not ask for */
        .header_timeout_ms = 30000,
        .body_timeout_ms = 30000,
        .idle_timeout_ms = 30000,
        .write_high_water = 4096,
        .server_header = "ibex-test",
    };
}

static void handler(struct ibex_req *req, void *data);
static void on_done(struct ibex_req *req, void *data)
{
    struct fx *fx = data;
    fx->done_calls++;
    fx->done_status = req->status;
    fx->done_bytes_out = req->bytes_out;
}

static void fx_start(struct fx *fx, struct ibex_http_config cfg)
{
    cfg.handler = handler;
    cfg.on_done = on_done;
    cfg.data = fx;
    fx->srv = ibex_http_server_new(&fx->loop, &cfg);
    assert_int_equal(ibex_http_server_port(fx->srv), 0);
    assert_int_equal(ibex_http_server_listen(fx->srv, "127.0.0.1:0", false), 0);
    fx->port = ibex_http_server_port(fx->srv);
    assert_true(fx->port > 0);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    uv_loop_init(&fx->loop);
    uv_timer_init(&fx->loop, &fx->timer);
    fx->timer.data = fx;
    *state = fx;
    return 0;
}

static void on_server_closed(void *arg)
{
    ((struct fx *)arg)->closed = true;
}

static void fx_close_server(struct fx *fx)
{
    if (fx->srv && !fx->close_started) {
        fx->close_started = true;
        ibex_http_server_close(fx->srv, on_server_closed, fx);
    }
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    int rc = 0;
    if (fx->srv) {
        fx_close_server(fx);
        if (!tu_run_until(&fx->loop, &fx->closed, 5000)) {
            fprintf(stderr, "server did not report closed\n");
            rc = -1;
        } else {
            ibex_http_server_free(fx->srv);
        }
    }
    uv_close((uv_handle_t *)&fx->timer, NULL);
    int open = tu_loop_finish(&fx->loop);
    if (open != 0) {
        fprintf(stderr, "%d libuv handles left open\n", open);
        rc = -1;
    }
    free(fx);
    return rc;
}

/* ---- handler behaviours, chosen by path ---- */

static void send_text(struct ibex_req *req, int status, const char *text)
{
    ibex_res_send(req, status, "text/plain", NULL, text, strlen(text));
}

static void finish_held(struct fx *fx, const char *text)
{
    struct ibex_req *req = fx->held;
    fx->held = NULL;
    uv_timer_stop(&fx->timer);
    if (ibex_res_started(req))
        ibex_res_stream_end(req);
    else
        send_text(req, 200, text);
}

static void on_held_abort(struct ibex_req *req)
{
    struct fx *fx = req->user;
    fx->aborts++;
    fx->abort_write_rc = ibex_res_started(req) ? ibex_res_stream_write(req, "late", 4) : -2;
    finish_held(fx, "aborted");
}

static void hold(struct fx *fx, struct ibex_req *req)
{
    fx->held = req;
    req->user = fx;
    req->on_abort = on_held_abort;
}

static void on_delay_timer(uv_timer_t *t)
{
    finish_held(t->data, "delayed");
}

static void on_stream_timer(uv_timer_t *t)
{
    struct fx *fx = t->data;
    char line[32];
    snprintf(line, sizeof(line), "data: %d\n\n", ++fx->stream_step);
    ibex_res_stream_write(fx->held, line, strlen(line));
    if (fx->stream_step == 4)
        finish_held(fx, NULL);
}

static void on_flood_drain(struct ibex_req *req)
{
    struct fx *fx = req->user;
    fx->drains++;
    ibex_res_stream_write(req, "END", 3);
    fx->flood_bytes += 3;
    fx->held = NULL;
    ibex_res_stream_end(req);
}

static void flood(struct fx *fx, struct ibex_req *req)
{
    static char chunk[65536];
    memset(chunk, 'f', sizeof(chunk));
    hold(fx, req);
    req->on_drain = on_flood_drain;
    ibex_res_stream_start(req, 200, "application/octet-stream", NULL);
    int rc = 0;
    while (rc == 0 && fx->flood_bytes < (64u << 20)) {
        rc = ibex_res_stream_write(req, chunk, sizeof(chunk));
        fx->flood_bytes += sizeof(chunk);
    }
    fx->flood_rc = rc;
    atomic_store(&fx->flood_paused, 1);
}

#define BURST_BIG 5000 /* above base_cfg's write_high_water */

static void on_burst_drain(struct ibex_req *req)
{
    struct fx *fx = req->user;
    fx->drains++;
    fx->held = NULL;
    ibex_res_stream_end(req);
}

/* Three writes in one callback, the last above the high-water mark; the handler then waits for
 * the client to say whether any byte reached it before the callback returned. */
static void burst(struct fx *fx, struct ibex_req *req)
{
    static char big[BURST_BIG];
    memset(big, 'b', sizeof(big));
    hold(fx, req);
    req->on_drain = on_burst_drain;
    ibex_res_stream_start(req, 200, "text/event-stream", NULL);
    ibex_res_stream_write(req, "data: 1\n\n", 9);
    ibex_res_stream_write(req, "data: 2\n\n", 9);
    fx->burst_rc = ibex_res_stream_write(req, big, sizeof(big));
    for (int i = 0; i < 5000 && atomic_load(&fx->burst_verdict) == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    fx->burst_seen = atomic_load(&fx->burst_verdict);
}

static void handler(struct ibex_req *req, void *data)
{
    struct fx *fx = data;
    fx->handled++;
    int inflight = (int)ibex_http_server_inflight(fx->srv);
    if (inflight > fx->max_inflight)
        fx->max_inflight = inflight;
    char path[128];
    snprintf(path, sizeof(path), "%.*s", (int)req->path.len, req->path.p);
    if (!strcmp(path, "/hello")) {
        send_text(req, 200, "hello world");
    } else if (!strcmp(path, "/id")) {
        send_text(req, 200, req->request_id);
    } else if (!strcmp(path, "/echo")) {
        ibex_res_send(req, 200, "application/octet-stream", NULL, req->body.p, req->body.len);
    } else if (!strcmp(path, "/conns")) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", ibex_http_server_connections(fx->srv));
        send_text(req, 200, n);
    } else if (!strcmp(path, "/error")) {
        ibex_res_error(req, 422, "VALIDATION_ERROR", "bad \"model\"", "model",
                       "[{\"field\":\"model\",\"message\":\"is required\"}]", "Retry-After: 3\r\n");
    } else if (!strcmp(path, "/delay")) {
        hold(fx, req);
        uv_timer_start(&fx->timer, on_delay_timer, 100, 0);
    } else if (!strcmp(path, "/drain")) {
        ibex_http_server_drain(fx->srv);
        hold(fx, req);
        uv_timer_start(&fx->timer, on_delay_timer, 150, 0);
    } else if (!strcmp(path, "/stream")) {
        hold(fx, req);
        fx->stream_step = 0;
        ibex_res_stream_start(req, 200, "text/event-stream", NULL);
        ibex_res_stream_write(req, "data: 0\n\n", 9);
        uv_timer_start(&fx->timer, on_stream_timer, 20, 20);
    } else if (!strcmp(path, "/empty-stream")) {
        ibex_res_stream_start(req, 200, "text/event-stream", "X-Extra: yes\r\n");
        ibex_res_stream_end(req);
    } else if (!strcmp(path, "/hang-stream")) {
        hold(fx, req);
        ibex_res_stream_start(req, 200, "text/event-stream", NULL);
        ibex_res_stream_write(req, "first", 5);
    } else if (!strcmp(path, "/hang")) {
        hold(fx, req);
    } else if (!strcmp(path, "/burst")) {
        burst(fx, req);
    } else if (!strcmp(path, "/flood")) {
        flood(fx, req);
    } else if (!strcmp(path, "/reset")) {
        ibex_res_reset(req);
    } else {
        ibex_res_error(req, 404, "NOT_FOUND", "no such route", NULL, NULL, NULL);
    }
}

/* ---- client thread plumbing ---- */

struct client {
    struct fx *fx;
    int port;
    void (*fn)(struct client *);
    uv_async_t async;
    uv_thread_t thread;
    bool done;
    char err[256];    /* first unexpected event, reported by the test thread */
    struct resp r[8]; /* responses, in order */
    int nr;
    int eof[4]; /* conn_wait_eof results */
    int connect_errno;
    ssize_t reset_rc;
    int reset_errno;
    uint64_t elapsed_ms;
    size_t received;
};

#define CHECK(c, cond)                                                                             \
    do {                                                                                           \
        if (!(cond) && (c)->err[0] == '\0')                                                        \
            snprintf((c)->err, sizeof((c)->err), "client: %s (line %d)", #cond, __LINE__);         \
    } while (0)

static void client_main(void *arg)
{
    struct client *c = arg;
    c->fn(c);
    uv_async_send(&c->async);
}

static void on_client_async(uv_async_t *a)
{
    struct client *c = a->data;
    c->done = true;
}

static void client_start(struct fx *fx, struct client *c, void (*fn)(struct client *))
{
    memset(c, 0, sizeof(*c));
    c->fx = fx;
    c->port = fx->port;
    c->fn = fn;
    uv_async_init(&fx->loop, &c->async, on_client_async);
    c->async.data = c;
    uv_thread_create(&c->thread, client_main, c);
}

/* Runs the loop until the client finishes; then reports its first complaint, if any. */
static void client_wait(struct client *c)
{
    bool ok = tu_run_until(&c->fx->loop, &c->done, 20000);
    while (!c->done) /* the client's own socket timeouts bound this */
        uv_run(&c->fx->loop, UV_RUN_ONCE);
    uv_thread_join(&c->thread);
    uv_close((uv_handle_t *)&c->async, NULL);
    uv_run(&c->fx->loop, UV_RUN_NOWAIT);
    assert_true(ok);
    if (c->err[0])
        fail_msg("%s", c->err);
}

static void client_run(struct fx *fx, struct client *c, void (*fn)(struct client *))
{
    client_start(fx, c, fn);
    client_wait(c);
}

static void client_free(struct client *c)
{
    for (int i = 0; i < 8; i++)
        resp_dispose(&c->r[i]);
}

/* Sends req on conn and reads the next response into c->r[c->nr++]. */
static struct resp *exchange(struct client *c, struct conn *k, const char *req)
{
    struct resp *r = &c->r[c->nr < 7 ? c->nr++ : 7];
    if (req && conn_send(k, req) != 0) {
        CHECK(c, !"send failed");
        memset(r, 0, sizeof(*r));
        return r;
    }
    if (read_response(k, r) != 0)
        CHECK(c, !"no complete response");
    return r;
}

static const char *hdr(struct resp *r, const char *name)
{
    static char v[512];
    return head_header(r->head, name, v, sizeof(v)) ? v : NULL;
}

static const char *body(struct resp *r)
{
    return r->body.p ? r->body.p : "";
}

/* ---- tests ---- */

static void cl_hello(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    c->received = k.bytes;
    CHECK(c, k.in.len == 0); /* nothing beyond the declared length */
    conn_close(&k);
}

static void test_response_framing(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_hello);
    struct resp *r = &c.r[0];
    assert_int_equal(r->status, 200);
    assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_string_equal(hdr(r, "content-length"), "11");
    assert_false(r->chunked);
    assert_string_equal(body(r), "hello world");
    assert_string_equal(hdr(r, "content-type"), "text/plain");
    assert_string_equal(hdr(r, "server"), "ibex-test");
    assert_null(hdr(r, "connection")); /* HTTP/1.1 keep-alive is implicit */
    const char *id = hdr(r, "x-request-id");
    assert_non_null(id);
    assert_true(ibex_id_is_uuid(id, strlen(id)));
    /* the done hook saw the request with its status and exact byte count */
    assert_int_equal(fx->done_calls, 1);
    assert_int_equal(fx->done_status, 200);
    assert_int_equal(fx->done_bytes_out, c.received);
    client_free(&c);
}

static char long_id[130];

static void cl_request_ids(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    char req[512];
    const char *ids[] = {"abc-123_x.y:Z", "bad id", "a/b", long_id + 1, long_id};
    for (int i = 0; i < 5; i++) {
        snprintf(req, sizeof(req), "GET /id HTTP/1.1\r\nX-Request-ID: %s\r\n\r\n", ids[i]);
        exchange(c, &k, req);
    }
    exchange(c, &k, "GET /id HTTP/1.1\r\n\r\n");
    conn_close(&k);
}

static void test_request_id_echo_and_replace(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    memset(long_id, 'r', 129); /* long_id: 129 chars, long_id + 1: 128 chars */
    long_id[129] = '\0';
    struct client c;
    client_run(fx, &c, cl_request_ids);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c.r[i].status, 200);
        /* the header and the handler's req->request_id agree */
        assert_string_equal(hdr(&c.r[i], "x-request-id"), body(&c.r[i]));
    }
    assert_string_equal(body(&c.r[0]), "abc-123_x.y:Z");
    assert_true(ibex_id_is_uuid(body(&c.r[1]), strlen(body(&c.r[1])))); /* space */
    assert_true(ibex_id_is_uuid(body(&c.r[2]), strlen(body(&c.r[2])))); /* slash */
    assert_string_equal(body(&c.r[3]), long_id + 1);                    /* 128: kept */
    assert_true(ibex_id_is_uuid(body(&c.r[4]), strlen(body(&c.r[4])))); /* 129: replaced */
    assert_true(ibex_id_is_uuid(body(&c.r[5]), strlen(body(&c.r[5])))); /* absent */
    assert_string_not_equal(body(&c.r[1]), body(&c.r[2]));
    client_free(&c);
}

static void cl_keep_alive(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    exchange(c, &k, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd");
    exchange(c, &k, "GET /conns HTTP/1.1\r\n\r\n");
    conn_close(&k);
}

static void test_keep_alive_sequential(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_keep_alive);
    assert_int_equal(c.r[0].status, 200);
    assert_string_equal(body(&c.r[0]), "hello world");
    assert_string_equal(body(&c.r[1]), "abcd");
    assert_string_equal(body(&c.r[2]), "1"); /* all three on one connection */
    assert_int_equal(fx->handled, 3);
    client_free(&c);
}

static void cl_pipeline(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /delay HTTP/1.1\r\n\r\n"
                           "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                           "GET /id HTTP/1.1\r\nX-Request-ID: third\r\n\r\n") == 0);
    for (int i = 0; i < 3; i++)
        exchange(c, &k, NULL);
    conn_close(&k);
}

static void test_pipelining_in_order(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_pipeline);
    assert_string_equal(body(&c.r[0]), "delayed");
    assert_string_equal(body(&c.r[1]), "xyz");
    assert_string_equal(body(&c.r[2]), "third");
    assert_int_equal(fx->handled, 3);
    assert_int_equal(fx->max_inflight, 1); /* one at a time */
    client_free(&c);
}

static char big_header_req[8192];

static void cl_send_and_read_then_eof(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, big_header_req);
    c->eof[0] = conn_wait_eof(&k);
    conn_close(&k);
}

/* Checks an error response from the server itself: JSON body with the code, then close. */
static void assert_conn_error(struct fx *fx, struct client *c, int status, const char *code)
{
    struct resp *r = &c->r[0];
    assert_int_equal(r->status, status);
    assert_string_equal(hdr(r, "connection"), "close");
    json_object *o = tu_parse_json(r->body.p, r->body.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "error.code"), code);
    assert_string_equal(tu_json_str(o, "error.request_id"), hdr(r, "x-request-id"));
    json_object_put(o);
    assert_int_equal(c->eof[0], 1);
    assert_int_equal(fx->handled, 0);
    assert_int_equal(fx->done_calls, 1); /* accounted like any request */
    assert_int_equal(fx->done_status, status);
}

static void test_431_over_the_wire(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    char val[4000];
    memset(val, 'h', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    snprintf(big_header_req, sizeof(big_header_req), "GET /hello HTTP/1.1\r\nX-Big: %s\r\n\r\n",
             val);
    struct client c;
    client_run(fx, &c, cl_send_and_read_then_eof);
    assert_conn_error(fx, &c, 431, "HEADERS_TOO_LARGE");
    client_free(&c);
}

static void test_413_before_the_body(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    /* the body is never sent: the answer must come from the headers alone */
    snprintf(big_header_req, sizeof(big_header_req),
             "POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
    struct client c;
    client_run(fx, &c, cl_send_and_read_then_eof);
    assert_conn_error(fx, &c, 413, "BODY_TOO_LARGE");
    client_free(&c);
}

static void test_400_malformed(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    snprintf(big_header_req, sizeof(big_header_req), "NOT HTTP AT ALL\r\n\r\n");
    struct client c;
    client_run(fx, &c, cl_send_and_read_then_eof);
    assert_conn_error(fx, &c, 400, "BAD_REQUEST");
    client_free(&c);
}

static void cl_partial_then_wait(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    uint64_t t0 = ibex_clock_mono_ns();
    exchange(c, &k, big_header_req);
    c->elapsed_ms = (ibex_clock_mono_ns() - t0) / 1000000;
    c->eof[0] = conn_wait_eof(&k);
    conn_close(&k);
}

static void test_header_timeout_408(void **state)
{
    struct fx *fx = *state;
    struct ibex_http_config cfg = base_cfg();
    cfg.header_timeout_ms = 200;
    fx_start(fx, cfg);
    snprintf(big_header_req, sizeof(big_header_req), "GET /hello HTTP/1.1\r\nHost: slow\r\n");
    struct client c;
    client_run(fx, &c, cl_partial_then_wait);
    assert_conn_error(fx, &c, 408, "REQUEST_TIMEOUT");
    assert_in_range(c.elapsed_ms, 150, 3000);
    client_free(&c);
}

static void test_body_timeout_408(void **state)
{
    struct fx *fx = *state;
    struct ibex_http_config cfg = base_cfg();
    cfg.body_timeout_ms = 200;
    fx_start(fx, cfg);
    snprintf(big_header_req, sizeof(big_header_req),
             "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    struct client c;
    client_run(fx, &c, cl_partial_then_wait);
    assert_conn_error(fx, &c, 408, "REQUEST_TIMEOUT");
    assert_in_range(c.elapsed_ms, 150, 3000);
    client_free(&c);
}

static void cl_idle(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.1\r\n\r\n");
    uint64_t t0 = ibex_clock_mono_ns();
    c->eof[0] = conn_wait_eof(&k);
    c->elapsed_ms = (ibex_clock_mono_ns() - t0) / 1000000;
    conn_close(&k);
}

static void test_idle_keep_alive_closed(void **state)
{
    struct fx *fx = *state;
    struct ibex_http_config cfg = base_cfg();
    cfg.idle_timeout_ms = 250;
    fx_start(fx, cfg);
    struct client c;
    client_run(fx, &c, cl_idle);
    assert_int_equal(c.r[0].status, 200);
    assert_int_equal(c.eof[0], 1);
    assert_in_range(c.elapsed_ms, 200, 3000);
    client_free(&c);
}

static void cl_expect_continue(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    struct resp *interim = exchange(c, &k,
                                    "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                                    "Content-Length: 5\r\n\r\n");
    CHECK(c, interim->status == 100);
    CHECK(c, conn_send(&k, "hello") == 0);
    exchange(c, &k, NULL);
    conn_close(&k);
}

static void test_expect_100_continue(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_expect_continue);
    assert_int_equal(c.r[0].status, 100);
    assert_int_equal(c.r[1].status, 200);
    assert_string_equal(body(&c.r[1]), "hello");
    client_free(&c);
}

static void cl_error(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /error HTTP/1.1\r\n\r\n");
    exchange(c, &k, "GET /nowhere HTTP/1.1\r\n\r\n");
    conn_close(&k);
}

static void test_error_body_shape(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_error);
    struct resp *r = &c.r[0];
    assert_int_equal(r->status, 422);
    assert_string_equal(hdr(r, "content-type"), "application/json");
    assert_string_equal(hdr(r, "retry-after"), "3");
    json_object *o = tu_parse_json(r->body.p, r->body.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "error.message"), "bad \"model\"");
    assert_string_equal(tu_json_str(o, "error.type"), "invalid_request_error");
    assert_string_equal(tu_json_str(o, "error.code"), "VALIDATION_ERROR");
    assert_string_equal(tu_json_str(o, "error.param"), "model");
    assert_string_equal(tu_json_str(o, "error.request_id"), hdr(r, "x-request-id"));
    json_object *err = NULL, *fe = NULL;
    assert_true(json_object_object_get_ex(o, "error", &err));
    assert_true(json_object_object_get_ex(err, "field_errors", &fe));
    assert_int_equal(json_object_array_length(fe), 1);
    json_object_put(o);
    /* param is null when not given, and the connection stays usable after a handler error */
    r = &c.r[1];
    assert_int_equal(r->status, 404);
    o = tu_parse_json(r->body.p, r->body.len);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "error", &err));
    json_object *param = (json_object *)1;
    assert_true(json_object_object_get_ex(err, "param", &param));
    assert_null(param);
    assert_string_equal(tu_json_str(o, "error.type"), "not_found_error");
    json_object_put(o);
    client_free(&c);
}

static void cl_connection_close(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    c->eof[0] = conn_wait_eof(&k);
    conn_close(&k);
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.0\r\n\r\n");
    c->eof[1] = conn_wait_eof(&k);
    conn_close(&k);
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    exchange(c, &k, "GET /conns HTTP/1.0\r\n\r\n");
    c->eof[2] = conn_wait_eof(&k);
    conn_close(&k);
}

static void test_connection_close_and_http10(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_connection_close);
    assert_string_equal(hdr(&c.r[0], "connection"), "close");
    assert_int_equal(c.eof[0], 1);
    assert_string_equal(hdr(&c.r[1], "connection"), "close");
    assert_int_equal(c.eof[1], 1);
    assert_string_equal(hdr(&c.r[2], "connection"), "keep-alive");
    assert_string_equal(body(&c.r[3]), "1"); /* same connection */
    assert_string_equal(hdr(&c.r[3], "connection"), "close");
    assert_int_equal(c.eof[2], 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.r[i].status, 200);
    client_free(&c);
}

static void cl_stream(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /stream HTTP/1.1\r\n\r\n");
    exchange(c, &k, "GET /hello HTTP/1.1\r\n\r\n"); /* still usable */
    exchange(c, &k, "GET /empty-stream HTTP/1.1\r\n\r\n");
    exchange(c, &k, "GET /hello HTTP/1.1\r\n\r\n");
    conn_close(&k);
    CHECK(c, conn_open(&k, c->port) == 0);
    exchange(c, &k, "GET /stream HTTP/1.0\r\n\r\n");
    c->eof[0] = conn_wait_eof(&k);
    conn_close(&k);
}

static void test_streaming_chunked(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_stream);
    const char *want = "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n";
    struct resp *r = &c.r[0];
    assert_int_equal(r->status, 200);
    assert_true(r->chunked);
    assert_null(hdr(r, "content-length"));
    assert_string_equal(hdr(r, "content-type"), "text/event-stream");
    assert_string_equal(body(r), want);
    assert_string_equal(body(&c.r[1]), "hello world");
    /* a stream with no data is a complete, empty chunked body */
    assert_int_equal(c.r[2].status, 200);
    assert_true(c.r[2].chunked);
    assert_int_equal(c.r[2].body.len, 0);
    assert_string_equal(hdr(&c.r[2], "x-extra"), "yes");
    assert_string_equal(body(&c.r[3]), "hello world");
    /* HTTP/1.0 has no chunked encoding: the body ends with the connection */
    r = &c.r[4];
    assert_int_equal(r->status, 200);
    assert_false(r->chunked);
    assert_null(hdr(r, "transfer-encoding"));
    assert_string_equal(body(r), want);
    client_free(&c);
}

static void cl_flood(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open_rcvbuf(&k, c->port, 4096) == 0);
    CHECK(c, conn_send(&k, "GET /flood HTTP/1.1\r\n\r\n") == 0);
    /* do not read until the server reports back-pressure */
    for (int i = 0; i < 10000 && !atomic_load(&c->fx->flood_paused); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(c, atomic_load(&c->fx->flood_paused));
    exchange(c, &k, NULL);
    conn_close(&k);
}

static void test_stream_write_high_water(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_flood);
    assert_int_equal(fx->flood_rc, 1);
    assert_true(fx->flood_bytes < (64u << 20));
    assert_int_equal(fx->drains, 1); /* on_drain once the client read */
    struct resp *r = &c.r[0];
    assert_int_equal(r->status, 200);
    /* everything queued above the mark was still delivered, in order */
    assert_int_equal(r->body.len, fx->flood_bytes);
    assert_memory_equal(r->body.p + r->body.len - 3, "END", 3);
    assert_int_equal(r->body.p[0], 'f');
    assert_int_equal(r->body.p[r->body.len - 4], 'f');
    client_free(&c);
}

static void cl_burst(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /burst HTTP/1.1\r\n\r\n") == 0);
    struct pollfd p = {.fd = k.fd, .events = POLLIN};
    atomic_store(&c->fx->burst_verdict, poll(&p, 1, 300) == 0 ? 1 : 2);
    CHECK(c, conn_fill(&k) > 0);
    c->received = k.in.len; /* the first read */
    exchange(c, &k, NULL);
    conn_close(&k);
}

/* A stream's writes during one loop callback reach the client together, after the callback,
 * in one write; a write above the high-water mark still gets its on_drain when the kernel took
 * everything at once. */
static void test_stream_writes_coalesce(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_burst);
    assert_int_equal(fx->burst_seen, 1); /* nothing was written inside the callback */
    assert_int_equal(fx->burst_rc, 1);
    assert_int_equal(fx->drains, 1);
    struct resp *r = &c.r[0];
    assert_int_equal(r->status, 200);
    assert_true(r->chunked);
    assert_int_equal(r->body.len, 18 + BURST_BIG);
    assert_memory_equal(r->body.p, "data: 1\n\ndata: 2\n\nbbb", 21);
    /* head and the three chunks came in the first read; only the last chunk may lag */
    assert_true(c.received >= r->wire_bytes - 5);
    client_free(&c);
}

static void cl_abort_mid_stream(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /hang-stream HTTP/1.1\r\n\r\n") == 0);
    /* read the head and the first chunk, then go away */
    while (memmem(k.in.p ? k.in.p : "", k.in.len, "first", 5) == NULL)
        if (conn_fill(&k) <= 0)
            break;
    CHECK(c, k.in.len > 0);
    conn_close(&k);
}

static void test_on_abort_when_client_leaves(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_abort_mid_stream);
    for (int i = 0; i < 100 && fx->aborts == 0; i++)
        tu_run_for(&fx->loop, 20);
    assert_int_equal(fx->aborts, 1);
    assert_int_equal(fx->abort_write_rc, -1); /* writes after the client left */
    assert_int_equal(fx->done_calls, 1);
    assert_int_equal(ibex_http_server_inflight(fx->srv), 0);
    assert_int_equal(ibex_http_server_connections(fx->srv), 0);
    client_free(&c);
}

static void cl_abort_before_response(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /hang HTTP/1.1\r\n\r\n") == 0);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    conn_close(&k);
}

static void test_on_abort_before_response(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_abort_before_response);
    for (int i = 0; i < 100 && fx->aborts == 0; i++)
        tu_run_for(&fx->loop, 20);
    assert_int_equal(fx->aborts, 1);
    assert_int_equal(fx->abort_write_rc, -2); /* nothing was started */
    assert_int_equal(fx->done_calls, 1);
    assert_int_equal(ibex_http_server_inflight(fx->srv), 0);
    assert_int_equal(ibex_http_server_connections(fx->srv), 0);
    client_free(&c);
}

static void cl_drain(struct client *c)
{
    struct conn a, b, z;
    CHECK(c, conn_open(&a, c->port) == 0);
    exchange(c, &a, "GET /hello HTTP/1.1\r\n\r\n"); /* a is now idle */
    CHECK(c, conn_open(&b, c->port) == 0);
    CHECK(c, conn_send(&b, "GET /drain HTTP/1.1\r\n\r\n") == 0);
    uint64_t t0 = ibex_clock_mono_ns();
    c->eof[0] = conn_wait_eof(&a); /* idle: closed at once */
    c->elapsed_ms = (ibex_clock_mono_ns() - t0) / 1000000;
    exchange(c, &b, NULL); /* in flight: finishes */
    c->eof[1] = conn_wait_eof(&b);
    c->connect_errno = conn_open(&z, c->port) == 0 ? 0 : errno;
    if (c->connect_errno == 0)
        conn_close(&z);
    conn_close(&a);
    conn_close(&b);
}

static void test_drain(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_drain);
    assert_int_equal(c.r[0].status, 200);
    assert_int_equal(c.eof[0], 1);
    assert_true(c.elapsed_ms < 1000); /* before the in-flight reply (150 ms) or soon after */
    assert_int_equal(c.r[1].status, 200);
    assert_string_equal(body(&c.r[1]), "delayed");
    assert_string_equal(hdr(&c.r[1], "connection"), "close");
    assert_int_equal(c.eof[1], 1);
    assert_int_equal(c.connect_errno, ECONNREFUSED);
    for (int i = 0; i < 50 && ibex_http_server_connections(fx->srv) > 0; i++)
        tu_run_for(&fx->loop, 20);
    assert_int_equal(ibex_http_server_connections(fx->srv), 0);
    client_free(&c);
}

static void cl_hang_until_closed(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /hang HTTP/1.1\r\n\r\n") == 0);
    c->eof[0] = conn_wait_eof(&k);
    conn_close(&k);
}

static void test_close_with_request_in_flight(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_start(fx, &c, cl_hang_until_closed);
    for (int i = 0; i < 250 && fx->handled == 0; i++)
        tu_run_for(&fx->loop, 20);
    assert_int_equal(fx->handled, 1);
    assert_int_equal(ibex_http_server_inflight(fx->srv), 1);
    fx_close_server(fx);
    assert_true(tu_run_until(&fx->loop, &fx->closed, 5000));
    assert_int_equal(fx->aborts, 1); /* the handler was told */
    assert_int_equal(ibex_http_server_inflight(fx->srv), 0);
    assert_int_equal(ibex_http_server_connections(fx->srv), 0);
    client_wait(&c);
    assert_int_equal(c.eof[0], 1);
    client_free(&c);
}

static void cl_reset(struct client *c)
{
    struct conn k;
    CHECK(c, conn_open(&k, c->port) == 0);
    CHECK(c, conn_send(&k, "GET /reset HTTP/1.1\r\n\r\n") == 0);
    c->reset_rc = conn_fill(&k);
    c->reset_errno = errno;
    conn_close(&k);
}

static void test_reset(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct client c;
    client_run(fx, &c, cl_reset);
    assert_int_equal(c.reset_rc, -1);
    assert_int_equal(c.reset_errno, ECONNRESET);
    assert_int_equal(fx->done_calls, 1);
    client_free(&c);
}

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

static void test_listen_errors(void **state)
{
    struct fx *fx = *state;
    fx_start(fx, base_cfg());
    struct ibex_http_config cfg = base_cfg();
    cfg.handler = handler;
    struct ibex_http_server *other = ibex_http_server_new(&fx->loop, &cfg);
    assert_true(ibex_http_server_listen(other, "no-port", false) < 0);
    assert_true(ibex_http_server_listen(other, "127.0.0.1:99999", false) < 0);
    assert_true(ibex_http_server_listen(other, "127.0.0.1:", false) < 0);
    assert_true(ibex_http_server_listen(other, "not.an.ip:80", false) < 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx->port);
    assert_int_equal(ibex_http_server_listen(other, addr, false), -EADDRINUSE);
    assert_int_equal(ibex_http_server_port(other), 0);
    bool closed = false;
    ibex_http_server_close(other, set_flag, &closed);
    tu_run_until(&fx->loop, &closed, 2000);
    ibex_http_server_free(other);
    assert_true(closed);
}

static void test_reason_and_error_type(void **state)
{
    assert_string_equal(ibex_http_reason(200), "OK");
    assert_string_equal(ibex_http_reason(404), "Not Found");
    assert_string_equal(ibex_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(ibex_http_reason(799), "Unknown");
    assert_string_equal(ibex_http_error_type(400), "invalid_request_error");
    assert_string_equal(ibex_http_error_type(401), "authentication_error");
    assert_string_equal(ibex_http_error_type(429), "rate_limit_error");
    assert_string_equal(ibex_http_error_type(500), "server_error");
    assert_string_equal(ibex_http_error_type(503), "server_error");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_response_framing),
        T(test_request_id_echo_and_replace),
        T(test_keep_alive_sequential),
        T(test_pipelining_in_order),
        T(test_431_over_the_wire),
        T(test_413_before_the_body),
        T(test_400_malformed),
        T(test_header_timeout_408),
        T(test_body_timeout_408),
        T(test_idle_keep_alive_closed),
        T(test_expect_100_continue),
        T(test_error_body_shape),
        T(test_connection_close_and_http10),
        T(test_streaming_chunked),
        T(test_stream_write_high_water),
        T(test_stream_writes_coalesce),
        T(test_on_abort_when_client_leaves),
        T(test_on_abort_before_response),
        T(test_drain),
        T(test_close_with_request_in_flight),
        T(test_reset),
        T(test_listen_errors),
        cmocka_unit_test(test_reason_and_error_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
