/* Native HTTP/1.1 upstream transport for http:// providers (local OpenAI-compatible servers,
 * sidecars): llhttp parses responses, and each worker keeps a keep-alive pool per origin. It
 * costs a read and a write per request where libcurl adds its own bookkeeping and two poll()s
 * (ADR 0004); https stays on libcurl.
 *
 * Invariants:
 * - A connection serves one call at a time; an idle one stays in its origin's idle list with
 *   reading on, so a close by the server is noticed and the connection dropped.
 * - A call whose pooled connection turns out dead before any response byte is re-sent once on a
 *   new connection (the server never saw it); after the first response byte it never is.
 * - Pausing stops reading the socket; bytes already read (at most one read buffer) are still
 *   delivered, so the extra buffering is bounded by H1_READ_BUF.
 * - A connection is freed only in its close callback; pending resolve and connect requests
 *   are cancelled first and finish with UV_ECANCELED. */
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/alloc.h"
#include "../core/buf.h"
#include "call.h"

#define H1_READ_BUF 65536
#define H1_MAX_IDLE 256
#define H1_SPARE_WIRES 64

enum h1_state {
    H1_RESOLVING = 1,
    H1_CONNECTING,
    H1_BUSY,
    H1_IDLE,
    H1_CLOSING,
};

struct h1_origin {
    struct h1_origin *next;
    struct h1_pool *pool;
    char *host; /* without brackets */
    char port[8];
    size_t hostport_len; /* of url + 7 up to the path: "host:port" as the URL spells it */
    char *hostport;
    struct h1_conn *idle;
    size_t nidle;
};

struct h1_pool {
    uv_loop_t *loop;
    struct h1_origin *origins;
    /* Request buffers of finished calls, kept with their capacity: a serialised request is
     * over 1 KB, and a fresh allocation of that size per call makes glibc consolidate. */
    struct ibex_buf spare[H1_SPARE_WIRES];
    size_t nspare;
    char rbuf[H1_READ_BUF]; /* one per worker: each read is consumed before the next */
};

struct h1_conn {
    uv_tcp_t tcp;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_write_t write;
    struct h1_origin *origin;
    struct h1_conn *next_idle;
    struct ibex_upstream_call *call;
    llhttp_t parser;
    struct ibex_buf field; /* the response header name being read */
    enum h1_state state;
    bool reused;
    bool got_bytes;
    bool complete;
    bool writing;
    bool in_retry_after;
    bool gai_pending;
};

static void conn_close(struct h1_conn *k);
static void send_request(struct h1_conn *k);

/* ---- origins ---- */

bool h1_handles(const char *url)
{
    return strncmp(url, "http://", 7) == 0;
}

/* "http://host:port/path" -> origin (created on first use) and the path. */
static struct h1_origin *origin_for(struct h1_pool *pool, const char *url, const char **path)
{
    const char *hp = url + 7;
    const char *slash = strchr(hp, '/');
    size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
    *path = slash ? slash : "/";
    for (struct h1_origin *o = pool->origins; o; o = o->next)
        if (o->hostport_len == hplen && memcmp(o->hostport, hp, hplen) == 0)
            return o;
    if (hplen == 0)
        return NULL;
    const char *host = hp, *hend, *port = NULL;
    if (hp[0] == '[') {
        const char *rb = memchr(hp, ']', hplen);
        if (rb == NULL)
            return NULL;
        host = hp + 1;
        hend = rb;
        if (rb + 1 < hp + hplen) {
            if (rb[1] != ':')
                return NULL;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(hp, ':', hplen);
        hend = colon ? colon : hp + hplen;
        port = colon ? colon + 1 : NULL;
    }
    size_t portlen = port ? (size_t)(hp + hplen - port) : 0;
    if (hend == host || portlen >= 6 || (port && portlen == 0))
        return NULL;
    struct h1_origin *o = ibex_xcalloc(1, sizeof(*o));
    o->pool = pool;
    o->host = ibex_xstrndup(host, (size_t)(hend - host));
    if (port)
        memcpy(o->port, port, portlen);
    else
        memcpy(o->port, "80", 3);
    o->hostport = ibex_xstrndup(hp, hplen);
    o->hostport_len = hplen;
    o->next = pool->origins;
    pool->origins = o;
    return o;
}

static void idle_remove(struct h1_conn *k)
{
    struct h1_origin *o = k->origin;
    for (struct h1_conn **p = &o->idle; *p; p = &(*p)->next_idle) {
        if (*p == k) {
            *p = k->next_idle;
            o->nidle--;
            break;
        }
    }
    k->next_idle = NULL;
}

/* ---- response parsing ---- */

static struct h1_conn *conn_of(llhttp_t *h)
{
    return h->data;
}

static int on_header_field(llhttp_t *h, const char *at, size_t len)
{
    struct h1_conn *k = conn_of(h);
    if (k->field.len + len < 64)
        ibex_buf_append(&k->field, at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *h)
{
    struct h1_conn *k = conn_of(h);
    k->in_retry_after =
        k->field.len == 11 && strncasecmp(k->field.p, "retry-after", 11) == 0 && k->call;
    ibex_buf_reset(&k->field);
    if (k->in_retry_after)
        k->call->retry_after[0] = '\0';
    return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t len)
{
    struct h1_conn *k = conn_of(h);
    if (!k->in_retry_after)
        return 0;
    char *ra = k->call->retry_after;
    size_t have = strlen(ra);
    size_t n = len < sizeof(k->call->retry_after) - 1 - have
                   ? len
                   : sizeof(k->call->retry_after) - 1 - have;
    memcpy(ra + have, at, n);
    ra[have + n] = '\0';
    return 0;
}

static int on_headers_complete(llhttp_t *h)
{
    struct h1_conn *k = conn_of(h);
    if (h->status_code < 200)
        return 0; /* an interim response; the final one follows */
    upstream_call_headers(k->call, h->status_code);
    return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
    struct h1_conn *k = conn_of(h);
    return upstream_call_data(k->call, at, len) < 0 ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *h)
{
    struct h1_conn *k = conn_of(h);
    if (h->status_code < 200)
        return 0;
    k->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connection life ---- */

static void on_conn_closed(uv_handle_t *h)
{
    struct h1_conn *k = h->data;
    ibex_buf_dispose(&k->field);
    free(k);
}

static void conn_close(struct h1_conn *k)
{
    if (k->state == H1_CLOSING)
        return;
    if (k->state == H1_IDLE)
        idle_remove(k);
    k->state = H1_CLOSING;
    k->call = NULL;
    if (k->gai_pending) {
        uv_cancel((uv_req_t *)&k->gai); /* on_resolved closes the handle */
        return;
    }
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

static void park(struct h1_conn *k)
{
    struct h1_origin *o = k->origin;
    k->call = NULL;
    if (o->nidle >= H1_MAX_IDLE) {
        conn_close(k);
        return;
    }
    k->state = H1_IDLE;
    k->reused = true;
    k->complete = false;
    k->got_bytes = false;
    llhttp_init(&k->parser, HTTP_RESPONSE, &settings);
    k->parser.data = k;
    k->next_idle = o->idle;
    o->idle = k;
    o->nidle++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct h1_conn *k = h->data;
    buf->base = k->origin->pool->rbuf;
    buf->len = H1_READ_BUF;
}

/* The connection failed or closed under call c: re-send once on a new connection when the
 * server cannot have seen the request, else end the call. */
static void fail_call(struct h1_conn *k, enum ibex_upstream_result r)
{
    struct ibex_upstream_call *c = k->call;
    bool resend = k->reused && !k->got_bytes && !c->retried;
    c->conn = NULL;
    conn_close(k);
    if (resend) {
        c->retried = true;
        if (h1_start(k->origin->pool, c) == 0)
            return;
    }
    upstream_call_finish(c, r);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct h1_conn *k = s->data;
    if (k->state == H1_IDLE) {
        if (nread != 0)
            conn_close(k); /* closed by the server, or unexpected bytes: not reusable */
        return;
    }
    if (k->state != H1_BUSY || nread == 0)
        return;
    struct ibex_upstream_call *c = k->call;
    if (nread < 0) {
        llhttp_errno_t fe = nread == UV_EOF && k->got_bytes ? llhttp_finish(&k->parser) : HPE_OK;
        if ((fe == HPE_OK || fe == HPE_PAUSED) && k->complete) {
            /* a response delimited by the close itself */
            c->conn = NULL;
            conn_close(k);
            upstream_call_finish(c, IBEX_UPSTREAM_OK);
            return;
        }
        fail_call(k, IBEX_UPSTREAM_RESET);
        return;
    }
    k->got_bytes = true;
    llhttp_errno_t err = llhttp_execute(&k->parser, buf->base, (size_t)nread);
    if (err == HPE_PAUSED && k->complete) {
        const char *end = llhttp_get_error_pos(&k->parser);
        bool reuse = llhttp_should_keep_alive(&k->parser) && end == buf->base + nread && !c->paused;
        c->conn = NULL;
        if (reuse)
            park(k);
        else
            conn_close(k);
        upstream_call_finish(c, IBEX_UPSTREAM_OK);
        return;
    }
    if (err == HPE_USER) {
        c->aborted = true;
        c->conn = NULL;
        conn_close(k);
        upstream_call_finish(c, IBEX_UPSTREAM_ABORTED);
        return;
    }
    if (err != HPE_OK) {
        c->conn = NULL;
        conn_close(k);
        upstream_call_finish(c, IBEX_UPSTREAM_FAILED); /* not HTTP */
        return;
    }
    if (c->paused)
        uv_read_stop(s);
}

static void on_written(uv_write_t *w, int status)
{
    struct h1_conn *k = w->data;
    k->writing = false;
    if (k->state != H1_BUSY || status == 0)
        return;
    fail_call(k, IBEX_UPSTREAM_RESET);
}

/* Serialises c's request once, at start: the caller's url and headers need not outlive
 * ibex_upstream_start, and a re-send after a dead pooled connection sends the same bytes. */
static void build_request(struct h1_origin *o, struct ibex_upstream_call *c, const char *path)
{
    struct h1_pool *pool = o->pool;
    if (pool->nspare)
        c->wire = pool->spare[--pool->nspare];
    struct ibex_buf *b = &c->wire;
    ibex_buf_append_cstr(b, c->req.body ? "POST " : "GET ");
    ibex_buf_append_cstr(b, path);
    ibex_buf_append_cstr(b, " HTTP/1.1\r\nHost: ");
    ibex_buf_append(b, o->hostport, o->hostport_len);
    ibex_buf_append_cstr(b, "\r\n");
    for (const char *const *h = c->req.headers; h && *h; h++) {
        ibex_buf_append_cstr(b, *h);
        ibex_buf_append_cstr(b, "\r\n");
    }
    if (c->req.body) {
        ibex_buf_append_cstr(b, "Content-Length: ");
        ibex_buf_append_u64(b, c->req.body_len);
        ibex_buf_append_cstr(b, "\r\n\r\n");
        ibex_buf_append(b, c->req.body, c->req.body_len);
    } else {
        ibex_buf_append_cstr(b, "\r\n");
    }
    c->req.url = NULL; /* not the caller's to keep alive any more */
    c->req.headers = NULL;
}

static void send_request(struct h1_conn *k)
{
    struct ibex_upstream_call *c = k->call;
    struct ibex_buf *b = &c->wire;
    uv_buf_t buf = uv_buf_init(b->p, (unsigned int)b->len);
    int r = uv_try_write((uv_stream_t *)&k->tcp, &buf, 1);
    if (r == (int)b->len)
        return;
    if (r < 0 && r != UV_EAGAIN) {
        fail_call(k, IBEX_UPSTREAM_RESET);
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    buf = uv_buf_init(b->p + done, (unsigned int)(b->len - done));
    k->write.data = k;
    k->writing = true;
    if (uv_write(&k->write, (uv_stream_t *)&k->tcp, &buf, 1, on_written) != 0) {
        k->writing = false;
        fail_call(k, IBEX_UPSTREAM_RESET);
    }
}

static void begin(struct h1_conn *k)
{
    struct ibex_upstream_call *c = k->call;
    k->state = H1_BUSY;
    upstream_call_connected(c);
    if (c->req.connect_only) {
        c->conn = NULL;
        park(k);
        upstream_call_finish(c, IBEX_UPSTREAM_OK);
        return;
    }
    send_request(k);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct h1_conn *k = req->data;
    if (k->state == H1_CLOSING)
        return;
    if (status < 0) {
        struct ibex_upstream_call *c = k->call;
        c->conn = NULL;
        conn_close(k);
        upstream_call_finish(c, IBEX_UPSTREAM_CONNECT_FAILED);
        return;
    }
    uv_tcp_nodelay(&k->tcp, 1);
    uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    begin(k);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct h1_conn *k = req->data;
    k->gai_pending = false;
    if (k->state == H1_CLOSING) {
        uv_freeaddrinfo(res);
        uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
        return;
    }
    int r = status;
    if (r == 0) {
        k->state = H1_CONNECTING;
        k->connect.data = k;
        r = uv_tcp_connect(&k->connect, &k->tcp, res->ai_addr, on_connect);
    }
    uv_freeaddrinfo(res);
    if (r != 0) {
        struct ibex_upstream_call *c = k->call;
        c->conn = NULL;
        conn_close(k);
        upstream_call_finish(c, IBEX_UPSTREAM_CONNECT_FAILED);
    }
}

/* ---- API for the engine ---- */

struct h1_pool *h1_pool_new(uv_loop_t *loop)
{
    struct h1_pool *pool = ibex_xcalloc(1, sizeof(*pool));
    pool->loop = loop;
    return pool;
}

void h1_pool_free(struct h1_pool *pool)
{
    if (pool == NULL)
        return;
    while (pool->origins) {
        struct h1_origin *o = pool->origins;
        pool->origins = o->next;
        while (o->idle)
            conn_close(o->idle);
        free(o->host);
        free(o->hostport);
        free(o);
    }
    while (pool->nspare)
        ibex_buf_dispose(&pool->spare[--pool->nspare]);
    free(pool); /* idle connections only read rbuf from callbacks, which closing stopped */
}

int h1_start(struct h1_pool *pool, struct ibex_upstream_call *c)
{
    const char *path;
    struct h1_origin *o = c->conn_origin;
    if (o == NULL) { /* first attempt: a re-send reuses origin and bytes */
        o = origin_for(pool, c->req.url, &path);
        if (o == NULL)
            return -1;
        build_request(o, c, path);
        c->conn_origin = o;
    }
    struct h1_conn *k = c->req.connect_only ? NULL : o->idle;
    if (k) {
        idle_remove(k);
        k->call = c;
        c->conn = k;
        begin(k);
        return 0;
    }
    k = ibex_xcalloc(1, sizeof(*k));
    k->origin = o;
    k->call = c;
    c->conn = k;
    ibex_buf_init(&k->field);
    llhttp_init(&k->parser, HTTP_RESPONSE, &settings);
    k->parser.data = k;
    uv_tcp_init(pool->loop, &k->tcp);
    k->tcp.data = k;
    k->state = H1_RESOLVING;
    k->gai.data = k;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    k->gai_pending = true;
    if (uv_getaddrinfo(pool->loop, &k->gai, on_resolved, o->host, o->port, &hints) != 0) {
        k->gai_pending = false;
        c->conn = NULL;
        k->call = NULL;
        conn_close(k);
        return -1;
    }
    return 0;
}

void h1_resume(struct ibex_upstream_call *c)
{
    struct h1_conn *k = c->conn;
    if (k && k->state == H1_BUSY)
        uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
}

void h1_recycle(struct h1_pool *pool, struct ibex_buf *wire)
{
    if (wire->cap && pool->nspare < H1_SPARE_WIRES) {
        ibex_buf_reset(wire);
        pool->spare[pool->nspare++] = *wire;
        ibex_buf_init(wire);
        return;
    }
    ibex_buf_dispose(wire);
}

void h1_release(struct ibex_upstream_call *c)
{
    struct h1_conn *k = c->conn;
    if (k == NULL)
        return;
    c->conn = NULL;
    conn_close(k); /* mid-call: the response cannot be resumed on another request */
}
