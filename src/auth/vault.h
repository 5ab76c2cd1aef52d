/* The vault: the master keys that encrypt provider credentials at rest (docs/credentials.md),
 * and AES-256-GCM sealing under them.
 *
 * A master key is 32 bytes, given as 64 hex characters or base64 (standard or URL alphabet,
 * padding optional), from IBEX_MASTER_KEY or a file (setting master_key_file). Previous keys
 * (IBEX_MASTER_KEY_PREVIOUS, setting master_key_previous_file) only decrypt, so rows written
 * under an old key stay readable during a rolling rotation. A key is named by its key id: the
 * first 16 hex characters of SHA-256("ibex master key id v1" NUL key), never the key itself.
 *
 * A sealed value is a random 12-byte nonce (RAND_bytes, one per seal), the ciphertext with its
 * 16-byte tag appended, and the id of the key that sealed it. The caller's AAD is bound to it:
 * opening with any other AAD fails, so a row copied to another tenant or id cannot be read.
 * Plaintext lives only in struct ibex_secret, wiped (OPENSSL_cleanse) before it is freed.
 *
 * Thread: a vault is immutable once built and may be shared by every thread; secrets are
 * reference-counted with atomics and may be released from any thread. */
#ifndef IBEX_AUTH_VAULT_H
#define IBEX_AUTH_VAULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IBEX_VAULT_KEY_LEN 32
#define IBEX_VAULT_NONCE_LEN 12
#define IBEX_VAULT_TAG_LEN 16
#define IBEX_VAULT_KEY_ID_LEN 16
#define IBEX_VAULT_MAX_KEYS 8 /* the current key and up to 7 previous ones */
#define IBEX_VAULT_MAX_PLAIN 65536

/* Negative errors of the vault (STYLE 9); apart from the store's IBEX_E*. */
enum ibex_vault_error {
    IBEX_EVAULT_NOKEY = -1101, /* sealed under a key this vault does not hold */
    IBEX_EVAULT_AUTH = -1102,  /* authentication failed: wrong key, tampered bytes or AAD */
    IBEX_EVAULT_CRYPTO = -1103 /* the library failed (no randomness, bad sizes) */
};

struct ibex_vault;

/* Plaintext (a provider secret) in memory: p holds len bytes and a NUL. Immutable once made;
 * the last release wipes it. */
struct ibex_secret {
    atomic_size_t refs;
    size_t len;
    char p[];
};

/* A new secret holding a copy of p[0..len) (1 reference). */
struct ibex_secret *ibex_secret_new(const void *p, size_t len);
struct ibex_secret *ibex_secret_retain(struct ibex_secret *s);
/* Drops a reference; the last one wipes and frees. NULL is ignored. */
void ibex_secret_release(struct ibex_secret *s);

/* Parses a key (hex or base64; whitespace around it is ignored). Returns 0, or -1 with a
 * message that never quotes the text. */
int ibex_vault_parse_key(const char *text, size_t len, uint8_t key[IBEX_VAULT_KEY_LEN], char *err,
                         size_t errlen);
/* The key id of key: 16 lowercase hex characters and a NUL. */
void ibex_vault_key_id_of(const uint8_t key[IBEX_VAULT_KEY_LEN],
                          char out[IBEX_VAULT_KEY_ID_LEN + 1]);
/* Reads up to max keys from path: the file must be a regular file that other users can neither
 * read nor write (mode & 007 == 0); one key per line, blank lines and lines starting with '#'
 * ignored. many=false: exactly one key. Returns 0 with *n keys, or -1 with a message naming
 * path (and the fix). setting names the setting in messages. */
int ibex_vault_read_key_file(const char *setting, const char *path, bool many,
                             uint8_t keys[][IBEX_VAULT_KEY_LEN], size_t max, size_t *n, char *err,
                             size_t errlen);

/* Where the keys come from: each may be NULL or "". */
struct ibex_vault_sources {
    const char *key;           /* IBEX_MASTER_KEY */
    const char *key_file;      /* setting master_key_file */
    const char *previous;      /* IBEX_MASTER_KEY_PREVIOUS: keys separated by commas or spaces */
    const char *previous_file; /* setting master_key_previous_file */
};

/* Builds the vault from src. *out is NULL when no master key is configured (credentials are
 * then disabled), else a new vault (ibex_vault_free). Returns 0, or -1 with one line in err:
 * both IBEX_MASTER_KEY and master_key_file set, previous keys without a current one, a key
 * that does not parse, a file that cannot be read or that others may read. */
int ibex_vault_load(const struct ibex_vault_sources *src, struct ibex_vault **out, char *err,
                    size_t errlen);
/* A vault with current and nprevious previous keys (duplicates of a key already held are
 * dropped; at most IBEX_VAULT_MAX_KEYS in all). The keys are copied. */
struct ibex_vault *ibex_vault_new(const uint8_t current[IBEX_VAULT_KEY_LEN],
                                  const uint8_t (*previous)[IBEX_VAULT_KEY_LEN], size_t nprevious);
/* Wipes the keys and frees. NULL is ignored. */
void ibex_vault_free(struct ibex_vault *v);

/* The current key's id. */
const char *ibex_vault_key_id(const struct ibex_vault *v);
/* Number of keys held (current first), and the id of key i. */
size_t ibex_vault_nkeys(const struct ibex_vault *v);
const char *ibex_vault_key_id_at(const struct ibex_vault *v, size_t i);
bool ibex_vault_has_key(const struct ibex_vault *v, const char *key_id);

/* A value sealed by ibex_vault_seal: ct holds the ciphertext and the tag (ct_len = plaintext
 * length + IBEX_VAULT_TAG_LEN). */
struct ibex_sealed {
    uint8_t nonce[IBEX_VAULT_NONCE_LEN];
    uint8_t *ct; /* malloc'd */
    size_t ct_len;
    char key_id[IBEX_VAULT_KEY_ID_LEN + 1];
};

/* Seals plain[0..len) (at most IBEX_VAULT_MAX_PLAIN bytes) under the current key with aad.
 * Returns 0 (out filled; ibex_sealed_dispose it) or IBEX_EVAULT_CRYPTO. */
int ibex_vault_seal(const struct ibex_vault *v, const void *aad, size_t aad_len, const void *plain,
                    size_t len, struct ibex_sealed *out);
void ibex_sealed_dispose(struct ibex_sealed *s);
/* Opens ct (ciphertext and tag) sealed under key_id with nonce and aad. Returns 0 with *out a
 * new secret, IBEX_EVAULT_NOKEY, IBEX_EVAULT_AUTH or IBEX_EVAULT_CRYPTO. */
int ibex_vault_open(const struct ibex_vault *v, const char *key_id, const uint8_t *nonce,
                    size_t nonce_len, const uint8_t *ct, size_t ct_len, const void *aad,
                    size_t aad_len, struct ibex_secret **out);
/* HMAC-SHA256 under the current key of label, a NUL and p[0..len): a value that says nothing
 * without the key (for example a fingerprint of a body that holds a secret). */
void ibex_vault_mac(const struct ibex_vault *v, const char *label, const void *p, size_t len,
                    uint8_t out[32]);

#endif
