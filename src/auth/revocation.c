/* Revocation watcher (revocation.h): a poller thread on its own store connection, a Redis
 * subscriber thread, and a publish connection (a pool of one, store/redis.h) shared by the
 * callers of ibex_revocation_note.
 * Invariants:
 * - deliver() is the only caller of on_epoch; under deliver_mu it passes on only epochs larger
 *   than `seen`, so the callback sees a strictly increasing sequence whatever the thread.
 * - Redis I/O goes through store/redis.h: every wait has a deadline, a dead peer never raises
 *   SIGPIPE, and each wait of the subscriber also watches `wakefd`, an eventfd that stop makes
 *   readable and nobody drains: once stopping, every wait of that thread returns at once.
 * - The poller sleeps on a condvar (monotonic clock) that stop and "poll now" requests signal.
 * - Failures are logged once when a streak of them starts, then at most once a minute, and
 *   once more when it ends, so a Redis or database outage does not flood the log. */
#include "revocation.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/log.h"
#include "../core/str.h"
#include "../store/redis.h"
#include "../store/store.h"

#define SUB_CONNECT_MS 2000  /* connect + AUTH + SUBSCRIBE of the subscriber */
#define PUBLISH_MS 500       /* one whole publish, connection included */
#define PUBLISH_HOLD_MS 1000 /* no new publish connection for this long after a failure */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define REPLY_CAP (64 * 1024) /* unparsed bytes from Redis; more is a broken peer */
#define LOG_REPEAT_MS 60000
#define CHANNEL_MAX 256

/* A run of failures of one activity, for the log (see the invariants above). */
struct streak {
    uint64_t fails;
    uint64_t last_log_ms;
};

struct ibex_revocation {
    char *store_url;
    char store_shown[512]; /* store_url without its password */
    char *channel;
    uint64_t interval_ms;
    ibex_revocation_epoch_fn on_epoch;
    void *data;
    bool has_redis;
    struct ibex_redis_url redis;
    char redis_shown[300]; /* host:port */

    pthread_mutex_t deliver_mu;
    int64_t seen; /* largest epoch delivered; under deliver_mu */
    bool any_seen;

    pthread_mutex_t mu; /* stopping, poll_now */
    pthread_cond_t cv;
    bool stopping, poll_now;

    struct ibex_store *store; /* the poller's */
    struct streak poll_streak;
    pthread_t poller, subscriber;
    bool poller_started, subscriber_started;
    int wakefd;

    struct ibex_redis_pool *pub; /* one connection; NULL without Redis */
    pthread_mutex_t pub_mu;      /* pub_streak */
    struct streak pub_streak;

    atomic_uint_fast64_t polls, poll_errors, messages, publishes, publish_errors;
    atomic_bool connected;
    atomic_int_fast64_t epoch;
};

static uint64_t now_ms(void)
{
    return ibex_clock_mono_ns() / 1000000;
}

/* ---- logging ---- */

static void log_failure(struct streak *s, const char *msg, const char *where_key, const char *where,
                        const char *why)
{
    uint64_t now = now_ms();
    s->fails++;
    if (s->fails > 1 && now - s->last_log_ms < LOG_REPEAT_MS)
        return;
    s->last_log_ms = now;
    char n[24];
    snprintf(n, sizeof(n), "%" PRIu64, s->fails);
    ibex_log(IBEX_LOG_WARN, msg, where_key, where, "error", why, "failures", n, NULL);
}

static void log_recovery(struct streak *s, const char *msg, const char *where_key,
                         const char *where)
{
    if (s->fails == 0)
        return;
    char n[24];
    snprintf(n, sizeof(n), "%" PRIu64, s->fails);
    ibex_log(IBEX_LOG_INFO, msg, where_key, where, "failures", n, NULL);
    s->fails = 0;
}

/* ---- delivery ---- */

static void deliver(struct ibex_revocation *r, int64_t epoch)
{
    pthread_mutex_lock(&r->deliver_mu);
    if (!r->any_seen || epoch > r->seen) {
        r->any_seen = true;
        r->seen = epoch;
        atomic_store(&r->epoch, epoch);
        r->on_epoch(r->data, epoch);
    }
    pthread_mutex_unlock(&r->deliver_mu);
}

/* ---- publishing ---- */

int ibex_revocation_publish(struct ibex_revocation *r, int64_t epoch)
{
    if (!r->has_redis)
        return 0;
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, epoch);
    const char *argv[3] = {"PUBLISH", r->channel, num};
    char why[256] = "";
    redisReply *rep = NULL;
    /* The pool replaces a kept connection that Redis closed meanwhile (a restart), and holds
     * new connections back for PUBLISH_HOLD_MS after a failure. */
    int rc = ibex_redis_pool_command(r->pub, 3, argv, NULL, &rep, why, sizeof(why));
    if (rep != NULL)
        freeReplyObject(rep);

    pthread_mutex_lock(&r->pub_mu);
    if (rc != 0) {
        atomic_fetch_add(&r->publish_errors, 1);
        log_failure(&r->pub_streak, "revocation: redis publish failed", "redis", r->redis_shown,
                    why);
    } else {
        atomic_fetch_add(&r->publishes, 1);
        log_recovery(&r->pub_streak, "revocation: redis publish recovered", "redis",
                     r->redis_shown);
    }
    pthread_mutex_unlock(&r->pub_mu);
    return rc;
}

void ibex_revocation_note(struct ibex_revocation *r, int64_t epoch)
{
    deliver(r, epoch);
    ibex_revocation_publish(r, epoch);
}

/* ---- subscriber ---- */

static bool reply_is(const redisReply *rep, size_t i, const char *s)
{
    return rep->type == REDIS_REPLY_ARRAY && rep->elements > i &&
           rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i]->len == strlen(s) &&
           memcmp(rep->element[i]->str, s, rep->element[i]->len) == 0;
}

static void request_poll(struct ibex_revocation *r)
{
    pthread_mutex_lock(&r->mu);
    r->poll_now = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_message(struct ibex_revocation *r, const redisReply *rep, struct streak *bad)
{
    atomic_fetch_add(&r->messages, 1);
    const redisReply *m = rep->elements == 3 ? rep->element[2] : NULL;
    uint64_t epoch;
    if (m == NULL || m->type != REDIS_REPLY_STRING ||
        ibex_str_to_u64((struct ibex_str){m->str, m->len}, INT64_MAX, &epoch) != 0) {
        /* The payload is not quoted: only ibex instances should publish on this channel. */
        log_failure(bad, "revocation: malformed message ignored", "channel", r->channel,
                    "not a decimal epoch");
        return;
    }
    deliver(r, (int64_t)epoch);
}

/* One connection of the subscriber: connect, AUTH, SUBSCRIBE, then messages until the
 * connection fails (an error code, the reason in why) or stop (STOPPED). *subscribed tells
 * whether the subscription was confirmed. */
static int subscribe_once(struct ibex_revocation *r, bool *subscribed, struct streak *sub_streak,
                          struct streak *bad, char *why, size_t whylen)
{
    struct ibex_redis_conn c;
    *subscribed = false;
    uint64_t deadline = now_ms() + SUB_CONNECT_MS;
    int rc = ibex_redis_connect(&r->redis, "ibex-revocation-sub", REPLY_CAP, r->wakefd, deadline,
                                &c, why, whylen);
    if (rc != 0)
        return rc;
    redisReply *rep = NULL;
    rc = ibex_redis_command(&c, 2, (const char *[]){"SUBSCRIBE", r->channel}, NULL,
                            r->redis.password, r->wakefd, deadline, &rep, why, whylen);
    if (rc == 0 && !reply_is(rep, 0, "subscribe")) {
        snprintf(why, whylen, "SUBSCRIBE: unexpected reply");
        rc = IBEX_ECONN;
    }
    if (rep != NULL)
        freeReplyObject(rep);
    if (rc != 0) {
        ibex_redis_close(&c);
        return rc;
    }
    *subscribed = true;
    atomic_store(&r->connected, true);
    if (sub_streak->fails > 0)
        log_recovery(sub_streak, "revocation: redis subscribed again", "redis", r->redis_shown);
    else
        ibex_log(IBEX_LOG_INFO, "revocation: redis subscribed", "redis", r->redis_shown, "channel",
                 r->channel, NULL);
    /* Whatever was published while we were away is lost: ask the store instead. */
    request_poll(r);
    for (;;) {
        rc = ibex_redis_reply(&c, r->wakefd, UINT64_MAX, &rep, why, whylen);
        if (rc != 0)
            break;
        if (reply_is(rep, 0, "message"))
            on_message(r, rep, bad);
        freeReplyObject(rep);
    }
    atomic_store(&r->connected, false);
    ibex_redis_close(&c);
    return rc;
}

static void *subscriber_main(void *arg)
{
    struct ibex_revocation *r = arg;
    pthread_setname_np(pthread_self(), "ibex-revoke-sub");
    struct streak sub_streak = {0}, bad = {0};
    uint64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        char why[256] = "";
        bool subscribed;
        int rc = subscribe_once(r, &subscribed, &sub_streak, &bad, why, sizeof(why));
        if (rc == IBEX_REDIS_STOPPED)
            break;
        if (subscribed)
            backoff = BACKOFF_MIN_MS;
        log_failure(&sub_streak, "revocation: redis subscriber disconnected, retrying", "redis",
                    r->redis_shown, why);
        struct pollfd p = {.fd = r->wakefd, .events = POLLIN};
        if (poll(&p, 1, (int)backoff) > 0)
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* ---- poller ---- */

struct epoch_row {
    bool found;
    int64_t epoch;
};

static int epoch_row(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    struct epoch_row *e = data;
    if (ncols == 1 && cols[0].type == IBEX_STORE_INT) {
        e->found = true;
        e->epoch = cols[0].i;
    }
    return 0;
}

static int read_epoch(struct ibex_store *st, int64_t *epoch, char *err, size_t errlen)
{
    struct epoch_row e = {0};
    int rc = ibex_store_exec(st, "SELECT epoch FROM identity_epoch WHERE id = 1", NULL, 0,
                             epoch_row, &e);
    if (rc != 0) {
        snprintf(err, errlen, "%s", ibex_store_errmsg(st));
        return rc < 0 ? rc : IBEX_EDB;
    }
    if (!e.found) {
        snprintf(err, errlen, "identity_epoch has no row with id 1 (is the store migrated?)");
        return IBEX_EDB;
    }
    *epoch = e.epoch;
    return 0;
}

static void poll_once(struct ibex_revocation *r)
{
    char err[512] = "";
    int64_t epoch = 0;
    int rc = 0;
    atomic_fetch_add(&r->polls, 1);
    if (r->store == NULL)
        rc = ibex_store_open(r->store_url, &r->store, err, sizeof(err));
    if (rc == 0) {
        rc = read_epoch(r->store, &epoch, err, sizeof(err));
        if (rc == IBEX_ECONN) {
            /* Reopened at the next poll. */
            ibex_store_close(r->store);
            r->store = NULL;
        }
    }
    if (rc != 0) {
        atomic_fetch_add(&r->poll_errors, 1);
        log_failure(&r->poll_streak, "revocation: poll failed", "store", r->store_shown, err);
        return;
    }
    log_recovery(&r->poll_streak, "revocation: poll recovered", "store", r->store_shown);
    deliver(r, epoch);
}

static void *poller_main(void *arg)
{
    struct ibex_revocation *r = arg;
    pthread_setname_np(pthread_self(), "ibex-revoke");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        uint64_t deadline = ibex_clock_mono_ns() + r->interval_ms * 1000000;
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000),
                              .tv_nsec = (long)(deadline % 1000000000)};
        while (!r->stopping && !r->poll_now && ibex_clock_mono_ns() < deadline)
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (r->stopping)
            break;
        r->poll_now = false;
        pthread_mutex_unlock(&r->mu);
        poll_once(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- start, stats, stop ---- */

int ibex_revocation_start(const struct ibex_revocation_opts *o, struct ibex_revocation **out,
                          char *err, size_t errlen)
{
    struct ibex_revocation *r = NULL;
    int rc = IBEX_EINVAL;
    *out = NULL;
    if (o == NULL || o->store_url == NULL || *o->store_url == '\0' || o->on_epoch == NULL) {
        snprintf(err, errlen, "revocation: store_url and on_epoch are required");
        goto out;
    }
    if (o->poll_interval_ms < IBEX_REVOCATION_MIN_INTERVAL_MS) {
        snprintf(err, errlen, "revocation: poll interval below %d ms",
                 IBEX_REVOCATION_MIN_INTERVAL_MS);
        goto out;
    }
    const char *channel = o->channel && *o->channel ? o->channel : IBEX_REVOCATION_CHANNEL;
    if (strlen(channel) > CHANNEL_MAX) {
        snprintf(err, errlen, "revocation: channel longer than %d bytes", CHANNEL_MAX);
        goto out;
    }

    r = ibex_xcalloc(1, sizeof(*r));
    r->wakefd = -1;
    r->store_url = ibex_xstrdup(o->store_url);
    ibex_store_redact_url(o->store_url, r->store_shown, sizeof(r->store_shown));
    r->channel = ibex_xstrdup(channel);
    r->interval_ms = o->poll_interval_ms;
    r->on_epoch = o->on_epoch;
    r->data = o->data;
    pthread_mutex_init(&r->deliver_mu, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->pub_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);

    if (o->redis_url != NULL && *o->redis_url != '\0') {
        rc = ibex_redis_parse_url(o->redis_url, &r->redis, err, errlen);
        if (rc != 0)
            goto out;
        r->has_redis = true;
        ibex_redis_url_show(&r->redis, r->redis_shown, sizeof(r->redis_shown));
        struct ibex_redis_pool_opts po = {.url = &r->redis,
                                          .name = "ibex-revocation-pub",
                                          .max_conns = 1,
                                          .timeout_ms = PUBLISH_MS,
                                          .hold_ms = PUBLISH_HOLD_MS,
                                          .reply_cap = REPLY_CAP};
        r->pub = ibex_redis_pool_new(&po);
    }

    char why[512];
    rc = ibex_store_open(r->store_url, &r->store, why, sizeof(why));
    if (rc == 0) {
        int64_t epoch;
        rc = read_epoch(r->store, &epoch, why, sizeof(why));
        if (rc == 0)
            deliver(r, epoch);
    }
    if (rc != 0) {
        snprintf(err, errlen, "revocation: store %s: %s", r->store_shown, why);
        goto out;
    }

    if (r->has_redis) {
        r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->wakefd < 0) {
            snprintf(err, errlen, "revocation: eventfd: %s", strerror(errno));
            rc = IBEX_EINVAL;
            goto out;
        }
    }
    rc = pthread_create(&r->poller, NULL, poller_main, r);
    if (rc == 0) {
        r->poller_started = true;
        if (r->has_redis && (rc = pthread_create(&r->subscriber, NULL, subscriber_main, r)) == 0)
            r->subscriber_started = true;
    }
    if (rc != 0) {
        snprintf(err, errlen, "revocation: cannot start a thread: %s", strerror(rc));
        rc = IBEX_EINVAL;
        goto out;
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    ibex_revocation_stop(r);
    return rc;
}

void ibex_revocation_stats(struct ibex_revocation *r, struct ibex_revocation_stats *out)
{
    out->polls = atomic_load(&r->polls);
    out->poll_errors = atomic_load(&r->poll_errors);
    out->messages = atomic_load(&r->messages);
    out->publishes = atomic_load(&r->publishes);
    out->publish_errors = atomic_load(&r->publish_errors);
    out->redis_connected = atomic_load(&r->connected);
    out->epoch = atomic_load(&r->epoch);
}

void ibex_revocation_stop(struct ibex_revocation *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->wakefd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(r->wakefd, &one, sizeof(one));
        (void)n; /* an eventfd write of 1 cannot fail short of overflow */
    }
    if (r->poller_started)
        pthread_join(r->poller, NULL);
    if (r->subscriber_started)
        pthread_join(r->subscriber, NULL);
    if (r->store != NULL)
        ibex_store_close(r->store);
    ibex_redis_pool_free(r->pub);
    if (r->wakefd >= 0)
        close(r->wakefd);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->pub_mu);
    pthread_mutex_destroy(&r->deliver_mu);
    memset(r->redis.password, 0, sizeof(r->redis.password));
    free(r->store_url);
    free(r->channel);
    free(r);
}
