/* Provider credentials at the level of their secrets (credential.h): the AAD that binds a
 * ciphertext to its row, opening a row, the resolution order of a request, and key rotation.
 * Invariants: a plaintext exists only as a struct ibex_secret; ciphertexts and nonces read from
 * the store are copied into buffers owned by this module for the length of a call; every
 * tenant-scoped statement filters by tenant_id. */
#include "credential.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "credential_cache.h"

#define AAD_LABEL "ibex credential v1"

/* "ibex credential v1" NUL tenant_id NUL id: a fresh buffer (free it). */
static uint8_t *aad_of(const char *tenant_id, const char *id, size_t *len)
{
    size_t l = sizeof(AAD_LABEL), t = strlen(tenant_id) + 1, n = strlen(id);
    uint8_t *p = ibex_xmalloc(l + t + n);
    memcpy(p, AAD_LABEL, l);
    memcpy(p + l, tenant_id, t);
    memcpy(p + l + t, id, n);
    *len = l + t + n;
    return p;
}

int ibex_credential_seal(const struct ibex_vault *v, const char *tenant_id, const char *id,
                         const char *secret, size_t len, struct ibex_sealed *out)
{
    size_t alen;
    uint8_t *aad = aad_of(tenant_id, id, &alen);
    int rc = ibex_vault_seal(v, aad, alen, secret, len, out);
    free(aad);
    return rc;
}

int ibex_credential_open(const struct ibex_vault *v, const struct ibex_credential_row *row,
                         struct ibex_secret **out)
{
    size_t alen;
    uint8_t *aad = aad_of(row->tenant_id, row->id, &alen);
    int rc = ibex_vault_open(v, row->key_id, row->nonce, row->nonce_len, row->ct, row->ct_len, aad,
                             alen, out);
    free(aad);
    return rc;
}

void ibex_credential_choice_dispose(void *choice)
{
    struct ibex_credential_choice *c = choice;
    ibex_secret_release(c->secret);
    c->secret = NULL;
}

void ibex_credential_lookup_key(const char *tenant_id, const char *subject, const char *provider,
                                uint8_t out[32])
{
    const char *parts[3] = {tenant_id, subject ? subject : "", provider};
    uint8_t *buf;
    size_t n = 0, len = 0;
    for (int i = 0; i < 3; i++)
        len += strlen(parts[i]) + 1;
    buf = ibex_xmalloc(len);
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]) + 1;
        memcpy(buf + n, parts[i], l);
        n += l;
    }
    SHA256(buf, len, out);
    free(buf);
}

/* ---- a sealed row read from the store ---- */

struct sealed_row {
    bool found;
    char id[IBEX_UUID_LEN + 1];
    char tenant_id[IBEX_UUID_LEN + 1];
    char key_id[IBEX_VAULT_KEY_ID_LEN + 1];
    char state[16];
    int64_t version;
    uint8_t nonce[IBEX_VAULT_NONCE_LEN];
    size_t nonce_len;
    uint8_t *ct;
    size_t ct_len;
};

static void text_to(const struct ibex_store_value *v, char *out, size_t n)
{
    size_t len = v->type == IBEX_STORE_TEXT && v->len < n ? v->len : 0;
    memcpy(out, v->p, len);
    out[len] = '\0';
}

/* Columns: id, tenant_id, version, key_id, nonce, ciphertext[, state]. */
static void read_sealed(struct sealed_row *r, const struct ibex_store_value *c, size_t ncols)
{
    r->found = true;
    text_to(&c[0], r->id, sizeof(r->id));
    text_to(&c[1], r->tenant_id, sizeof(r->tenant_id));
    r->version = c[2].type == IBEX_STORE_INT ? c[2].i : 0;
    text_to(&c[3], r->key_id, sizeof(r->key_id));
    r->nonce_len = 0;
    if ((c[4].type == IBEX_STORE_BLOB || c[4].type == IBEX_STORE_TEXT) &&
        c[4].len == IBEX_VAULT_NONCE_LEN) {
        memcpy(r->nonce, c[4].p, IBEX_VAULT_NONCE_LEN);
        r->nonce_len = IBEX_VAULT_NONCE_LEN;
    }
    free(r->ct);
    r->ct = NULL;
    r->ct_len = 0;
    if ((c[5].type == IBEX_STORE_BLOB || c[5].type == IBEX_STORE_TEXT) && c[5].len > 0) {
        r->ct = ibex_xmalloc(c[5].len);
        memcpy(r->ct, c[5].p, c[5].len);
        r->ct_len = c[5].len;
    }
    if (ncols > 6)
        text_to(&c[6], r->state, sizeof(r->state));
}

static int row_sealed(void *data, const struct ibex_store_value *c, size_t ncols)
{
    read_sealed(data, c, ncols);
    return 0;
}

static struct ibex_credential_row row_view(const struct sealed_row *r)
{
    return (struct ibex_credential_row){r->tenant_id, r->id,        r->version, r->key_id,
                                        r->nonce,     r->nonce_len, r->ct,      r->ct_len};
}

/* ---- resolution ---- */

#define SEALED_COLS "id, tenant_id, version, key_id, nonce, ciphertext"

/* The subject's own: its default first, then the newest (credentials_owner_provider). */
static const char own_sql[] =
    "SELECT " SEALED_COLS " FROM credentials WHERE tenant_id = $1 AND subject = $2 AND "
    "provider = $3 AND state = 'active' ORDER BY is_default DESC, created_at DESC, id LIMIT 1";
/* The tenant's default (credentials_tenant_default: its WHERE is repeated so SQLite uses it);
 * an inactive default is read and then passed over. */
static const char tenant_sql[] =
    "SELECT " SEALED_COLS ", state FROM credentials WHERE tenant_id = $1 AND provider = $2 AND "
    "is_default = 1 AND subject IS NULL AND state <> 'deleted'";

int ibex_credential_resolve(struct ibex_store *s, const struct ibex_vault *v,
                            struct ibex_credential_cache *cache, const char *tenant_id,
                            const char *subject, const char *provider,
                            struct ibex_credential_choice *out)
{
    memset(out, 0, sizeof(*out));
    out->source = IBEX_CREDENTIAL_NONE;
    struct sealed_row r = {0};
    enum ibex_credential_source source = IBEX_CREDENTIAL_NONE;
    int rc = 0;
    if (subject && subject[0]) {
        struct ibex_store_value p[] = {ibex_store_text(tenant_id), ibex_store_text(subject),
                                       ibex_store_text(provider)};
        if ((rc = ibex_store_exec(s, own_sql, p, 3, row_sealed, &r)) != 0)
            goto out;
        if (r.found)
            source = IBEX_CREDENTIAL_OWN;
    }
    if (source == IBEX_CREDENTIAL_NONE) {
        struct ibex_store_value p[] = {ibex_store_text(tenant_id), ibex_store_text(provider)};
        if ((rc = ibex_store_exec(s, tenant_sql, p, 2, row_sealed, &r)) != 0)
            goto out;
        if (r.found && strcmp(r.state, "active") == 0)
            source = IBEX_CREDENTIAL_TENANT;
    }
    if (source == IBEX_CREDENTIAL_NONE)
        goto out;
    struct ibex_credential_row row = row_view(&r);
    struct ibex_secret *secret = NULL;
    rc = cache ? ibex_credential_cache_get(cache, v, &row, &secret)
               : ibex_credential_open(v, &row, &secret);
    if (rc != 0)
        goto out;
    out->source = source;
    memcpy(out->id, r.id, sizeof(out->id));
    out->version = r.version;
    out->secret = secret;
out:
    free(r.ct);
    return rc;
}

/* ---- rotation ---- */

struct batch {
    size_t n, cap;
    struct sealed_row *rows;
};

static int row_batch(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct batch *b = data;
    if (b->n == b->cap)
        return 0;
    struct sealed_row *r = &b->rows[b->n++];
    memset(r, 0, sizeof(*r));
    read_sealed(r, c, ncols);
    return 0;
}

static int row_count(void *data, const struct ibex_store_value *c, size_t ncols)
{
    (*(int64_t *)data)++;
    return 0;
}

struct key_counts {
    const struct ibex_vault *ring, *to;
    struct ibex_credential_rotation *out;
};

static int row_key_count(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct key_counts *k = data;
    char key_id[IBEX_VAULT_KEY_ID_LEN + 1];
    text_to(&c[0], key_id, sizeof(key_id));
    int64_t n = c[1].type == IBEX_STORE_INT ? c[1].i : 0;
    if (strcmp(key_id, ibex_vault_key_id(k->to)) == 0) {
        k->out->current = n;
    } else if (!ibex_vault_has_key(k->ring, key_id)) {
        k->out->unknown += n;
        size_t used = strlen(k->out->unknown_keys);
        if (used + IBEX_VAULT_KEY_ID_LEN + 2 < sizeof(k->out->unknown_keys))
            snprintf(k->out->unknown_keys + used, sizeof(k->out->unknown_keys) - used, "%s%s",
                     used ? "," : "", key_id);
    }
    return 0;
}

/* Re-encrypts the rows under from_key, in id order. */
static int rotate_key(struct ibex_store *s, const struct ibex_vault *ring,
                      const struct ibex_vault *to, const char *from_key, size_t batch,
                      struct ibex_credential_rotation *out)
{
    char last[IBEX_UUID_LEN + 1] = "";
    struct batch b = {0, batch, ibex_xcalloc(batch, sizeof(struct sealed_row))};
    int rc = 0;
    for (;;) {
        b.n = 0;
        struct ibex_store_value p[] = {ibex_store_text(from_key), ibex_store_text(last),
                                       ibex_store_int((int64_t)batch)};
        rc =
            ibex_store_exec(s,
                            "SELECT " SEALED_COLS " FROM credentials WHERE key_id = $1 AND id > $2 "
                            "ORDER BY id LIMIT $3",
                            p, 3, row_batch, &b);
        if (rc)
            break;
        for (size_t i = 0; i < b.n && rc == 0; i++) {
            struct sealed_row *r = &b.rows[i];
            memcpy(last, r->id, sizeof(last));
            struct ibex_credential_row row = row_view(r);
            struct ibex_secret *secret = NULL;
            struct ibex_sealed sealed;
            if (ibex_credential_open(ring, &row, &secret) != 0) {
                out->failed++;
                size_t used = strlen(out->failed_ids);
                if (used + IBEX_UUID_LEN + 2 < sizeof(out->failed_ids))
                    snprintf(out->failed_ids + used, sizeof(out->failed_ids) - used, "%s%s",
                             used ? "," : "", r->id);
                continue;
            }
            int sr = ibex_credential_seal(to, r->tenant_id, r->id, secret->p, secret->len, &sealed);
            ibex_secret_release(secret);
            if (sr != 0) {
                out->failed++;
                continue;
            }
            int64_t updated = 0;
            struct ibex_store_value u[] = {ibex_store_blob(sealed.ct, sealed.ct_len),
                                           ibex_store_blob(sealed.nonce, IBEX_VAULT_NONCE_LEN),
                                           ibex_store_text(sealed.key_id),
                                           ibex_store_text(r->id),
                                           ibex_store_text(r->tenant_id),
                                           ibex_store_text(r->key_id),
                                           ibex_store_int(r->version)};
            rc =
                ibex_store_exec(s,
                                "UPDATE credentials SET ciphertext = $1, nonce = $2, key_id = $3 "
                                "WHERE id = $4 AND tenant_id = $5 AND key_id = $6 AND version = $7 "
                                "RETURNING id",
                                u, 7, row_count, &updated);
            ibex_sealed_dispose(&sealed);
            if (rc == 0 && updated)
                out->rotated++;
            else if (rc == 0)
                out->changed++;
        }
        for (size_t i = 0; i < b.n; i++) {
            free(b.rows[i].ct);
            b.rows[i].ct = NULL;
        }
        if (rc || b.n < batch)
            break;
    }
    free(b.rows);
    return rc;
}

int ibex_credential_rotate(struct ibex_store *s, const struct ibex_vault *ring,
                           const struct ibex_vault *to, size_t batch,
                           struct ibex_credential_rotation *out)
{
    memset(out, 0, sizeof(*out));
    if (batch == 0)
        batch = 100;
    int rc = 0;
    for (size_t i = 0; i < ibex_vault_nkeys(ring) && rc == 0; i++) {
        const char *k = ibex_vault_key_id_at(ring, i);
        if (strcmp(k, ibex_vault_key_id(to)) != 0)
            rc = rotate_key(s, ring, to, k, batch, out);
    }
    if (rc == 0) {
        struct key_counts kc = {ring, to, out};
        rc = ibex_store_exec(s,
                             "SELECT key_id, count(*) FROM credentials WHERE key_id IS NOT NULL "
                             "GROUP BY key_id ORDER BY key_id",
                             NULL, 0, row_key_count, &kc);
        /* rows that did not open stay under a key of the ring: counted in failed, not here */
    }
    return rc;
}
