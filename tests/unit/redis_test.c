/* src/store/redis.c: URL parsing, and the command pool against a real Redis
 * (IBEX_TEST_REDIS_URL; SKIP with the reason without it): connections opened on demand up to
 * the limit and reused, SELECT of the URL's db, an error reply that keeps its connection, a
 * connection killed by Redis replaced without an error, the reply cap, threads sharing the pool,
 * and an unreachable Redis failing fast and then held back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/store/redis.h"
#include "../../src/store/store.h"
#include "testutil.h"
#include "storeutil.h"

static const char *redis_url;
static struct ibex_redis_url redis_parts;
static char name[64]; /* this run's connection name, without ":<pid>" */

/* ---- URL parsing ---- */

static void test_parse_url(void **state)
{
    struct ibex_redis_url u;
    char err[256];
    assert_int_equal(ibex_redis_parse_url("redis://127.0.0.1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_int_equal(u.db, 0);

    assert_int_equal(ibex_redis_parse_url("redis://:s3cret@localhost:6380/2", &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6380);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_int_equal(u.db, 2);

    assert_int_equal(
        ibex_redis_parse_url("redis://alice:p%40ss%3Aw%25@[::1]:7000/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "p@ss:w%");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);

    /* The last '@' ends the user info. */
    assert_int_equal(ibex_redis_parse_url("redis://bob:a@b:c@cache.internal", &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.password, "a@b:c");
    assert_string_equal(u.host, "cache.internal");

    const char *bad[] = {
        "http://TOPSECRET@h",
        "rediss://:TOPSECRET@h",
        "redis://",
        "redis://:TOPSECRET@",
        "redis://:TOPSECRET@h:0",
        "redis://:TOPSECRET@h:65536",
        "redis://:TOPSECRET@h:port",
        "redis://:TOPSECRET@h:6379/db",
        "redis://:TOPSECRET@h:6379/0?timeout=1",
        "redis://TOPSECRET@h",
        "redis://user:@h",
        "redis://:TOPSECRET%zz@h",
        "redis://:TOPSECRET%4@h",
        "redis://:TOPSECRET%00@h",
        "redis://:TOPSECRET@[::1",
        NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        err[0] = '\0';
        if (ibex_redis_parse_url(bad[i], &u, err, sizeof(err)) != IBEX_EINVAL)
            fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 0);
        if (strstr(err, "TOPSECRET") || strstr(u.password, "TOPSECRET"))
            fail_msg("the password is in the error or left behind: %s", err);
    }
    assert_int_equal(ibex_redis_parse_url(NULL, &u, err, sizeof(err)), IBEX_EINVAL);
}

/* ---- pool ---- */

static struct ibex_redis_pool *pool(const struct ibex_redis_url *u, size_t max, size_t cap)
{
    struct ibex_redis_pool_opts o = {.url = u,
                                     .name = name,
                                     .max_conns = max,
                                     .timeout_ms = 1000,
                                     .hold_ms = 300,
                                     .reply_cap = cap};
    return ibex_redis_pool_new(&o);
}

/* Runs argv on p; returns rc, the reply's integer or string in *out when given. */
static int cmd(struct ibex_redis_pool *p, char *out, size_t outlen, int argc, const char **argv)
{
    redisReply *rep = NULL;
    char why[256] = "";
    int rc = ibex_redis_pool_command(p, argc, argv, NULL, &rep, why, sizeof(why));
    if (out != NULL) {
        if (rc != 0)
            snprintf(out, outlen, "%s", why);
        else if (rep->type == REDIS_REPLY_INTEGER)
            snprintf(out, outlen, "%lld", rep->integer);
        else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
            snprintf(out, outlen, "%.*s", (int)rep->len, rep->str);
        else
            snprintf(out, outlen, "(type %d)", rep->type);
    }
    if (rc == 0)
        assert_non_null(rep);
    else
        assert_null(rep);
    if (rep != NULL)
        freeReplyObject(rep);
    return rc;
}

static int named_conns(redisContext *raw)
{
    return tu_redis_clients(raw, name, false);
}

/* Redis notices a closed connection a moment later: waits up to a second for the count. */
static int named_conns_settled(redisContext *raw, int want)
{
    int n = named_conns(raw);
    for (int i = 0; i < 100 && n != want; i++) {
        usleep(10 * 1000);
        n = named_conns(raw);
    }
    return n;
}

static int kill_named(redisContext *raw)
{
    return tu_redis_clients(raw, name, true);
}

struct incr {
    struct ibex_redis_pool *p;
    char key[80];
    int fails;
};

static void *incr_main(void *arg)
{
    struct incr *in = arg;
    for (int i = 0; i < 50; i++) {
        redisReply *rep = NULL;
        char why[256];
        if (ibex_redis_pool_command(in->p, 2, (const char *[]){"INCR", in->key}, NULL, &rep, why,
                                    sizeof(why)) != 0)
            in->fails++;
        else
            freeReplyObject(rep);
    }
    return NULL;
}

static void test_pool(void **state)
{
    if (!tu_need_redis(redis_url))
        skip();
    redisContext *raw = tu_redis_raw(&redis_parts);
    char key[64], out[256];
    snprintf(key, sizeof(key), "ibex-redis-test:%d", (int)getpid());

    /* The URL's db is selected; binary values go through with their lengths. */
    struct ibex_redis_url u = redis_parts;
    u.db = 5;
    struct ibex_redis_pool *p = pool(&u, 1, 64 * 1024);
    const char *set[] = {"SET", key, "a\0b"};
    redisReply *rep = NULL;
    char why[256];
    assert_int_equal(ibex_redis_pool_command(p, 3, set, (const size_t[]){3, strlen(key), 3}, &rep,
                                             why, sizeof(why)),
                     0);
    freeReplyObject(rep);
    rep = redisCommand(raw, "SELECT 5");
    freeReplyObject(rep);
    rep = redisCommand(raw, "GET %s", key);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_int_equal(rep->len, 3);
    assert_memory_equal(rep->str, "a\0b", 3);
    freeReplyObject(rep);
    rep = redisCommand(raw, "SELECT 0");
    freeReplyObject(rep);
    assert_int_equal(named_conns(raw), 1);

    /* An error reply is an error, and its connection is kept. */
    assert_int_equal(cmd(p, out, sizeof(out), 2, (const char *[]){"INCR", key}), IBEX_ECONN);
    if (!strstr(out, "INCR refused"))
        fail_msg("unclear: %s", out);
    assert_int_equal(named_conns(raw), 1);

    /* Redis closes the idle connection: the next command runs on a new one, without an error. */
    assert_int_equal(kill_named(raw), 1);
    assert_int_equal(named_conns(raw), 0);
    assert_int_equal(cmd(p, out, sizeof(out), 2, (const char *[]){"STRLEN", key}), 0);
    assert_string_equal(out, "3");
    assert_int_equal(named_conns(raw), 1);
    ibex_redis_pool_free(p);
    assert_int_equal(named_conns_settled(raw, 0), 0);

    /* A reply over the cap (give or take one read of 16 KiB) is refused. */
    p = pool(&redis_parts, 2, 1024);
    static char big[40000];
    memset(big, 'x', sizeof(big));
    assert_int_equal(ibex_redis_pool_command(p, 3, (const char *[]){"SET", key, big},
                                             (const size_t[]){3, strlen(key), sizeof(big)}, &rep,
                                             why, sizeof(why)),
                     0);
    freeReplyObject(rep);
    assert_int_equal(cmd(p, out, sizeof(out), 2, (const char *[]){"GET", key}), IBEX_ECONN);
    assert_non_null(strstr(out, "reply larger than 1024 bytes"));
    ibex_redis_pool_free(p);

    /* Four threads on two connections: every command runs, never more than two connections. */
    p = pool(&redis_parts, 2, 1024);
    struct incr in[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        in[i] = (struct incr){.p = p};
        snprintf(in[i].key, sizeof(in[i].key), "%s:n", key);
        pthread_create(&th[i], NULL, incr_main, &in[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(in[i].fails, 0);
    assert_true(named_conns(raw) >= 1 && named_conns(raw) <= 2);
    assert_int_equal(cmd(p, out, sizeof(out), 2, (const char *[]){"GET", in[0].key}), 0);
    assert_string_equal(out, "200");
    assert_int_equal(cmd(p, NULL, 0, 3, (const char *[]){"DEL", key, in[0].key}), 0);
    ibex_redis_pool_free(p);
    redisFree(raw);
}

/* Nothing listens: a command fails at once, the next ones are held back without a connection
 * attempt, and after the hold a new attempt is made. */
static void test_pool_unreachable(void **state)
{
    struct ibex_redis_url u;
    char url[128], err[256], out[256];
    snprintf(url, sizeof(url), "redis://:SECRET-x@127.0.0.1:%d", tu_closed_port());
    assert_int_equal(ibex_redis_parse_url(url, &u, err, sizeof(err)), 0);
    struct ibex_redis_pool *p = pool(&u, 2, 1024);
    assert_int_equal(cmd(p, out, sizeof(out), 1, (const char *[]){"PING"}), IBEX_ECONN);
    assert_non_null(strstr(out, "connect"));
    assert_int_equal(cmd(p, out, sizeof(out), 1, (const char *[]){"PING"}), IBEX_ECONN);
    assert_non_null(strstr(out, "not retried yet"));
    usleep(350 * 1000);
    assert_int_equal(cmd(p, out, sizeof(out), 1, (const char *[]){"PING"}), IBEX_ECONN);
    assert_non_null(strstr(out, "connect"));
    assert_null(strstr(out, "SECRET-x"));
    ibex_redis_pool_free(p);
}

int main(void)
{
    redis_url = tu_redis_env(&redis_parts);
    snprintf(name, sizeof(name), "ibex-redis-test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
