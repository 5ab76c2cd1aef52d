/* HTTP/1.1 server on one libuv loop: listener (SO_REUSEPORT), connections, keep-alive and
 * pipelining, read limits and timeouts, and the response writer.
 *
 * Threading: a server and everything it hands out belong to the loop's thread.
 *
 * Request lifecycle: the server parses a request, then calls the handler once. The handler must
 * finish the request exactly once, now or later, with ibex_res_send(), ibex_res_error() or
 * ibex_res_stream_end(), or ibex_res_reset(). After the finishing call the request is freed and
 * must not be touched. If the client goes away first, on_abort (when set) is called; writes are
 * discarded from then on, and the handler must still finish the request: ibex_res_stream_end()
 * works in every case (a response that never started is then logged as 499). Pipelined
 * requests on one connection are handled one at a time, in order. A client that closes or
 * half-closes its side while its request is being handled counts as gone (as in nginx), so a
 * gateway can abort the upstream call at once. */
#ifndef IBEX_HTTP_SERVER_H
#define IBEX_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/id.h"
#include "../core/str.h"

#define IBEX_REQUEST_ID_MAX 128

struct ibex_http_server;
struct ibex_req;

struct ibex_header {
    struct ibex_str name;
    struct ibex_str value;
};

typedef void (*ibex_req_fn)(struct ibex_req *req);
/* Appends the body of an error response; ibex_http_append_error (below) is OpenAI's shape.
 * param, field_errors_json (a JSON array) and request_id may be NULL. */
typedef void ibex_http_error_fn(struct ibex_buf *b, int status, const char *code,
                                const char *message, const char *param,
                                const char *field_errors_json, const char *request_id);

struct ibex_req {
    struct ibex_str method;
    struct ibex_str path;  /* without the query string */
    struct ibex_str query; /* after '?', may be empty */
    struct ibex_header *headers;
    size_t nheaders;
    struct ibex_str body;
    struct ibex_arena *arena; /* freed when the request finishes */
    /* X-Request-ID from the client when it is 1-128 chars of [A-Za-z0-9._:-], else a UUIDv4 */
    char request_id[IBEX_REQUEST_ID_MAX + 1];
    uint64_t start_ns; /* monotonic, when the first byte was read */
    bool keep_alive;   /* false once the connection will close after this */

    /* Set by the handler. on_drain: the write buffer fell below the low-water mark after a
     * write returned 1. on_abort: the client disconnected; finish the request. */
    ibex_req_fn on_drain;
    ibex_req_fn on_abort;
    void *user;
    /* Raw "Name: value\r\n" lines added to every response of this request (or NULL);
     * must live until the request is finished (the arena). */
    const char *response_headers;
    /* The shape of ibex_res_error's bodies for this request; NULL: OpenAI's. */
    ibex_http_error_fn *error_body;

    /* Filled by the server when the request finishes, for access logs and metrics. */
    int status;
    uint64_t bytes_out;

    struct ibex_conn *conn; /* private to the server */
};

typedef void (*ibex_http_handler_fn)(struct ibex_req *req, void *data);
/* Called after a request finished and before it is freed (access log, metrics). */
typedef void (*ibex_http_done_fn)(struct ibex_req *req, void *data);

struct ibex_http_config {
    size_t max_header_bytes;    /* request line + headers; over it: 431 */
    size_t max_headers;         /* header count; over it: 400 */
    size_t max_body_bytes;      /* over it: 413 */
    uint64_t header_timeout_ms; /* from first byte to end of headers; then 408 and close */
    uint64_t body_timeout_ms;   /* from end of headers to end of body; then 408 and close */
    uint64_t idle_timeout_ms;   /* keep-alive connection with no request in progress */
    size_t write_high_water;    /* ibex_res_stream_write() returns 1 above this */
    const char *server_header;  /* value of Server:, or NULL for none */
    ibex_http_handler_fn handler;
    ibex_http_done_fn on_done;
    void *data;
};

/* Copies cfg. Does not listen yet. */
struct ibex_http_server *ibex_http_server_new(uv_loop_t *loop, const struct ibex_http_config *cfg);
/* Listens on "host:port" ("[::1]:port" for IPv6), with SO_REUSEPORT when reuseport is set so
 * each worker thread can own a listener on the same port. Returns 0 or a negative errno; after
 * a failure the listener handle may still be closing, so run the loop once before
 * ibex_http_server_free(). */
int ibex_http_server_listen(struct ibex_http_server *srv, const char *host_port, bool reuseport);
/* The port actually bound (useful with port 0), or 0 when not listening. */
int ibex_http_server_port(const struct ibex_http_server *srv);
/* Drain: stop accepting, close idle keep-alive connections now and every other connection once
 * its current response is complete. */
void ibex_http_server_drain(struct ibex_http_server *srv);
/* Connections still open. */
size_t ibex_http_server_connections(const struct ibex_http_server *srv);
/* Requests handed to the handler and not finished yet. */
size_t ibex_http_server_inflight(const struct ibex_http_server *srv);
/* Closes every connection and the listener now; on_closed runs on the loop when the last handle
 * is closed, after which ibex_http_server_free() may be called. Unfinished requests get on_abort.
 */
void ibex_http_server_close(struct ibex_http_server *srv, void (*on_closed)(void *), void *arg);
void ibex_http_server_free(struct ibex_http_server *srv);

uv_loop_t *ibex_req_loop(const struct ibex_req *req);
/* Case-insensitive header lookup; IBEX_STR_NULL (p == NULL) when absent. */
struct ibex_str ibex_req_header(const struct ibex_req *req, const char *name);

/* Complete response with Content-Length. extra_headers: NULL or raw "Name: value\r\n" lines.
 * Adds X-Request-ID, Date-less by design (clients do not need it; it costs a clock read). */
void ibex_res_send(struct ibex_req *req, int status, const char *content_type,
                   const char *extra_headers, const void *body, size_t len);
/* OpenAI-shaped error body: {"error":{"message","type","code","param","request_id"}} (or the
 * shape req->error_body writes). type is derived from status. field_errors_json: NULL or a JSON
 * array appended as "field_errors". */
void ibex_res_error(struct ibex_req *req, int status, const char *code, const char *message,
                    const char *param, const char *field_errors_json, const char *extra_headers);

/* Streaming response with chunked transfer encoding (HTTP/1.1) or close-delimited (HTTP/1.0).
 * ibex_res_stream_write returns 0 when the data was queued, 1 when it was queued but the
 * write buffer is above the high-water mark (pause the producer until on_drain), -1 when the
 * client is gone (on_abort has been or will be called). */
void ibex_res_stream_start(struct ibex_req *req, int status, const char *content_type,
                           const char *extra_headers);
/* The head of a streaming response goes out with its first write, saving a syscall and a
 * segment before the first byte; ibex_res_stream_flush() sends it now instead (a server that
 * must show its status before the body is ready). */
void ibex_res_stream_flush(struct ibex_req *req);
int ibex_res_stream_write(struct ibex_req *req, const void *data, size_t len);
void ibex_res_stream_end(struct ibex_req *req);
bool ibex_res_started(const struct ibex_req *req);
/* Finishes the request by resetting the connection (RST): for fault injection and for
 * responses that cannot be completed. */
void ibex_res_reset(struct ibex_req *req);

/* Appends an OpenAI-shaped error object; param, field_errors_json (a JSON array) and
 * request_id may be NULL and are then omitted (param is written as null). */
void ibex_http_append_error(struct ibex_buf *b, int status, const char *code, const char *message,
                            const char *param, const char *field_errors_json,
                            const char *request_id);

/* Reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know. */
const char *ibex_http_reason(int status);
/* OpenAI error type for a status ("invalid_request_error", "authentication_error", ...). */
const char *ibex_http_error_type(int status);

#endif
