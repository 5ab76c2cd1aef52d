/* The store writer (DESIGN.md section 1): a thread that takes records (one statement and its
 * parameters, copied) from a bounded queue and commits them in batches, one transaction per
 * <= interval_ms or <= batch_max records, so no event loop ever waits on a database.
 *
 * Queue: a bounded lock-free multi-producer queue (one compare-and-swap per enqueue, no lock
 * shared by the workers); see docs/adr/0005-store-layer.md.
 *
 * Thread: enqueue, flush and stats may be called from any thread; new and free from one owner.
 * A record that fails on its own (a constraint, a syntax error) is logged without its values
 * and counted in `failed`; the rest of its batch still commits. A lost connection is retried
 * with back-off; nothing accepted is dropped before free gives up (stop_timeout_ms). */
#ifndef IBEX_STORE_WRITER_H
#define IBEX_STORE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct ibex_store_writer_opts {
    size_t capacity;          /* queue slots, rounded up to a power of two; 0 = 65536 */
    size_t batch_max;         /* records per transaction; 0 = 500 */
    uint64_t interval_ms;     /* longest wait before a partial batch commits; 0 = 10 */
    uint64_t stop_timeout_ms; /* how long free retries an unreachable database; 0 = 10000 */
};

struct ibex_store_writer_stats {
    uint64_t enqueued;  /* records accepted */
    uint64_t committed; /* records committed */
    uint64_t failed;    /* accepted records the database refused (or free gave up on) */
    uint64_t dropped;   /* records refused by enqueue (queue full or writer stopping) */
    uint64_t batches;   /* transactions committed */
};

struct ibex_store_writer;

/* Starts the writer thread. The store is used only by that thread until ibex_store_writer_free
 * returns; the caller still owns it and closes it afterwards. opts may be NULL. Returns 0 or
 * IBEX_EINVAL. */
int ibex_store_writer_new(struct ibex_store *store, const struct ibex_store_writer_opts *opts,
                          struct ibex_store_writer **out);
/* Queues one statement; sql and every TEXT/BLOB parameter are copied, so the caller's buffers
 * may go at once. Never blocks. Returns 0, or IBEX_EFULL when the queue is full (or the writer
 * is stopping), counted in `dropped`. */
int ibex_store_writer_enqueue(struct ibex_store_writer *w, const char *sql,
                              const struct ibex_store_value *params, size_t nparams);
/* Waits until every record accepted before the call is committed (or failed). Returns 0 or
 * IBEX_ETIMEDOUT. Blocks: never call it on an event loop. */
int ibex_store_writer_flush(struct ibex_store_writer *w, uint64_t timeout_ms);
void ibex_store_writer_stats(struct ibex_store_writer *w, struct ibex_store_writer_stats *out);
/* Stops accepting, commits everything accepted, joins the thread and frees the writer. */
void ibex_store_writer_free(struct ibex_store_writer *w);

#endif
