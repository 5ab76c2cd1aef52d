/* Store connection pool and off-loop jobs. The idle list is a mutex-protected stack: the mutex
 * is held only to push or pop one pointer, never across a database call. A caller that finds
 * the pool at its limit waits for a connection to come back. */
#include "pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "../core/alloc.h"
#include "../core/log.h"

struct ibex_store_pool {
    char *url;
    size_t max;
    size_t open; /* connections opened and not closed, idle or in use */
    struct ibex_store **idle;
    size_t nidle;
    pthread_mutex_t mu;
    pthread_cond_t returned;
};

struct ibex_store_pool *ibex_store_pool_new(const char *url, size_t max)
{
    struct ibex_store_pool *p = ibex_xcalloc(1, sizeof(*p));
    p->url = ibex_xstrdup(url);
    p->max = max ? max : 1;
    p->idle = ibex_xcalloc(p->max, sizeof(*p->idle));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->returned, NULL);
    return p;
}

void ibex_store_pool_free(struct ibex_store_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nidle; i++)
        ibex_store_close(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->returned);
    free(p->idle);
    free(p->url);
    free(p);
}

/* Takes an idle connection, or opens one under the limit, or waits for one to come back. */
static struct ibex_store *acquire(struct ibex_store_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->nidle == 0 && p->open >= p->max)
        pthread_cond_wait(&p->returned, &p->mu);
    if (p->nidle > 0) {
        struct ibex_store *s = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return s;
    }
    p->open++;
    pthread_mutex_unlock(&p->mu);

    struct ibex_store *s = NULL;
    char err[256];
    if (ibex_store_open(p->url, &s, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_WARN, "store connection failed", "error", err, NULL);
        pthread_mutex_lock(&p->mu);
        p->open--;
        pthread_cond_signal(&p->returned);
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    return s;
}

static void release(struct ibex_store_pool *p, struct ibex_store *s, bool broken)
{
    if (broken)
        ibex_store_close(s);
    pthread_mutex_lock(&p->mu);
    if (broken)
        p->open--;
    else
        p->idle[p->nidle++] = s;
    pthread_cond_signal(&p->returned);
    pthread_mutex_unlock(&p->mu);
}

int ibex_store_pool_call(struct ibex_store_pool *p, ibex_store_job_run_fn fn,
                         struct ibex_store_job *job)
{
    struct ibex_store *s = acquire(p);
    if (s == NULL)
        return IBEX_ECONN;
    int rc = fn(job, s);
    release(p, s, rc == IBEX_ECONN);
    return rc;
}

static void work_cb(uv_work_t *w)
{
    static _Thread_local bool named;
    struct ibex_store_job *job = w->data;
    if (!named) { /* one of libuv's pool threads, which run only store jobs */
        pthread_setname_np(pthread_self(), "ibex-store");
        named = true;
    }
    job->rc = ibex_store_pool_call(job->pool, job->run, job);
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct ibex_store_job *job = w->data;
    job->done(job, status == UV_ECANCELED ? IBEX_ECONN : job->rc);
}

int ibex_store_pool_submit(uv_loop_t *loop, struct ibex_store_pool *pool,
                           struct ibex_store_job *job)
{
    job->pool = pool;
    job->work.data = job;
    job->rc = 0;
    return uv_queue_work(loop, &job->work, work_cb, after_work_cb);
}
