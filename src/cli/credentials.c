/* `ibex credentials rotate-key`: re-encrypts every stored provider credential (all tenants) under
 * a new master key, straight on the store, while instances keep serving (docs/credentials.md,
 * Rotating the master key). The keys it decrypts with are the instance's: IBEX_MASTER_KEY or
 * master_key_file, and the previous ones; the new key comes from IBEX_NEW_MASTER_KEY or
 * --new-key-file. It prints counts and key ids, never a key or a secret. Exit 0 when every
 * credential is under the new key afterwards, 1 otherwise (run it again, or supply the missing
 * key), 2 for a usage error. */
#include "credentials.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/credential.h"
#include "../auth/vault.h"
#include "../config/config.h"
#include "../core/alloc.h"

#define BATCH_DEFAULT 100
#define BATCH_MAX 10000

static void usage(FILE *out)
{
    fprintf(out,
            "Usage:\n"
            "  ibex credentials rotate-key [--new-key-file FILE] [--batch N]\n"
            "                              [--store-url URL] [--config FILE]\n\n"
            "Re-encrypts every provider credential that is not deleted, in every tenant, under a\n"
            "new master key: in batches of N (default 100), each row on its own, only when it\n"
            "did not change meanwhile. Running it again is harmless: rows already under the new\n"
            "key are left alone.\n\n"
            "The current keys are the instance's: IBEX_MASTER_KEY or setting master_key_file,\n"
            "and the previous ones (IBEX_MASTER_KEY_PREVIOUS, master_key_previous_file). The new\n"
            "key is IBEX_NEW_MASTER_KEY or the file given by --new-key-file (64 hex characters\n"
            "or base64 of 32 bytes; the file must not be readable by other users). It may be the\n"
            "current key already (the procedure of docs/credentials.md sets it first).\n");
}

int ibex_cli_credentials(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") ||
        !strcmp(argv[0], "help")) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "rotate-key") != 0) {
        usage(stderr);
        return 2;
    }
    const char *new_key_file = NULL;
    long batch = BATCH_DEFAULT;
    /* every other flag is a setting (store_url, master_key_file, ...) */
    char **cargv = ibex_xcalloc((size_t)argc + 1, sizeof(*cargv));
    int cargc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            free(cargv);
            return 0;
        }
        if (!strcmp(argv[i], "--new-key-file") || !strcmp(argv[i], "--batch")) {
            if (i + 1 >= argc) {
                usage(stderr);
                free(cargv);
                return 2;
            }
            if (argv[i][2] == 'n') {
                new_key_file = argv[++i];
            } else {
                char *end;
                batch = strtol(argv[++i], &end, 10);
                if (*end || batch < 1 || batch > BATCH_MAX) {
                    fprintf(stderr, "ibex credentials rotate-key: --batch must be 1 to %d\n",
                            BATCH_MAX);
                    free(cargv);
                    return 2;
                }
            }
            continue;
        }
        cargv[cargc++] = argv[i];
    }

    struct ibex_config cfg;
    char err[768];
    if (ibex_config_load(&cfg, cargc, cargv, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex credentials rotate-key: %s\n", err);
        free(cargv);
        return 2;
    }
    free(cargv);
    int rc = 1;
    struct ibex_vault *ring = NULL, *to = NULL;
    struct ibex_store *s = NULL;
    struct ibex_vault_sources vs = {getenv("IBEX_MASTER_KEY"), cfg.master_key_file,
                                    getenv("IBEX_MASTER_KEY_PREVIOUS"),
                                    cfg.master_key_previous_file};
    if (ibex_vault_load(&vs, &ring, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex credentials rotate-key: %s\n", err);
        goto out;
    }
    if (ring == NULL) {
        fprintf(stderr, "ibex credentials rotate-key: no current master key: set "
                        "IBEX_MASTER_KEY or master_key_file (the key the credentials are "
                        "under now)\n");
        goto out;
    }
    const char *new_env = getenv("IBEX_NEW_MASTER_KEY");
    if ((new_env && new_env[0]) == (new_key_file != NULL)) {
        fprintf(stderr, "ibex credentials rotate-key: give the new key in IBEX_NEW_MASTER_KEY or "
                        "with --new-key-file FILE (one of them)\n");
        rc = 2;
        goto out;
    }
    uint8_t key[1][IBEX_VAULT_KEY_LEN];
    size_t n = 0;
    if (new_key_file) {
        if (ibex_vault_read_key_file("--new-key-file", new_key_file, false, key, 1, &n, err,
                                     sizeof(err)) != 0) {
            fprintf(stderr, "ibex credentials rotate-key: %s\n", err);
            goto out;
        }
    } else {
        char why[160];
        if (ibex_vault_parse_key(new_env, strlen(new_env), key[0], why, sizeof(why)) != 0) {
            fprintf(stderr, "ibex credentials rotate-key: IBEX_NEW_MASTER_KEY %s\n", why);
            goto out;
        }
    }
    to = ibex_vault_new(key[0], NULL, 0);
    OPENSSL_cleanse(key, sizeof(key));
    if (ibex_store_open(cfg.store_url, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex credentials rotate-key: %s\n", err);
        goto out;
    }
    if (ibex_store_migrate(s, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "ibex credentials rotate-key: %s\n", ibex_store_errmsg(s));
        goto out;
    }
    char shown[512];
    ibex_store_redact_url(cfg.store_url, shown, sizeof(shown));
    printf("store %s: new key %s; decrypting with", shown, ibex_vault_key_id(to));
    for (size_t i = 0; i < ibex_vault_nkeys(ring); i++)
        printf("%s %s", i ? "," : "", ibex_vault_key_id_at(ring, i));
    printf("\n");
    struct ibex_credential_rotation r;
    int src = ibex_credential_rotate(s, ring, to, (size_t)batch, &r);
    if (src != 0) {
        fprintf(stderr, "ibex credentials rotate-key: %s (rotated %lld before it)\n",
                ibex_store_errmsg(s), (long long)r.rotated);
        goto out;
    }
    printf("rotated %lld; under the new key now %lld; changed meanwhile %lld; not decrypted "
           "%lld; under keys not given %lld%s%s\n",
           (long long)r.rotated, (long long)r.current, (long long)r.changed, (long long)r.failed,
           (long long)r.unknown, r.unknown ? ": " : "", r.unknown_keys);
    if (r.changed)
        fprintf(stderr,
                "ibex credentials rotate-key: %lld changed while being read: run it "
                "again\n",
                (long long)r.changed);
    if (r.unknown)
        fprintf(stderr,
                "ibex credentials rotate-key: %lld are under keys %s, which were not "
                "given: add them to IBEX_MASTER_KEY_PREVIOUS or master_key_previous_file "
                "and run it again\n",
                (long long)r.unknown, r.unknown_keys);
    if (r.failed)
        fprintf(stderr,
                "ibex credentials rotate-key: %lld do not decrypt under the key their row "
                "names (altered rows?), left as they are: %s%s\n",
                (long long)r.failed, r.failed_ids, r.failed > 4 ? ",..." : "");
    rc = r.changed || r.unknown || r.failed ? 1 : 0;
out:
    ibex_store_close(s);
    ibex_vault_free(ring);
    ibex_vault_free(to);
    ibex_config_dispose(&cfg);
    return rc;
}
