/* Upstream HTTP client: one libcurl multi handle per worker loop, driven by uv_poll and
 * uv_timer (curl's multi_socket API), so every upstream transfer runs on the worker's own loop
 * and its own connection pool.
 *
 * A call reports, in order: on_headers once (final status known), on_data any number of times,
 * on_done exactly once, unless ibex_upstream_cancel() is called first, after which nothing is
 * reported. Callbacks must not call ibex_upstream_cancel() or ibex_upstream_resume() on their
 * own call; return -1 or 1 from on_data instead.
 *
 * Thread: everything belongs to the loop's thread. */
#ifndef IBEX_UPSTREAM_H
#define IBEX_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../config/config.h"

struct ibex_upstream;
struct ibex_upstream_call;

enum ibex_upstream_result {
    IBEX_UPSTREAM_OK = 0,
    IBEX_UPSTREAM_CONNECT_FAILED = 1,
    IBEX_UPSTREAM_CONNECT_TIMEOUT = 2,
    IBEX_UPSTREAM_HEADER_TIMEOUT = 3,
    IBEX_UPSTREAM_FIRST_TOKEN_TIMEOUT = 4,
    IBEX_UPSTREAM_IDLE_TIMEOUT = 5,
    IBEX_UPSTREAM_TOTAL_TIMEOUT = 6,
    IBEX_UPSTREAM_RESET = 7,
    IBEX_UPSTREAM_ABORTED = 8, /* on_data returned -1 */
    IBEX_UPSTREAM_FAILED = 9,  /* anything else (TLS, protocol) */
};

struct ibex_upstream_callbacks {
    /* status: the final HTTP status (1xx skipped). */
    void (*on_headers)(struct ibex_upstream_call *call, int status, void *data);
    /* Returns 0 to go on, 1 to pause until ibex_upstream_resume(), -1 to abort the transfer. The
     * bytes are consumed in every case. */
    int (*on_data)(struct ibex_upstream_call *call, const char *p, size_t len, void *data);
    void (*on_done)(struct ibex_upstream_call *call, enum ibex_upstream_result result, void *data);
};

/* url and headers are copied by ibex_upstream_start; body must stay valid until on_done or
 * cancel. */
struct ibex_upstream_request {
    const char *url;            /* NUL-terminated */
    const char *const *headers; /* NULL-terminated "Name: value" lines */
    const char *body;           /* NULL for GET */
    size_t body_len;
    struct ibex_upstream_timeouts timeouts;
    bool streaming;    /* first-token timeout applies between headers and the first byte */
    bool connect_only; /* TCP (and TLS) connect, then done: reachability probes */
};

/* Process-wide libcurl set-up: call once from the main thread before any worker starts. */
int ibex_upstream_global_init(void);
void ibex_upstream_global_cleanup(void);

/* native_http: http:// URLs use the native HTTP/1.1 transport (ADR 0004) instead of libcurl;
 * https:// always uses libcurl. */
struct ibex_upstream *ibex_upstream_new(uv_loop_t *loop, bool native_http);
/* Cancels what is still running, then frees once curl's sockets are closed on the loop. */
void ibex_upstream_free(struct ibex_upstream *u);
size_t ibex_upstream_active(const struct ibex_upstream *u);

/* Returns NULL only when curl refuses the request (error logged). */
struct ibex_upstream_call *ibex_upstream_start(struct ibex_upstream *u,
                                               const struct ibex_upstream_request *req,
                                               const struct ibex_upstream_callbacks *cb,
                                               void *data);
void ibex_upstream_resume(struct ibex_upstream_call *call);
void ibex_upstream_cancel(struct ibex_upstream_call *call);
/* The Retry-After response header, or NULL. Valid until on_done returns. */
const char *ibex_upstream_retry_after(const struct ibex_upstream_call *call);
/* Monotonic ns: when the call started, when headers and the first byte arrived (0 = not yet). */
uint64_t ibex_upstream_started_ns(const struct ibex_upstream_call *call);
uint64_t ibex_upstream_first_byte_ns(const struct ibex_upstream_call *call);

const char *ibex_upstream_result_name(enum ibex_upstream_result r);

#endif
