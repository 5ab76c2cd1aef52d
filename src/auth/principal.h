/* Who is calling: the principal a credential resolves to, and the scopes it may carry.
 *
 * A principal is plain data (no pointers), so caches copy it and threads hand it over freely. */
#ifndef IBEX_AUTH_PRINCIPAL_H
#define IBEX_AUTH_PRINCIPAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Scopes, as bits. `admin` implies every other scope (ibex_scopes_allow). */
enum ibex_scope {
    IBEX_SCOPE_CHAT = 1u << 0,
    IBEX_SCOPE_SESSIONS_READ = 1u << 1,
    IBEX_SCOPE_SESSIONS_WRITE = 1u << 2,
    IBEX_SCOPE_TRACES_READ = 1u << 3,
    IBEX_SCOPE_KEYS_ADMIN = 1u << 4,
    IBEX_SCOPE_CREDENTIALS_ADMIN = 1u << 5,
    IBEX_SCOPE_ADMIN = 1u << 6,
    IBEX_SCOPE_APPROVALS_DECIDE = 1u << 7,
};
/* Every scope: the bits run 0..7 without a gap, and loops over scopes stop past the last. */
#define IBEX_SCOPE_ALL ((1u << 8) - 1)

enum ibex_principal_kind {
    IBEX_PRINCIPAL_KEY = 1, /* an ibex_sk_ API key from the store */
    IBEX_PRINCIPAL_STATIC,  /* a token from AUTH_TOKENS_JSON */
    IBEX_PRINCIPAL_JWT,     /* a JWT from the configured OIDC issuer */
    IBEX_PRINCIPAL_NONE,    /* auth mode `none` (development only) */
};

#define IBEX_ID_LEN 36          /* a UUID in text form (IBEX_UUID_LEN) */
#define IBEX_SUBJECT_MAX 128    /* longer subjects are refused, not cut */
#define IBEX_PRINCIPAL_AGENTS 8 /* agent allow-list entries kept per credential */

struct ibex_principal {
    enum ibex_principal_kind kind;
    uint32_t scopes;                    /* enum ibex_scope bits */
    char tenant_id[IBEX_ID_LEN + 1];    /* a tenant id of the store */
    char key_id[IBEX_ID_LEN + 1];       /* the API key's id; "" for other kinds */
    char subject[IBEX_SUBJECT_MAX + 1]; /* who: key id, static subject or JWT sub */
    int64_t expires_at_ms;              /* 0: never */
    size_t nagents;                     /* 0: any agent of the tenant */
    char agents[IBEX_PRINCIPAL_AGENTS][IBEX_ID_LEN + 1];
};

/* The scope's name ("chat", "sessions:read", ...) or NULL for a value that is not one scope. */
const char *ibex_scope_name(uint32_t scope);
/* Parses one scope name. Returns its bit, or 0 when unknown. */
uint32_t ibex_scope_parse(const char *name, size_t len);
/* True when a principal holding `held` may use something that needs `needed`. */
static inline bool ibex_scopes_allow(uint32_t held, uint32_t needed)
{
    return (held & IBEX_SCOPE_ADMIN) || (held & needed) == needed;
}

#endif
