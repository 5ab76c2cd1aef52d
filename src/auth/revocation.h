/* Revocation watcher: tells the process when the store's identity epoch (table identity_epoch,
 * one row id = 1; docs/identity.md "Revocation") moved, so every worker cache can drop entries
 * older than it.
 *
 * Two sources, both on threads of their own:
 * - polling (always on): a thread with its own store connection reads the epoch every
 *   poll_interval_ms; a failed poll is counted, logged and retried at the next interval, the
 *   connection reopened when it was lost;
 * - Redis pub/sub (when redis_url is set): a thread subscribed to `channel` receives each new
 *   epoch as decimal text; it reconnects with back-off (100 ms doubling to 2 s) while Redis is
 *   away, and asks the poller for an immediate poll after each (re)subscribe, since messages
 *   sent meanwhile are lost.
 * An instance that changed the epoch itself calls ibex_revocation_note, which delivers the new
 * epoch at once and publishes it to the other instances.
 *
 * Redis URLs and connections: store/redis.h (ibex_redis_parse_url). db is accepted and ignored,
 * since pub/sub channels are not per database. An ACL user needs SUBSCRIBE and PUBLISH on the
 * channel; connections are named ibex-revocation-sub:<pid> and ibex-revocation-pub:<pid>.
 * Passwords never appear in a log line or an error message. */
#ifndef IBEX_AUTH_REVOCATION_H
#define IBEX_AUTH_REVOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IBEX_REVOCATION_CHANNEL "ibex:identity"
#define IBEX_REVOCATION_MIN_INTERVAL_MS 50

/* Called with each epoch strictly larger than every epoch delivered before (the first one
 * observed, at start, included). Calls are serialised by an internal lock, so a callback never
 * sees a value that is not larger than the one before; it runs on the caller of
 * ibex_revocation_start or ibex_revocation_note, on the poller or on the subscriber thread, and
 * must be quick and must not call ibex_revocation_note or ibex_revocation_stop. */
typedef void (*ibex_revocation_epoch_fn)(void *data, int64_t epoch);

struct ibex_revocation_opts {
    const char *store_url;             /* required; the poller opens its own connection */
    const char *redis_url;             /* NULL or "" = polling only */
    const char *channel;               /* NULL or "" = IBEX_REVOCATION_CHANNEL */
    uint64_t poll_interval_ms;         /* >= IBEX_REVOCATION_MIN_INTERVAL_MS */
    ibex_revocation_epoch_fn on_epoch; /* required */
    void *data;                        /* passed to on_epoch */
};

struct ibex_revocation_stats {
    uint64_t polls;          /* poll attempts, failed ones included */
    uint64_t poll_errors;    /* polls that could not read the epoch */
    uint64_t messages;       /* pub/sub messages received (malformed ones included) */
    uint64_t publishes;      /* PUBLISH commands Redis acknowledged */
    uint64_t publish_errors; /* publishes that failed or were skipped while Redis is away */
    bool redis_connected;    /* the subscriber is subscribed right now */
    int64_t epoch;           /* largest epoch delivered to on_epoch */
};

struct ibex_revocation;

/* Opens the poller's store connection, reads the epoch once and delivers it to on_epoch (on
 * the calling thread), then starts the poller and, when redis_url is set, the subscriber. Redis
 * being unreachable or refusing the password is not an error here: it is logged and retried in
 * the background while polling carries on. The options' strings are copied.
 * Returns 0 and *out (stop it with ibex_revocation_stop), or IBEX_EINVAL (bad options or Redis
 * URL), IBEX_ECONN (the store cannot be opened) or another negative IBEX_E* of the store (the
 * epoch cannot be read, e.g. an unmigrated store), with one password-free line in err. */
int ibex_revocation_start(const struct ibex_revocation_opts *o, struct ibex_revocation **out,
                          char *err, size_t errlen);

/* This instance changed the epoch itself (after its transaction committed): delivers epoch to
 * on_epoch on the calling thread when it is larger than any delivered so far, then publishes it
 * (ibex_revocation_publish), even when it was not larger, so other instances learn of it.
 * Blocks at most about 500 ms. Thread-safe. */
void ibex_revocation_note(struct ibex_revocation *r, int64_t epoch);

/* Sends PUBLISH channel epoch over a connection shared by all callers (they take turns),
 * opened lazily and replaced when Redis closed it since the last publish. Bounded
 * by a 500 ms deadline; after a failure no connection is tried for 1 s, and publishes meanwhile
 * fail at once. Failures are counted and logged, never fatal. Returns 0, IBEX_ECONN or
 * IBEX_ETIMEDOUT; 0 without doing anything when redis_url is not set. Thread-safe. */
int ibex_revocation_publish(struct ibex_revocation *r, int64_t epoch);

/* A snapshot of the counters. Thread-safe, lock-free. */
void ibex_revocation_stats(struct ibex_revocation *r, struct ibex_revocation_stats *out);

/* Wakes the poller and the subscriber, joins them and frees r (NULL is a no-op). Prompt: waits
 * for a poll that is in flight (a store call cannot be interrupted), nothing else. No call on r
 * may be in progress or follow. */
void ibex_revocation_stop(struct ibex_revocation *r);

#endif
