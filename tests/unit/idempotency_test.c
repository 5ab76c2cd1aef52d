/* src/api/idempotency.c: Idempotency-Key entries on every backend. Each case runs on SQLite (a
 * migrated temp file), Postgres (IBEX_TEST_PG_URL, a schema of its own) and Redis
 * (IBEX_TEST_REDIS_URL); a backend whose server is not given prints SKIP with the reason.
 * Every case has two instances (two struct ibex_idem, as two processes would) on one backend.
 * On the store, time is the now_ms the test passes; on Redis, expiry runs on Redis' clock, so
 * advance() really sleeps there (lease 500 ms, TTL 1 s: the same numbers on every backend).
 * Covers: claim, replay (binary body, headers, content type), in progress, mismatch, lease
 * takeover, TTL expiry, a stale owner that can neither complete nor release a newer claim,
 * release, tenants, racing threads on two instances (exactly one claim, also for a takeover),
 * size limits, the sweep (batches, from begin), errors (Redis down, table missing, bad options)
 * without a password in the log, key validation and the fingerprint's framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/api/idempotency.h"
#include "../../src/core/clock.h"
#include "../../src/store/redis.h"
#include "testutil.h"
#include "storeutil.h"

#define TU_API_SUITE "idem"
#include "apiutil.h"

#define LEASE 500
#define TTL 1000

static const char *redis_url;
static struct ibex_redis_url redis_parts;

/* ---- fixture: a backend and two instances on it ---- */

struct ifx {
    struct fx *db; /* NULL on Redis */
    struct ibex_store *st;
    struct ibex_idem *m, *m2;
    int64_t now;
    char tenant[64], tenant2[64];
};

static struct ibex_idem *idem_new(const char *rurl, uint64_t sweep_ms, size_t max_body)
{
    struct ibex_idem_opts o = {.ttl_ms = TTL,
                               .lease_ms = LEASE,
                               .max_body = max_body,
                               .sweep_interval_ms = sweep_ms,
                               .redis_url = rurl,
                               .redis_max_conns = 4};
    struct ibex_idem *m = NULL;
    char err[256];
    if (ibex_idem_new(&o, &m, err, sizeof(err)) != 0)
        fail_msg("ibex_idem_new: %s", err);
    return m;
}

static int wrap(void **state, struct fx *db)
{
    struct ifx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->db = db;
    f->st = db ? db->st : NULL;
    /* begin never sweeps in these cases but the sweep's own */
    f->m = idem_new(db ? NULL : redis_url, UINT64_MAX, 0);
    f->m2 = idem_new(db ? NULL : redis_url, UINT64_MAX, 0);
    f->now = (int64_t)ibex_clock_wall_ms();
    /* unique per case, so a shared Redis needs no cleaning */
    snprintf(f->tenant, sizeof(f->tenant), "t-%ld-%u", (long)getpid(), ++seq);
    snprintf(f->tenant2, sizeof(f->tenant2), "u-%ld-%u", (long)getpid(), seq);
    *state = f;
    return 0;
}

static int isetup_sqlite(void **state)
{
    setup_sqlite(state);
    return wrap(state, *state);
}

static int isetup_pg(void **state)
{
    setup_pg(state);
    return wrap(state, *state);
}

static int isetup_redis(void **state)
{
    return wrap(state, NULL);
}

static int iteardown(void **state)
{
    struct ifx *f = *state;
    ibex_idem_free(f->m);
    ibex_idem_free(f->m2);
    if (f->db) {
        void *db = f->db;
        teardown(&db);
    }
    free(f);
    return 0;
}

/* Time passes: on the store by the clock the test passes, on Redis for real. */
static void advance(struct ifx *f, int64_t ms)
{
    f->now += ms;
    if (f->db == NULL)
        sleep_ms(ms);
}

static bool on_redis(const struct ifx *f)
{
    return f->db == NULL;
}

/* ---- helpers ---- */

static void fp_of(const char *body, uint8_t fp[32])
{
    ibex_idem_fingerprint("POST", "/v1/sessions", "agent-1", body, strlen(body), fp);
}

static const char *state_name(enum ibex_idem_state s)
{
    switch (s) {
    case IBEX_IDEM_CLAIMED:
        return "CLAIMED";
    case IBEX_IDEM_REPLAY:
        return "REPLAY";
    case IBEX_IDEM_IN_PROGRESS:
        return "IN_PROGRESS";
    case IBEX_IDEM_MISMATCH:
        return "MISMATCH";
    }
    return "?";
}

/* begin that must succeed with want; *replay is disposed unless out is given. */
static void begin_expect(struct ifx *f, struct ibex_idem *m, const char *tenant, const char *key,
                         const uint8_t fp[32], enum ibex_idem_state want,
                         struct ibex_idem_claim *claim, struct ibex_idem_response *out)
{
    enum ibex_idem_state st = 0;
    struct ibex_idem_claim c;
    memset(&c, 0, sizeof(c));
    struct ibex_idem_response r = {0};
    int rc = ibex_idem_begin(m, f->st, tenant, key, fp, f->now, &st, &c, &r);
    if (rc != 0)
        fail_msg("begin(%s): %d %s", key, rc, f->st ? ibex_store_errmsg(f->st) : "");
    if (st != want)
        fail_msg("begin(%s): %s, wanted %s", key, state_name(st), state_name(want));
    if (want == IBEX_IDEM_CLAIMED) {
        assert_int_equal(strlen(c.token), IBEX_IDEM_TOKEN_LEN);
        if (claim)
            *claim = c;
    }
    if (want == IBEX_IDEM_REPLAY) {
        assert_non_null(r.body.p);
        assert_non_null(r.headers.p);
        assert_non_null(r.content_type.p);
    } else {
        assert_null(r.body.p); /* untouched */
    }
    if (out)
        *out = r;
    else
        ibex_idem_response_dispose(&r);
}

static struct ibex_idem_response resp_of(int status, const char *headers, const char *body,
                                         size_t len)
{
    return (struct ibex_idem_response){.status = status,
                                       .content_type = IBEX_STR_LIT("application/json"),
                                       .headers = ibex_str_from(headers),
                                       .body = {body, len}};
}

static void assert_resp_equal(const struct ibex_idem_response *got,
                              const struct ibex_idem_response *want)
{
    assert_int_equal(got->status, want->status);
    assert_int_equal(got->content_type.len, want->content_type.len);
    assert_memory_equal(got->content_type.p, want->content_type.p, want->content_type.len);
    assert_int_equal(got->headers.len, want->headers.len);
    assert_memory_equal(got->headers.p, want->headers.p, want->headers.len);
    assert_int_equal(got->body.len, want->body.len);
    if (want->body.len)
        assert_memory_equal(got->body.p, want->body.p, want->body.len);
    /* NUL-terminated for the caller's convenience */
    assert_int_equal(got->headers.p[got->headers.len], '\0');
    assert_int_equal(got->body.p[got->body.len], '\0');
}

/* begin must replay exactly want. */
static void expect_replay(struct ifx *f, struct ibex_idem *m, const char *tenant, const char *key,
                          const uint8_t fp[32], const struct ibex_idem_response *want)
{
    struct ibex_idem_response got;
    begin_expect(f, m, tenant, key, fp, IBEX_IDEM_REPLAY, NULL, &got);
    assert_resp_equal(&got, want);
    ibex_idem_response_dispose(&got);
    assert_null(got.body.p);
}

static struct ibex_idem_stats stats(struct ibex_idem *m)
{
    struct ibex_idem_stats s;
    ibex_idem_stats(m, &s);
    return s;
}

/* The stored entry, read behind the module's back: its state and its time to live (ms). */
static void raw_entry(struct ifx *f, const char *tenant, const char *key, char *state, int64_t *ttl)
{
    if (on_redis(f)) {
        redisContext *c = tu_redis_raw(&redis_parts);
        redisReply *rep = redisCommand(c, "GET idempotency:%s:%s", tenant, key);
        assert_non_null(rep);
        state[0] = rep->type == REDIS_REPLY_STRING ? rep->str[0] : '-';
        freeReplyObject(rep);
        rep = redisCommand(c, "PTTL idempotency:%s:%s", tenant, key);
        assert_non_null(rep);
        *ttl = rep->integer;
        freeReplyObject(rep);
        redisFree(c);
        return;
    }
    int64_t exp = sql_int(f->db,
                          "SELECT expires_at FROM idempotency_keys WHERE tenant_id = $1 "
                          "AND key = $2",
                          tenant, key);
    int64_t running = sql_int(f->db,
                              "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND "
                              "key = $2 AND state = 'running'",
                              tenant, key);
    state[0] = exp < 0 ? '-' : running ? 'R' : 'D';
    *ttl = exp < 0 ? -2 : exp - f->now;
}

/* The entry is in state ('R', 'D', or '-' for none) with a time to live in (lo, hi]. */
static void expect_entry(struct ifx *f, const char *tenant, const char *key, char state, int64_t lo,
                         int64_t hi)
{
    char st[1];
    int64_t ttl;
    raw_entry(f, tenant, key, st, &ttl);
    if (st[0] != state || ttl <= lo || ttl > hi)
        fail_msg("%s: state %c ttl %lld, wanted %c in (%lld, %lld]", key, st[0], (long long)ttl,
                 state, (long long)lo, (long long)hi);
}

/* ---- cases ---- */

/* claim, a duplicate while running, complete, replays on both instances. */
static void test_claim_replay(void **state)
{
    struct ifx *f = *state;
    uint8_t fp[32];
    fp_of("{\"a\":1}", fp);
    struct ibex_idem_claim claim;
    begin_expect(f, f->m, f->tenant, "key-1", fp, IBEX_IDEM_CLAIMED, &claim, NULL);
    expect_entry(f, f->tenant, "key-1", 'R', 0, LEASE);
    begin_expect(f, f->m, f->tenant, "key-1", fp, IBEX_IDEM_IN_PROGRESS, NULL, NULL);
    begin_expect(f, f->m2, f->tenant, "key-1", fp, IBEX_IDEM_IN_PROGRESS, NULL, NULL);

    static const char body[] = "{\"id\":\"s1\"}\0\xff binary tail";
    struct ibex_idem_response want =
        resp_of(201, "X-IBEX-Trace-ID: 0190-abc\r\nX-Other: 1\r\n", body, sizeof(body) - 1);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "key-1", fp, &claim, &want, f->now),
                     0);
    expect_entry(f, f->tenant, "key-1", 'D', LEASE, TTL);

    for (int i = 0; i < 2; i++)
        expect_replay(f, i ? f->m2 : f->m, f->tenant, "key-1", fp, &want);
    /* A completed entry cannot be completed or released again. */
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "key-1", fp, &claim, &want, f->now),
                     IBEX_IDEM_ELOST);
    assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "key-1", fp, &claim),
                     IBEX_IDEM_ELOST);
    expect_replay(f, f->m, f->tenant, "key-1", fp, &want);

    struct ibex_idem_stats s = stats(f->m);
    assert_int_equal(s.claimed, 1);
    assert_int_equal(s.in_progress, 1);
    assert_int_equal(s.replayed, 2);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.lost, 2);
    assert_int_equal(s.errors, 0);
    assert_int_equal(stats(f->m2).replayed, 1);

    /* An empty body and no headers replay as such. */
    struct ibex_idem_response empty = {.status = 204};
    begin_expect(f, f->m, f->tenant, "key-2", fp, IBEX_IDEM_CLAIMED, &claim, NULL);
    assert_int_equal(
        ibex_idem_complete(f->m, f->st, f->tenant, "key-2", fp, &claim, &empty, f->now), 0);
    expect_replay(f, f->m2, f->tenant, "key-2", fp, &empty);
}

/* Another request under a key is a mismatch, running or done; the first one still replays. */
static void test_mismatch(void **state)
{
    struct ifx *f = *state;
    uint8_t a[32], b[32], c[32];
    fp_of("{\"a\":1}", a);
    fp_of("{\"a\":2}", b);
    ibex_idem_fingerprint("POST", "/v1/sessions", "agent-2", "{\"a\":1}", 7, c); /* other agent */
    struct ibex_idem_claim claim;
    begin_expect(f, f->m, f->tenant, "k", a, IBEX_IDEM_CLAIMED, &claim, NULL);
    begin_expect(f, f->m2, f->tenant, "k", b, IBEX_IDEM_MISMATCH, NULL, NULL);
    begin_expect(f, f->m2, f->tenant, "k", c, IBEX_IDEM_MISMATCH, NULL, NULL);
    /* The mismatching caller holds no claim: its release and complete change nothing. */
    struct ibex_idem_response r = resp_of(200, "", "x", 1);
    assert_int_equal(ibex_idem_release(f->m2, f->st, f->tenant, "k", b, &claim), IBEX_IDEM_ELOST);
    assert_int_equal(ibex_idem_complete(f->m2, f->st, f->tenant, "k", b, &claim, &r, f->now),
                     IBEX_IDEM_ELOST);
    begin_expect(f, f->m, f->tenant, "k", a, IBEX_IDEM_IN_PROGRESS, NULL, NULL);

    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", a, &claim, &r, f->now), 0);
    begin_expect(f, f->m2, f->tenant, "k", b, IBEX_IDEM_MISMATCH, NULL, NULL);
    expect_replay(f, f->m2, f->tenant, "k", a, &r);
    assert_int_equal(stats(f->m2).mismatched, 3);
}

/* A claim past its lease is abandoned: the next begin takes over with a new token; the stale
 * owner can neither complete over nor release the new claim; the new owner's response stays. */
static void test_lease_takeover(void **state)
{
    struct ifx *f = *state;
    uint8_t fp[32];
    fp_of("{}", fp);
    struct ibex_idem_claim old, cur;
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, &old, NULL);
    advance(f, LEASE + 150);
    begin_expect(f, f->m2, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, &cur, NULL);
    assert_string_not_equal(old.token, cur.token);
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_IN_PROGRESS, NULL, NULL);

    struct ibex_idem_response stale = resp_of(200, "X-IBEX-Trace-ID: stale\r\n", "stale", 5);
    struct ibex_idem_response fresh = resp_of(200, "X-IBEX-Trace-ID: fresh\r\n", "fresh", 5);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", fp, &old, &stale, f->now),
                     IBEX_IDEM_ELOST);
    assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "k", fp, &old), IBEX_IDEM_ELOST);
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_IN_PROGRESS, NULL, NULL);
    assert_int_equal(ibex_idem_complete(f->m2, f->st, f->tenant, "k", fp, &cur, &fresh, f->now), 0);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", fp, &old, &stale, f->now),
                     IBEX_IDEM_ELOST);
    expect_replay(f, f->m, f->tenant, "k", fp, &fresh);
    assert_int_equal(stats(f->m).lost, 3);

    /* A request that outlived its lease still completes when nobody took over. */
    struct ibex_idem_claim slow;
    begin_expect(f, f->m, f->tenant, "slow", fp, IBEX_IDEM_CLAIMED, &slow, NULL);
    advance(f, LEASE + 150);
    if (!on_redis(f)) { /* on Redis the lease is the key's PX: the key is gone */
        assert_int_equal(
            ibex_idem_complete(f->m, f->st, f->tenant, "slow", fp, &slow, &fresh, f->now), 0);
        begin_expect(f, f->m2, f->tenant, "slow", fp, IBEX_IDEM_REPLAY, NULL, NULL);
    } else {
        assert_int_equal(
            ibex_idem_complete(f->m, f->st, f->tenant, "slow", fp, &slow, &fresh, f->now),
            IBEX_IDEM_ELOST);
    }
}

/* A response is replayed within the TTL; past it the key is free, for any request. */
static void test_ttl_expiry(void **state)
{
    struct ifx *f = *state;
    uint8_t a[32], b[32];
    fp_of("{\"a\":1}", a);
    fp_of("{\"b\":1}", b);
    struct ibex_idem_claim claim;
    begin_expect(f, f->m, f->tenant, "k", a, IBEX_IDEM_CLAIMED, &claim, NULL);
    struct ibex_idem_response r = resp_of(200, "", "first", 5);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", a, &claim, &r, f->now), 0);
    advance(f, LEASE + 100); /* past the lease: a done entry keeps its TTL */
    begin_expect(f, f->m2, f->tenant, "k", a, IBEX_IDEM_REPLAY, NULL, NULL);
    begin_expect(f, f->m2, f->tenant, "k", b, IBEX_IDEM_MISMATCH, NULL, NULL);
    advance(f, TTL - LEASE);
    struct ibex_idem_claim next;
    begin_expect(f, f->m2, f->tenant, "k", b, IBEX_IDEM_CLAIMED, &next, NULL);
    expect_entry(f, f->tenant, "k", 'R', 0, LEASE);
    begin_expect(f, f->m, f->tenant, "k", a, IBEX_IDEM_MISMATCH, NULL, NULL);
    struct ibex_idem_response r2 = resp_of(200, "", "second", 6);
    assert_int_equal(ibex_idem_complete(f->m2, f->st, f->tenant, "k", b, &next, &r2, f->now), 0);
    expect_replay(f, f->m, f->tenant, "k", b, &r2);
}

/* release frees the key for a retry; a released claim cannot come back. */
static void test_release(void **state)
{
    struct ifx *f = *state;
    uint8_t fp[32];
    fp_of("{}", fp);
    struct ibex_idem_claim first, second;
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, &first, NULL);
    assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "k", fp, &first), 0);
    expect_entry(f, f->tenant, "k", '-', -3, -1);
    assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "k", fp, &first), IBEX_IDEM_ELOST);
    begin_expect(f, f->m2, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, &second, NULL);
    struct ibex_idem_response r = resp_of(200, "", "x", 1);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", fp, &first, &r, f->now),
                     IBEX_IDEM_ELOST);
    assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "k", fp, &first), IBEX_IDEM_ELOST);
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_IN_PROGRESS, NULL, NULL);
    assert_int_equal(ibex_idem_release(f->m2, f->st, f->tenant, "k", fp, &second), 0);
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(stats(f->m).released, 1);
    assert_int_equal(stats(f->m).lost, 3);
    assert_int_equal(stats(f->m2).released, 1);
}

/* The same key in two tenants: two entries. */
static void test_tenants(void **state)
{
    struct ifx *f = *state;
    uint8_t a[32], b[32];
    fp_of("{\"a\":1}", a);
    fp_of("{\"a\":2}", b);
    struct ibex_idem_claim c1, c2;
    begin_expect(f, f->m, f->tenant, "shared", a, IBEX_IDEM_CLAIMED, &c1, NULL);
    begin_expect(f, f->m, f->tenant2, "shared", b, IBEX_IDEM_CLAIMED, &c2, NULL);
    struct ibex_idem_response r1 = resp_of(201, "", "one", 3), r2 = resp_of(202, "", "two", 3);
    /* a claim of one tenant does not act on the other's entry */
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant2, "shared", a, &c1, &r1, f->now),
                     IBEX_IDEM_ELOST);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "shared", a, &c1, &r1, f->now), 0);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant2, "shared", b, &c2, &r2, f->now), 0);
    expect_replay(f, f->m2, f->tenant, "shared", a, &r1);
    expect_replay(f, f->m2, f->tenant2, "shared", b, &r2);
    begin_expect(f, f->m2, f->tenant2, "shared", a, IBEX_IDEM_MISMATCH, NULL, NULL);

    /* Names that cannot be a tenant or a key are refused before anything is stored. */
    enum ibex_idem_state st;
    struct ibex_idem_claim c;
    struct ibex_idem_response r = {0};
    assert_int_equal(ibex_idem_begin(f->m, f->st, "a:b", "k", a, f->now, &st, &c, &r), IBEX_EINVAL);
    assert_int_equal(ibex_idem_begin(f->m, f->st, "", "k", a, f->now, &st, &c, &r), IBEX_EINVAL);
    assert_int_equal(ibex_idem_begin(f->m, f->st, NULL, "k", a, f->now, &st, &c, &r), IBEX_EINVAL);
    assert_int_equal(ibex_idem_begin(f->m, f->st, f->tenant, "bad key", a, f->now, &st, &c, &r),
                     IBEX_EINVAL);
    assert_int_equal(ibex_idem_begin(f->m, f->st, f->tenant, "", a, f->now, &st, &c, &r),
                     IBEX_EINVAL);
    /* a key may hold ':' (the tenant cannot, so names stay apart) */
    begin_expect(f, f->m, f->tenant, "x:y", a, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(stats(f->m).errors, 0);
}

/* ---- racing threads ---- */

#define RACERS 6
#define ROUNDS 8

struct race {
    struct ifx *f;
    pthread_barrier_t bar;
    struct ibex_store *st[RACERS];
    const uint8_t *fp[RACERS];
    char key[32];
    int64_t now;
    int rc[ROUNDS][RACERS];
    enum ibex_idem_state state[ROUNDS][RACERS];
};

struct racer {
    struct race *r;
    int id;
};

/* No cmocka asserts here: record, the test thread asserts. Each round: the test thread sets
 * key, fps and now, everyone passes the start barrier, begins, and meets at the end barrier. */
static void *racer_main(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    struct ibex_idem *m = me->id % 2 ? r->f->m2 : r->f->m;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&r->bar);
        struct ibex_idem_claim c;
        struct ibex_idem_response rep = {0};
        r->rc[round][me->id] =
            ibex_idem_begin(m, r->st[me->id], r->f->tenant, r->key, r->fp[me->id], r->now,
                            &r->state[round][me->id], &c, &rep);
        ibex_idem_response_dispose(&rep);
        pthread_barrier_wait(&r->bar);
    }
    return NULL;
}

/* Round shapes: 0 one request; 1 two requests; 2 one request; 3 the key of round 2, abandoned
 * (past its lease), raced for by everyone. */
static bool round_mixed(int round)
{
    return round % 4 == 1;
}

/* Several threads on two instances begin one key at once: exactly one claims it, whatever the
 * round's shape; the others see IN_PROGRESS for the same request and MISMATCH for another. */
static void test_concurrent(void **state)
{
    struct ifx *f = *state;
    struct race *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->f = f;
    pthread_barrier_init(&r->bar, NULL, RACERS + 1);
    for (int i = 0; i < RACERS; i++) {
        char err[512];
        if (f->db && ibex_store_open(f->db->url, &r->st[i], err, sizeof(err)) != 0)
            fail_msg("open: %s", err);
    }
    uint8_t a[32], b[32];
    fp_of("{\"a\":1}", a);
    fp_of("{\"a\":2}", b);
    pthread_t th[RACERS];
    struct racer rs[RACERS];
    for (int i = 0; i < RACERS; i++) {
        rs[i] = (struct racer){r, i};
        pthread_create(&th[i], NULL, racer_main, &rs[i]);
    }
    for (int round = 0; round < ROUNDS; round++) {
        if (round % 4 == 3)
            advance(f, LEASE + 150); /* same key as the round before */
        else
            snprintf(r->key, sizeof(r->key), "race-%d", round);
        r->now = f->now;
        for (int i = 0; i < RACERS; i++)
            r->fp[i] = round_mixed(round) && i % 3 == 0 ? b : a;
        pthread_barrier_wait(&r->bar);
        pthread_barrier_wait(&r->bar);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->bar);
    for (int i = 0; i < RACERS; i++)
        if (r->st[i])
            ibex_store_close(r->st[i]);
    for (int round = 0; round < ROUNDS; round++) {
        int claimed = 0;
        for (int i = 0; i < RACERS; i++) {
            if (r->rc[round][i] != 0)
                fail_msg("round %d racer %d: begin returned %d", round, i, r->rc[round][i]);
            claimed += r->state[round][i] == IBEX_IDEM_CLAIMED;
        }
        if (claimed != 1)
            fail_msg("round %d: %d claims", round, claimed);
        int winner = -1;
        for (int i = 0; i < RACERS; i++)
            if (r->state[round][i] == IBEX_IDEM_CLAIMED)
                winner = i;
        for (int i = 0; i < RACERS; i++) {
            if (i == winner)
                continue;
            bool same = !round_mixed(round) || (i % 3 == 0) == (winner % 3 == 0);
            enum ibex_idem_state want = same ? IBEX_IDEM_IN_PROGRESS : IBEX_IDEM_MISMATCH;
            if (r->state[round][i] != want)
                fail_msg("round %d racer %d: %s, wanted %s", round, i,
                         state_name(r->state[round][i]), state_name(want));
        }
    }
    free(r);
}

/* ---- limits ---- */

/* A body of max_body is stored and replayed byte for byte; one byte more is not stored and the
 * claim is released, so a retry runs again; likewise headers over 8 KiB and bad responses. */
static void test_big_body(void **state)
{
    struct ifx *f = *state;
    size_t max = 1u << 20; /* the default */
    char *big = malloc(max + 1);
    assert_non_null(big);
    for (size_t i = 0; i <= max; i++)
        big[i] = (char)(i * 7 + (i >> 9));
    uint8_t fp[32];
    fp_of("{\"big\":1}", fp);
    struct ibex_idem_claim c;
    begin_expect(f, f->m, f->tenant, "fits", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    struct ibex_idem_response r = resp_of(200, "X-IBEX-Trace-ID: t\r\n", big, max);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "fits", fp, &c, &r, f->now), 0);
    expect_replay(f, f->m2, f->tenant, "fits", fp, &r);

    begin_expect(f, f->m, f->tenant, "over", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    r.body.len = max + 1;
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "over", fp, &c, &r, f->now),
                     IBEX_IDEM_ETOOBIG);
    begin_expect(f, f->m2, f->tenant, "over", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    /* the retry's own claim: a stale too-big complete from the first owner changes nothing */
    r.body.len = 10;
    char *hdrs = malloc(IBEX_IDEM_HEADERS_MAX + 2);
    memset(hdrs, 'h', IBEX_IDEM_HEADERS_MAX + 1);
    hdrs[IBEX_IDEM_HEADERS_MAX + 1] = '\0';
    r.headers = ibex_str_from(hdrs);
    assert_int_equal(ibex_idem_complete(f->m2, f->st, f->tenant, "over", fp, &c, &r, f->now),
                     IBEX_IDEM_ETOOBIG);
    begin_expect(f, f->m, f->tenant, "over", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    r.headers = IBEX_STR_NULL;
    r.status = 42;
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "over", fp, &c, &r, f->now),
                     IBEX_EINVAL);
    begin_expect(f, f->m, f->tenant, "over", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    r.status = 200;
    r.content_type = IBEX_STR_LIT("text/plain\r\nX-Injected: 1");
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "over", fp, &c, &r, f->now),
                     IBEX_EINVAL);
    begin_expect(f, f->m, f->tenant, "over", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(stats(f->m).too_big, 1);
    assert_int_equal(stats(f->m2).too_big, 1);
    assert_int_equal(stats(f->m).errors, 0);

    /* A smaller cap applies as configured. */
    struct ibex_idem *small = idem_new(on_redis(f) ? redis_url : NULL, UINT64_MAX, 16);
    begin_expect(f, small, f->tenant, "small", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    r = resp_of(200, "", big, 17);
    assert_int_equal(ibex_idem_complete(small, f->st, f->tenant, "small", fp, &c, &r, f->now),
                     IBEX_IDEM_ETOOBIG);
    begin_expect(f, small, f->tenant, "small", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    r.body.len = 16;
    assert_int_equal(ibex_idem_complete(small, f->st, f->tenant, "small", fp, &c, &r, f->now), 0);
    ibex_idem_free(small);
    free(hdrs);
    free(big);
}

/* ---- sweep ---- */

static int64_t rows(struct ifx *f)
{
    return sql_int(f->db, "SELECT count(*) FROM idempotency_keys", NULL, NULL);
}

/* n rows of tenant "sweep" that expired at f->now - 1 (SQL, so that 1200 rows are quick). */
static void insert_expired(struct ifx *f, int n, const char *prefix)
{
    struct ibex_store_value p[3] = {ibex_store_int(n), ibex_store_text(prefix),
                                    ibex_store_int(f->now - 1)};
    tu_store_must(f->st,
                  ibex_store_exec(f->st,
                                  "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, "
                                  "token, state, created_at, expires_at) "
                                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                  "WHERE i < $1) SELECT 'sweep', $2 || i, 'f', 't', 'done', $3, "
                                  "$3 FROM n",
                                  p, 3, NULL, NULL));
}

/* Expired rows go in batches of IBEX_IDEM_SWEEP_BATCH; live rows (running or done) stay. begin
 * sweeps one batch when it is time, again 1 s after a full batch, else after the interval. */
static void test_sweep(void **state)
{
    struct ifx *f = *state;
    size_t n = 99;
    if (on_redis(f)) { /* Redis expires keys itself */
        assert_int_equal(ibex_idem_sweep(f->m, NULL, f->now, &n), 0);
        assert_int_equal(n, 0);
        return;
    }
    uint8_t fp[32];
    fp_of("{}", fp);
    struct ibex_idem_claim c;
    begin_expect(f, f->m, f->tenant, "live-done", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    struct ibex_idem_response r = resp_of(200, "", "x", 1);
    assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "live-done", fp, &c, &r, f->now),
                     0);
    begin_expect(f, f->m, f->tenant, "dead-running", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    f->now += LEASE; /* dead-running is abandoned now (expires_at == now), live-done is not */
    begin_expect(f, f->m, f->tenant, "live-running", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    insert_expired(f, 1200, "k");
    assert_int_equal(rows(f), 1203);

    size_t got[5];
    for (int i = 0; i < 5; i++)
        tu_store_must(f->st, ibex_idem_sweep(f->m, f->st, f->now, &got[i]));
    assert_int_equal(got[0], IBEX_IDEM_SWEEP_BATCH);
    assert_int_equal(got[1], IBEX_IDEM_SWEEP_BATCH);
    assert_int_equal(got[2], 201); /* the rest, dead-running included */
    assert_int_equal(got[3], 0);
    assert_int_equal(got[4], 0);
    assert_int_equal(rows(f), 2);
    assert_int_equal(sql_int(f->db, "SELECT count(*) FROM idempotency_keys WHERE key IN ($1, $2)",
                             "live-running", "live-done"),
                     2);
    assert_int_equal(stats(f->m).swept, 1201);

    /* From begin, on an instance that sweeps every minute. Claims live for LEASE (500 ms), so
     * each step of 1 s below also expires the claims of the step before. */
    struct ibex_idem *m = idem_new(NULL, 0, 0);
    f->now += TTL; /* live-done and live-running expire as well */
    insert_expired(f, 1100, "j");
    begin_expect(f, m, f->tenant, "b1", fp, IBEX_IDEM_CLAIMED, NULL, NULL); /* first: sweeps */
    assert_int_equal(rows(f), 1102 + 1 - IBEX_IDEM_SWEEP_BATCH);
    begin_expect(f, m, f->tenant, "b2", fp, IBEX_IDEM_CLAIMED, NULL, NULL); /* too soon */
    assert_int_equal(rows(f), 1102 + 2 - IBEX_IDEM_SWEEP_BATCH);
    f->now += 1000; /* after a full batch: again 1 s later */
    begin_expect(f, m, f->tenant, "b3", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(rows(f), 1102 + 3 - 2 * IBEX_IDEM_SWEEP_BATCH);
    f->now += 1000;
    begin_expect(f, m, f->tenant, "b4", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(rows(f), 1); /* the 105 others had expired: not a full batch */
    f->now += 1000;               /* so the next sweep waits for the interval */
    insert_expired(f, 10, "i");
    begin_expect(f, m, f->tenant, "b5", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(rows(f), 12);
    f->now += 60000;
    begin_expect(f, m, f->tenant, "b6", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(rows(f), 1);
    assert_int_equal(stats(m).swept, 2 * IBEX_IDEM_SWEEP_BATCH + 105 + 12);
    ibex_idem_free(m);
}

/* ---- errors ---- */

/* The backend fails: begin, complete and release return its negative error for the caller's
 * 503, and count it. */
static void test_backend_errors(void **state)
{
    struct ifx *f = *state;
    uint8_t fp[32];
    fp_of("{}", fp);
    struct ibex_idem_claim c;
    begin_expect(f, f->m, f->tenant, "k", fp, IBEX_IDEM_CLAIMED, &c, NULL);
    enum ibex_idem_state st = 0;
    struct ibex_idem_response r = {0}, ok = resp_of(200, "", "x", 1);
    if (!on_redis(f)) {
        tu_store_must(f->st, ibex_store_script(f->st, "DROP TABLE idempotency_keys"));
        assert_int_equal(ibex_idem_begin(f->m, f->st, f->tenant, "k", fp, f->now, &st, &c, &r),
                         IBEX_EDB);
        assert_int_equal(ibex_idem_complete(f->m, f->st, f->tenant, "k", fp, &c, &ok, f->now),
                         IBEX_EDB);
        assert_int_equal(ibex_idem_release(f->m, f->st, f->tenant, "k", fp, &c), IBEX_EDB);
        size_t n = 7;
        assert_int_equal(ibex_idem_sweep(f->m, f->st, f->now, &n), IBEX_EDB);
        assert_int_equal(n, 0);
        assert_int_equal(stats(f->m).errors, 4);
        assert_int_equal(st, 0);
        assert_null(r.body.p);
        return;
    }
    struct tu_capture cap;
    assert_int_equal(tu_capture_start(&cap), 0);
    /* A value under our prefix that ibex did not write. */
    redisContext *raw = tu_redis_raw(&redis_parts);
    redisReply *rep = redisCommand(raw, "SET idempotency:%s:junk %s", f->tenant, "R garbage");
    assert_non_null(rep);
    freeReplyObject(rep);
    assert_int_equal(ibex_idem_begin(f->m, f->st, f->tenant, "junk", fp, f->now, &st, &c, &r),
                     IBEX_EDB);

    /* Every command is bounded: a paused Redis times out after redis_timeout_ms, then new
     * connections are held back for a second, then all is well again. */
    struct ibex_idem_opts o = {
        .ttl_ms = TTL, .lease_ms = LEASE, .redis_url = redis_url, .redis_timeout_ms = 200};
    struct ibex_idem *m = NULL;
    char err[256];
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    begin_expect(f, m, f->tenant, "p1", fp, IBEX_IDEM_CLAIMED, NULL, NULL); /* connected */
    rep = redisCommand(raw, "CLIENT PAUSE 800");
    assert_non_null(rep);
    freeReplyObject(rep);
    uint64_t t0 = ibex_clock_mono_ns() / 1000000;
    assert_int_equal(ibex_idem_begin(m, NULL, f->tenant, "p2", fp, f->now, &st, &c, &r),
                     IBEX_ETIMEDOUT);
    uint64_t took = ibex_clock_mono_ns() / 1000000 - t0;
    if (took < 150 || took > 600)
        fail_msg("a 200 ms command took %llu ms", (unsigned long long)took);
    t0 = ibex_clock_mono_ns() / 1000000;
    assert_int_equal(ibex_idem_begin(m, NULL, f->tenant, "p2", fp, f->now, &st, &c, &r),
                     IBEX_ECONN); /* held back: fails at once */
    assert_true(ibex_clock_mono_ns() / 1000000 - t0 < 100);
    sleep_ms(1100);
    begin_expect(f, m, f->tenant, "p2", fp, IBEX_IDEM_CLAIMED, NULL, NULL);
    assert_int_equal(stats(m).errors, 2);
    ibex_idem_free(m);

    /* A wrong password: refused, and never in the log. */
    char bad[600];
    snprintf(bad, sizeof(bad), "redis://:WRONG-pw-0815@%s:%d", redis_parts.host, redis_parts.port);
    o.redis_url = bad;
    o.redis_timeout_ms = 0;
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    assert_int_equal(ibex_idem_begin(m, NULL, f->tenant, "k", fp, f->now, &st, &c, &r), IBEX_ECONN);
    ibex_idem_free(m);
    redisFree(raw);
    char *log = tu_capture_end(&cap);
    assert_non_null(log);
    assert_non_null(strstr(log, "idempotency: redis command failed"));
    assert_non_null(strstr(log, "AUTH refused"));
    assert_null(strstr(log, "WRONG-pw-0815"));
    assert_null(strstr(log, redis_parts.password));
    assert_null(strstr(log, "junk")); /* no key in the log */
    free(log);
    assert_int_equal(stats(f->m).errors, 1);
}

/* Nothing listens: begin fails fast with IBEX_ECONN, is then held back, and the failures are
 * logged once, without the password. */
static void test_redis_down(void **state)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://:DOWN-secret-7@127.0.0.1:%d/3", tu_closed_port());
    struct ibex_idem *m = NULL;
    char err[256];
    struct ibex_idem_opts o = {.redis_url = url};
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    assert_string_equal(ibex_idem_backend(m), "redis");
    struct tu_capture cap;
    assert_int_equal(tu_capture_start(&cap), 0);
    uint8_t fp[32] = {0};
    enum ibex_idem_state st = 0;
    struct ibex_idem_claim c;
    struct ibex_idem_response r = {0};
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = ibex_clock_mono_ns() / 1000000;
        assert_int_equal(ibex_idem_begin(m, NULL, "t", "k", fp, 0, &st, &c, &r), IBEX_ECONN);
        assert_true(ibex_clock_mono_ns() / 1000000 - t0 < 500);
    }
    memset(c.token, 'a', IBEX_IDEM_TOKEN_LEN);
    c.token[IBEX_IDEM_TOKEN_LEN] = '\0';
    assert_int_equal(ibex_idem_release(m, NULL, "t", "k", fp, &c), IBEX_ECONN);
    struct ibex_idem_stats s = stats(m);
    assert_int_equal(s.errors, 4);
    assert_int_equal(s.claimed, 0);
    ibex_idem_free(m);
    char *log = tu_capture_end(&cap);
    assert_non_null(log);
    int lines = 0;
    for (const char *p = strstr(log, "redis command failed"); p;
         p = strstr(p + 1, "redis command failed"))
        lines++;
    assert_int_equal(lines, 1);
    assert_null(strstr(log, "DOWN-secret-7"));
    free(log);
}

/* ---- options, keys, fingerprints ---- */

static void test_options(void **state)
{
    struct ibex_idem *m = (void *)1;
    char err[256];
    struct ibex_idem_opts o = {0};
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    assert_string_equal(ibex_idem_backend(m), "store");
    ibex_idem_free(m);
    o.redis_url = "";
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    assert_string_equal(ibex_idem_backend(m), "store");
    ibex_idem_free(m);
    ibex_idem_free(NULL);

    o.ttl_ms = IBEX_IDEM_MAX_TTL_MS + 1;
    m = (void *)1;
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), IBEX_EINVAL);
    assert_null(m);
    o.ttl_ms = 0;
    o.lease_ms = IBEX_IDEM_MAX_TTL_MS + 1;
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), IBEX_EINVAL);
    o.lease_ms = 0;
    o.max_body = IBEX_IDEM_MAX_BODY_LIMIT + 1;
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), IBEX_EINVAL);
    o.max_body = IBEX_IDEM_MAX_BODY_LIMIT;
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), 0);
    ibex_idem_free(m);
    o.redis_url = "redis://:TOPSECRET@h:99999";
    err[0] = '\0';
    assert_int_equal(ibex_idem_new(&o, &m, err, sizeof(err)), IBEX_EINVAL);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "TOPSECRET"));
    assert_null(m);
}

static void test_key_check(void **state)
{
    char k[300];
    memset(k, 'a', sizeof(k));
    assert_int_equal(ibex_idem_key_check(k, 1), 0);
    assert_int_equal(ibex_idem_key_check(k, 255), 0);
    assert_int_equal(ibex_idem_key_check(k, 256), -1);
    assert_int_equal(ibex_idem_key_check(k, 0), -1);
    assert_int_equal(ibex_idem_key_check(NULL, 0), -1);
    assert_int_equal(ibex_idem_key_check("!", 1), 0);
    assert_int_equal(ibex_idem_key_check("~", 1), 0);
    const char *good = "0190b3e2-7c1a-7d6e-9f00-2b1c3d4e5f60:retry/1?x=\"y\"";
    assert_int_equal(ibex_idem_key_check(good, strlen(good)), 0);
    const char *bad[] = {" ", "a b", "a\tb", "a\x7f", "caf\xc3\xa9", "a\r\nb", "\x20x", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (ibex_idem_key_check(bad[i], strlen(bad[i])) != -1)
            fail_msg("accepted key #%zu", i);
    assert_int_equal(ibex_idem_key_check("a\0b", 3), -1); /* a NUL inside */
}

/* The documented framing, computed here independently. */
static void frame(unsigned char *buf, size_t *n, const char *s, size_t len, bool present)
{
    uint64_t v = present ? len : UINT64_MAX;
    for (int i = 0; i < 8; i++)
        buf[(*n)++] = (unsigned char)(v >> (56 - 8 * i));
    if (present) {
        memcpy(buf + *n, s, len);
        *n += len;
    }
}

static void test_fingerprint(void **state)
{
    unsigned char buf[512];
    size_t n = 0;
    static const char domain[] = "ibex-idempotency-v1";
    memcpy(buf, domain, sizeof(domain));
    n = sizeof(domain);
    frame(buf, &n, "POST", 4, true);
    frame(buf, &n, "/v1/tasks", 9, true);
    frame(buf, &n, NULL, 0, false);
    frame(buf, &n, "{\"x\":1}", 7, true);
    uint8_t want[32], got[32];
    SHA256(buf, n, want);
    ibex_idem_fingerprint("POST", "/v1/tasks", NULL, "{\"x\":1}", 7, got);
    assert_memory_equal(got, want, 32);

    /* Any difference in any part, or in where parts split, changes it. */
    uint8_t other[32];
    ibex_idem_fingerprint("POST", "/v1/tasks", "", "{\"x\":1}", 7, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/tasks", NULL, "{\"x\":2}", 7, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/tasks", NULL, "{\"x\":1}", 6, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST/", "v1/tasks", NULL, "{\"x\":1}", 7, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/sessions", NULL, "{\"x\":1}", 7, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/tasks", "a", "{\"x\":1}", 7, got);
    ibex_idem_fingerprint("POST", "/v1/tasks", "b", "{\"x\":1}", 7, other);
    assert_memory_not_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/tasks", "a", "{\"x\":1}", 7, other);
    assert_memory_equal(other, got, 32);
    ibex_idem_fingerprint("POST", "/v1/tasks", "a", NULL, 0, other);
    ibex_idem_fingerprint("POST", "/v1/tasks", "a", "", 0, got);
    assert_memory_equal(other, got, 32);
}

/* ---- main ---- */

#define ALL(fn)                                                                                    \
    {"sqlite: " #fn, fn, isetup_sqlite, iteardown, NULL},                                          \
        {"postgres: " #fn, fn, isetup_pg, iteardown, NULL},                                        \
    {                                                                                              \
        "redis: " #fn, fn, isetup_redis, iteardown, NULL                                           \
    }

int main(void)
{
    redis_url = tu_redis_env(&redis_parts);
    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_key_check),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_redis_down),
        ALL(test_claim_replay),
        ALL(test_mismatch),
        ALL(test_lease_takeover),
        ALL(test_ttl_expiry),
        ALL(test_release),
        ALL(test_tenants),
        ALL(test_concurrent),
        ALL(test_big_body),
        ALL(test_sweep),
        ALL(test_backend_errors),
    };
    size_t n = sizeof(all) / sizeof(all[0]), k = 0;
    struct CMUnitTest tests[sizeof(all) / sizeof(all[0])];
    bool with_redis = redis_url != NULL;
    if (!with_redis)
        printf("SKIP idempotency_test on redis: %s\n", tu_redis_skip_reason());
    for (size_t i = 0; i < n; i++)
        if (with_redis || all[i].setup_func != isetup_redis)
            tests[k++] = all[i];
    return tu_store_run_tests("idempotency_test", tests, k, isetup_pg, &pg_url);
}
