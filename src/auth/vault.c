/* Master keys and AES-256-GCM (OpenSSL EVP) for credentials at rest. See vault.h.
 * Invariants: key bytes live only in struct ibex_vault (wiped on free) and in stack buffers
 * wiped before their function returns; no message ever quotes key text; every plaintext the
 * vault produces is a struct ibex_secret. */
#include "vault.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"

#define KEY_FILE_MAX (64 * 1024)
#define KEY_ID_LABEL "ibex master key id v1"

struct vault_key {
    uint8_t key[IBEX_VAULT_KEY_LEN];
    char id[IBEX_VAULT_KEY_ID_LEN + 1];
};

struct ibex_vault {
    size_t n; /* keys[0] is the current key */
    struct vault_key keys[IBEX_VAULT_MAX_KEYS];
};

/* ---- secrets ---- */

struct ibex_secret *ibex_secret_new(const void *p, size_t len)
{
    struct ibex_secret *s = ibex_xmalloc(sizeof(*s) + len + 1);
    atomic_init(&s->refs, 1);
    s->len = len;
    if (len)
        memcpy(s->p, p, len);
    s->p[len] = '\0';
    return s;
}

struct ibex_secret *ibex_secret_retain(struct ibex_secret *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void ibex_secret_release(struct ibex_secret *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    OPENSSL_cleanse(s->p, s->len);
    free(s);
}

/* ---- parsing keys ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

static bool space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Decodes base64 (either alphabet, padding optional) into at most max bytes. Returns the
 * length, or -1 when s is not base64 or decodes to more than max bytes. */
static long b64decode(const char *s, size_t len, uint8_t *out, size_t max)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == max)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    acc = 0;
    return (long)n;
}

int ibex_vault_parse_key(const char *text, size_t len, uint8_t key[IBEX_VAULT_KEY_LEN], char *err,
                         size_t errlen)
{
    while (len > 0 && space(text[0]))
        text++, len--;
    while (len > 0 && space(text[len - 1]))
        len--;
    bool hex = len == 2 * IBEX_VAULT_KEY_LEN;
    for (size_t i = 0; hex && i < len; i++)
        hex = hexval(text[i]) >= 0;
    if (hex) {
        for (size_t i = 0; i < IBEX_VAULT_KEY_LEN; i++)
            key[i] = (uint8_t)(hexval(text[2 * i]) << 4 | hexval(text[2 * i + 1]));
        return 0;
    }
    uint8_t buf[IBEX_VAULT_KEY_LEN + 1];
    long n = len ? b64decode(text, len, buf, sizeof(buf)) : -1;
    if (n == IBEX_VAULT_KEY_LEN)
        memcpy(key, buf, IBEX_VAULT_KEY_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (n == IBEX_VAULT_KEY_LEN)
        return 0;
    if (len == 0)
        snprintf(err, errlen, "is empty");
    else if (n < 0 && len != 2 * IBEX_VAULT_KEY_LEN)
        snprintf(err, errlen,
                 "is neither 64 hex characters nor base64 of 32 bytes (generate one with "
                 "`openssl rand -hex 32`)");
    else if (n < 0)
        snprintf(err, errlen, "has 64 characters that are not all hex digits");
    else
        snprintf(err, errlen,
                 "decodes to %ld bytes; a master key is 32 bytes (openssl rand -hex 32)", n);
    return -1;
}

void ibex_vault_key_id_of(const uint8_t key[IBEX_VAULT_KEY_LEN],
                          char out[IBEX_VAULT_KEY_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t msg[sizeof(KEY_ID_LABEL) + IBEX_VAULT_KEY_LEN], d[SHA256_DIGEST_LENGTH];
    memcpy(msg, KEY_ID_LABEL, sizeof(KEY_ID_LABEL)); /* the label and its NUL */
    memcpy(msg + sizeof(KEY_ID_LABEL), key, IBEX_VAULT_KEY_LEN);
    SHA256(msg, sizeof(msg), d);
    OPENSSL_cleanse(msg, sizeof(msg));
    for (size_t i = 0; i < IBEX_VAULT_KEY_ID_LEN / 2; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[IBEX_VAULT_KEY_ID_LEN] = '\0';
}

/* Parses the keys of text (lines, or items separated by commas and spaces when items). */
static int parse_keys(const char *text, size_t len, bool items, const char *what,
                      uint8_t keys[][IBEX_VAULT_KEY_LEN], size_t max, size_t *n, char *err,
                      size_t errlen)
{
    *n = 0;
    size_t line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *stop = p;
        while (stop < end && *stop != '\n' && !(items && (*stop == ',' || space(*stop))))
            stop++;
        line++;
        const char *a = p, *b = stop;
        while (a < b && space(*a))
            a++;
        while (b > a && space(b[-1]))
            b--;
        p = stop < end ? stop + 1 : end;
        if (a == b || (!items && *a == '#'))
            continue;
        if (*n == max) {
            snprintf(err, errlen, "%s: more than %zu keys", what, max);
            return -1;
        }
        char why[160];
        if (ibex_vault_parse_key(a, (size_t)(b - a), keys[*n], why, sizeof(why)) != 0) {
            if (items)
                snprintf(err, errlen, "%s: key %zu %s", what, *n + 1, why);
            else
                snprintf(err, errlen, "%s: line %zu %s", what, line, why);
            return -1;
        }
        (*n)++;
    }
    return 0;
}

int ibex_vault_read_key_file(const char *setting, const char *path, bool many,
                             uint8_t keys[][IBEX_VAULT_KEY_LEN], size_t max, size_t *n, char *err,
                             size_t errlen)
{
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "setting '%s': cannot open '%s': %s", setting, path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    char *buf = NULL;
    size_t len = 0;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "setting '%s': cannot stat '%s': %s", setting, path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "setting '%s': '%s' is not a regular file", setting, path);
        goto out;
    }
    /* checked on the file opened, so it cannot be swapped between the check and the read */
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IXOTH)) {
        snprintf(err, errlen,
                 "setting '%s': '%s' is accessible to every user (mode %03o); a master key file "
                 "must not be: chmod 600 '%s' (or 640 for a group)",
                 setting, path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_size > KEY_FILE_MAX) {
        snprintf(err, errlen, "setting '%s': '%s' is larger than 64 KiB", setting, path);
        goto out;
    }
    buf = ibex_xmalloc(KEY_FILE_MAX + 1);
    for (;;) {
        ssize_t got = read(fd, buf + len, KEY_FILE_MAX + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "setting '%s': cannot read '%s': %s", setting, path,
                     strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
        if (len > KEY_FILE_MAX) {
            snprintf(err, errlen, "setting '%s': '%s' is larger than 64 KiB", setting, path);
            goto out;
        }
    }
    char what[600];
    snprintf(what, sizeof(what), "setting '%s': '%s'", setting, path);
    if (parse_keys(buf, len, false, what, keys, many ? max : 1, n, err, errlen) != 0) {
        if (!many && strstr(err, "more than"))
            snprintf(err, errlen, "setting '%s': '%s' must hold one key", setting, path);
        goto out;
    }
    if (*n == 0) {
        snprintf(err, errlen, "setting '%s': '%s' holds no key", setting, path);
        goto out;
    }
    rc = 0;
out:
    if (buf) {
        OPENSSL_cleanse(buf, KEY_FILE_MAX + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

/* ---- the vault ---- */

struct ibex_vault *ibex_vault_new(const uint8_t current[IBEX_VAULT_KEY_LEN],
                                  const uint8_t (*previous)[IBEX_VAULT_KEY_LEN], size_t nprevious)
{
    struct ibex_vault *v = ibex_xcalloc(1, sizeof(*v));
    for (size_t i = 0; i <= nprevious && v->n < IBEX_VAULT_MAX_KEYS; i++) {
        const uint8_t *k = i == 0 ? current : previous[i - 1];
        bool dup = false;
        for (size_t j = 0; j < v->n && !dup; j++)
            dup = CRYPTO_memcmp(v->keys[j].key, k, IBEX_VAULT_KEY_LEN) == 0;
        if (dup)
            continue;
        memcpy(v->keys[v->n].key, k, IBEX_VAULT_KEY_LEN);
        ibex_vault_key_id_of(k, v->keys[v->n].id);
        v->n++;
    }
    return v;
}

void ibex_vault_free(struct ibex_vault *v)
{
    if (v == NULL)
        return;
    OPENSSL_cleanse(v, sizeof(*v));
    free(v);
}

int ibex_vault_load(const struct ibex_vault_sources *src, struct ibex_vault **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    bool have_env = src->key && src->key[0];
    bool have_file = src->key_file && src->key_file[0];
    bool have_prev =
        (src->previous && src->previous[0]) || (src->previous_file && src->previous_file[0]);
    if (have_env && have_file) {
        snprintf(err, errlen,
                 "master key: both IBEX_MASTER_KEY and setting 'master_key_file' are set; set "
                 "one of them");
        return -1;
    }
    if (!have_env && !have_file) {
        if (have_prev) {
            snprintf(err, errlen,
                     "master key: previous keys are set but no current one (IBEX_MASTER_KEY or "
                     "setting 'master_key_file')");
            return -1;
        }
        return 0;
    }
    /* one buffer for every key, wiped on the way out */
    uint8_t keys[1 + 2 * IBEX_VAULT_MAX_KEYS][IBEX_VAULT_KEY_LEN];
    size_t n = 0, got = 0;
    int rc = -1;
    if (have_env) {
        char why[160];
        if (ibex_vault_parse_key(src->key, strlen(src->key), keys[0], why, sizeof(why)) != 0) {
            snprintf(err, errlen, "master key: IBEX_MASTER_KEY %s", why);
            goto out;
        }
        n = 1;
    } else if (ibex_vault_read_key_file("master_key_file", src->key_file, false, keys, 1, &n, err,
                                        errlen) != 0) {
        goto out;
    }
    if (src->previous && src->previous[0]) {
        if (parse_keys(src->previous, strlen(src->previous), true, "IBEX_MASTER_KEY_PREVIOUS",
                       keys + n, IBEX_VAULT_MAX_KEYS, &got, err, errlen) != 0)
            goto out;
        n += got;
    }
    if (src->previous_file && src->previous_file[0]) {
        if (ibex_vault_read_key_file("master_key_previous_file", src->previous_file, true, keys + n,
                                     IBEX_VAULT_MAX_KEYS, &got, err, errlen) != 0)
            goto out;
        n += got;
    }
    *out = ibex_vault_new(keys[0], (const uint8_t(*)[IBEX_VAULT_KEY_LEN])keys + 1, n - 1);
    if (n > IBEX_VAULT_MAX_KEYS && ibex_vault_nkeys(*out) < n) {
        /* duplicates aside, the vault could not hold them all */
        size_t distinct = 0;
        for (size_t i = 0; i < n; i++) {
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = CRYPTO_memcmp(keys[i], keys[j], IBEX_VAULT_KEY_LEN) == 0;
            distinct += !dup;
        }
        if (distinct > IBEX_VAULT_MAX_KEYS) {
            snprintf(err, errlen, "master key: more than %d distinct keys (current and previous)",
                     IBEX_VAULT_MAX_KEYS);
            ibex_vault_free(*out);
            *out = NULL;
            goto out;
        }
    }
    rc = 0;
out:
    OPENSSL_cleanse(keys, sizeof(keys));
    return rc;
}

const char *ibex_vault_key_id(const struct ibex_vault *v)
{
    return v->keys[0].id;
}

size_t ibex_vault_nkeys(const struct ibex_vault *v)
{
    return v->n;
}

const char *ibex_vault_key_id_at(const struct ibex_vault *v, size_t i)
{
    return i < v->n ? v->keys[i].id : NULL;
}

static const struct vault_key *find_key(const struct ibex_vault *v, const char *key_id)
{
    for (size_t i = 0; key_id && i < v->n; i++)
        if (strcmp(v->keys[i].id, key_id) == 0)
            return &v->keys[i];
    return NULL;
}

bool ibex_vault_has_key(const struct ibex_vault *v, const char *key_id)
{
    return find_key(v, key_id) != NULL;
}

/* ---- AES-256-GCM ---- */

int ibex_vault_seal(const struct ibex_vault *v, const void *aad, size_t aad_len, const void *plain,
                    size_t len, struct ibex_sealed *out)
{
    memset(out, 0, sizeof(*out));
    if (len > IBEX_VAULT_MAX_PLAIN || aad_len > INT32_MAX)
        return IBEX_EVAULT_CRYPTO;
    if (RAND_bytes(out->nonce, IBEX_VAULT_NONCE_LEN) != 1)
        return IBEX_EVAULT_CRYPTO;
    out->ct = ibex_xmalloc(len + IBEX_VAULT_TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, finl = 0;
    bool ok =
        ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IBEX_VAULT_NONCE_LEN, NULL) == 1 &&
        EVP_EncryptInit_ex(ctx, NULL, NULL, v->keys[0].key, out->nonce) == 1 &&
        (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1) &&
        EVP_EncryptUpdate(ctx, out->ct, &outl, plain, (int)len) == 1 &&
        EVP_EncryptFinal_ex(ctx, out->ct + outl, &finl) == 1 && (size_t)(outl + finl) == len &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, IBEX_VAULT_TAG_LEN, out->ct + len) == 1;
    EVP_CIPHER_CTX_free(ctx); /* wipes the expanded key */
    if (!ok) {
        ibex_sealed_dispose(out);
        return IBEX_EVAULT_CRYPTO;
    }
    out->ct_len = len + IBEX_VAULT_TAG_LEN;
    memcpy(out->key_id, v->keys[0].id, sizeof(out->key_id));
    return 0;
}

void ibex_sealed_dispose(struct ibex_sealed *s)
{
    free(s->ct);
    memset(s, 0, sizeof(*s));
}

int ibex_vault_open(const struct ibex_vault *v, const char *key_id, const uint8_t *nonce,
                    size_t nonce_len, const uint8_t *ct, size_t ct_len, const void *aad,
                    size_t aad_len, struct ibex_secret **out)
{
    *out = NULL;
    const struct vault_key *k = find_key(v, key_id);
    if (k == NULL)
        return IBEX_EVAULT_NOKEY;
    if (nonce_len != IBEX_VAULT_NONCE_LEN || ct_len < IBEX_VAULT_TAG_LEN ||
        ct_len - IBEX_VAULT_TAG_LEN > IBEX_VAULT_MAX_PLAIN || aad_len > INT32_MAX)
        return IBEX_EVAULT_AUTH;
    size_t len = ct_len - IBEX_VAULT_TAG_LEN;
    /* decrypted straight into the secret: no other copy of the plaintext is made */
    struct ibex_secret *s = ibex_xmalloc(sizeof(*s) + len + 1);
    atomic_init(&s->refs, 1);
    s->len = len;
    uint8_t tag[IBEX_VAULT_TAG_LEN];
    memcpy(tag, ct + len, IBEX_VAULT_TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, finl = 0, fin = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, IBEX_VAULT_NONCE_LEN, NULL) == 1 &&
              EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, nonce) == 1 &&
              (aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1) &&
              EVP_DecryptUpdate(ctx, (uint8_t *)s->p, &outl, ct, (int)len) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, IBEX_VAULT_TAG_LEN, tag) == 1;
    if (ok)
        fin = EVP_DecryptFinal_ex(ctx, (uint8_t *)s->p + outl, &finl);
    EVP_CIPHER_CTX_free(ctx);
    if (!ok || fin != 1 || (size_t)(outl + finl) != len) {
        /* an unauthenticated plaintext is never handed out */
        OPENSSL_cleanse(s->p, len);
        free(s);
        return ok ? IBEX_EVAULT_AUTH : IBEX_EVAULT_CRYPTO;
    }
    s->p[len] = '\0';
    *out = s;
    return 0;
}

void ibex_vault_mac(const struct ibex_vault *v, const char *label, const void *p, size_t len,
                    uint8_t out[32])
{
    size_t llen = strlen(label) + 1;
    uint8_t *msg = ibex_xmalloc(llen + len);
    memcpy(msg, label, llen);
    if (len)
        memcpy(msg + llen, p, len);
    unsigned int n = 32;
    if (HMAC(EVP_sha256(), v->keys[0].key, IBEX_VAULT_KEY_LEN, msg, llen + len, out, &n) == NULL) {
        fprintf(stderr, "ibex: HMAC-SHA256 failed\n");
        abort();
    }
    OPENSSL_cleanse(msg, llen + len);
    free(msg);
}
