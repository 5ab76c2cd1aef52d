/* Idempotency-Key over HTTP: the header, the answers of each outcome, and the completion. */
#include "idempotent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/alloc.h"
#include "../core/clock.h"

int ibex_idem_request_init(struct ibex_idem_request *r, struct ibex_req *req, const char **code)
{
    memset(r, 0, sizeof(*r));
    struct ibex_str h = ibex_req_header(req, "idempotency-key");
    if (h.p == NULL)
        return 0;
    if (ibex_idem_key_check(h.p, h.len) != 0) {
        *code = "VALIDATION_ERROR";
        ibex_res_error(req, 400, "VALIDATION_ERROR",
                       "Idempotency-Key must be 1 to 255 printable ASCII characters",
                       "Idempotency-Key", NULL, NULL);
        return -1;
    }
    memcpy(r->key, h.p, h.len);
    r->active = true;
    char method[16] = "", path[1024] = "", agent[64] = "";
    struct ibex_str a = ibex_req_header(req, "x-ibex-agent-id");
    snprintf(method, sizeof(method), "%.*s", (int)req->method.len, req->method.p);
    snprintf(path, sizeof(path), "%.*s", (int)req->path.len, req->path.p);
    if (a.p)
        snprintf(agent, sizeof(agent), "%.*s", (int)a.len, a.p);
    ibex_idem_fingerprint(method, path, a.p ? agent : NULL, req->body.p, req->body.len, r->fp);
    return 0;
}

void ibex_idem_request_dispose(struct ibex_idem_request *r)
{
    if (r->state == IBEX_IDEM_REPLAY)
        ibex_idem_response_dispose(&r->replay);
}

/* How long a duplicate waits, on a store-pool thread, for the request it duplicates to finish
 * before it is answered 409 IDEMPOTENCY_KEY_IN_PROGRESS (docs/sessions.md). */
#define IDEM_WAIT_MS 250
#define IDEM_WAIT_STEP_MS 5

void ibex_idem_request_begin(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                             struct ibex_idem_request *r)
{
    /* A duplicate of a request that is finishing (its answer sent, its completion on the way to
     * the store) waits a moment for it instead of getting 409: a client that retries at once
     * after an answer gets that answer replayed. */
    for (uint64_t waited = 0;; waited += IDEM_WAIT_STEP_MS) {
        r->rc = ibex_idem_begin(m, s, tenant, r->key, r->fp, (int64_t)ibex_clock_wall_ms(),
                                &r->state, &r->claim, &r->replay);
        if (r->rc != 0 || r->state != IBEX_IDEM_IN_PROGRESS || waited >= IDEM_WAIT_MS)
            return;
        struct timespec ts = {0, IDEM_WAIT_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

bool ibex_idem_request_proceed(struct ibex_idem_request *r, struct ibex_req *req, const char **code)
{
    if (r->rc != 0) {
        *code = "STORE_UNAVAILABLE";
        ibex_res_error(req, 503, *code, "the idempotency store is unavailable", NULL, NULL,
                       "Retry-After: 1\r\n");
        return false;
    }
    switch (r->state) {
    case IBEX_IDEM_CLAIMED:
        return true;
    case IBEX_IDEM_REPLAY: {
        struct ibex_idem_response *p = &r->replay;
        size_t n = p->headers.len + sizeof("Idempotent-Replayed: true\r\n");
        char *headers = ibex_arena_alloc(req->arena, n);
        snprintf(headers, n, "%.*sIdempotent-Replayed: true\r\n", (int)p->headers.len,
                 p->headers.p ? p->headers.p : "");
        req->response_headers = NULL; /* the first response's own headers only */
        ibex_res_send(req, p->status, p->content_type.len ? p->content_type.p : "application/json",
                      headers, p->body.p, p->body.len);
        return false;
    }
    case IBEX_IDEM_IN_PROGRESS:
        *code = "IDEMPOTENCY_KEY_IN_PROGRESS";
        ibex_res_error(req, 409, *code,
                       "a request with this Idempotency-Key is still running; retry later", NULL,
                       NULL, "Retry-After: 1\r\n");
        return false;
    default:
        *code = "IDEMPOTENCY_KEY_REUSED";
        ibex_res_error(req, 422, *code, "this Idempotency-Key was used for a different request",
                       NULL, NULL, NULL);
        return false;
    }
}

void ibex_idem_request_finish(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                              struct ibex_idem_request *r, const struct ibex_idem_outcome *o)
{
    if (!r->active || r->state != IBEX_IDEM_CLAIMED)
        return;
    if (o->status < 200 || o->status > 299) {
        ibex_idem_release(m, s, tenant, r->key, r->fp, &r->claim);
        return;
    }
    struct ibex_idem_response resp = {
        .status = o->status,
        .content_type = {o->content_type, strlen(o->content_type)},
        .headers = {o->headers, strlen(o->headers)},
        .body = {o->body, o->len},
    };
    ibex_idem_complete(m, s, tenant, r->key, r->fp, &r->claim, &resp,
                       (int64_t)ibex_clock_wall_ms());
}

/* ---- from the loop ---- */

struct finish_job {
    struct ibex_store_job job;
    struct ibex_idem *m;
    char tenant[IBEX_IDEM_TENANT_MAX + 1];
    struct ibex_idem_request r;
    struct ibex_idem_outcome o;
    /* the outcome's strings follow */
};

static int finish_run(struct ibex_store_job *job, struct ibex_store *s)
{
    struct finish_job *f = job->data;
    ibex_idem_request_finish(f->m, s, f->tenant, &f->r, &f->o);
    return 0;
}

static void finish_done(struct ibex_store_job *job, int rc)
{
    free(job->data);
}

void ibex_idem_request_finish_async(uv_loop_t *loop, struct ibex_store_pool *pool,
                                    struct ibex_idem *m, const char *tenant,
                                    struct ibex_idem_request *r, const struct ibex_idem_outcome *o)
{
    if (!r->active || r->state != IBEX_IDEM_CLAIMED)
        return;
    size_t ct = strlen(o->content_type) + 1, hd = strlen(o->headers) + 1;
    struct finish_job *f = ibex_xmalloc(sizeof(*f) + ct + hd + o->len);
    char *p = (char *)(f + 1);
    f->m = m;
    snprintf(f->tenant, sizeof(f->tenant), "%s", tenant);
    f->r = *r;
    f->o = *o;
    f->o.content_type = memcpy(p, o->content_type, ct);
    f->o.headers = memcpy(p + ct, o->headers, hd);
    f->o.body = o->len ? memcpy(p + ct + hd, o->body, o->len) : NULL;
    f->job.run = finish_run;
    f->job.done = finish_done;
    f->job.data = f;
    if (ibex_store_pool_submit(loop, pool, &f->job) != 0)
        free(f);
}
