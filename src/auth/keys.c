/* API key generation, shape checks and hashing.
 *
 * SHA-256 runs up to three times per request (the token, agent and session cache keys).
 * OpenSSL 3's one-shot SHA256() looks the algorithm up in its provider store on every call,
 * which costs several times the digest itself; here the algorithm is fetched once per process
 * and each thread reuses one digest context (freed when the thread exits). */
#include "keys.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

#include "../core/id.h"

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void ibex_key_generate(char out[IBEX_KEY_LEN + 1])
{
    memcpy(out, IBEX_KEY_MARK, IBEX_KEY_MARK_LEN);
    size_t n = 0;
    while (n < IBEX_KEY_RANDOM_LEN) {
        uint8_t r[64];
        ibex_id_random(r, sizeof(r));
        for (size_t i = 0; i < sizeof(r) && n < IBEX_KEY_RANDOM_LEN; i++)
            if (r[i] < 248) /* 248 = 4 * 62: no modulo bias */
                out[IBEX_KEY_MARK_LEN + n++] = base62[r[i] % 62];
    }
    out[IBEX_KEY_LEN] = '\0';
}

bool ibex_key_well_formed(const char *token, size_t len)
{
    if (len < IBEX_KEY_PREFIX_LEN + 8 || len > IBEX_KEY_MAX_LEN ||
        memcmp(token, IBEX_KEY_MARK, IBEX_KEY_MARK_LEN) != 0)
        return false;
    for (size_t i = IBEX_KEY_MARK_LEN; i < len; i++) {
        char c = token[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}

void ibex_key_prefix(const char *key, char out[IBEX_KEY_PREFIX_LEN + 1])
{
    memcpy(out, key, IBEX_KEY_PREFIX_LEN);
    out[IBEX_KEY_PREFIX_LEN] = '\0';
}

static EVP_MD *sha256_md; /* NULL when the fetch failed: SHA256() then */
static pthread_key_t sha256_ctx_key;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void sha256_init(void)
{
    if (pthread_key_create(&sha256_ctx_key, free_ctx) == 0)
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void ibex_sha256(const void *p, size_t len, uint8_t out[32])
{
    pthread_once(&sha256_once, sha256_init);
    EVP_MD_CTX *ctx = sha256_md ? pthread_getspecific(sha256_ctx_key) : NULL;
    if (sha256_md && ctx == NULL && (ctx = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(sha256_ctx_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    unsigned int n;
    if (ctx == NULL || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, p, len) != 1 || EVP_DigestFinal_ex(ctx, out, &n) != 1)
        SHA256(p, len, out);
}

void ibex_sha256_hex(const void *p, size_t len, char out[IBEX_SHA256_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    ibex_sha256(p, len, d);
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[IBEX_SHA256_HEX_LEN] = '\0';
}

bool ibex_const_time_eq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
