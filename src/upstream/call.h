/* Internals shared by the upstream engine (upstream.c) and its transports: libcurl (https and
 * anything else) in upstream.c, the native HTTP/1.1 client (http://) in h1.c. A transport moves
 * bytes; the engine owns the call's lifecycle, deadlines and callbacks. Not a public header. */
#ifndef IBEX_UPSTREAM_CALL_H
#define IBEX_UPSTREAM_CALL_H

#include <curl/curl.h>

#include "../core/buf.h"
#include "upstream.h"

struct sock_ctx;
struct h1_pool;
struct h1_conn;
struct h1_origin;

struct ibex_upstream {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct sock_ctx **socks; /* by fd: one poll handle per curl socket for the socket's life */
    size_t nsocks;
    CURL *pool[64];
    size_t npool;
    struct h1_pool *h1;               /* NULL when http:// goes through libcurl too */
    struct ibex_upstream_call *calls; /* active calls, doubly linked */
    size_t active;
};

struct ibex_upstream_call {
    struct ibex_upstream *u;
    struct ibex_upstream_call *prev, *next;
    struct ibex_upstream_request req; /* the caller keeps its pointers valid until done */
    /* transport: exactly one of these is in use */
    CURL *easy;
    struct curl_slist *headers;
    struct h1_conn *conn;
    struct ibex_buf wire;          /* native: the serialised request, built once at start */
    struct h1_origin *conn_origin; /* native: where wire goes */
    bool native;
    bool retried; /* native: already re-sent once after a dead pooled connection */
    uv_timer_t timer;
    struct ibex_upstream_callbacks cb;
    void *data;
    struct ibex_upstream_timeouts t;
    bool connected;
    bool headers_done;
    bool paused;
    bool aborted;
    uint64_t start_ns, headers_ns, first_byte_ns, last_byte_ns;
    char retry_after[64];
};

/* Engine entry points for transports. */
void upstream_call_connected(struct ibex_upstream_call *c);
void upstream_call_headers(struct ibex_upstream_call *c, int status);
/* Returns what on_data returned: 0 go on, 1 paused (c->paused is set), -1 abort. */
int upstream_call_data(struct ibex_upstream_call *c, const char *p, size_t len);
/* Ends the call: releases the transport, reports on_done, frees the call later. */
void upstream_call_finish(struct ibex_upstream_call *c, enum ibex_upstream_result r);

/* The native HTTP/1.1 transport. */
struct h1_pool *h1_pool_new(uv_loop_t *loop);
void h1_pool_free(struct h1_pool *pool);
bool h1_handles(const char *url);
/* Starts c on a pooled or new connection; returns 0, or -1 when the URL is unusable. */
int h1_start(struct h1_pool *pool, struct ibex_upstream_call *c);
void h1_resume(struct ibex_upstream_call *c);
/* Detaches c from its connection; a connection in the middle of a response is closed. */
void h1_release(struct ibex_upstream_call *c);
/* Takes a finished call's request buffer back for reuse (or frees it). */
void h1_recycle(struct h1_pool *pool, struct ibex_buf *wire);

#endif
