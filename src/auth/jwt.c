/* JWT verification against an OIDC issuer's JWKS (jwt.h). Invariants:
 * - alg is read by json-c here and by cjose's jansson, and both must agree; only asymmetric algs
 *   pass, and a key serves only the algs its type and curve fit (no none, HS or key confusion).
 * - Keys live in an immutable, reference-counted keyset swapped in under mu, so no thread holds
 *   mu while checking a signature.
 * - One thread fetches at a time (fetch_mu); a caller that waited on another's fetch uses its
 *   result (the generation moved); a caller whose keys are only old does not wait at all.
 * - Signatures are checked before claims, so a forged token is INVALID, never EXPIRED. */
#include "jwt.h"

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/alloc.h"
#include "../core/id.h"
#include "../core/log.h"

#define DEFAULT_FETCH_TIMEOUT_MS 5000
#define DEFAULT_MAX_AGE_MS 3600000
#define MAX_LEEWAY_MS 86400000
#define MAX_NUMERIC_DATE 253402300799LL /* 9999-12-31T23:59:59Z */
#define MAX_KID_LEN 256
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

enum family {
    FAM_RSA = 1,
    FAM_EC,
};

struct alg {
    const char *name;
    enum family fam;
    int crv;        /* EC: the curve the alg is defined on */
    size_t sig_len; /* EC: r||s bytes; RSA: 0 (OpenSSL checks it against the modulus) */
};

static const struct alg algs[] = {
    {"RS256", FAM_RSA, 0, 0},
    {"RS384", FAM_RSA, 0, 0},
    {"RS512", FAM_RSA, 0, 0},
    {"PS256", FAM_RSA, 0, 0},
    {"PS384", FAM_RSA, 0, 0},
    {"PS512", FAM_RSA, 0, 0},
    {"ES256", FAM_EC, CJOSE_JWK_EC_P_256, 64},
    {"ES384", FAM_EC, CJOSE_JWK_EC_P_384, 96},
    {"ES512", FAM_EC, CJOSE_JWK_EC_P_521, 132},
};

struct key {
    cjose_jwk_t *jwk;
    char *kid;             /* NULL when the JWK has none */
    enum family fam;       /* from the imported key, not from the JSON */
    int crv;               /* EC only */
    const struct alg *alg; /* the JWK's own "alg", or NULL for any alg of its type */
};

struct keyset {
    unsigned refs; /* guarded by the verifier's mu */
    size_t n;
    struct key keys[];
};

struct ibex_jwt_verifier {
    char *issuer, *audience, *jwks_url, *tenant_claim, *scopes_claim;
    int64_t leeway_ms;
    int64_t refetch_min_interval_ms;
    int64_t fetch_timeout_ms;
    int64_t max_age_ms;

    pthread_mutex_t fetch_mu; /* held by the one thread fetching */
    pthread_mutex_t mu;       /* guards everything below */
    struct keyset *keys;      /* NULL until a fetch succeeds */
    uint64_t generation;      /* moves after every fetch attempt */
    bool attempted;
    int64_t attempt_ms; /* when the latest fetch started */
    int64_t fetched_ms; /* when keys were fetched */
    bool last_failed;   /* the latest fetch failed */
    uint64_t fetches;
};

/* ---- small helpers ---- */

static const struct alg *alg_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0)
            return &algs[i];
    return NULL;
}

static bool key_fits(const struct key *k, const struct alg *a)
{
    if (k->fam != a->fam || (a->fam == FAM_EC && k->crv != a->crv))
        return false;
    return k->alg == NULL || k->alg == a;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url s[0..len) into out (room for len * 3 / 4 bytes). Returns the
 * decoded length, or -1 for a character outside the alphabet or an impossible length. */
static long b64url_decode(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

static bool all_b64url(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b64url_val((unsigned char)s[i]) < 0)
            return false;
    return true;
}

/* Strict json-c parse of all of p[0..len) (UTF-8 validated); NULL when it is not JSON. */
static json_object *parse_json(const char *p, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, p, (int)len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* The member `name` of object o when it is a string without NUL bytes, else NULL; *present
 * tells whether the member exists at all. */
static const char *member_str(json_object *o, const char *name, size_t *len, bool *present)
{
    json_object *m = NULL;
    bool has = json_object_object_get_ex(o, name, &m);
    if (present)
        *present = has;
    if (!has || !json_object_is_type(m, json_type_string))
        return NULL;
    const char *s = json_object_get_string(m);
    size_t n = (size_t)json_object_get_string_len(m);
    if (strlen(s) != n)
        return NULL;
    if (len)
        *len = n;
    return s;
}

static bool str_is(const char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* ---- keysets ---- */

static void keyset_free(struct keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        cjose_jwk_release(ks->keys[i].jwk);
        free(ks->keys[i].kid);
    }
    free(ks);
}

static void keyset_put(struct ibex_jwt_verifier *v, struct keyset *ks)
{
    if (ks == NULL)
        return;
    pthread_mutex_lock(&v->mu);
    bool last = --ks->refs == 0;
    pthread_mutex_unlock(&v->mu);
    if (last)
        keyset_free(ks);
}

/* Copies member `name` of src, which must be a string, into dst. */
static bool copy_str(json_object *dst, json_object *src, const char *name)
{
    size_t len = 0;
    const char *s = member_str(src, name, &len, NULL);
    if (s == NULL)
        return false;
    json_object_object_add(dst, name, json_object_new_string_len(s, (int)len));
    return true;
}

/* Reads one JWK of a JWKS into k. Returns false for a key we do not use: not RSA or EC, not for
 * signatures, meant for an alg we refuse, malformed, or too weak. Only the public members reach
 * cjose, so a JWKS that leaks a private key still gives us a public one. */
static bool key_import(json_object *jk, struct key *k)
{
    if (!json_object_is_type(jk, json_type_object))
        return false;
    size_t len = 0;
    bool present = false;
    const char *kty = member_str(jk, "kty", &len, NULL);
    enum family fam;
    if (kty && str_is(kty, len, "RSA"))
        fam = FAM_RSA;
    else if (kty && str_is(kty, len, "EC"))
        fam = FAM_EC;
    else
        return false;
    const char *use = member_str(jk, "use", &len, &present);
    if (present && !(use && str_is(use, len, "sig")))
        return false;
    json_object *ops = NULL;
    if (json_object_object_get_ex(jk, "key_ops", &ops)) {
        bool verify = false;
        if (!json_object_is_type(ops, json_type_array))
            return false;
        for (size_t i = 0; i < json_object_array_length(ops); i++) {
            json_object *op = json_object_array_get_idx(ops, i);
            if (json_object_is_type(op, json_type_string) &&
                strcmp(json_object_get_string(op), "verify") == 0)
                verify = true;
        }
        if (!verify)
            return false;
    }
    const struct alg *alg = NULL;
    const char *alg_name = member_str(jk, "alg", &len, &present);
    if (present) {
        alg = alg_name ? alg_find(alg_name, len) : NULL;
        if (alg == NULL || alg->fam != fam)
            return false;
    }
    size_t kid_len = 0;
    const char *kid = member_str(jk, "kid", &kid_len, &present);
    if (present && (kid == NULL || kid_len > MAX_KID_LEN))
        return false;

    json_object *pub = json_object_new_object();
    bool ok = copy_str(pub, jk, "kty");
    if (fam == FAM_RSA)
        ok = ok && copy_str(pub, jk, "n") && copy_str(pub, jk, "e");
    else
        ok = ok && copy_str(pub, jk, "crv") && copy_str(pub, jk, "x") && copy_str(pub, jk, "y");
    cjose_jwk_t *jwk = NULL;
    if (ok) {
        const char *text = json_object_to_json_string_ext(pub, JSON_C_TO_STRING_PLAIN);
        cjose_err cerr;
        jwk = cjose_jwk_import(text, strlen(text), &cerr);
    }
    json_object_put(pub);
    if (jwk == NULL)
        return false;

    cjose_err cerr;
    cjose_jwk_kty_t got = cjose_jwk_get_kty(jwk, &cerr);
    size_t bits = cjose_jwk_get_keysize(jwk, &cerr);
    int crv = 0;
    if (fam == FAM_RSA) {
        ok = got == CJOSE_JWK_KTY_RSA && bits >= RSA_MIN_BITS && bits <= RSA_MAX_BITS;
    } else {
        crv = (int)cjose_jwk_EC_get_curve(jwk, &cerr);
        ok = got == CJOSE_JWK_KTY_EC &&
             (crv == CJOSE_JWK_EC_P_256 || crv == CJOSE_JWK_EC_P_384 || crv == CJOSE_JWK_EC_P_521);
    }
    if (!ok || (alg && alg->fam == FAM_EC && alg->crv != crv)) {
        cjose_jwk_release(jwk);
        return false;
    }
    k->jwk = jwk;
    k->kid = kid ? ibex_xstrndup(kid, kid_len) : NULL;
    k->fam = fam;
    k->crv = crv;
    k->alg = alg;
    return true;
}

/* A keyset from a JWKS document, or NULL (with why) when it is not one or holds no usable key. */
static struct keyset *keyset_parse(const char *p, size_t len, const char **why)
{
    json_object *root = parse_json(p, len), *arr = NULL;
    if (root == NULL || !json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "keys", &arr) ||
        !json_object_is_type(arr, json_type_array)) {
        json_object_put(root);
        *why = "not a JWKS document";
        return NULL;
    }
    size_t n = json_object_array_length(arr);
    if (n > IBEX_JWT_KEYS_MAX)
        n = IBEX_JWT_KEYS_MAX;
    struct keyset *ks = ibex_xcalloc(1, sizeof(*ks) + n * sizeof(ks->keys[0]));
    ks->refs = 1;
    for (size_t i = 0; i < n; i++)
        if (key_import(json_object_array_get_idx(arr, i), &ks->keys[ks->n]))
            ks->n++;
    json_object_put(root);
    if (ks->n == 0) {
        free(ks);
        *why = "the JWKS holds no usable signing key";
        return NULL;
    }
    return ks;
}

/* ---- fetching ---- */

struct body {
    char *p;
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct body *b = data;
    size_t add = size * n;
    if (add > IBEX_JWT_JWKS_MAX - b->len)
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    b->p = ibex_xrealloc(b->p, b->len + add + 1);
    memcpy(b->p + b->len, p, add);
    b->len += add;
    return add;
}

/* GETs the JWKS. Returns a keyset with one reference, or NULL after logging why. */
static struct keyset *fetch_jwks(struct ibex_jwt_verifier *v)
{
    struct body b = {NULL, 0};
    struct keyset *ks = NULL;
    const char *why = NULL;
    char detail[96];
    CURL *c = curl_easy_init();
    if (c == NULL) {
        why = "curl_easy_init failed";
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, v->jwks_url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An issuer may move its JWKS, but a redirect never downgrades to plain HTTP. */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)v->fetch_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)v->fetch_timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ibex");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        why = rc == CURLE_WRITE_ERROR ? "the JWKS answer is too large" : curl_easy_strerror(rc);
        goto out;
    }
    if (status != 200) {
        snprintf(detail, sizeof(detail), "HTTP status %ld", status);
        why = detail;
        goto out;
    }
    ks = keyset_parse(b.p ? b.p : "", b.len, &why);
    if (ks) {
        snprintf(detail, sizeof(detail), "%zu", ks->n);
        ibex_log(IBEX_LOG_INFO, "jwks fetched", "url", v->jwks_url, "keys", detail, NULL);
    }
out:
    if (c)
        curl_easy_cleanup(c);
    free(b.p);
    if (ks == NULL)
        ibex_log(IBEX_LOG_WARN, "jwks fetch failed", "url", v->jwks_url, "error", why, NULL);
    return ks;
}

/* What one verify call holds of the shared key state. */
struct snap {
    struct keyset *ks; /* a reference, or NULL */
    uint64_t generation;
    bool last_failed;
    bool stale;
};

static void snap_take(struct ibex_jwt_verifier *v, int64_t now_ms, struct snap *s)
{
    pthread_mutex_lock(&v->mu);
    s->ks = v->keys;
    if (s->ks)
        s->ks->refs++;
    s->generation = v->generation;
    s->last_failed = v->last_failed;
    s->stale = s->ks && (now_ms < v->fetched_ms || now_ms - v->fetched_ms >= v->max_age_ms);
    pthread_mutex_unlock(&v->mu);
}

/* Makes sure a fetch newer than the state s saw has been tried, unless the rate limit forbids
 * it, then refreshes s. A failed fetch keeps the keys held. With wait false (keys held, only
 * old), a fetch already running elsewhere is not waited for: returns false and s is as it was. */
static bool refresh(struct ibex_jwt_verifier *v, int64_t now_ms, struct snap *s, bool wait)
{
    if (wait)
        pthread_mutex_lock(&v->fetch_mu);
    else if (pthread_mutex_trylock(&v->fetch_mu) != 0)
        return false;
    pthread_mutex_lock(&v->mu);
    /* A clock that went back counts as the interval having passed. */
    bool fetch =
        v->generation == s->generation && (!v->attempted || now_ms < v->attempt_ms ||
                                           now_ms - v->attempt_ms >= v->refetch_min_interval_ms);
    if (fetch) {
        v->attempted = true;
        v->attempt_ms = now_ms;
        v->fetches++;
    }
    pthread_mutex_unlock(&v->mu);
    if (fetch) {
        struct keyset *ks = fetch_jwks(v), *old = NULL;
        pthread_mutex_lock(&v->mu);
        if (ks) {
            old = v->keys;
            v->keys = ks;
            v->fetched_ms = now_ms;
            if (old && --old->refs > 0)
                old = NULL;
        }
        v->last_failed = ks == NULL;
        v->generation++;
        pthread_mutex_unlock(&v->mu);
        if (old)
            keyset_free(old);
    }
    pthread_mutex_unlock(&v->fetch_mu);
    keyset_put(v, s->ks);
    snap_take(v, now_ms, s);
    return true;
}

enum pick {
    PICK_OK = 1,
    PICK_NONE, /* no key of that kid, or no fitting key for a token without kid */
    PICK_BAD,  /* the kid's key does not fit the alg, or several keys fit a kid-less token */
};

static enum pick pick_key(const struct keyset *ks, const struct alg *a, const char *kid,
                          const struct key **out)
{
    *out = NULL;
    if (kid) {
        bool seen = false;
        for (size_t i = 0; i < ks->n; i++) {
            const struct key *k = &ks->keys[i];
            if (k->kid == NULL || strcmp(k->kid, kid) != 0)
                continue;
            seen = true;
            if (key_fits(k, a)) {
                *out = k;
                return PICK_OK;
            }
        }
        return seen ? PICK_BAD : PICK_NONE;
    }
    size_t fitting = 0;
    for (size_t i = 0; i < ks->n; i++)
        if (key_fits(&ks->keys[i], a)) {
            fitting++;
            *out = &ks->keys[i];
        }
    if (fitting == 1)
        return PICK_OK;
    *out = NULL;
    return fitting == 0 ? PICK_NONE : PICK_BAD;
}

/* ---- claims ---- */

/* A NumericDate claim in milliseconds: 1 when present and well-formed, 0 when absent, -1 when
 * it is not a number in [0, year 9999]. */
static int numeric_date_ms(json_object *claims, const char *name, int64_t *ms)
{
    json_object *m = NULL;
    if (!json_object_object_get_ex(claims, name, &m))
        return 0;
    if (json_object_is_type(m, json_type_int)) {
        int64_t s = json_object_get_int64(m);
        if (s < 0 || s > MAX_NUMERIC_DATE)
            return -1;
        *ms = s * 1000;
        return 1;
    }
    if (json_object_is_type(m, json_type_double)) {
        double d = json_object_get_double(m);
        if (!isfinite(d) || d < 0 || d > (double)MAX_NUMERIC_DATE)
            return -1;
        *ms = (int64_t)(d * 1000.0);
        return 1;
    }
    return -1;
}

static bool aud_holds(json_object *claims, const char *audience)
{
    json_object *aud = NULL;
    if (!json_object_object_get_ex(claims, "aud", &aud))
        return false;
    size_t want = strlen(audience);
    if (json_object_is_type(aud, json_type_string))
        return (size_t)json_object_get_string_len(aud) == want &&
               memcmp(json_object_get_string(aud), audience, want) == 0;
    if (!json_object_is_type(aud, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(aud); i++) {
        json_object *a = json_object_array_get_idx(aud, i);
        if (json_object_is_type(a, json_type_string) &&
            (size_t)json_object_get_string_len(a) == want &&
            memcmp(json_object_get_string(a), audience, want) == 0)
            return true;
    }
    return false;
}

static uint32_t scopes_of_words(const char *s, size_t len)
{
    uint32_t bits = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && s[i] != ' ')
            i++;
        if (i > start)
            bits |= ibex_scope_parse(s + start, i - start);
    }
    return bits;
}

/* The scopes claim: a space-separated string or an array of names; absent is no scope. */
static int scopes_claim(json_object *claims, const char *name, uint32_t *out)
{
    json_object *m = NULL;
    *out = 0;
    if (!json_object_object_get_ex(claims, name, &m) || json_object_is_type(m, json_type_null))
        return 0;
    if (json_object_is_type(m, json_type_string)) {
        *out = scopes_of_words(json_object_get_string(m), (size_t)json_object_get_string_len(m));
        return 0;
    }
    if (!json_object_is_type(m, json_type_array))
        return -1;
    for (size_t i = 0; i < json_object_array_length(m); i++) {
        json_object *e = json_object_array_get_idx(m, i);
        if (json_object_is_type(e, json_type_string))
            *out |=
                ibex_scope_parse(json_object_get_string(e), (size_t)json_object_get_string_len(e));
    }
    return 0;
}

/* Checks the claims and fills out. Returns 0, IBEX_EJWT_INVALID or IBEX_EJWT_EXPIRED. */
static int check_claims(struct ibex_jwt_verifier *v, const uint8_t *payload, size_t len,
                        int64_t now_ms, struct ibex_principal *out)
{
    int rc = IBEX_EJWT_INVALID;
    json_object *claims = parse_json((const char *)payload, len);
    if (claims == NULL || !json_object_is_type(claims, json_type_object))
        goto out;

    size_t n = 0;
    const char *iss = member_str(claims, "iss", &n, NULL);
    if (iss == NULL || !str_is(iss, n, v->issuer) || !aud_holds(claims, v->audience))
        goto out;

    int64_t exp_ms = 0, nbf_ms = 0, iat_ms = 0;
    if (numeric_date_ms(claims, "exp", &exp_ms) != 1)
        goto out;
    int has_nbf = numeric_date_ms(claims, "nbf", &nbf_ms);
    int has_iat = numeric_date_ms(claims, "iat", &iat_ms);
    if (has_nbf < 0 || has_iat < 0)
        goto out;
    if ((has_nbf && nbf_ms - v->leeway_ms > now_ms) || (has_iat && iat_ms - v->leeway_ms > now_ms))
        goto out;

    bool present = false;
    const char *sub = member_str(claims, "sub", &n, &present);
    if (present && (sub == NULL || n > IBEX_SUBJECT_MAX))
        goto out;
    if (sub) {
        memcpy(out->subject, sub, n);
        out->subject[n] = '\0';
    }

    const char *tenant = member_str(claims, v->tenant_claim, &n, NULL);
    if (tenant == NULL || !ibex_id_is_uuid(tenant, n))
        goto out;
    for (size_t i = 0; i < n; i++) {
        char ch = tenant[i];
        out->tenant_id[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    out->tenant_id[n] = '\0';

    if (scopes_claim(claims, v->scopes_claim, &out->scopes) != 0)
        goto out;

    out->kind = IBEX_PRINCIPAL_JWT;
    out->expires_at_ms = exp_ms;
    rc = now_ms >= exp_ms + v->leeway_ms ? IBEX_EJWT_EXPIRED : 0;
out:
    json_object_put(claims);
    return rc;
}

/* ---- header ---- */

static bool typ_ok(const char *typ, size_t len)
{
    static const char *const ok[] = {"JWT", "at+jwt", "application/jwt", "application/at+jwt"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strlen(ok[i]) == len && strncasecmp(ok[i], typ, len) == 0)
            return true;
    return false;
}

/* Parses the protected header: alg must be one we accept; kid (optional) a string; no crit or
 * b64 (we implement no extension); typ, when present, a JWT type. On success *kid is malloc'd
 * or NULL. */
static bool header_check(const char *seg, size_t len, const struct alg **alg, char **kid)
{
    bool ok = false;
    unsigned char *raw = ibex_xmalloc(len * 3 / 4 + 1);
    json_object *h = NULL;
    long n = b64url_decode(seg, len, raw);
    if (n <= 0 || (h = parse_json((const char *)raw, (size_t)n)) == NULL ||
        !json_object_is_type(h, json_type_object))
        goto out;
    size_t slen = 0;
    bool present = false;
    const char *name = member_str(h, "alg", &slen, NULL);
    if (name == NULL || (*alg = alg_find(name, slen)) == NULL)
        goto out;
    if (json_object_object_get_ex(h, "crit", NULL) || json_object_object_get_ex(h, "b64", NULL))
        goto out;
    const char *typ = member_str(h, "typ", &slen, &present);
    if (present && (typ == NULL || !typ_ok(typ, slen)))
        goto out;
    const char *k = member_str(h, "kid", &slen, &present);
    if (present && (k == NULL || slen > MAX_KID_LEN))
        goto out;
    *kid = k ? ibex_xstrndup(k, slen) : NULL;
    ok = true;
out:
    json_object_put(h);
    free(raw);
    return ok;
}

/* ---- API ---- */

int ibex_jwt_verifier_new(const struct ibex_jwt_config *cfg, struct ibex_jwt_verifier **out,
                          char *err, size_t errlen)
{
    *out = NULL;
    const char *tenant_claim = cfg->tenant_claim ? cfg->tenant_claim : "tenant_id";
    const char *scopes_claim = cfg->scopes_claim ? cfg->scopes_claim : "scope";
    if (cfg->issuer == NULL || cfg->issuer[0] == '\0') {
        set_err(err, errlen, "jwt: the issuer is required");
        return IBEX_EJWT_CONFIG;
    }
    if (cfg->audience == NULL || cfg->audience[0] == '\0') {
        set_err(err, errlen, "jwt: the audience is required");
        return IBEX_EJWT_CONFIG;
    }
    if (cfg->jwks_url == NULL || (strncasecmp(cfg->jwks_url, "https://", 8) != 0 &&
                                  strncasecmp(cfg->jwks_url, "http://", 7) != 0)) {
        set_err(err, errlen, "jwt: the JWKS URL must be an http:// or https:// URL");
        return IBEX_EJWT_CONFIG;
    }
    if (tenant_claim[0] == '\0' || scopes_claim[0] == '\0') {
        set_err(err, errlen, "jwt: the tenant and scopes claim names must not be empty");
        return IBEX_EJWT_CONFIG;
    }
    if (cfg->leeway_ms > MAX_LEEWAY_MS || cfg->refetch_min_interval_ms > INT64_MAX / 2 ||
        cfg->fetch_timeout_ms > INT32_MAX || cfg->max_age_ms > INT64_MAX / 2) {
        set_err(err, errlen, "jwt: leeway (at most 1 day) or an interval is out of range");
        return IBEX_EJWT_CONFIG;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_err(err, errlen, "jwt: curl_global_init failed");
        return IBEX_EJWT_CONFIG;
    }
    struct ibex_jwt_verifier *v = ibex_xcalloc(1, sizeof(*v));
    v->issuer = ibex_xstrdup(cfg->issuer);
    v->audience = ibex_xstrdup(cfg->audience);
    v->jwks_url = ibex_xstrdup(cfg->jwks_url);
    v->tenant_claim = ibex_xstrdup(tenant_claim);
    v->scopes_claim = ibex_xstrdup(scopes_claim);
    v->leeway_ms = (int64_t)cfg->leeway_ms;
    v->refetch_min_interval_ms = (int64_t)cfg->refetch_min_interval_ms;
    v->fetch_timeout_ms =
        cfg->fetch_timeout_ms ? (int64_t)cfg->fetch_timeout_ms : DEFAULT_FETCH_TIMEOUT_MS;
    v->max_age_ms = cfg->max_age_ms ? (int64_t)cfg->max_age_ms : DEFAULT_MAX_AGE_MS;
    pthread_mutex_init(&v->fetch_mu, NULL);
    pthread_mutex_init(&v->mu, NULL);
    *out = v;
    return 0;
}

void ibex_jwt_verifier_free(struct ibex_jwt_verifier *v)
{
    if (v == NULL)
        return;
    if (v->keys)
        keyset_free(v->keys);
    pthread_mutex_destroy(&v->fetch_mu);
    pthread_mutex_destroy(&v->mu);
    free(v->issuer);
    free(v->audience);
    free(v->jwks_url);
    free(v->tenant_claim);
    free(v->scopes_claim);
    free(v);
    curl_global_cleanup();
}

uint64_t ibex_jwt_fetch_count(struct ibex_jwt_verifier *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t n = v->fetches;
    pthread_mutex_unlock(&v->mu);
    return n;
}

int ibex_jwt_verify(struct ibex_jwt_verifier *v, const char *token, size_t len, int64_t now_ms,
                    struct ibex_principal *out)
{
    int rc = IBEX_EJWT_INVALID;
    char *kid = NULL;
    cjose_jws_t *jws = NULL;
    struct snap s = {NULL, 0, false, false};
    const struct alg *alg = NULL;
    cjose_err cerr;
    memset(out, 0, sizeof(*out));
    /* A clock outside [1970, 9999] is clamped, so no time arithmetic below can overflow. */
    if (now_ms < 0)
        now_ms = 0;
    if (now_ms > MAX_NUMERIC_DATE * 1000)
        now_ms = MAX_NUMERIC_DATE * 1000;

    /* Shape: three non-empty base64url segments, checked before anything allocates. */
    if (len == 0 || len > IBEX_JWT_MAX_LEN)
        goto out;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL)
        goto out;
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = len - (size_t)(dot2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen == 0 || !all_b64url(token, hlen) ||
        !all_b64url(dot1 + 1, plen) || !all_b64url(dot2 + 1, slen))
        goto out;
    if (!header_check(token, hlen, &alg, &kid))
        goto out;
    /* cjose splits an EC signature in two halves whatever its length: insist on r||s. */
    if (alg->fam == FAM_EC && (slen % 4 == 1 || slen * 3 / 4 != alg->sig_len))
        goto out;

    jws = cjose_jws_import(token, len, &cerr);
    if (jws == NULL)
        goto out;
    cjose_header_t *hdr = cjose_jws_get_protected(jws);
    const char *c_alg = hdr ? cjose_header_get(hdr, CJOSE_HDR_ALG, &cerr) : NULL;
    const char *c_kid = hdr ? cjose_header_get(hdr, CJOSE_HDR_KID, &cerr) : NULL;
    /* Both JSON parsers must read the same alg and kid (duplicate members, for instance). */
    if (c_alg == NULL || strcmp(c_alg, alg->name) != 0 || (c_kid == NULL) != (kid == NULL) ||
        (kid && strcmp(c_kid, kid) != 0))
        goto out;

    snap_take(v, now_ms, &s);
    bool refreshed = false;
    if (s.ks == NULL || s.stale)
        refreshed = refresh(v, now_ms, &s, s.ks == NULL);
    if (s.ks == NULL) {
        rc = IBEX_EJWT_UNAVAILABLE;
        goto out;
    }
    const struct key *key = NULL;
    enum pick p = pick_key(s.ks, alg, kid, &key);
    if (p == PICK_NONE && !refreshed) {
        refresh(v, now_ms, &s, true);
        p = s.ks ? pick_key(s.ks, alg, kid, &key) : PICK_NONE;
    }
    if (p != PICK_OK) {
        rc = p == PICK_NONE && s.last_failed ? IBEX_EJWT_UNAVAILABLE : IBEX_EJWT_INVALID;
        goto out;
    }
    if (!cjose_jws_verify(jws, key->jwk, &cerr))
        goto out;

    uint8_t *payload = NULL;
    size_t payload_len = 0;
    if (!cjose_jws_get_plaintext(jws, &payload, &payload_len, &cerr))
        goto out;
    rc = check_claims(v, payload, payload_len, now_ms, out);
out:
    keyset_put(v, s.ks);
    cjose_jws_release(jws);
    free(kid);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
