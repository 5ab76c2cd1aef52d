/* JWT bearer tokens from an OIDC issuer: signature checked against the issuer's JWKS, then the
 * claims turned into a principal (docs/identity.md, auth mode `jwt`).
 *
 * Accepted: compact JWS with alg RS256/384/512, PS256/384/512 or ES256/384/512, signed by a key
 * of the JWKS whose type (and curve) fits that alg; `none`, HS* and anything else are refused,
 * so an RSA public key can never act as an HMAC secret. Claims: `iss` equal to the issuer, `aud`
 * (a string or an array) holding the audience, `exp` required, `nbf` and `iat` checked when
 * present, all with `leeway_ms` of clock skew. Tokens over IBEX_JWT_MAX_LEN are refused before
 * any parsing. The token text is never logged nor kept.
 *
 * Keys: the JWKS is fetched on first use (not by _new, so a start does not depend on the
 * issuer being up), kept, and fetched again when it is older than max_age_ms or a token names a
 * kid it lacks; fetches, failed ones included, happen at most once per refetch_min_interval_ms.
 * A failed fetch keeps the keys already held. */
#ifndef IBEX_AUTH_JWT_H
#define IBEX_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "principal.h"

#define IBEX_JWT_MAX_LEN 16384         /* longer tokens are INVALID without being parsed */
#define IBEX_JWT_JWKS_MAX (256 * 1024) /* a larger JWKS answer is a failed fetch */
#define IBEX_JWT_KEYS_MAX 64           /* usable keys kept from one JWKS; the rest are ignored */

/* Negative results of ibex_jwt_verify and ibex_jwt_verifier_new (STYLE 9). */
enum ibex_jwt_error {
    IBEX_EJWT_INVALID = -1300,     /* malformed, wrongly signed, wrong iss/aud, refused alg, a
                                      key of the wrong type, unknown kid (after a refetch), nbf or
                                      iat in the future, missing or bad exp/tenant/sub/scopes */
    IBEX_EJWT_EXPIRED = -1301,     /* otherwise valid, but exp + leeway is past */
    IBEX_EJWT_UNAVAILABLE = -1302, /* the JWKS could not be fetched and no key held fits */
    IBEX_EJWT_CONFIG = -1303,      /* ibex_jwt_verifier_new: a bad configuration */
};

struct ibex_jwt_config {
    const char *issuer;       /* required: exact match of "iss" */
    const char *audience;     /* required: "aud" (a string, or an array) must hold it */
    const char *jwks_url;     /* required: http(s) URL serving {"keys":[...]} */
    const char *tenant_claim; /* the claim holding the tenant id, a UUID (NULL: "tenant_id") */
    const char *scopes_claim; /* the claim holding scopes, a space-separated string or an array
                                 of strings (NULL: "scope"); absent in a token: no scope */
    uint64_t leeway_ms;       /* clock skew allowed on exp/nbf/iat, at most 1 day (e.g. 30000) */
    uint64_t refetch_min_interval_ms; /* at most one JWKS fetch per this (e.g. 10000; 0: none) */
    uint64_t fetch_timeout_ms;        /* JWKS HTTP timeout, connect included (0: 5000) */
    uint64_t max_age_ms; /* the JWKS is fetched again when older than this (0: 3600000) */
};

struct ibex_jwt_verifier;

/* Checks cfg and makes a verifier; nothing is fetched yet. The strings of cfg are copied. Calls
 * curl_global_init (reference-counted by libcurl; ibex_jwt_verifier_free releases it). Returns
 * 0 with *out set, or IBEX_EJWT_CONFIG with one line in err naming the bad field. */
int ibex_jwt_verifier_new(const struct ibex_jwt_config *cfg, struct ibex_jwt_verifier **out,
                          char *err, size_t errlen);
/* Frees v and its keys; no ibex_jwt_verify may be running. NULL is a no-op. */
void ibex_jwt_verifier_free(struct ibex_jwt_verifier *v);

/* Verifies token[0..len) (the text after "Bearer ", no NUL needed) at wall-clock time now_ms
 * (unix milliseconds, also the clock of the fetch rate limit). On success fills *out: kind
 * IBEX_PRINCIPAL_JWT, tenant_id (lowercased) from the tenant claim, subject from "sub" ("" when
 * absent; longer than IBEX_SUBJECT_MAX is INVALID), scopes from the scopes claim through
 * ibex_scope_parse (unknown names ignored), expires_at_ms from exp; returns 0. Otherwise *out is
 * zeroed and the result is IBEX_EJWT_INVALID, IBEX_EJWT_EXPIRED or IBEX_EJWT_UNAVAILABLE
 * (INVALID wins over EXPIRED, so only a token that would otherwise pass is EXPIRED).
 *
 * Key choice: a token with a kid uses the JWKS key of that kid, which must fit the alg; a
 * token without kid is accepted only when exactly one key of the JWKS fits its alg. A kid (or
 * a fitting key) not held triggers a refetch within the rate limit; still not held afterwards
 * is INVALID, or UNAVAILABLE when the latest fetch failed.
 *
 * Thread: any number of threads at once (store-pool threads). Blocking: a call may fetch the
 * JWKS (libcurl easy, up to fetch_timeout_ms); callers that need keys wait for that one fetch
 * instead of starting their own, callers whose keys are merely older than max_age_ms go on
 * with them. Fetches log "jwks fetched" (info) or "jwks fetch failed" (warn) with the URL. */
int ibex_jwt_verify(struct ibex_jwt_verifier *v, const char *token, size_t len, int64_t now_ms,
                    struct ibex_principal *out);

/* How many JWKS fetches v has attempted (successful or not): for /status and tests. */
uint64_t ibex_jwt_fetch_count(struct ibex_jwt_verifier *v);

#endif
