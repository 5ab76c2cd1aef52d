/* Idempotency-Key over HTTP (docs/sessions.md "Idempotency keys"): what POST /v1/sessions,
 * POST /v1/tasks, POST /v1/credentials and non-streaming chat completions do with the header,
 * on top of the entries
 * of api/idempotency.h.
 *
 *   ibex_idem_request_init       on the loop: reads and checks the header (400 when malformed)
 *                                and fingerprints the request
 *   ibex_idem_request_begin      on a store-pool thread: claims the key
 *   ibex_idem_request_proceed    on the loop: true when the request is to run; otherwise the
 *                                request has been answered (a replay, 409, 422 or 503)
 *   ibex_idem_request_finish     on a store-pool thread: stores a 2xx response for replay, or
 *                                releases the claim (any other outcome: a retry runs again)
 *   ibex_idem_request_finish_async  the same from the loop, without waiting (chat)
 *
 * Only successful responses are replayed: an error had no side effect (a validation error), or
 * one a retry may repair (an upstream failure), so the request simply runs again. A replay
 * carries `Idempotent-Replayed: true`. */
#ifndef IBEX_GATEWAY_IDEMPOTENT_H
#define IBEX_GATEWAY_IDEMPOTENT_H

#include <stdbool.h>

#include "../api/idempotency.h"
#include "../http/server.h"
#include "../store/pool.h"

struct ibex_idem_request {
    bool active; /* the request carries a valid key: the rest is used */
    char key[IBEX_IDEM_KEY_MAX + 1];
    uint8_t fp[32];
    int rc; /* begin's result */
    enum ibex_idem_state state;
    struct ibex_idem_claim claim;
    struct ibex_idem_response replay;
};

/* Reads Idempotency-Key and fingerprints the request (method, path, X-IBEX-Agent-ID, body).
 * Returns 0 (r->active tells whether there is a key), or -1 after answering 400
 * VALIDATION_ERROR (*code is set to it). */
int ibex_idem_request_init(struct ibex_idem_request *r, struct ibex_req *req, const char **code);
void ibex_idem_request_dispose(struct ibex_idem_request *r);

void ibex_idem_request_begin(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                             struct ibex_idem_request *r);
/* After begin, back on the loop. *code gets the error code of the answer when it returns
 * false. */
bool ibex_idem_request_proceed(struct ibex_idem_request *r, struct ibex_req *req,
                               const char **code);

/* The response the claimed request got: status, content type, extra header lines ("" or
 * "Name: value\r\n"...) and body. */
struct ibex_idem_outcome {
    int status;
    const char *content_type;
    const char *headers;
    const char *body;
    size_t len;
};
void ibex_idem_request_finish(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                              struct ibex_idem_request *r, const struct ibex_idem_outcome *o);
/* Copies what finish needs and runs it on the pool; nothing waits for it. A claim whose finish
 * cannot run (the pool refuses the job) stays until its lease ends. */
void ibex_idem_request_finish_async(uv_loop_t *loop, struct ibex_store_pool *pool,
                                    struct ibex_idem *m, const char *tenant,
                                    struct ibex_idem_request *r, const struct ibex_idem_outcome *o);

#endif
