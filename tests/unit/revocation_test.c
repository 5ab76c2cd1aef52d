/* src/auth/revocation.c: the revocation watcher against real databases and a real Redis.
 * Store cases run on SQLite (a migrated temp file) and, when IBEX_TEST_PG_URL is set, on
 * Postgres (a freshly emptied schema); Redis cases use IBEX_TEST_REDIS_URL (make unit starts
 * scripts/redis.sh) and print SKIP with the reason without it. The restart case runs a private
 * redis-server of its own on a free port, so it can kill and restart it.
 * Covers: the first read at start, a poll seeing another connection's bump, on_epoch strictly
 * increasing whatever the source and the thread, poll failures (table gone, backend killed)
 * logged once and recovered, pub/sub between two instances with a 60 s poll interval (latency
 * measured), malformed and stale messages, subscriber and publisher connections killed,
 * Redis unreachable, killed and restarted, wrong passwords (not fatal, never logged), and a
 * prompt stop (URL parsing: redis_test). Callbacks only record; the test thread asserts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/auth/revocation.h"
#include "../../src/core/log.h"
#include "../../src/store/redis.h"
#include "../../src/store/store.h"
#include "testutil.h"
#include "storeutil.h"

static const char *pg_url;
static const char *redis_url;
static struct ibex_redis_url redis_parts;
static char channel[64];

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- fixture: a migrated store and an admin connection to it ---- */

struct fx {
    bool pg;
    char url[512];
    char path[64];
    struct ibex_store *st;
};

static int setup_sqlite(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "/tmp/ibex-revocation-test-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(f->url, sizeof(f->url), "sqlite://%s", f->path);
    char err[512];
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->pg = true;
    snprintf(f->url, sizeof(f->url), "%s", pg_url);
    char err[512];
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    tu_store_must(f->st, ibex_store_script(f->st, "DROP SCHEMA IF EXISTS public CASCADE; "
                                                  "CREATE SCHEMA public"));
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ibex_store_close(f->st);
    if (!f->pg)
        tu_remove_sqlite_files(f->path);
    free(f);
    return 0;
}

static void set_epoch(struct fx *f, int64_t epoch)
{
    struct ibex_store_value p = ibex_store_int(epoch);
    tu_store_must(f->st, ibex_store_exec(f->st, "UPDATE identity_epoch SET epoch = $1 WHERE id = 1",
                                         &p, 1, NULL, NULL));
}

/* The password of a scheme://user:password@host URL, or "". */
static void url_password(const char *url, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *s = strstr(url, "://");
    const char *at = s ? strrchr(s, '@') : NULL;
    const char *colon = at ? memchr(s + 3, ':', (size_t)(at - s - 3)) : NULL;
    if (colon)
        snprintf(out, outlen, "%.*s", (int)(at - colon - 1), colon + 1);
}

/* ---- recording on_epoch ---- */

#define REC_MAX 4096
struct rec {
    pthread_mutex_t mu;
    size_t n;
    int64_t values[REC_MAX];
    unsigned violations; /* a value not larger than the one before */
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

static void on_epoch(void *data, int64_t epoch)
{
    struct rec *r = data;
    pthread_mutex_lock(&r->mu);
    if (r->n > 0 && epoch <= r->values[r->n - 1])
        r->violations++;
    if (r->n < REC_MAX)
        r->values[r->n++] = epoch;
    pthread_mutex_unlock(&r->mu);
}

static int64_t rec_last(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    int64_t v = r->n ? r->values[r->n - 1] : -1;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static size_t rec_count(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Waits until the last delivered epoch is at least want; returns the ms waited or -1. */
static int64_t rec_wait(struct rec *r, int64_t want, uint64_t timeout_ms)
{
    uint64_t t0 = ms_now();
    while (rec_last(r) < want) {
        if (ms_now() - t0 > timeout_ms)
            return -1;
        sleep_ms(2);
    }
    return (int64_t)(ms_now() - t0);
}

static struct ibex_revocation_stats stats(struct ibex_revocation *r)
{
    struct ibex_revocation_stats s;
    ibex_revocation_stats(r, &s);
    return s;
}

static bool wait_connected(struct ibex_revocation *r, bool want, uint64_t timeout_ms)
{
    uint64_t t0 = ms_now();
    while (stats(r).redis_connected != want) {
        if (ms_now() - t0 > timeout_ms)
            return false;
        sleep_ms(5);
    }
    return true;
}

static bool wait_polls(struct ibex_revocation *r, uint64_t polls, uint64_t timeout_ms)
{
    uint64_t t0 = ms_now();
    while (stats(r).polls < polls) {
        if (ms_now() - t0 > timeout_ms)
            return false;
        sleep_ms(5);
    }
    return true;
}

static struct ibex_revocation *start(const char *store_url, const char *redis, uint64_t interval,
                                     struct rec *rec)
{
    struct ibex_revocation_opts o = {.store_url = store_url,
                                     .redis_url = redis,
                                     .channel = channel,
                                     .poll_interval_ms = interval,
                                     .on_epoch = on_epoch,
                                     .data = rec};
    struct ibex_revocation *r = NULL;
    char err[512];
    int rc = ibex_revocation_start(&o, &r, err, sizeof(err));
    if (rc != 0)
        fail_msg("ibex_revocation_start: %d %s", rc, err);
    return r;
}

static uint64_t timed_stop(struct ibex_revocation *r)
{
    uint64_t t0 = ms_now();
    ibex_revocation_stop(r);
    return ms_now() - t0;
}

/* ---- log capture (tu_capture_*) ---- */

static void capture_start(struct tu_capture *c)
{
    assert_int_equal(tu_capture_start(c), 0);
}

static char *capture_end(struct tu_capture *c)
{
    char *s = tu_capture_end(c);
    assert_non_null(s);
    return s;
}

static int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void assert_absent(const char *log, const char *secret)
{
    if (*secret && strstr(log, secret))
        fail_msg("a password reached the log:\n%s", log);
}

/* ---- Redis helpers ---- */

static bool need_redis(void)
{
    return tu_need_redis(redis_url);
}

/* A plain hiredis connection of the test's own, to publish and to kill clients. */
static redisContext *raw_connect(void)
{
    return tu_redis_raw(&redis_parts);
}

static void raw_command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (rep == NULL)
        fail_msg("raw redis command: %s", c->errstr);
    if (rep->type == REDIS_REPLY_ERROR)
        fail_msg("raw redis command refused: %s", rep->str);
    freeReplyObject(rep);
}

/* Kills this process's connections named role:<pid> (the module names them so); returns how
 * many. Other processes sharing the Redis are left alone. */
static int raw_kill(redisContext *c, const char *role)
{
    return tu_redis_clients(c, role, true);
}

/* A redis URL to the test server with another user and password. */
static void redis_url_with(char *out, size_t outlen, const char *user, const char *password)
{
    snprintf(out, outlen, "redis://%s:%s@%s:%d/0", user, password, redis_parts.host,
             redis_parts.port);
}

/* ---- start ---- */

static void test_start_errors(void **state)
{
    struct fx *f = *state;
    struct rec rec;
    rec_init(&rec);
    struct ibex_revocation *r = (void *)1;
    char err[512];
    struct ibex_revocation_opts o = {
        .store_url = f->url, .poll_interval_ms = 10, .on_epoch = on_epoch, .data = &rec};
    assert_int_equal(ibex_revocation_start(&o, &r, err, sizeof(err)), IBEX_EINVAL);
    assert_null(r);
    o.poll_interval_ms = 1000;
    o.on_epoch = NULL;
    assert_int_equal(ibex_revocation_start(&o, &r, err, sizeof(err)), IBEX_EINVAL);
    o.on_epoch = on_epoch;

    /* A bad Redis URL is a configuration error: refused, and the password is not echoed. */
    o.redis_url = "redis://:TOPSECRET@h:99999";
    assert_int_equal(ibex_revocation_start(&o, &r, err, sizeof(err)), IBEX_EINVAL);
    assert_null(strstr(err, "TOPSECRET"));
    o.redis_url = NULL;

    /* A store that cannot be opened, one that is not migrated, and an unreachable Postgres. */
    o.store_url = "sqlite:///nonexistent-ibex-dir/x.db";
    assert_true(ibex_revocation_start(&o, &r, err, sizeof(err)) < 0);
    assert_null(r);
    char path[64];
    assert_int_equal(tu_write_temp("", path), 0);
    char url[128];
    snprintf(url, sizeof(url), "sqlite://%s", path);
    o.store_url = url;
    assert_true(ibex_revocation_start(&o, &r, err, sizeof(err)) < 0);
    if (!strstr(err, "identity_epoch"))
        fail_msg("unclear error for an unmigrated store: %s", err);
    tu_remove_sqlite_files(path);
    snprintf(url, sizeof(url), "postgres://ibex:PGSECRET@127.0.0.1:%d/ibex", tu_closed_port());
    assert_int_equal(ibex_revocation_start(&o, &r, err, sizeof(err)), IBEX_ECONN);
    assert_null(strstr(err, "PGSECRET"));
    assert_int_equal(rec_count(&rec), 0); /* no failed start delivered anything */
}

/* start reads the epoch once and delivers it before returning; a poll sees another
 * connection's bump within about two intervals. */
static void test_poll_sees_bump(void **state)
{
    struct fx *f = *state;
    set_epoch(f, 3);
    struct rec rec;
    rec_init(&rec);
    const uint64_t interval = 200;
    struct ibex_revocation *r = start(f->url, NULL, interval, &rec);
    assert_int_equal(rec_count(&rec), 1);
    assert_int_equal(rec_last(&rec), 3);
    assert_int_equal(stats(r).epoch, 3);

    set_epoch(f, 5);
    int64_t waited = rec_wait(&rec, 5, 5000);
    assert_true(waited >= 0);
    if (waited > (int64_t)(2 * interval + 500))
        fail_msg("a poll took %" PRId64 " ms to see the bump (interval %" PRIu64 " ms)", waited,
                 interval);
    struct ibex_revocation_stats s = stats(r);
    assert_int_equal(s.epoch, 5);
    assert_true(s.polls >= 1);
    assert_int_equal(s.poll_errors, 0);
    assert_false(s.redis_connected);
    assert_int_equal(s.messages, 0);
    /* Without Redis, publishing is a successful no-op. */
    assert_int_equal(ibex_revocation_publish(r, 6), 0);
    ibex_revocation_stop(r);
    assert_int_equal(rec.violations, 0);
    assert_int_equal(rec_count(&rec), 2);
}

/* on_epoch never sees a value that is not larger than the one before: notes below the current
 * epoch, a store moved backwards, and many threads noting at once while the store moves. */
struct noter {
    struct ibex_revocation *r;
    int id;
};

static void *noter_main(void *arg)
{
    struct noter *n = arg;
    for (int j = 0; j < 200; j++) {
        /* Up and down: even steps high, odd steps low. */
        int v = (j % 2 == 0) ? j * 4 + n->id : (199 - j) * 4 + n->id;
        ibex_revocation_note(n->r, v);
    }
    return NULL;
}

static void test_never_decreasing(void **state)
{
    struct fx *f = *state;
    struct rec rec;
    rec_init(&rec);
    struct ibex_revocation *r = start(f->url, NULL, 50, &rec);
    ibex_revocation_note(r, 10); /* delivered on this thread, before note returns */
    assert_int_equal(rec_last(&rec), 10);
    ibex_revocation_note(r, 10);
    ibex_revocation_note(r, 4);
    set_epoch(f, 3);
    uint64_t polls = stats(r).polls;
    assert_true(wait_polls(r, polls + 3, 5000));
    assert_int_equal(rec_count(&rec), 2); /* 0, 10 */
    set_epoch(f, 11);
    assert_true(rec_wait(&rec, 11, 5000) >= 0);

    pthread_t th[4];
    struct noter nt[4];
    for (int i = 0; i < 4; i++) {
        nt[i] = (struct noter){r, i};
        pthread_create(&th[i], NULL, noter_main, &nt[i]);
    }
    for (int k = 0; k < 40; k++)
        set_epoch(f, (k * 37) % 900);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(rec_last(&rec) >= 795); /* the largest note: 198 * 4 + 3 */
    set_epoch(f, 1000);
    assert_true(rec_wait(&rec, 1000, 5000) >= 0);
    assert_int_equal(stats(r).epoch, 1000);
    assert_int_equal(stats(r).publish_errors, 0);
    ibex_revocation_stop(r);
    assert_int_equal(rec.violations, 0);
}

/* A failed poll is counted, logged once for the whole outage, and recovers; on Postgres a
 * killed backend is replaced. The store URL's password never reaches the log. */
static void test_poll_errors(void **state)
{
    struct fx *f = *state;
    struct tu_capture cap;
    capture_start(&cap);
    struct rec rec;
    rec_init(&rec);
    struct ibex_revocation *r = start(f->url, NULL, 50, &rec);

    tu_store_must(f->st, ibex_store_script(f->st, "DROP TABLE identity_epoch"));
    uint64_t t0 = ms_now();
    while (stats(r).poll_errors < 3 && ms_now() - t0 < 5000)
        sleep_ms(10);
    assert_true(stats(r).poll_errors >= 3);
    tu_store_must(
        f->st, ibex_store_script(f->st, "CREATE TABLE identity_epoch (id INTEGER PRIMARY KEY, "
                                        "epoch BIGINT NOT NULL); "
                                        "INSERT INTO identity_epoch (id, epoch) VALUES (1, 42)"));
    assert_true(rec_wait(&rec, 42, 5000) >= 0);

    if (f->pg) {
        tu_store_must(f->st,
                      ibex_store_exec(f->st,
                                      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND "
                                      "pid <> pg_backend_pid()",
                                      NULL, 0, NULL, NULL));
        set_epoch(f, 43);
        assert_true(rec_wait(&rec, 43, 5000) >= 0);
    }
    struct ibex_revocation_stats s = stats(r);
    ibex_revocation_stop(r);
    char *log = capture_end(&cap);
    /* One outage, one line (two on Postgres when the killed backend failed a poll too). */
    int failed = count_substr(log, "revocation: poll failed");
    assert_true(failed == 1 || (f->pg && failed == 2));
    assert_int_equal(count_substr(log, "revocation: poll recovered"), failed);
    assert_true(s.poll_errors >= 3);
    assert_non_null(strstr(log, "identity_epoch"));
    char pw[256];
    url_password(f->url, pw, sizeof(pw));
    assert_absent(log, pw);
    free(log);
    assert_int_equal(rec.violations, 0);
}

/* ---- Redis ---- */

/* note() on A reaches B through pub/sub although both poll only once a minute; malformed and
 * stale messages change nothing; killed subscriber and publisher connections come back. */
static void test_pubsub(void **state)
{
    if (!need_redis())
        skip();
    struct fx *f = *state;
    char acl_url[600];
    redis_url_with(acl_url, sizeof(acl_url), "default", redis_parts.password);
    struct tu_capture cap;
    capture_start(&cap);
    struct rec ra, rb;
    rec_init(&ra);
    rec_init(&rb);
    struct ibex_revocation *a = start(f->url, acl_url, 60000, &ra); /* AUTH user password */
    struct ibex_revocation *b = start(f->url, redis_url, 60000, &rb);
    assert_true(wait_connected(a, true, 5000));
    assert_true(wait_connected(b, true, 5000));

    /* The store still says 0: B can learn 7 only from the message. */
    uint64_t t0 = ms_now();
    ibex_revocation_note(a, 7);
    int64_t waited = rec_wait(&rb, 7, 5000);
    printf("pub/sub latency A -> B: %" PRId64 " ms (note returned after %" PRIu64 " ms)\n", waited,
           ms_now() - t0);
    assert_true(waited >= 0);
    assert_true(waited < 2000);
    assert_int_equal(stats(a).publishes, 1);
    assert_int_equal(stats(a).publish_errors, 0);
    assert_true(stats(b).messages >= 1);

    redisContext *raw = raw_connect();
    raw_command(raw, "PUBLISH %s %s", channel, "not-a-number");
    raw_command(raw, "PUBLISH %s %s", channel, "-1");
    raw_command(raw, "PUBLISH %s %s", channel, "3");
    ibex_revocation_note(a, 8);
    assert_true(rec_wait(&rb, 8, 5000) >= 0);
    assert_true(stats(b).messages >= 5);
    assert_int_equal(rec_count(&rb), 3); /* 0, 7, 8 */

    /* Both subscribers lose their connection: they come back and messages flow again. */
    assert_int_equal(raw_kill(raw, "ibex-revocation-sub"), 2);
    int64_t next = 9;
    t0 = ms_now();
    while (rec_last(&rb) < 9 && ms_now() - t0 < 5000) {
        ibex_revocation_note(a, next++);
        sleep_ms(50);
    }
    assert_true(rec_last(&rb) >= 9);

    /* A's publish connection is killed: the next publish reconnects without an error. */
    uint64_t errors = stats(a).publish_errors;
    assert_int_equal(raw_kill(raw, "ibex-revocation-pub"), 1);
    assert_int_equal(ibex_revocation_publish(a, 100), 0);
    assert_int_equal(stats(a).publish_errors, errors);
    assert_true(rec_wait(&rb, 100, 2000) >= 0);
    redisFree(raw);

    assert_true(timed_stop(a) < 1000);
    assert_true(timed_stop(b) < 1000);
    char *log = capture_end(&cap);
    assert_int_equal(count_substr(log, "redis subscribed\""), 2);
    assert_int_equal(count_substr(log, "redis subscribed again"), 2);
    assert_int_equal(count_substr(log, "malformed message ignored"), 2); /* once per instance */
    assert_absent(log, redis_parts.password);
    free(log);
    assert_int_equal(ra.violations, 0);
    assert_int_equal(rb.violations, 0);
}

/* Wrong passwords (both AUTH forms): start succeeds, polling still delivers, publishing fails
 * and is counted, the failures are logged once each, and no password reaches the log. */
static void test_bad_password(void **state)
{
    if (!need_redis())
        skip();
    struct fx *f = *state;
    char u1[600], u2[600];
    redis_url_with(u1, sizeof(u1), "", "WRONG-pw-4711");
    redis_url_with(u2, sizeof(u2), "default", "WRONG-pw-4712");
    struct tu_capture cap;
    capture_start(&cap);
    struct rec r1, r2;
    rec_init(&r1);
    rec_init(&r2);
    struct ibex_revocation *a = start(f->url, u1, 100, &r1);
    struct ibex_revocation *b = start(f->url, u2, 100, &r2);
    sleep_ms(700); /* several attempts: 100, 200, 400 ms of back-off */
    assert_false(stats(a).redis_connected);
    assert_false(stats(b).redis_connected);
    assert_true(ibex_revocation_publish(a, 5) < 0);
    ibex_revocation_note(b, 5);
    assert_int_equal(stats(a).publish_errors, 1);
    assert_int_equal(stats(b).publish_errors, 1);
    assert_int_equal(stats(a).publishes, 0);
    set_epoch(f, 6);
    assert_true(rec_wait(&r1, 6, 5000) >= 0);
    assert_true(rec_wait(&r2, 6, 5000) >= 0);
    assert_true(timed_stop(a) < 1000);
    assert_true(timed_stop(b) < 1000);
    char *log = capture_end(&cap);
    assert_int_equal(count_substr(log, "redis subscriber disconnected"), 2);
    assert_int_equal(count_substr(log, "redis publish failed"), 2);
    if (!strstr(log, "AUTH refused"))
        fail_msg("the refusal is not explained:\n%s", log);
    assert_absent(log, "WRONG-pw-4711");
    assert_absent(log, "WRONG-pw-4712");
    assert_absent(log, redis_parts.password);
    free(log);
}

/* Nothing listens on the port: start succeeds, polling delivers, publishing fails fast and is
 * then held back for a while, stop is prompt. */
static void test_redis_unreachable(void **state)
{
    struct fx *f = *state;
    char url[128];
    snprintf(url, sizeof(url), "redis://:UNREACH-secret@127.0.0.1:%d", tu_closed_port());
    struct tu_capture cap;
    capture_start(&cap);
    struct rec rec;
    rec_init(&rec);
    struct ibex_revocation *r = start(f->url, url, 100, &rec);
    set_epoch(f, 3);
    assert_true(rec_wait(&rec, 3, 5000) >= 0);
    uint64_t t0 = ms_now();
    ibex_revocation_note(r, 4);
    assert_true(ms_now() - t0 < 600);
    assert_int_equal(rec_last(&rec), 4);
    t0 = ms_now();
    assert_int_equal(ibex_revocation_publish(r, 4), IBEX_ECONN); /* held back: no new attempt */
    assert_true(ms_now() - t0 < 100);
    struct ibex_revocation_stats s = stats(r);
    assert_int_equal(s.publish_errors, 2);
    assert_false(s.redis_connected);
    sleep_ms(300);
    assert_true(timed_stop(r) < 1000);
    char *log = capture_end(&cap);
    assert_non_null(strstr(log, "redis subscriber disconnected"));
    assert_absent(log, "UNREACH-secret");
    free(log);
}

/* A private redis-server, killed and started again on the same port. */
struct server {
    pid_t pid;
    int port;
    char password[32];
};

static bool server_start(struct server *s)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", s->port);
    char *argv[] = {"redis-server", "--port",        port,        "--bind",
                    "127.0.0.1",    "--save",        "",          "--appendonly",
                    "no",           "--requirepass", s->password, "--dir",
                    "/tmp",         "--logfile",     "",          NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&s->pid, "redis-server", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return false;
    for (int i = 0; i < 500; i++) {
        redisContext *c =
            redisConnectWithTimeout("127.0.0.1", s->port, (struct timeval){0, 200000});
        bool up = c != NULL && c->err == 0;
        redisFree(c);
        if (up)
            return true;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
            return false;
        sleep_ms(10);
    }
    return false;
}

static void server_kill(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void test_redis_restart(void **state)
{
    struct fx *f = *state;
    struct server srv = {.port = tu_closed_port()};
    snprintf(srv.password, sizeof(srv.password), "restart-%d", (int)getpid());
    if (!server_start(&srv)) {
        server_kill(&srv);
        printf("SKIP: cannot run a private redis-server\n");
        skip();
    }
    char url[128];
    snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%d", srv.password, srv.port);
    struct tu_capture cap;
    capture_start(&cap);
    struct rec ra, rb;
    rec_init(&ra);
    rec_init(&rb);
    struct ibex_revocation *a = start(f->url, url, 60000, &ra);
    struct ibex_revocation *b = start(f->url, url, 100, &rb);
    assert_true(wait_connected(a, true, 5000));
    assert_true(wait_connected(b, true, 5000));

    server_kill(&srv);
    assert_true(wait_connected(b, false, 2000));
    set_epoch(f, 5); /* Redis is down: polling carries on */
    assert_true(rec_wait(&rb, 5, 5000) >= 0);
    ibex_revocation_note(a, 6);
    assert_true(stats(a).publish_errors >= 1);

    if (!server_start(&srv)) {
        server_kill(&srv);
        ibex_revocation_stop(a);
        ibex_revocation_stop(b);
        fail_msg("the private redis-server did not start again");
    }
    uint64_t t0 = ms_now();
    bool back = wait_connected(a, true, 5000) && wait_connected(b, true, 5000);
    printf("resubscribed %" PRIu64 " ms after the restart\n", ms_now() - t0);
    /* The store says 5: B learns 7 and above only from messages. */
    int64_t next = 7;
    t0 = ms_now();
    while (back && rec_last(&rb) < 7 && ms_now() - t0 < 5000) {
        ibex_revocation_note(a, next++);
        sleep_ms(100);
    }
    bool delivered = rec_last(&rb) >= 7;
    assert_true(timed_stop(a) < 1000);
    assert_true(timed_stop(b) < 1000);
    server_kill(&srv);
    char *log = capture_end(&cap);
    assert_absent(log, srv.password);
    assert_int_equal(count_substr(log, "redis publish recovered"), 1);
    free(log);
    assert_true(back);
    assert_true(delivered);
    assert_int_equal(ra.violations, 0);
    assert_int_equal(rb.violations, 0);
}

/* stop wakes a poller that sleeps for a minute and a subscriber blocked in a read. */
static void test_stop_prompt(void **state)
{
    struct fx *f = *state;
    struct tu_capture cap;
    capture_start(&cap);
    struct rec rec;
    rec_init(&rec);
    bool with_redis = redis_url && *redis_url;
    struct ibex_revocation *r = start(f->url, with_redis ? redis_url : NULL, 60000, &rec);
    if (with_redis)
        assert_true(wait_connected(r, true, 5000));
    sleep_ms(100);
    uint64_t took = timed_stop(r);
    free(capture_end(&cap));
    printf("stop took %" PRIu64 " ms (%s)\n", took, with_redis ? "with redis" : "polling only");
    assert_true(took < 1000);
}

#define SQLITE(fn)                                                                                 \
    {                                                                                              \
        "sqlite: " #fn, fn, setup_sqlite, teardown, NULL                                           \
    }
#define PG(fn)                                                                                     \
    {                                                                                              \
        "postgres: " #fn, fn, setup_pg, teardown, NULL                                             \
    }

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as ibex serve does; the raw hiredis client writes to sockets */
    redis_url = tu_redis_env(&redis_parts);
    snprintf(channel, sizeof(channel), "ibex:identity:test-%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        /* polling */
        SQLITE(test_start_errors),
        SQLITE(test_poll_sees_bump),
        PG(test_poll_sees_bump),
        SQLITE(test_never_decreasing),
        PG(test_never_decreasing),
        SQLITE(test_poll_errors),
        PG(test_poll_errors),
        /* Redis */
        SQLITE(test_pubsub),
        SQLITE(test_bad_password),
        SQLITE(test_redis_unreachable),
        SQLITE(test_redis_restart),
        SQLITE(test_stop_prompt),
    };
    return tu_store_run_tests("revocation_test", tests, sizeof(tests) / sizeof(tests[0]), setup_pg,
                              &pg_url);
}
