/* API keys: `ibex_sk_` and 40 random base62 characters (about 238 bits). The first 12 random
 * characters, with the `ibex_sk_` in front, are the key's lookup prefix (a unique column of
 * api_keys); only the SHA-256 of the whole key is stored, and it is compared in constant time.
 * A pinned key (IBEX_DEV_TOKEN) may have 20 to 100 random characters. */
#ifndef IBEX_AUTH_KEYS_H
#define IBEX_AUTH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IBEX_KEY_MARK "ibex_sk_"
#define IBEX_KEY_MARK_LEN 8
#define IBEX_KEY_RANDOM_LEN 40
#define IBEX_KEY_LEN (IBEX_KEY_MARK_LEN + IBEX_KEY_RANDOM_LEN)
#define IBEX_KEY_MAX_LEN (IBEX_KEY_MARK_LEN + 100)
#define IBEX_KEY_PREFIX_LEN (IBEX_KEY_MARK_LEN + 12)
#define IBEX_SHA256_HEX_LEN 64

/* Writes a new random key and a NUL. */
void ibex_key_generate(char out[IBEX_KEY_LEN + 1]);
/* True when token has the shape of an API key (mark, then 20-100 of [A-Za-z0-9]). */
bool ibex_key_well_formed(const char *token, size_t len);
/* The lookup prefix of a well-formed key, and a NUL. */
void ibex_key_prefix(const char *key, char out[IBEX_KEY_PREFIX_LEN + 1]);

void ibex_sha256(const void *p, size_t len, uint8_t out[32]);
/* Lowercase hex of the SHA-256 of p, and a NUL. */
void ibex_sha256_hex(const void *p, size_t len, char out[IBEX_SHA256_HEX_LEN + 1]);
/* Compares n bytes in time that depends only on n. */
bool ibex_const_time_eq(const void *a, const void *b, size_t n);

#endif
