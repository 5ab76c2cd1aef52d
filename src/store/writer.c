/* Store writer: producers copy a record into one allocation and publish it in a bounded
 * multi-producer single-consumer ring (Vyukov's bounded queue: a CAS on the enqueue position,
 * then a release store of the cell's sequence), so producers on different workers share no
 * lock. The one consumer, the writer thread, drains up to batch_max records, commits them in one
 * transaction, then advances `done`, which flush waits on.
 * Invariants: records leave the ring in position order, so done >= p means every record at a
 * position below p is resolved; the thread exits only when closed is set, no producer is inside
 * enqueue (inflight == 0) and the ring is empty, so nothing accepted is left behind. */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/log.h"

struct rec {
    struct ibex_store_stmt stmt; /* points into this allocation */
    struct ibex_store_value params[];
};

struct cell {
    atomic_size_t seq;
    struct rec *rec;
};

struct ibex_store_writer {
    struct ibex_store *store;
    struct cell *cells;
    size_t mask;
    size_t batch_max;
    uint64_t interval_ms, stop_timeout_ms;

    alignas(64) atomic_size_t enq; /* next position to claim (producers) */
    alignas(64) atomic_size_t deq; /* next position to take (writer; read by producers) */
    atomic_size_t done;            /* positions below this are committed or failed */
    atomic_int inflight;           /* producers inside enqueue */
    atomic_bool closed;
    atomic_uint_fast64_t enqueued, committed, failed, dropped, batches;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* writer waits: records, flush, stop */
    pthread_cond_t idle; /* flushers wait: done advanced */
    bool stopping, flush_req;
    uint64_t stop_deadline_ns;
    pthread_t thread;
};

static size_t pow2(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static struct rec *rec_copy(const char *sql, const struct ibex_store_value *params, size_t n)
{
    size_t sqllen = strlen(sql) + 1, bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (params[i].type == IBEX_STORE_TEXT || params[i].type == IBEX_STORE_BLOB)
            bytes += params[i].len;
    struct rec *r = ibex_xmalloc(sizeof(*r) + n * sizeof(r->params[0]) + sqllen + bytes);
    char *p = (char *)&r->params[n];
    memcpy(p, sql, sqllen);
    r->stmt = (struct ibex_store_stmt){p, r->params, n};
    p += sqllen;
    for (size_t i = 0; i < n; i++) {
        r->params[i] = params[i];
        if (params[i].type == IBEX_STORE_TEXT || params[i].type == IBEX_STORE_BLOB) {
            if (params[i].len)
                memcpy(p, params[i].p, params[i].len);
            r->params[i].p = p;
            p += params[i].len;
        }
    }
    return r;
}

int ibex_store_writer_enqueue(struct ibex_store_writer *w, const char *sql,
                              const struct ibex_store_value *params, size_t nparams)
{
    atomic_fetch_add(&w->inflight, 1);
    if (atomic_load(&w->closed)) {
        atomic_fetch_sub(&w->inflight, 1);
        atomic_fetch_add_explicit(&w->dropped, 1, memory_order_relaxed);
        return IBEX_EFULL;
    }
    size_t pos = atomic_load_explicit(&w->enq, memory_order_relaxed);
    struct cell *c;
    for (;;) {
        c = &w->cells[pos & w->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&w->enq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            atomic_fetch_sub(&w->inflight, 1);
            atomic_fetch_add_explicit(&w->dropped, 1, memory_order_relaxed);
            return IBEX_EFULL;
        } else {
            pos = atomic_load_explicit(&w->enq, memory_order_relaxed);
        }
    }
    /* The copy happens after the slot is ours: a full queue costs no allocation. */
    c->rec = rec_copy(sql, params, nparams);
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    atomic_fetch_add_explicit(&w->enqueued, 1, memory_order_relaxed);
    size_t depth = pos + 1 - atomic_load_explicit(&w->deq, memory_order_relaxed);
    atomic_fetch_sub(&w->inflight, 1);
    /* A full batch is waiting: wake the writer early. Signalling without the mutex may miss a
     * writer about to sleep; it then wakes at its interval, which bounds the delay anyway. */
    if (depth == w->batch_max)
        pthread_cond_signal(&w->wake);
    return 0;
}

static struct rec *dequeue(struct ibex_store_writer *w)
{
    size_t pos = atomic_load_explicit(&w->deq, memory_order_relaxed);
    struct cell *c = &w->cells[pos & w->mask];
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos + 1)
        return NULL; /* empty, or the producer of pos has not published yet */
    struct rec *r = c->rec;
    c->rec = NULL;
    atomic_store_explicit(&c->seq, pos + w->mask + 1, memory_order_release);
    atomic_store_explicit(&w->deq, pos + 1, memory_order_relaxed);
    return r;
}

static void log_failure(struct ibex_store_writer *w, const char *what, size_t n)
{
    char count[24];
    snprintf(count, sizeof(count), "%zu", n);
    ibex_log(IBEX_LOG_WARN, what, "records", count, "error", ibex_store_errmsg(w->store), NULL);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* After a lost connection: waits and says whether to retry (false once stopping has run past
 * its deadline). */
static bool backoff(struct ibex_store_writer *w, uint64_t *delay_ms)
{
    pthread_mutex_lock(&w->mu);
    bool give_up = w->stopping && ibex_clock_mono_ns() >= w->stop_deadline_ns;
    pthread_mutex_unlock(&w->mu);
    if (give_up)
        return false;
    sleep_ms(*delay_ms);
    *delay_ms = *delay_ms * 2 > 1000 ? 1000 : *delay_ms * 2;
    return true;
}

/* Commits stmts[off, end). A statement the database refuses is logged and skipped; the others
 * are committed in one transaction without it. */
static void commit_range(struct ibex_store_writer *w, const struct ibex_store_stmt *stmts,
                         size_t off, size_t end)
{
    uint64_t delay = 50;
    bool reported = false;
    while (off < end) {
        size_t at = 0;
        int rc = ibex_store_batch(w->store, stmts + off, end - off, &at);
        if (rc == 0) {
            atomic_fetch_add(&w->committed, end - off);
            atomic_fetch_add(&w->batches, 1);
            return;
        }
        if (rc == IBEX_ECONN || at >= end - off) {
            if (!reported)
                log_failure(w, "store writer: database unavailable, retrying", end - off);
            reported = true;
            if (backoff(w, &delay))
                continue;
            log_failure(w, "store writer: gave up on records at shutdown", end - off);
            atomic_fetch_add(&w->failed, end - off);
            return;
        }
        log_failure(w, "store writer: record refused by the database", 1);
        atomic_fetch_add(&w->failed, 1);
        if (at > 0)
            commit_range(w, stmts, off, off + at);
        off += at + 1;
    }
}

static void *run(void *arg)
{
    struct ibex_store_writer *w = arg;
    pthread_setname_np(pthread_self(), "ibex-writer");
    struct rec **recs = ibex_xcalloc(w->batch_max, sizeof(*recs));
    struct ibex_store_stmt *stmts = ibex_xcalloc(w->batch_max, sizeof(*stmts));
    for (;;) {
        size_t n = 0;
        while (n < w->batch_max && (recs[n] = dequeue(w)) != NULL) {
            stmts[n] = recs[n]->stmt;
            n++;
        }
        if (n) {
            commit_range(w, stmts, 0, n);
            for (size_t i = 0; i < n; i++)
                free(recs[i]);
            atomic_fetch_add(&w->done, n);
            pthread_mutex_lock(&w->mu);
            pthread_cond_broadcast(&w->idle);
            pthread_mutex_unlock(&w->mu);
            if (n == w->batch_max)
                continue;
        }
        pthread_mutex_lock(&w->mu);
        /* inflight before the positions: once it reads 0 after closed was set, no producer can
         * claim a position any more, so pending is final. */
        bool quiet = atomic_load(&w->inflight) == 0;
        size_t pending = atomic_load(&w->enq) - atomic_load(&w->deq);
        if (w->stopping && quiet && pending == 0) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        if (!w->stopping && !w->flush_req && pending < w->batch_max) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + w->interval_ms * 1000000ull;
            ts.tv_sec += (time_t)(ns / 1000000000ull);
            ts.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&w->wake, &w->mu, &ts);
        } else if (w->stopping && pending == 0) {
            /* A producer is between claiming and publishing: yield to it. */
            pthread_mutex_unlock(&w->mu);
            sched_yield();
            continue;
        }
        w->flush_req = false;
        pthread_mutex_unlock(&w->mu);
    }
    free(recs);
    free(stmts);
    return NULL;
}

int ibex_store_writer_new(struct ibex_store *store, const struct ibex_store_writer_opts *opts,
                          struct ibex_store_writer **out)
{
    struct ibex_store_writer_opts o = {0};
    if (opts)
        o = *opts;
    if (store == NULL || o.capacity > ((size_t)1 << 30) || o.batch_max > 100000)
        return IBEX_EINVAL;
    struct ibex_store_writer *w = ibex_xcalloc(1, sizeof(*w));
    w->store = store;
    size_t cap = pow2(o.capacity ? o.capacity : 65536);
    cap = cap < 2 ? 2 : cap;
    w->mask = cap - 1;
    w->batch_max = o.batch_max ? o.batch_max : 500;
    w->interval_ms = o.interval_ms ? o.interval_ms : 10;
    w->stop_timeout_ms = o.stop_timeout_ms ? o.stop_timeout_ms : 10000;
    w->cells = ibex_xcalloc(cap, sizeof(*w->cells));
    for (size_t i = 0; i < cap; i++)
        atomic_init(&w->cells[i].seq, i);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_cond_init(&w->idle, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        pthread_mutex_destroy(&w->mu);
        free(w->cells);
        free(w);
        return IBEX_EINVAL;
    }
    *out = w;
    return 0;
}

int ibex_store_writer_flush(struct ibex_store_writer *w, uint64_t timeout_ms)
{
    size_t target = atomic_load(&w->enq);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + timeout_ms % 1000 * 1000000ull;
    ts.tv_sec += (time_t)(timeout_ms / 1000 + ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&w->mu);
    w->flush_req = true;
    pthread_cond_signal(&w->wake);
    int rc = 0;
    while (atomic_load(&w->done) < target && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->idle, &w->mu, &ts);
    bool ok = atomic_load(&w->done) >= target;
    pthread_mutex_unlock(&w->mu);
    return ok ? 0 : IBEX_ETIMEDOUT;
}

void ibex_store_writer_stats(struct ibex_store_writer *w, struct ibex_store_writer_stats *out)
{
    out->enqueued = atomic_load(&w->enqueued);
    out->committed = atomic_load(&w->committed);
    out->failed = atomic_load(&w->failed);
    out->dropped = atomic_load(&w->dropped);
    out->batches = atomic_load(&w->batches);
}

void ibex_store_writer_free(struct ibex_store_writer *w)
{
    if (w == NULL)
        return;
    atomic_store(&w->closed, true);
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    w->stop_deadline_ns = ibex_clock_mono_ns() + w->stop_timeout_ms * 1000000ull;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->idle);
    pthread_mutex_destroy(&w->mu);
    free(w->cells);
    free(w);
}
