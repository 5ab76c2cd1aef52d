/* Idempotency-Key entries (idempotency.h) in the store or in Redis.
 * Invariants:
 * - an entry's expires_at is its lease while 'running' and its TTL once 'done', so "expired" is
 *   one comparison: the same one lets begin replace an entry and the sweep delete it (the sweep
 *   re-checks it on the row it deletes, so a row reclaimed meanwhile survives on Postgres);
 * - every write but a claim names the claim's token and fingerprint and requires 'running', so
 *   only the current owner's complete or release changes an entry;
 * - Redis values: "R <fp> <token>" while running, then "D <fp> <token> <status> <ctlen>
 *   <hdrlen>\n" followed by the content type, the headers and the body. complete and release
 *   compare the whole running value, which the owner can rebuild from fp and token;
 * - keys, fingerprints and bodies never reach a log line or an error message. */
#include "idempotency.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/buf.h"
#include "../core/id.h"
#include "../core/log.h"
#include "../store/redis.h"

#define DEFAULT_TTL_MS (24ull * 3600 * 1000)
#define DEFAULT_LEASE_MS (10ull * 60 * 1000)
#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_SWEEP_MS 60000
#define SWEEP_AGAIN_MS 1000 /* after a full batch */
#define DEFAULT_REDIS_CONNS 8
#define DEFAULT_REDIS_TIMEOUT_MS 1000
#define REDIS_HOLD_MS 1000
#define LOG_REPEAT_MS 60000
#define CLAIM_ATTEMPTS 3
#define FP_HEX 64
#define RUNNING_LEN (2 + FP_HEX + 1 + IBEX_IDEM_TOKEN_LEN) /* "R <fp> <token>" */
#define REDIS_KEY_MAX (sizeof("idempotency:") + IBEX_IDEM_TENANT_MAX + 1 + IBEX_IDEM_KEY_MAX)

struct ibex_idem {
    uint64_t ttl_ms, lease_ms, sweep_interval_ms;
    size_t max_body;
    struct ibex_redis_pool *redis; /* NULL: the store */
    char redis_shown[300];
    atomic_uint_fast64_t next_sweep_ms;      /* wall clock; begin sweeps once it is reached */
    atomic_uint_fast64_t fails, last_log_ms; /* Redis failures not yet logged */
    atomic_uint_fast64_t claimed, replayed, in_progress, mismatched, completed, released, lost,
        too_big, errors, swept;
};

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int fail_count(struct ibex_idem *m, int rc)
{
    if (rc < 0 && rc != IBEX_IDEM_ELOST && rc != IBEX_IDEM_ETOOBIG && rc != IBEX_EINVAL)
        atomic_fetch_add(&m->errors, 1);
    return rc;
}

/* At most one line a minute, with the number of failures since the last line. */
static void redis_failed(struct ibex_idem *m, const char *why)
{
    uint64_t n = atomic_fetch_add(&m->fails, 1) + 1;
    uint64_t now = ibex_redis_now_ms(), last = atomic_load(&m->last_log_ms);
    if (last != 0 && now - last < LOG_REPEAT_MS)
        return;
    if (!atomic_compare_exchange_strong(&m->last_log_ms, &last, now))
        return;
    n = atomic_exchange(&m->fails, 0);
    char count[24];
    snprintf(count, sizeof(count), "%" PRIu64, n ? n : 1);
    ibex_log(IBEX_LOG_WARN, "idempotency: redis command failed", "redis", m->redis_shown, "error",
             why, "failures", count, NULL);
}

/* ---- options, keys, fingerprints ---- */

int ibex_idem_new(const struct ibex_idem_opts *o, struct ibex_idem **out, char *err, size_t errlen)
{
    *out = NULL;
    struct ibex_idem_opts d = *o;
    d.ttl_ms = d.ttl_ms ? d.ttl_ms : DEFAULT_TTL_MS;
    d.lease_ms = d.lease_ms ? d.lease_ms : DEFAULT_LEASE_MS;
    d.max_body = d.max_body ? d.max_body : DEFAULT_MAX_BODY;
    d.sweep_interval_ms = d.sweep_interval_ms ? d.sweep_interval_ms : DEFAULT_SWEEP_MS;
    d.redis_max_conns = d.redis_max_conns ? d.redis_max_conns : DEFAULT_REDIS_CONNS;
    d.redis_timeout_ms = d.redis_timeout_ms ? d.redis_timeout_ms : DEFAULT_REDIS_TIMEOUT_MS;
    if (d.ttl_ms > IBEX_IDEM_MAX_TTL_MS || d.lease_ms > IBEX_IDEM_MAX_TTL_MS) {
        snprintf(err, errlen, "idempotency: ttl and lease must be at most 30 days");
        return IBEX_EINVAL;
    }
    if (d.max_body > IBEX_IDEM_MAX_BODY_LIMIT) {
        snprintf(err, errlen, "idempotency: max_body above %u bytes", IBEX_IDEM_MAX_BODY_LIMIT);
        return IBEX_EINVAL;
    }
    struct ibex_redis_url u;
    bool redis = d.redis_url != NULL && d.redis_url[0] != '\0';
    if (redis) {
        char why[256];
        if (ibex_redis_parse_url(d.redis_url, &u, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "idempotency: %s", why);
            return IBEX_EINVAL;
        }
    }
    struct ibex_idem *m = ibex_xcalloc(1, sizeof(*m));
    m->ttl_ms = d.ttl_ms;
    m->lease_ms = d.lease_ms;
    m->max_body = d.max_body;
    m->sweep_interval_ms = d.sweep_interval_ms;
    if (redis) {
        ibex_redis_url_show(&u, m->redis_shown, sizeof(m->redis_shown));
        struct ibex_redis_pool_opts po = {
            .url = &u,
            .name = "ibex-idempotency",
            .max_conns = d.redis_max_conns,
            .timeout_ms = d.redis_timeout_ms,
            .hold_ms = REDIS_HOLD_MS,
            /* the largest value we store, with room for the protocol around it */
            .reply_cap = m->max_body + IBEX_IDEM_HEADERS_MAX + IBEX_IDEM_CONTENT_TYPE_MAX + 4096};
        m->redis = ibex_redis_pool_new(&po);
        memset(u.password, 0, sizeof(u.password));
    }
    *out = m;
    return 0;
}

void ibex_idem_free(struct ibex_idem *m)
{
    if (m == NULL)
        return;
    ibex_redis_pool_free(m->redis);
    free(m);
}

const char *ibex_idem_backend(const struct ibex_idem *m)
{
    return m->redis ? "redis" : "store";
}

int ibex_idem_key_check(const char *p, size_t len)
{
    if (p == NULL || len == 0 || len > IBEX_IDEM_KEY_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return -1;
    return 0;
}

/* Tenant ids are UUIDs; anything printable without ':' keeps "idempotency:<tenant>:<key>"
 * unambiguous. */
static int check_names(const char *tenant, const char *key)
{
    size_t tl = tenant ? strlen(tenant) : 0;
    if (tl == 0 || tl > IBEX_IDEM_TENANT_MAX || key == NULL)
        return IBEX_EINVAL;
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)tenant[i] < 0x21 || (unsigned char)tenant[i] > 0x7e || tenant[i] == ':')
            return IBEX_EINVAL;
    return ibex_idem_key_check(key, strlen(key)) == 0 ? 0 : IBEX_EINVAL;
}

static void digest_part(EVP_MD_CTX *ctx, const void *p, size_t len, bool present)
{
    uint8_t n[8];
    uint64_t v = present ? (uint64_t)len : UINT64_MAX;
    for (int i = 0; i < 8; i++)
        n[i] = (uint8_t)(v >> (56 - 8 * i));
    EVP_DigestUpdate(ctx, n, sizeof(n));
    if (present && len > 0)
        EVP_DigestUpdate(ctx, p, len);
}

void ibex_idem_fingerprint(const char *method, const char *path, const char *agent,
                           const void *body, size_t len, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "ibex: out of memory (sha256)\n");
        abort();
    }
    static const char domain[] = "ibex-idempotency-v1";
    EVP_DigestUpdate(ctx, domain, sizeof(domain));
    digest_part(ctx, method, method ? strlen(method) : 0, method != NULL);
    digest_part(ctx, path, path ? strlen(path) : 0, path != NULL);
    digest_part(ctx, agent, agent ? strlen(agent) : 0, agent != NULL);
    digest_part(ctx, body, len, true);
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
}

/* ---- responses ---- */

static struct ibex_str dup_bytes(const char *p, size_t len)
{
    char *d = ibex_xmalloc(len + 1);
    if (len > 0)
        memcpy(d, p, len);
    d[len] = '\0';
    return (struct ibex_str){d, len};
}

void ibex_idem_response_dispose(struct ibex_idem_response *r)
{
    free((void *)r->content_type.p);
    free((void *)r->headers.p);
    free((void *)r->body.p);
    memset(r, 0, sizeof(*r));
}

/* 0, IBEX_IDEM_ETOOBIG or IBEX_EINVAL. */
static int check_response(const struct ibex_idem *m, const struct ibex_idem_response *r)
{
    if (r->status < 100 || r->status > 599)
        return IBEX_EINVAL;
    if (r->content_type.len > IBEX_IDEM_CONTENT_TYPE_MAX ||
        r->headers.len > IBEX_IDEM_HEADERS_MAX || r->body.len > m->max_body)
        return IBEX_IDEM_ETOOBIG;
    for (size_t i = 0; i < r->content_type.len; i++) {
        char c = r->content_type.p[i];
        if (c == '\0' || c == '\r' || c == '\n')
            return IBEX_EINVAL;
    }
    if (r->headers.len > 0 && memchr(r->headers.p, '\0', r->headers.len) != NULL)
        return IBEX_EINVAL;
    return 0;
}

/* ---- the store ---- */

/* A claim: a new row, or a row whose lease or TTL is over. */
static const char claim_sql[] =
    "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, token, state, created_at, "
    "expires_at) VALUES ($1, $2, $3, $4, 'running', $5, $6) "
    "ON CONFLICT (tenant_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, "
    "token = excluded.token, state = 'running', status = NULL, content_type = NULL, "
    "headers = NULL, body = NULL, created_at = excluded.created_at, "
    "expires_at = excluded.expires_at WHERE idempotency_keys.expires_at <= $5 RETURNING token";

/* The body only for the same request: a mismatch does not need it. */
static const char lookup_sql[] = "SELECT fingerprint, state, status, content_type, headers, "
                                 "CASE WHEN fingerprint = $3 THEN body END, expires_at "
                                 "FROM idempotency_keys WHERE tenant_id = $1 AND key = $2";

static const char complete_sql[] =
    "UPDATE idempotency_keys SET state = 'done', status = $5, content_type = $6, headers = $7, "
    "body = $8, expires_at = $9 WHERE tenant_id = $1 AND key = $2 AND token = $3 AND "
    "fingerprint = $4 AND state = 'running' RETURNING token";

static const char release_sql[] =
    "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND token = $3 AND "
    "fingerprint = $4 AND state = 'running' RETURNING token";

static const char sweep_sql[] =
    "DELETE FROM idempotency_keys WHERE expires_at <= $1 AND (tenant_id, key) IN "
    "(SELECT tenant_id, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2) RETURNING 1";

static int count_rows(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    (*(size_t *)data)++;
    return 0;
}

struct entry {
    bool found, running, same;
    int64_t expires_at;
    struct ibex_idem_response resp; /* copied when same and done */
};

static struct ibex_str col_str(const struct ibex_store_value *v)
{
    if (v->type == IBEX_STORE_TEXT || v->type == IBEX_STORE_BLOB)
        return dup_bytes(v->p, v->len);
    return dup_bytes("", 0);
}

struct lookup {
    const char *fp_hex;
    struct entry *e;
};

static int lookup_row(void *data, const struct ibex_store_value *c, size_t n)
{
    struct lookup *l = data;
    struct entry *e = l->e;
    if (n != 7 || c[0].type != IBEX_STORE_TEXT || c[1].type != IBEX_STORE_TEXT ||
        c[6].type != IBEX_STORE_INT)
        return 0;
    e->found = true;
    e->same = c[0].len == FP_HEX && memcmp(c[0].p, l->fp_hex, FP_HEX) == 0;
    e->running = c[1].len == 7 && memcmp(c[1].p, "running", 7) == 0;
    e->expires_at = c[6].i;
    if (e->same && !e->running) {
        e->resp.status = c[2].type == IBEX_STORE_INT ? (int)c[2].i : 0;
        e->resp.content_type = col_str(&c[3]);
        e->resp.headers = col_str(&c[4]);
        e->resp.body = col_str(&c[5]);
    }
    return 0;
}

/* CLAIMED (*claimed) or the entry that stands in the way (*e). An entry that vanished or
 * expired between the claim and the look-up (a release, a sweep) earns another claim; after
 * CLAIM_ATTEMPTS such races the key counts as busy. */
static int store_begin(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                       const char *key, const char *fp_hex, const char *token, int64_t now,
                       struct entry *e, bool *claimed)
{
    *claimed = false;
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        struct ibex_store_value p[6] = {ibex_store_text(tenant),
                                        ibex_store_text(key),
                                        ibex_store_textn(fp_hex, FP_HEX),
                                        ibex_store_textn(token, IBEX_IDEM_TOKEN_LEN),
                                        ibex_store_int(now),
                                        ibex_store_int(now + (int64_t)m->lease_ms)};
        size_t n = 0;
        int rc = ibex_store_exec(s, claim_sql, p, 6, count_rows, &n);
        if (rc != 0)
            return rc < 0 ? rc : IBEX_EDB;
        if (n == 1) {
            *claimed = true;
            return 0;
        }
        ibex_idem_response_dispose(&e->resp);
        memset(e, 0, sizeof(*e));
        struct lookup l = {fp_hex, e};
        rc = ibex_store_exec(s, lookup_sql, p, 3, lookup_row, &l);
        if (rc != 0)
            return rc < 0 ? rc : IBEX_EDB;
        if (e->found && e->expires_at > now)
            return 0;
    }
    /* Still racing: answer as for a running duplicate, which the client retries. */
    ibex_idem_response_dispose(&e->resp);
    *e = (struct entry){.found = true, .running = true, .same = true};
    return 0;
}

static int store_complete(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                          const char *key, const char *fp_hex, const char *token,
                          const struct ibex_idem_response *r, int64_t now)
{
    struct ibex_store_value p[9] = {
        ibex_store_text(tenant),
        ibex_store_text(key),
        ibex_store_textn(token, IBEX_IDEM_TOKEN_LEN),
        ibex_store_textn(fp_hex, FP_HEX),
        ibex_store_int(r->status),
        ibex_store_textn(r->content_type.p ? r->content_type.p : "", r->content_type.len),
        ibex_store_textn(r->headers.p ? r->headers.p : "", r->headers.len),
        ibex_store_blob(r->body.p ? r->body.p : "", r->body.len),
        ibex_store_int(now + (int64_t)m->ttl_ms)};
    size_t n = 0;
    int rc = ibex_store_exec(s, complete_sql, p, 9, count_rows, &n);
    if (rc != 0)
        return rc < 0 ? rc : IBEX_EDB;
    return n == 1 ? 0 : IBEX_IDEM_ELOST;
}

static int store_release(struct ibex_store *s, const char *tenant, const char *key,
                         const char *fp_hex, const char *token)
{
    struct ibex_store_value p[4] = {ibex_store_text(tenant), ibex_store_text(key),
                                    ibex_store_textn(token, IBEX_IDEM_TOKEN_LEN),
                                    ibex_store_textn(fp_hex, FP_HEX)};
    size_t n = 0;
    int rc = ibex_store_exec(s, release_sql, p, 4, count_rows, &n);
    if (rc != 0)
        return rc < 0 ? rc : IBEX_EDB;
    return n == 1 ? 0 : IBEX_IDEM_ELOST;
}

int ibex_idem_sweep(struct ibex_idem *m, struct ibex_store *s, int64_t now_ms, size_t *deleted)
{
    size_t n = 0;
    int rc = 0;
    if (m->redis == NULL) {
        struct ibex_store_value p[2] = {ibex_store_int(now_ms),
                                        ibex_store_int(IBEX_IDEM_SWEEP_BATCH)};
        rc = ibex_store_exec(s, sweep_sql, p, 2, count_rows, &n);
        if (rc > 0)
            rc = IBEX_EDB;
        if (rc == 0)
            atomic_fetch_add(&m->swept, n);
    }
    if (deleted != NULL)
        *deleted = rc == 0 ? n : 0;
    return fail_count(m, rc);
}

/* One batch from begin when it is time: the thread that moves next_sweep_ms forward sweeps,
 * the others go on at once. */
static void maybe_sweep(struct ibex_idem *m, struct ibex_store *s, int64_t now)
{
    if (m->redis != NULL || m->sweep_interval_ms == UINT64_MAX || now < 0)
        return;
    uint64_t next = atomic_load(&m->next_sweep_ms);
    if ((uint64_t)now < next || !atomic_compare_exchange_strong(
                                    &m->next_sweep_ms, &next, (uint64_t)now + m->sweep_interval_ms))
        return;
    size_t n = 0;
    if (ibex_idem_sweep(m, s, now, &n) == 0 && n == IBEX_IDEM_SWEEP_BATCH)
        atomic_store(&m->next_sweep_ms, (uint64_t)now + SWEEP_AGAIN_MS);
}

/* ---- Redis ---- */

static const char begin_lua[] = "local v = redis.call('GET', KEYS[1])\n"
                                "if v then return v end\n"
                                "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                "return false\n";

static const char complete_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                   "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
                                   "  return 1\n"
                                   "end\n"
                                   "return 0\n";

static const char release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

static void redis_key(const char *tenant, const char *key, char out[REDIS_KEY_MAX])
{
    snprintf(out, REDIS_KEY_MAX, "idempotency:%s:%s", tenant, key);
}

static void running_value(const char *fp_hex, const char *token, char out[RUNNING_LEN + 1])
{
    snprintf(out, RUNNING_LEN + 1, "R %s %s", fp_hex, token);
}

/* EVAL script 1 key args...: argc counts args; lens may be NULL for C strings. */
static int redis_eval(struct ibex_idem *m, const char *script, const char *key, int argc,
                      const char **args, const size_t *lens, redisReply **out)
{
    const char *argv[8] = {"EVAL", script, "1", key};
    size_t alen[8] = {4, strlen(script), 1, strlen(key)};
    for (int i = 0; i < argc; i++) {
        argv[4 + i] = args[i];
        alen[4 + i] = lens ? lens[i] : strlen(args[i]);
    }
    char why[256] = "";
    int rc = ibex_redis_pool_command(m->redis, 4 + argc, argv, alen, out, why, sizeof(why));
    if (rc != 0)
        redis_failed(m, why);
    return rc;
}

/* Reads the decimal number at *p (up to end) followed by sep. */
static int take_num(const char **p, const char *end, char sep, uint64_t max, uint64_t *out)
{
    const char *q = memchr(*p, sep, (size_t)(end - *p));
    if (q == NULL || ibex_str_to_u64((struct ibex_str){*p, (size_t)(q - *p)}, max, out) != 0)
        return -1;
    *p = q + 1;
    return 0;
}

/* Parses a stored value into e (copying the response when it is done and ours). */
static int parse_value(const char *p, size_t len, const char *fp_hex, struct entry *e)
{
    if (len < RUNNING_LEN || (p[0] != 'R' && p[0] != 'D') || p[1] != ' ' || p[2 + FP_HEX] != ' ')
        return -1;
    e->found = true;
    e->running = p[0] == 'R';
    e->same = memcmp(p + 2, fp_hex, FP_HEX) == 0;
    if (e->running)
        return len == RUNNING_LEN ? 0 : -1;
    const char *q = p + RUNNING_LEN, *end = p + len;
    uint64_t status, ctlen, hlen;
    if (q >= end || *q++ != ' ' || take_num(&q, end, ' ', 599, &status) != 0 ||
        take_num(&q, end, ' ', IBEX_IDEM_CONTENT_TYPE_MAX, &ctlen) != 0 ||
        take_num(&q, end, '\n', IBEX_IDEM_HEADERS_MAX, &hlen) != 0 ||
        (size_t)(end - q) < ctlen + hlen)
        return -1;
    if (e->same) {
        e->resp.status = (int)status;
        e->resp.content_type = dup_bytes(q, ctlen);
        e->resp.headers = dup_bytes(q + ctlen, hlen);
        e->resp.body = dup_bytes(q + ctlen + hlen, (size_t)(end - q) - ctlen - hlen);
    }
    return 0;
}

static int redis_begin(struct ibex_idem *m, const char *rkey, const char *fp_hex, const char *token,
                       struct entry *e, bool *claimed)
{
    char running[RUNNING_LEN + 1], lease[24];
    running_value(fp_hex, token, running);
    snprintf(lease, sizeof(lease), "%" PRIu64, m->lease_ms);
    redisReply *rep = NULL;
    int rc = redis_eval(m, begin_lua, rkey, 2, (const char *[]){running, lease}, NULL, &rep);
    if (rc != 0)
        return rc;
    *claimed = rep->type == REDIS_REPLY_NIL;
    if (!*claimed &&
        (rep->type != REDIS_REPLY_STRING || parse_value(rep->str, rep->len, fp_hex, e) != 0)) {
        redis_failed(m, "a value under idempotency: that ibex did not write");
        rc = IBEX_EDB;
    }
    freeReplyObject(rep);
    return rc;
}

/* 0 when the script's integer reply is 1, IBEX_IDEM_ELOST when 0. */
static int redis_cas(struct ibex_idem *m, const char *script, const char *rkey, int argc,
                     const char **args, const size_t *lens)
{
    redisReply *rep = NULL;
    int rc = redis_eval(m, script, rkey, argc, args, lens, &rep);
    if (rc != 0)
        return rc;
    rc = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1 ? 0 : IBEX_IDEM_ELOST;
    freeReplyObject(rep);
    return rc;
}

static int redis_complete(struct ibex_idem *m, const char *rkey, const char *fp_hex,
                          const char *token, const struct ibex_idem_response *r)
{
    char running[RUNNING_LEN + 1], ttl[24];
    running_value(fp_hex, token, running);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, m->ttl_ms);
    struct ibex_buf v;
    ibex_buf_init(&v);
    ibex_buf_reserve(&v, RUNNING_LEN + 48 + r->content_type.len + r->headers.len + r->body.len);
    ibex_buf_appendf(&v, "D %s %s %d %zu %zu\n", fp_hex, token, r->status, r->content_type.len,
                     r->headers.len);
    ibex_buf_append(&v, r->content_type.p, r->content_type.len);
    ibex_buf_append(&v, r->headers.p, r->headers.len);
    ibex_buf_append(&v, r->body.p, r->body.len);
    int rc = redis_cas(m, complete_lua, rkey, 3, (const char *[]){running, v.p, ttl},
                       (const size_t[]){RUNNING_LEN, v.len, strlen(ttl)});
    ibex_buf_dispose(&v);
    return rc;
}

static int redis_release(struct ibex_idem *m, const char *rkey, const char *fp_hex,
                         const char *token)
{
    char running[RUNNING_LEN + 1];
    running_value(fp_hex, token, running);
    return redis_cas(m, release_lua, rkey, 1, (const char *[]){running}, NULL);
}

/* ---- the API ---- */

int ibex_idem_begin(struct ibex_idem *m, struct ibex_store *s, const char *tenant, const char *key,
                    const uint8_t fp[32], int64_t now_ms, enum ibex_idem_state *state,
                    struct ibex_idem_claim *claim, struct ibex_idem_response *replay)
{
    if (check_names(tenant, key) != 0)
        return IBEX_EINVAL;
    char fp_hex[FP_HEX + 1], token[IBEX_IDEM_TOKEN_LEN + 1];
    hex(fp, 32, fp_hex);
    uint8_t rnd[IBEX_IDEM_TOKEN_LEN / 2];
    ibex_id_random(rnd, sizeof(rnd));
    hex(rnd, sizeof(rnd), token);

    struct entry e = {0};
    bool claimed = false;
    int rc;
    if (m->redis != NULL) {
        char rkey[REDIS_KEY_MAX];
        redis_key(tenant, key, rkey);
        rc = redis_begin(m, rkey, fp_hex, token, &e, &claimed);
    } else {
        rc = store_begin(m, s, tenant, key, fp_hex, token, now_ms, &e, &claimed);
    }
    if (rc != 0) {
        ibex_idem_response_dispose(&e.resp);
        return fail_count(m, rc);
    }
    if (claimed) {
        *state = IBEX_IDEM_CLAIMED;
        memcpy(claim->token, token, sizeof(token));
        atomic_fetch_add(&m->claimed, 1);
    } else if (!e.same) {
        *state = IBEX_IDEM_MISMATCH;
        atomic_fetch_add(&m->mismatched, 1);
    } else if (e.running) {
        *state = IBEX_IDEM_IN_PROGRESS;
        atomic_fetch_add(&m->in_progress, 1);
    } else {
        *state = IBEX_IDEM_REPLAY;
        *replay = e.resp;
        e.resp = (struct ibex_idem_response){0};
        atomic_fetch_add(&m->replayed, 1);
    }
    ibex_idem_response_dispose(&e.resp);
    if (m->redis == NULL)
        maybe_sweep(m, s, now_ms);
    return 0;
}

static int release(struct ibex_idem *m, struct ibex_store *s, const char *tenant, const char *key,
                   const char *fp_hex, const struct ibex_idem_claim *claim)
{
    int rc;
    if (m->redis != NULL) {
        char rkey[REDIS_KEY_MAX];
        redis_key(tenant, key, rkey);
        rc = redis_release(m, rkey, fp_hex, claim->token);
    } else {
        rc = store_release(s, tenant, key, fp_hex, claim->token);
    }
    if (rc == 0)
        atomic_fetch_add(&m->released, 1);
    else if (rc == IBEX_IDEM_ELOST)
        atomic_fetch_add(&m->lost, 1);
    return fail_count(m, rc);
}

static bool token_ok(const struct ibex_idem_claim *claim)
{
    return claim != NULL && strnlen(claim->token, sizeof(claim->token)) == IBEX_IDEM_TOKEN_LEN;
}

int ibex_idem_complete(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                       const char *key, const uint8_t fp[32], const struct ibex_idem_claim *claim,
                       const struct ibex_idem_response *resp, int64_t now_ms)
{
    if (check_names(tenant, key) != 0 || !token_ok(claim))
        return IBEX_EINVAL;
    char fp_hex[FP_HEX + 1];
    hex(fp, 32, fp_hex);
    int bad = check_response(m, resp);
    if (bad != 0) {
        /* Not storable: let a retry run again rather than answer 409 until the lease ends. */
        int rc = release(m, s, tenant, key, fp_hex, claim);
        if (bad == IBEX_IDEM_ETOOBIG)
            atomic_fetch_add(&m->too_big, 1);
        return rc == IBEX_IDEM_ELOST || rc == 0 ? bad : rc;
    }
    int rc;
    if (m->redis != NULL) {
        char rkey[REDIS_KEY_MAX];
        redis_key(tenant, key, rkey);
        rc = redis_complete(m, rkey, fp_hex, claim->token, resp);
    } else {
        rc = store_complete(m, s, tenant, key, fp_hex, claim->token, resp, now_ms);
    }
    if (rc == 0)
        atomic_fetch_add(&m->completed, 1);
    else if (rc == IBEX_IDEM_ELOST)
        atomic_fetch_add(&m->lost, 1);
    return fail_count(m, rc);
}

int ibex_idem_release(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                      const char *key, const uint8_t fp[32], const struct ibex_idem_claim *claim)
{
    if (check_names(tenant, key) != 0 || !token_ok(claim))
        return IBEX_EINVAL;
    char fp_hex[FP_HEX + 1];
    hex(fp, 32, fp_hex);
    return release(m, s, tenant, key, fp_hex, claim);
}

void ibex_idem_stats(struct ibex_idem *m, struct ibex_idem_stats *out)
{
    out->claimed = atomic_load(&m->claimed);
    out->replayed = atomic_load(&m->replayed);
    out->in_progress = atomic_load(&m->in_progress);
    out->mismatched = atomic_load(&m->mismatched);
    out->completed = atomic_load(&m->completed);
    out->released = atomic_load(&m->released);
    out->lost = atomic_load(&m->lost);
    out->too_big = atomic_load(&m->too_big);
    out->errors = atomic_load(&m->errors);
    out->swept = atomic_load(&m->swept);
}
