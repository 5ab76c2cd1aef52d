/* Idempotency-Key (issue 4, item 5) on POST /v1/sessions, POST /v1/tasks and non-streaming
 * POST /v1/chat/completions: the same key with the same request within the TTL replays the first
 * response without running the request again; the same key with another request is
 * MISMATCH (422 IDEMPOTENCY_KEY_REUSED); a duplicate of a request still running is IN_PROGRESS
 * (409, or the caller waits and asks again), never a second run. Keys are scoped per tenant.
 *
 * The caller, on a thread that may block (a store-pool thread), for each request with the header:
 *   ibex_idem_key_check(value)              bad -> 400
 *   ibex_idem_fingerprint(...)              SHA-256 of method, path, agent header and body
 *   ibex_idem_begin(...)                    < 0 -> 503 (never run the request unprotected)
 *     CLAIMED      run the request, then ibex_idem_complete with its response; or
 *                  ibex_idem_release when it failed in a way a retry may repair (5xx, 429, the
 *                  store or upstream unavailable), so that a retry runs again;
 *     REPLAY       answer *replay (then ibex_idem_response_dispose);
 *     IN_PROGRESS  409 (or wait and call begin again);
 *     MISMATCH     422 IDEMPOTENCY_KEY_REUSED.
 *
 * Backends. With redis_url, Redis holds the entries: key "idempotency:<tenant>:<key>", expiry by
 * PX on Redis' own clock (now_ms is then not used for expiry), every step one Lua script (EVAL:
 * an ACL user needs GET, SET, DEL and EVAL on idempotency:*), each command bounded by
 * redis_timeout_ms on a pool of redis_max_conns connections (store/redis.h). Without it, the
 * store's table idempotency_keys (migration 0005) with expiry against now_ms (wall clock, ms).
 * Both are atomic across processes: on the store one INSERT ... ON CONFLICT DO UPDATE ... WHERE
 * expired ... RETURNING (Postgres locks the conflicting row and re-checks the WHERE on its newest
 * version; SQLite has one writer), on Redis a script; two instances racing on a key never both
 * get CLAIMED.
 *
 * Decisions:
 * - Lease: a claim is 'running' for lease_ms (default 10 min); a claim older than that is taken
 *   to be abandoned (a crash, a lost store connection) and the next begin replaces it. lease_ms
 *   must exceed the longest request (the upstream total timeout), or a slow request's duplicate
 *   runs too. On the store, a request that outlives its lease may still complete as long as
 *   nobody took over; on Redis the claim's key expires with its lease, so it gets
 *   IBEX_IDEM_ELOST.
 * - Ownership: begin gives the claimant a random token (struct ibex_idem_claim); complete and
 *   release change the entry only while it is still 'running' with that token and fingerprint.
 *   A stale owner whose claim was taken over gets IBEX_IDEM_ELOST and changes nothing.
 * - TTL: a completed response is replayed for ttl_ms (default 24 h) counted from completion.
 * - Limits: content type <= 255 bytes (no CR, LF, NUL), extra header lines <= 8 KiB (no NUL),
 *   body <= max_body (default 1 MiB, at most 64 MiB). A response over a limit is not stored:
 *   complete releases the claim and returns IBEX_IDEM_ETOOBIG, so a retry runs the request
 *   again (a second upstream call for such a response; a stored body would cost more memory in
 *   Redis than the guarantee is worth at that size). An invalid response (status outside
 *   100-599, a NUL in the headers) is released the same way and gives IBEX_EINVAL.
 * - Sweep (store only; Redis expires keys itself): expired rows are deleted in batches of at
 *   most IBEX_IDEM_SWEEP_BATCH. begin runs one batch at most once per sweep_interval_ms
 *   (default 1 min) per process, on whichever thread gets there first; after a full batch the
 *   next one may run 1 s later, so a backlog drains without making any request slow. A failed
 *   sweep does not fail begin.
 * - Nothing here logs a key, a body or a fingerprint; Redis failures are logged (host:port and
 *   the reason, never the password) at most once a minute with a count.
 *
 * Thread: every function but new and free may be called from several threads at once; a store
 * handle is used by one thread at a time (store.h), so each thread passes its own. */
#ifndef IBEX_API_IDEMPOTENCY_H
#define IBEX_API_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "../core/str.h"
#include "../store/store.h"

#define IBEX_IDEM_KEY_MAX 255
#define IBEX_IDEM_TENANT_MAX 128
#define IBEX_IDEM_TOKEN_LEN 32
#define IBEX_IDEM_CONTENT_TYPE_MAX 255
#define IBEX_IDEM_HEADERS_MAX 8192
#define IBEX_IDEM_MAX_BODY_LIMIT (64u << 20)
#define IBEX_IDEM_MAX_TTL_MS (30ull * 24 * 3600 * 1000)
#define IBEX_IDEM_SWEEP_BATCH 500

/* Errors of complete and release, besides the store's IBEX_E* (store.h). */
enum ibex_idem_error {
    IBEX_IDEM_ELOST = -1100,  /* the claim is no longer the caller's: nothing changed */
    IBEX_IDEM_ETOOBIG = -1101 /* the response is over a limit: not stored, claim released */
};

enum ibex_idem_state {
    IBEX_IDEM_CLAIMED = 1, /* the caller owns the key: run the request */
    IBEX_IDEM_REPLAY,      /* same request, completed: *replay holds its response */
    IBEX_IDEM_IN_PROGRESS, /* same request, still running within its lease */
    IBEX_IDEM_MISMATCH,    /* another request under this key (running or completed) */
};

struct ibex_idem_opts {
    uint64_t ttl_ms;            /* 0 = 24 h; <= IBEX_IDEM_MAX_TTL_MS */
    uint64_t lease_ms;          /* 0 = 10 min; <= IBEX_IDEM_MAX_TTL_MS */
    size_t max_body;            /* 0 = 1 MiB; <= IBEX_IDEM_MAX_BODY_LIMIT */
    uint64_t sweep_interval_ms; /* 0 = 1 min; UINT64_MAX = begin never sweeps */
    const char *redis_url;      /* NULL or "": the store; copied */
    size_t redis_max_conns;     /* 0 = 8 */
    uint64_t redis_timeout_ms;  /* 0 = 1000; one whole command, connecting included */
};

/* A response to store (complete) or replayed (begin). Replayed fields are malloc'd and
 * NUL-terminated (the NUL not counted); release them with ibex_idem_response_dispose. */
struct ibex_idem_response {
    int status;                   /* 100-599 */
    struct ibex_str content_type; /* may be empty */
    struct ibex_str headers;      /* extra header lines, each "Name: value\r\n"; may be empty */
    struct ibex_str body;
};

/* What complete and release need to prove ownership; filled by begin on CLAIMED. */
struct ibex_idem_claim {
    char token[IBEX_IDEM_TOKEN_LEN + 1];
};

/* Counters since new, for metrics. */
struct ibex_idem_stats {
    uint64_t claimed, replayed, in_progress, mismatched; /* begin outcomes */
    uint64_t completed, released, lost, too_big;         /* complete and release */
    uint64_t errors; /* calls that returned a store or Redis error */
    uint64_t swept;  /* rows deleted by sweeps */
};

struct ibex_idem;

/* Checks o and, with redis_url, parses it (nothing is connected yet). Returns 0 and *out (free
 * with ibex_idem_free), or IBEX_EINVAL with one password-free line in err. */
int ibex_idem_new(const struct ibex_idem_opts *o, struct ibex_idem **out, char *err, size_t errlen);
/* Closes the Redis connections. No call may be in progress or follow. NULL is a no-op. */
void ibex_idem_free(struct ibex_idem *m);
/* "redis" or "store". */
const char *ibex_idem_backend(const struct ibex_idem *m);

/* 0 when p[0..len) is a valid Idempotency-Key value: 1-255 bytes, each 0x21-0x7e; else -1
 * (the caller answers 400). */
int ibex_idem_key_check(const char *p, size_t len);

/* SHA-256 over method, path, agent (NULL = no agent header, not the same as "") and body, each
 * framed by its length so no two different requests share an input. */
void ibex_idem_fingerprint(const char *method, const char *path, const char *agent,
                           const void *body, size_t len, uint8_t out[32]);

/* Claims tenant's key for the request fp, or reports why not (see above). s is the caller's
 * store handle (unused with Redis; may then be NULL). now_ms: wall clock. Returns 0 with *state
 * set (and *claim on CLAIMED, *replay on REPLAY, untouched otherwise), IBEX_EINVAL (a bad tenant
 * or key), or a negative IBEX_E* of the store or Redis (IBEX_ECONN, IBEX_ETIMEDOUT, IBEX_EDB). */
int ibex_idem_begin(struct ibex_idem *m, struct ibex_store *s, const char *tenant, const char *key,
                    const uint8_t fp[32], int64_t now_ms, enum ibex_idem_state *state,
                    struct ibex_idem_claim *claim, struct ibex_idem_response *replay);

/* Stores resp as the key's response for ttl_ms from now_ms, if claim still owns the key.
 * Returns 0, IBEX_IDEM_ELOST, IBEX_IDEM_ETOOBIG or IBEX_EINVAL (then the claim was released),
 * or a negative IBEX_E* of the backend (the claim then stays until its lease ends). */
int ibex_idem_complete(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                       const char *key, const uint8_t fp[32], const struct ibex_idem_claim *claim,
                       const struct ibex_idem_response *resp, int64_t now_ms);

/* Deletes the caller's claim so that a retry may run the request again. Returns 0,
 * IBEX_IDEM_ELOST (not the caller's any more: nothing deleted) or a negative IBEX_E*. */
int ibex_idem_release(struct ibex_idem *m, struct ibex_store *s, const char *tenant,
                      const char *key, const uint8_t fp[32], const struct ibex_idem_claim *claim);

/* Deletes at most IBEX_IDEM_SWEEP_BATCH rows that expired at now_ms; *deleted (may be NULL) is
 * how many. A no-op with Redis. Returns 0 or a negative IBEX_E*. */
int ibex_idem_sweep(struct ibex_idem *m, struct ibex_store *s, int64_t now_ms, size_t *deleted);

void ibex_idem_response_dispose(struct ibex_idem_response *r);
/* A snapshot of the counters. Lock-free. */
void ibex_idem_stats(struct ibex_idem *m, struct ibex_idem_stats *out);

#endif
