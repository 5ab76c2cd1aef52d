/* Off-loop store access for the request path (DESIGN.md section 1): a job runs on libuv's thread
 * pool with a store connection taken from this pool, and its completion runs back on the loop
 * that submitted it. Connections are opened on demand, up to `max`, and kept for reuse; a
 * connection whose statement failed with IBEX_ECONN is closed instead of returned.
 *
 * Thread: submit and the done callback belong to the submitting loop's thread; run happens on a
 * pool thread, with the connection exclusively its own for the call. */
#ifndef IBEX_STORE_POOL_H
#define IBEX_STORE_POOL_H

#include <stddef.h>
#include <uv.h>

#include "store.h"

struct ibex_store_pool;

struct ibex_store_job;
/* Runs on a pool thread. Returns 0 or a negative IBEX_E*, stored in job->rc. */
typedef int (*ibex_store_job_run_fn)(struct ibex_store_job *job, struct ibex_store *store);
/* Runs on the submitting loop. rc: run's result, or IBEX_ECONN when no connection could be had
 * (then run was not called). */
typedef void (*ibex_store_job_done_fn)(struct ibex_store_job *job, int rc);

/* Embed in the caller's own state (for example in a request's arena); it must live until done. */
struct ibex_store_job {
    uv_work_t work;
    struct ibex_store_pool *pool;
    ibex_store_job_run_fn run;
    ibex_store_job_done_fn done;
    void *data;
    int rc;
};

/* A pool for url, opening at most max connections (>= 1). Opens nothing yet. */
struct ibex_store_pool *ibex_store_pool_new(const char *url, size_t max);
/* Closes every idle connection. Call after the last job's done has run. */
void ibex_store_pool_free(struct ibex_store_pool *pool);

/* Queues job on loop's thread pool. Returns 0 or a negative uv error (done is then not called). */
int ibex_store_pool_submit(uv_loop_t *loop, struct ibex_store_pool *pool,
                           struct ibex_store_job *job);

/* Runs fn with a connection now, on the calling thread (for a thread that may block: the CLI,
 * start-up, background threads). Returns as a job's rc would be. */
int ibex_store_pool_call(struct ibex_store_pool *pool, ibex_store_job_run_fn fn,
                         struct ibex_store_job *job);

#endif
