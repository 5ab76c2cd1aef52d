/* HTTP/1.1 server on one libuv loop.
 *
 * Invariants:
 * - A connection has at most one request in the handler (conn->req); bytes that arrive
 *   meanwhile (pipelining) wait in conn->in and are parsed once the response is finished.
 * - A connection is freed only when both of its handles are closed and no request is in the
 *   handler; on_abort runs from the close callback, never inside a write or read call chain.
 * - Responses are written with uv_try_write first; only what the kernel did not take is copied
 *   into a uv_write request, so a fast client costs no allocation per write.
 * - A streaming response's chunks collect in conn->out and go out in one write per loop
 *   iteration (the flush idle handle), so an upstream read that carried many events costs the
 *   client one wake-up, not one per event. A connection is on srv->flushing exactly while it
 *   is queued for that write; conn_close takes it off.
 * - Error responses and Connection: close end with a shutdown and a short lingering read, so
 *   the client reads the response before the connection goes away. */
#include "server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "parser.h"

#define READ_CHUNK 16384
#define PIPELINE_READ_CAP (1u << 20) /* stop reading while this much waits behind a request */
#define LINGER_MS 2000
#define OUT_KEEP_CAP 16384 /* conn->out capacity a connection keeps between responses */

enum timer_kind {
    TIMER_NONE = 0,
    TIMER_IDLE,
    TIMER_HEADER,
    TIMER_BODY,
    TIMER_LINGER,
};

struct ibex_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct ibex_http_server *srv;
    struct ibex_conn *prev, *next;
    struct ibex_http_parser parser;
    struct ibex_arena *arena;
    struct ibex_buf in;
    struct ibex_req *req; /* in the handler, or NULL */
    struct ibex_buf out;  /* a streaming response's bytes not yet written (its head included) */
    struct ibex_conn *flush_prev, *flush_next; /* on srv->flushing, or NULL */
    enum timer_kind timer_kind;
    int handles_open;
    int http_minor;
    bool closing;
    bool lingering;
    bool reading;
    bool in_process;
    bool sent_continue;
    bool res_started;
    bool res_chunked;
    bool res_keep_alive;
    bool want_drain;
    bool abort_pending; /* on_abort still owed to the handler */
};

struct ibex_http_server {
    uv_loop_t *loop;
    struct ibex_http_config cfg;
    struct ibex_http_limits limits;
    uv_tcp_t listener;
    bool listening;
    bool listener_open;
    bool draining;
    bool closing;
    int port;
    struct ibex_conn conns;    /* list sentinel */
    struct ibex_conn flushing; /* sentinel: connections with stream output to write */
    uv_idle_t flush;           /* writes them once per loop iteration, while there are any */
    bool flush_open;
    size_t nconns;
    size_t inflight;
    struct ibex_buf scratch; /* response heads; the loop is single-threaded */
    void (*on_closed)(void *);
    void *on_closed_arg;
};

struct write_req {
    uv_write_t w;
    struct ibex_conn *conn;
    char data[];
};

static void conn_close(struct ibex_conn *c, bool reset);
static void flush_cancel(struct ibex_conn *c);
static void conn_process(struct ibex_conn *c);
static void conn_shutdown(struct ibex_conn *c);
static void conn_set_reading(struct ibex_conn *c, bool on);
static void on_timer(uv_timer_t *t);

/* ---- status tables ---- */

const char *ibex_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

const char *ibex_http_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 408:
        return "timeout_error";
    case 409:
        return "conflict_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* ---- server ---- */

struct ibex_http_server *ibex_http_server_new(uv_loop_t *loop, const struct ibex_http_config *cfg)
{
    struct ibex_http_server *srv = ibex_xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->limits.max_header_bytes = cfg->max_header_bytes;
    srv->limits.max_headers = cfg->max_headers;
    srv->limits.max_body_bytes = cfg->max_body_bytes;
    srv->conns.next = srv->conns.prev = &srv->conns;
    srv->flushing.flush_next = srv->flushing.flush_prev = &srv->flushing;
    ibex_buf_init(&srv->scratch);
    return srv;
}

static int parse_host_port(const char *host_port, struct sockaddr_storage *ss)
{
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || colon[1] == '\0')
        return -EINVAL;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end != '\0' || port < 0 || port > 65535)
        return -EINVAL;
    size_t hlen = (size_t)(colon - host_port);
    char host[64];
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, host_port, hlen);
    host[hlen] = '\0';
    if (host[0] == '[') {
        if (hlen < 3 || host[hlen - 1] != ']')
            return -EINVAL;
        host[hlen - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss);
    }
    if (strcmp(host, "localhost") == 0)
        return uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)ss);
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

static void on_connection(uv_stream_t *listener, int status);

int ibex_http_server_listen(struct ibex_http_server *srv, const char *host_port, bool reuseport)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int r = parse_host_port(host_port, &ss);
    if (r < 0)
        return r;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        r = -errno;
        goto fail;
    }
    socklen_t slen =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, slen) != 0) {
        r = -errno;
        goto fail;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = true;
    r = uv_tcp_open(&srv->listener, fd);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 4096, on_connection);
    if (r != 0) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listener_open = false;
        return r;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen) == 0)
        srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                      : ((struct sockaddr_in *)&bound)->sin_port);
    srv->listening = true;
    return 0;
fail:
    close(fd);
    return r;
}

int ibex_http_server_port(const struct ibex_http_server *srv)
{
    return srv->listening ? srv->port : 0;
}

size_t ibex_http_server_connections(const struct ibex_http_server *srv)
{
    return srv->nconns;
}

size_t ibex_http_server_inflight(const struct ibex_http_server *srv)
{
    return srv->inflight;
}

static void maybe_closed(struct ibex_http_server *srv)
{
    if (srv->closing && !srv->listener_open && !srv->flush_open && srv->nconns == 0 &&
        srv->on_closed) {
        void (*cb)(void *) = srv->on_closed;
        srv->on_closed = NULL;
        cb(srv->on_closed_arg);
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct ibex_http_server *srv = h->data;
    srv->listener_open = false;
    maybe_closed(srv);
}

static void stop_listening(struct ibex_http_server *srv)
{
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    }
}

static bool conn_idle(const struct ibex_conn *c)
{
    return c->req == NULL && !ibex_http_parser_started(&c->parser) && c->in.len == 0;
}

void ibex_http_server_drain(struct ibex_http_server *srv)
{
    srv->draining = true;
    stop_listening(srv);
    struct ibex_conn *c = srv->conns.next;
    while (c != &srv->conns) {
        struct ibex_conn *next = c->next;
        if (!c->closing && conn_idle(c))
            conn_close(c, false);
        c = next;
    }
}

static void on_flush_closed(uv_handle_t *h)
{
    struct ibex_http_server *srv = h->data;
    srv->flush_open = false;
    maybe_closed(srv);
}

void ibex_http_server_close(struct ibex_http_server *srv, void (*on_closed)(void *), void *arg)
{
    srv->closing = true;
    srv->draining = true;
    srv->on_closed = on_closed;
    srv->on_closed_arg = arg;
    stop_listening(srv);
    struct ibex_conn *c = srv->conns.next;
    while (c != &srv->conns) {
        struct ibex_conn *next = c->next;
        conn_close(c, false);
        c = next;
    }
    if (srv->flush_open && !uv_is_closing((uv_handle_t *)&srv->flush))
        uv_close((uv_handle_t *)&srv->flush, on_flush_closed);
    maybe_closed(srv);
}

void ibex_http_server_free(struct ibex_http_server *srv)
{
    if (srv == NULL)
        return;
    assert(srv->nconns == 0 && !srv->listener_open && !srv->flush_open);
    ibex_buf_dispose(&srv->scratch);
    free(srv);
}

/* ---- connections ---- */

static void timer_set(struct ibex_conn *c, enum timer_kind kind, uint64_t ms)
{
    c->timer_kind = kind;
    if (kind == TIMER_NONE || ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_free(struct ibex_conn *c)
{
    struct ibex_http_server *srv = c->srv;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    srv->nconns--;
    ibex_http_parser_dispose(&c->parser);
    ibex_buf_dispose(&c->out);
    ibex_arena_free(c->arena);
    ibex_buf_dispose(&c->in);
    free(c);
    maybe_closed(srv);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct ibex_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    if (c->req == NULL) {
        conn_free(c);
        return;
    }
    /* The handler still owns a request: tell it, and free on its finishing call. */
    if (c->abort_pending) {
        c->abort_pending = false;
        if (c->req->on_abort)
            c->req->on_abort(c->req);
    }
}

static void conn_close(struct ibex_conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    c->abort_pending = c->req != NULL;
    flush_cancel(c);
    ibex_buf_reset(&c->out);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (reset)
        uv_tcp_close_reset(&c->tcp, on_handle_closed);
    else
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct ibex_conn *c = sr->data;
    if (status < 0 || c->closing) {
        conn_close(c, false);
        return;
    }
    /* Read (and drop) what the client still sends until it closes, or the linger timer. */
    timer_set(c, TIMER_LINGER, LINGER_MS);
}

static void conn_shutdown(struct ibex_conn *c)
{
    if (c->closing || c->lingering)
        return;
    c->lingering = true;
    ibex_buf_reset(&c->in);
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c, false);
        return;
    }
    conn_set_reading(c, true);
}

/* Tells a paused producer to go on once the write queue fell to half the high-water mark. */
static void drain_check(struct ibex_conn *c)
{
    if (c->want_drain && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <=
                             c->srv->cfg.write_high_water / 2) {
        c->want_drain = false;
        if (c->req && c->req->on_drain)
            c->req->on_drain(c->req);
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    struct ibex_conn *c = wr->conn;
    free(wr);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    drain_check(c);
}

/* Queues bufs on the connection. Returns 0, 1 above the high-water mark, -1 when closed. */
static int conn_write(struct ibex_conn *c, uv_buf_t *bufs, unsigned int n)
{
    if (c->closing)
        return -1;
    size_t total = 0;
    for (unsigned int i = 0; i < n; i++)
        total += bufs[i].len;
    if (c->req)
        c->req->bytes_out += total;
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    size_t done = 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        int r = uv_try_write(s, bufs, n);
        if (r < 0 && r != UV_EAGAIN) {
            conn_close(c, false);
            return -1;
        }
        if (r > 0)
            done = (size_t)r;
        if (done == total)
            return 0;
    }
    struct write_req *wr = ibex_xmalloc(sizeof(*wr) + (total - done));
    wr->conn = c;
    size_t off = 0, skip = done;
    for (unsigned int i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        const char *p = bufs[i].base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        p += skip;
        len -= skip;
        skip = 0;
        memcpy(wr->data + off, p, len);
        off += len;
    }
    uv_buf_t b = uv_buf_init(wr->data, (unsigned int)off);
    if (uv_write(&wr->w, s, &b, 1, on_write) != 0) {
        free(wr);
        conn_close(c, false);
        return -1;
    }
    if (uv_stream_get_write_queue_size(s) > c->srv->cfg.write_high_water) {
        c->want_drain = true;
        return 1;
    }
    return 0;
}

static bool valid_request_id(struct ibex_str v)
{
    if (v.len == 0 || v.len > IBEX_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char ch = v.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

static void set_request_id(struct ibex_req *req)
{
    struct ibex_str v = ibex_req_header(req, "x-request-id");
    if (v.p && valid_request_id(v)) {
        memcpy(req->request_id, v.p, v.len);
        req->request_id[v.len] = '\0';
    } else {
        ibex_id_uuid4(req->request_id);
    }
}

/* Appends the status line and common headers; body framing is the caller's. */
static void build_head(struct ibex_conn *c, struct ibex_buf *b, int status, const char *request_id,
                       const char *content_type, const char *extra_headers,
                       const char *request_headers, bool keep_alive)
{
    /* Plain appends, no printf: this runs for every response. */
    ibex_buf_reset(b);
    ibex_buf_append_cstr(b, "HTTP/1.1 ");
    ibex_buf_append_u64(b, (uint64_t)status);
    ibex_buf_append_cstr(b, " ");
    ibex_buf_append_cstr(b, ibex_http_reason(status));
    ibex_buf_append_cstr(b, "\r\n");
    if (c->srv->cfg.server_header) {
        ibex_buf_append_cstr(b, "Server: ");
        ibex_buf_append_cstr(b, c->srv->cfg.server_header);
        ibex_buf_append_cstr(b, "\r\n");
    }
    if (content_type) {
        ibex_buf_append_cstr(b, "Content-Type: ");
        ibex_buf_append_cstr(b, content_type);
        ibex_buf_append_cstr(b, "\r\n");
    }
    if (request_id && request_id[0]) {
        ibex_buf_append_cstr(b, "X-Request-ID: ");
        ibex_buf_append_cstr(b, request_id);
        ibex_buf_append_cstr(b, "\r\n");
    }
    if (!keep_alive)
        ibex_buf_append_cstr(b, "Connection: close\r\n");
    else if (c->http_minor == 0)
        ibex_buf_append_cstr(b, "Connection: keep-alive\r\n");
    if (request_headers)
        ibex_buf_append_cstr(b, request_headers);
    if (extra_headers)
        ibex_buf_append_cstr(b, extra_headers);
}

static bool response_keep_alive(struct ibex_conn *c)
{
    return c->req->keep_alive && !c->srv->draining;
}

static void finish_request(struct ibex_conn *c, int status)
{
    struct ibex_http_server *srv = c->srv;
    struct ibex_req *req = c->req;
    assert(req != NULL);
    req->status = status;
    bool keep = c->res_keep_alive && !srv->draining;
    if (srv->cfg.on_done)
        srv->cfg.on_done(req, srv->cfg.data);
    c->req = NULL;
    srv->inflight--;
    c->res_started = false;
    c->want_drain = false;
    c->sent_continue = false;
    if (c->out.cap > OUT_KEEP_CAP)
        ibex_buf_dispose(&c->out); /* a keep-alive connection keeps only a small buffer */
    ibex_buf_reset(&c->out);
    ibex_arena_reset(c->arena);
    if (c->closing) {
        if (c->handles_open == 0)
            conn_free(c);
        return;
    }
    if (!keep) {
        conn_shutdown(c);
        return;
    }
    timer_set(c, TIMER_IDLE, srv->cfg.idle_timeout_ms);
    conn_process(c);
}

void ibex_res_send(struct ibex_req *req, int status, const char *content_type,
                   const char *extra_headers, const void *body, size_t len)
{
    struct ibex_conn *c = req->conn;
    assert(c->req == req && !c->res_started);
    c->res_started = true;
    c->res_keep_alive = response_keep_alive(c);
    if (!c->closing) {
        struct ibex_buf *b = &c->srv->scratch;
        build_head(c, b, status, req->request_id, content_type, extra_headers,
                   req->response_headers, c->res_keep_alive);
        ibex_buf_append_cstr(b, "Content-Length: ");
        ibex_buf_append_u64(b, len);
        ibex_buf_append_cstr(b, "\r\n\r\n");
        uv_buf_t bufs[2] = {uv_buf_init(b->p, (unsigned int)b->len),
                            uv_buf_init((char *)body, (unsigned int)len)};
        conn_write(c, bufs, len ? 2 : 1);
    }
    finish_request(c, status);
}

void ibex_http_append_error(struct ibex_buf *b, int status, const char *code, const char *message,
                            const char *param, const char *field_errors_json,
                            const char *request_id)
{
    ibex_buf_append_cstr(b, "{\"error\":{\"message\":");
    ibex_buf_append_json_str(b, message, strlen(message));
    ibex_buf_append_cstr(b, ",\"type\":\"");
    ibex_buf_append_cstr(b, ibex_http_error_type(status));
    ibex_buf_append_cstr(b, "\",\"code\":");
    ibex_buf_append_json_str(b, code, strlen(code));
    ibex_buf_append_cstr(b, ",\"param\":");
    if (param)
        ibex_buf_append_json_str(b, param, strlen(param));
    else
        ibex_buf_append_cstr(b, "null");
    if (request_id) {
        ibex_buf_append_cstr(b, ",\"request_id\":");
        ibex_buf_append_json_str(b, request_id, strlen(request_id));
    }
    if (field_errors_json) {
        ibex_buf_append_cstr(b, ",\"field_errors\":");
        ibex_buf_append_cstr(b, field_errors_json);
    }
    ibex_buf_append_cstr(b, "}}");
}

void ibex_res_error(struct ibex_req *req, int status, const char *code, const char *message,
                    const char *param, const char *field_errors_json, const char *extra_headers)
{
    struct ibex_buf body;
    ibex_buf_init(&body);
    ibex_http_error_fn *append = req->error_body ? req->error_body : ibex_http_append_error;
    append(&body, status, code, message, param, field_errors_json, req->request_id);
    ibex_res_send(req, status, "application/json", extra_headers, body.p, body.len);
    ibex_buf_dispose(&body);
}

void ibex_res_stream_start(struct ibex_req *req, int status, const char *content_type,
                           const char *extra_headers)
{
    struct ibex_conn *c = req->conn;
    assert(c->req == req && !c->res_started);
    c->res_started = true;
    c->res_chunked = c->http_minor >= 1;
    c->res_keep_alive = c->res_chunked && response_keep_alive(c);
    req->status = status;
    if (c->closing)
        return;
    /* Held back and sent in the same write as the first chunk: one syscall and one segment
     * less before the client's first token. */
    build_head(c, &c->out, status, req->request_id, content_type, extra_headers,
               req->response_headers, c->res_keep_alive);
    ibex_buf_append_cstr(&c->out, c->res_chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "\r\n");
}

static void flush_cancel(struct ibex_conn *c)
{
    if (c->flush_next == NULL)
        return;
    c->flush_prev->flush_next = c->flush_next;
    c->flush_next->flush_prev = c->flush_prev;
    c->flush_next = c->flush_prev = NULL;
}

/* Writes what c->out holds now. Returns what conn_write does. */
static int out_write(struct ibex_conn *c)
{
    flush_cancel(c);
    if (c->out.len == 0)
        return 0;
    uv_buf_t b = uv_buf_init(c->out.p, (unsigned int)c->out.len);
    int r = conn_write(c, &b, 1);
    ibex_buf_reset(&c->out);
    return r;
}

static void on_flush(uv_idle_t *h)
{
    struct ibex_http_server *srv = h->data;
    struct ibex_conn *end = &srv->flushing;
    /* on_drain may queue its connection again: it is written again in this pass */
    while (end->flush_next != end) {
        struct ibex_conn *c = end->flush_next;
        if (out_write(c) >= 0)
            drain_check(c);
    }
    uv_idle_stop(h);
}

/* Queues c for the write at the end of this loop iteration. */
static void flush_later(struct ibex_conn *c)
{
    struct ibex_http_server *srv = c->srv;
    if (c->flush_next)
        return;
    struct ibex_conn *end = &srv->flushing;
    if (end->flush_next == end) {
        if (!srv->flush_open) {
            uv_idle_init(srv->loop, &srv->flush);
            srv->flush.data = srv;
            srv->flush_open = true;
        }
        uv_idle_start(&srv->flush, on_flush);
    }
    c->flush_prev = end->flush_prev;
    c->flush_next = end;
    end->flush_prev->flush_next = c;
    end->flush_prev = c;
}

void ibex_res_stream_flush(struct ibex_req *req)
{
    struct ibex_conn *c = req->conn;
    assert(c->req == req && c->res_started);
    if (!c->closing)
        out_write(c);
}

int ibex_res_stream_write(struct ibex_req *req, const void *data, size_t len)
{
    struct ibex_conn *c = req->conn;
    assert(c->req == req && c->res_started);
    if (c->closing)
        return -1;
    if (len == 0)
        return 0;
    if (c->res_chunked) {
        char size[20];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        ibex_buf_append(&c->out, size, (size_t)n);
        ibex_buf_append(&c->out, data, len);
        ibex_buf_append(&c->out, "\r\n", 2);
    } else {
        ibex_buf_append(&c->out, data, len);
    }
    flush_later(c);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->out.len >
        c->srv->cfg.write_high_water) {
        c->want_drain = true;
        return 1;
    }
    return 0;
}

void ibex_res_stream_end(struct ibex_req *req)
{
    struct ibex_conn *c = req->conn;
    assert(c->req == req);
    if (!c->res_started) {
        /* Nothing was sent (the client went away first): finish without a response. */
        c->res_keep_alive = false;
        finish_request(c, 499);
        return;
    }
    if (!c->closing) {
        if (c->res_chunked)
            ibex_buf_append(&c->out, "0\r\n\r\n", 5);
        out_write(c);
    }
    finish_request(c, req->status);
}

bool ibex_res_started(const struct ibex_req *req)
{
    return req->conn->res_started;
}

void ibex_res_reset(struct ibex_req *req)
{
    struct ibex_conn *c = req->conn;
    c->res_keep_alive = false;
    if (!c->closing) {
        out_write(c); /* what was written goes before the reset, as it would unbuffered */
        conn_close(c, true);
    }
    c->abort_pending = false; /* the handler chose this; no on_abort owed */
    finish_request(c, c->res_started ? req->status : 499);
}

uv_loop_t *ibex_req_loop(const struct ibex_req *req)
{
    return req->conn->srv->loop;
}

struct ibex_str ibex_req_header(const struct ibex_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (ibex_str_caseeq_cstr(req->headers[i].name, name))
            return req->headers[i].value;
    return IBEX_STR_NULL;
}

/* An error found while reading a request: answer it and close. */
static void conn_fail(struct ibex_conn *c, int status, const char *code, const char *message)
{
    char request_id[IBEX_UUID_LEN + 1];
    ibex_id_uuid4(request_id);
    struct ibex_buf body;
    ibex_buf_init(&body);
    ibex_http_append_error(&body, status, code, message, NULL, NULL, request_id);
    struct ibex_buf *b = &c->srv->scratch;
    build_head(c, b, status, request_id, "application/json", NULL, NULL, false);
    ibex_buf_appendf(b, "Content-Length: %zu\r\n\r\n", body.len);
    uv_buf_t bufs[2] = {uv_buf_init(b->p, (unsigned int)b->len),
                        uv_buf_init(body.p, (unsigned int)body.len)};
    conn_write(c, bufs, 2);
    ibex_buf_dispose(&body);
    if (c->srv->cfg.on_done) {
        /* Account the rejected request like any other, with a request of its own. */
        struct ibex_req *req = c->parser.req;
        if (req == NULL) {
            req = ibex_arena_calloc(c->arena, sizeof(*req));
            req->arena = c->arena;
        }
        memcpy(req->request_id, request_id, sizeof(request_id));
        if (req->start_ns == 0)
            req->start_ns = ibex_clock_mono_ns();
        req->status = status;
        req->bytes_out = b->len + body.len;
        req->conn = c;
        c->srv->cfg.on_done(req, c->srv->cfg.data);
    }
    ibex_arena_reset(c->arena);
    conn_shutdown(c);
}

static void dispatch(struct ibex_conn *c, struct ibex_req *req)
{
    struct ibex_http_server *srv = c->srv;
    req->conn = c;
    c->req = req;
    c->http_minor = c->parser.llhttp.http_minor;
    srv->inflight++;
    set_request_id(req);
    timer_set(c, TIMER_NONE, 0);
    srv->cfg.handler(req, srv->cfg.data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_set_reading(struct ibex_conn *c, bool on)
{
    if (on == c->reading)
        return;
    c->reading = on;
    if (on)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void conn_process(struct ibex_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    while (!c->closing && !c->lingering && c->req == NULL && c->in.len > 0) {
        bool was_started = ibex_http_parser_started(&c->parser);
        size_t used = 0;
        enum ibex_http_parse_result r =
            ibex_http_parser_feed(&c->parser, c->in.p, c->in.len, &used);
        if (!was_started && ibex_http_parser_started(&c->parser))
            c->parser.req->start_ns = ibex_clock_mono_ns();
        if (r == IBEX_HTTP_PARSE_ERROR) {
            conn_fail(c, c->parser.error_status, c->parser.error_code, c->parser.error_reason);
            break;
        }
        ibex_buf_consume(&c->in, used);
        if (r == IBEX_HTTP_PARSE_MORE) {
            if (c->parser.headers_done) {
                if (c->timer_kind != TIMER_BODY)
                    timer_set(c, TIMER_BODY, c->srv->cfg.body_timeout_ms);
                if (c->parser.expect_continue && !c->sent_continue && c->parser.llhttp.http_minor) {
                    c->sent_continue = true;
                    uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
                    conn_write(c, &b, 1);
                }
            } else if (c->timer_kind != TIMER_HEADER && ibex_http_parser_started(&c->parser)) {
                timer_set(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
            }
            break;
        }
        dispatch(c, ibex_http_parser_take(&c->parser));
    }
    c->in_process = false;
    if (c->closing || c->lingering)
        return;
    conn_set_reading(c, c->req == NULL || c->in.len < PIPELINE_READ_CAP);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ibex_conn *c = h->data;
    ibex_buf_reserve(&c->in, READ_CHUNK);
    buf->base = c->in.p + c->in.len;
    buf->len = c->in.cap - c->in.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ibex_conn *c = s->data;
    if (nread < 0) {
        conn_close(c, false); /* EOF or error; a request in the handler is aborted */
        return;
    }
    if (nread == 0)
        return;
    if (c->lingering) {
        ibex_buf_reset(&c->in);
        return;
    }
    c->in.len += (size_t)nread;
    c->in.p[c->in.len] = '\0';
    if (c->req == NULL)
        conn_process(c);
    else if (c->in.len >= PIPELINE_READ_CAP)
        conn_set_reading(c, false);
}

static void on_timer(uv_timer_t *t)
{
    struct ibex_conn *c = t->data;
    enum timer_kind kind = c->timer_kind;
    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEADER:
    case TIMER_BODY:
        if (c->req == NULL && ibex_http_parser_started(&c->parser)) {
            conn_fail(c, 408, "REQUEST_TIMEOUT", "the request was not received in time");
            return;
        }
        conn_close(c, false);
        return;
    case TIMER_IDLE:
    case TIMER_LINGER:
        conn_close(c, false);
        return;
    case TIMER_NONE:
        return;
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct ibex_http_server *srv = listener->data;
    if (status < 0 || srv->draining)
        return;
    struct ibex_conn *c = ibex_xcalloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    c->arena = ibex_arena_new(8192);
    ibex_http_parser_init(&c->parser, &srv->limits);
    ibex_http_parser_set_arena(&c->parser, c->arena);
    ibex_buf_init(&c->in);
    ibex_buf_init(&c->out);
    c->next = srv->conns.next;
    c->prev = &srv->conns;
    srv->conns.next->prev = c;
    srv->conns.next = c;
    srv->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_set_reading(c, true);
    timer_set(c, TIMER_HEADER, srv->cfg.header_timeout_ms);
}
