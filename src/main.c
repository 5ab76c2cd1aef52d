/* ibex command line: `ibex serve` runs the gateway, `ibex migrate` applies the store's schema,
 * `ibex version` prints the build, `ibex help` lists commands. Settings are documented by `ibex
 * serve --help`, generated from the settings table so the help can never drift from what the code
 * reads. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "auth/credential_cache.h"
#include "auth/identity.h"
#include "auth/vault.h"
#include "cli/admin.h"
#include "cli/credentials.h"
#include "store/pool.h"
#include "store/store.h"
#include "store/writer.h"
#include "api/idempotency.h"
#include "upstream/upstream.h"

#include "version.h"

#define CREDENTIAL_CACHE_SIZE 10000 /* decrypted provider credentials kept by the process */

static void usage(FILE *out)
{
    fprintf(out,
            "ibex %s: a gateway for AI agents (OpenAI-compatible, streaming)\n\n"
            "Usage:\n"
            "  ibex serve [--config FILE] [--SETTING VALUE]...   run the gateway\n"
            "  ibex serve --help                                 every setting, with defaults\n"
            "  ibex migrate [--store-url URL]                    apply pending schema migrations\n"
            "  ibex tenants|agents|keys create|list|revoke ...   administration (--help)\n"
            "  ibex credentials rotate-key ...                   re-encrypt provider credentials\n"
            "  ibex version                                      version and build\n\n"
            "Quick start: `ibex serve --dev` prints a dev key; then\n"
            "  curl -s localhost:8080/v1/chat/completions -H \"Authorization: Bearer $KEY\" \\\n"
            "    -d '{\"model\":\"mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n",
            IBEX_VERSION);
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    return false;
}

/* Splits "a, b ,c*" into a NULL-terminated array of trimmed patterns. */
static char **split_patterns(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **out = ibex_xcalloc(n + 1, sizeof(*out));
    size_t k = 0;
    const char *start = list;
    for (;;) {
        const char *end = strchr(start, ',');
        struct ibex_str s = {start, end ? (size_t)(end - start) : strlen(start)};
        s = ibex_str_trim(s);
        if (s.len)
            out[k++] = ibex_xstrndup(s.p, s.len);
        if (end == NULL)
            break;
        start = end + 1;
    }
    return out;
}

static void log_applied(void *data, const struct ibex_store_migration *m)
{
    char version[24];
    snprintf(version, sizeof(version), "%04" PRId64, m->version);
    ibex_log(IBEX_LOG_INFO, "migration applied", "version", version, "name", m->name, NULL);
}

static void print_applied(void *data, const struct ibex_store_migration *m)
{
    printf("applied %04" PRId64 "_%s\n", m->version, m->name);
    (*(int *)data)++;
}

/* Opens the store named by store_url, applies the pending migrations, and closes it. Fills
 * backend (a static name) and version. Returns 0, or -1 with a message naming the store (its
 * password redacted) in err. */
static int apply_migrations(const char *store_url, ibex_store_migrated_fn on_applied, void *data,
                            const char **backend, int64_t *version, char *err, size_t errlen)
{
    char shown[512];
    ibex_store_redact_url(store_url, shown, sizeof(shown));
    struct ibex_store *store = NULL;
    if (ibex_store_open(store_url, &store, err, errlen) != 0)
        return -1;
    *backend = ibex_store_backend(store);
    int rc = ibex_store_migrate(store, on_applied, data, version);
    if (rc)
        snprintf(err, errlen, "%s: %s", shown, ibex_store_errmsg(store));
    ibex_store_close(store);
    return rc ? -1 : 0;
}

/* What `ibex serve` runs beside the workers for identity: the store pool (off-loop reads and
 * administration), the store writer (audit events), the credential checker and the revocation
 * watcher. */
struct identity_runtime {
    struct ibex_store *writer_store;
    struct ibex_store_writer *writer;
    struct ibex_store_pool *pool;
    struct ibex_auth auth;
    struct ibex_revocation *revocation;
    struct ibex_idem *idem;
};

static void on_epoch(void *data, int64_t epoch)
{
    ibex_auth_note_epoch(data, epoch);
}

static void identity_stop(struct identity_runtime *ir)
{
    ibex_revocation_stop(ir->revocation);
    ibex_idem_free(ir->idem);
    /* the writer commits everything accepted before it stops */
    if (ir->writer)
        ibex_store_writer_free(ir->writer);
    ibex_store_close(ir->writer_store);
    ibex_store_pool_free(ir->pool);
    ibex_auth_dispose(&ir->auth);
}

/* --dev (and auth mode none, which acts as the dev tenant): the dev tenant, key and agent. */
static int dev_bootstrap(struct ibex_runtime *rt, struct identity_runtime *ir)
{
    const struct ibex_config *cfg = &rt->cfg;
    struct ibex_store *s = NULL;
    char err[512];
    if (ibex_store_open(cfg->store_url, &s, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "store unavailable", "error", err, NULL);
        return -1;
    }
    struct ibex_buf out;
    ibex_buf_init(&out);
    int rc = ibex_identity_dev_bootstrap(s, cfg->dev_token[0] ? cfg->dev_token : NULL,
                                         cfg->dev_agent_id[0] ? cfg->dev_agent_id : NULL,
                                         ir->auth.none_tenant, &out, err, sizeof(err));
    ibex_store_close(s);
    if (rc) {
        ibex_log(IBEX_LOG_ERROR, "dev bootstrap failed", "error", err, NULL);
    } else if (cfg->dev) {
        /* stdout, not the log: the operator asked to see the key */
        fwrite(out.p, 1, out.len, stdout);
        fflush(stdout);
    }
    ibex_buf_dispose(&out);
    return rc;
}

static int identity_start(struct ibex_runtime *rt, struct identity_runtime *ir)
{
    memset(ir, 0, sizeof(*ir));
    const struct ibex_config *cfg = &rt->cfg;
    char err[512];
    if (strstr(cfg->store_url, ":memory:")) {
        ibex_log(IBEX_LOG_ERROR, "invalid configuration", "error",
                 "store_url: an in-memory SQLite database cannot be shared by ibex serve's "
                 "threads; use a file",
                 NULL);
        return -1;
    }
    if (ibex_store_open(cfg->store_url, &ir->writer_store, err, sizeof(err)) != 0 ||
        ibex_store_writer_new(ir->writer_store, NULL, &ir->writer) != 0) {
        ibex_log(IBEX_LOG_ERROR, "store unavailable", "error", err, NULL);
        identity_stop(ir);
        return -1;
    }
    ir->pool = ibex_store_pool_new(cfg->store_url, (size_t)cfg->store_pool_size);
    if (ibex_auth_init(&ir->auth, cfg, ir->pool, ir->writer, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "invalid configuration", "error", err, NULL);
        identity_stop(ir);
        return -1;
    }
    if ((cfg->dev || (ir->auth.modes & IBEX_AUTH_NONE)) && dev_bootstrap(rt, ir) != 0) {
        identity_stop(ir);
        return -1;
    }
    if (ir->auth.modes & IBEX_AUTH_NONE)
        ibex_log(IBEX_LOG_WARN,
                 "AUTH MODE none: requests without a credential act as the dev tenant with "
                 "every scope. Development only: never expose this instance.",
                 "tenant", ir->auth.none_tenant, NULL);
    struct ibex_revocation_opts ro = {
        .store_url = cfg->store_url,
        .redis_url = cfg->redis_url,
        .poll_interval_ms = cfg->revocation_poll_interval_ms,
        .on_epoch = on_epoch,
        .data = &ir->auth,
    };
    if (ibex_revocation_start(&ro, &ir->revocation, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "revocation watcher failed to start", "error", err, NULL);
        identity_stop(ir);
        return -1;
    }
    /* A claim must outlive the longest request, or a slow request's duplicate would run too. */
    struct ibex_idem_opts io = {
        .ttl_ms = cfg->idempotency_ttl_ms,
        .lease_ms = cfg->upstream.total_ms + 60 * 1000,
        .redis_url = cfg->redis_url,
    };
    if (ibex_idem_new(&io, &ir->idem, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "invalid configuration", "error", err, NULL);
        identity_stop(ir);
        return -1;
    }
    rt->auth = &ir->auth;
    rt->idem = ir->idem;
    rt->store_pool = ir->pool;
    rt->writer = ir->writer;
    rt->revocation = ir->revocation;
    ibex_metrics_set_auth_failure_names(ibex_auth_failure_codes, IBEX_AUTH_NFAILURES);
    return 0;
}

static int serve(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("Usage: ibex serve [--config FILE] [--SETTING VALUE]...\n\n");
        ibex_config_print_help(stdout);
        return 0;
    }
    struct ibex_runtime rt;
    memset(&rt, 0, sizeof(rt));
    char err[512];
    if (ibex_config_load(&rt.cfg, argc, argv, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "invalid configuration", "error", err, NULL);
        return 2;
    }
    enum ibex_log_level level;
    ibex_log_parse_level(rt.cfg.log_level, &level);
    ibex_log_set_level(level);
    /* Provider credentials: without a master key the rest of ibex works and /v1/credentials
     * answers 503 CREDENTIALS_DISABLED. */
    struct ibex_vault *vault = NULL;
    struct ibex_vault_sources vs = {getenv("IBEX_MASTER_KEY"), rt.cfg.master_key_file,
                                    getenv("IBEX_MASTER_KEY_PREVIOUS"),
                                    rt.cfg.master_key_previous_file};
    if (ibex_vault_load(&vs, &vault, err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "invalid configuration", "error", err, NULL);
        ibex_config_dispose(&rt.cfg);
        return 2;
    }
    if (vault) {
        char nkeys[8];
        snprintf(nkeys, sizeof(nkeys), "%zu", ibex_vault_nkeys(vault));
        ibex_log(IBEX_LOG_INFO, "provider credentials enabled", "key_id", ibex_vault_key_id(vault),
                 "keys", nkeys, NULL);
        rt.vault = vault;
        rt.credential_cache = ibex_credential_cache_new(CREDENTIAL_CACHE_SIZE);
    } else {
        ibex_log(IBEX_LOG_INFO,
                 "provider credentials disabled: set IBEX_MASTER_KEY (openssl rand -hex 32) or "
                 "master_key_file to enable /v1/credentials",
                 NULL);
    }
    if (ibex_upstream_global_init() != 0) {
        ibex_log(IBEX_LOG_ERROR, "libcurl initialisation failed", NULL);
        ibex_credential_cache_free(rt.credential_cache);
        ibex_vault_free(vault);
        ibex_config_dispose(&rt.cfg);
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    rt.nworkers = rt.cfg.workers > 0 ? (size_t)rt.cfg.workers : (cpus > 0 ? (size_t)cpus : 1);
    if (rt.nworkers > IBEX_METRICS_MAX_WORKERS)
        rt.nworkers = IBEX_METRICS_MAX_WORKERS;
    /* The schema is brought up to date before anything is served (ibex migrate does the same
     * on its own). */
    if (apply_migrations(rt.cfg.store_url, log_applied, NULL, &rt.store_backend, &rt.store_version,
                         err, sizeof(err)) != 0) {
        ibex_log(IBEX_LOG_ERROR, "store unavailable", "error", err, NULL);
        ibex_credential_cache_free(rt.credential_cache);
        ibex_vault_free(vault);
        ibex_config_dispose(&rt.cfg);
        ibex_upstream_global_cleanup();
        return 1;
    }
    ibex_store_redact_url(rt.cfg.store_url, rt.store_url_shown, sizeof(rt.store_url_shown));
    struct identity_runtime ir;
    if (identity_start(&rt, &ir) != 0) {
        ibex_credential_cache_free(rt.credential_cache);
        ibex_vault_free(vault);
        ibex_config_dispose(&rt.cfg);
        ibex_upstream_global_cleanup();
        return 1;
    }
    rt.start_mono_ns = ibex_clock_mono_ns();
    rt.start_wall_ms = ibex_clock_wall_ms();
    rt.forward_headers = split_patterns(rt.cfg.forward_headers);
    ibex_providers_init(&rt.providers, &rt.cfg);
    ibex_metrics_set_providers(rt.providers.names, rt.providers.n);
    ibex_metrics_set_deployments(rt.providers.deployment_providers, rt.providers.deployment_models,
                                 rt.providers.ndeployments, ibex_attempt_outcome_names);
    if (rt.providers.default_provider == NULL)
        ibex_log(IBEX_LOG_INFO,
                 "no default provider: only configured models and \"mock\" are served; "
                 "set OPENAI_API_KEY (and OPENAI_BASE_URL) to proxy any model",
                 NULL);

    int rc = ibex_serve(&rt);
    identity_stop(&ir);
    ibex_credential_cache_free(rt.credential_cache);
    ibex_vault_free(vault);

    ibex_providers_dispose(&rt.providers);
    for (char **p = rt.forward_headers; *p; p++)
        free(*p);
    free(rt.forward_headers);
    ibex_config_dispose(&rt.cfg);
    ibex_upstream_global_cleanup();
    return rc;
}

/* Applies pending migrations to store_url (flag, IBEX_STORE_URL or the YAML file). Exit 0, or 1
 * with one line naming the problem; the URL is shown without its password. */
static int migrate(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("Usage: ibex migrate [--store-url URL] [--config FILE]\n\n"
               "Applies the schema migrations this binary knows and the database lacks, each in\n"
               "its own transaction; refuses a database whose schema is newer than the binary.\n"
               "URL: sqlite://PATH, sqlite:///ABS/PATH or postgres://USER:PASS@HOST:PORT/DB\n"
               "(default: setting store_url, environment IBEX_STORE_URL).\n");
        return 0;
    }
    struct ibex_config cfg;
    char err[768];
    if (ibex_config_load(&cfg, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex migrate: %s\n", err);
        return 1;
    }
    char shown[512];
    ibex_store_redact_url(cfg.store_url, shown, sizeof(shown));
    int applied = 0;
    int64_t version = 0;
    const char *backend = NULL;
    int rc = apply_migrations(cfg.store_url, print_applied, &applied, &backend, &version, err,
                              sizeof(err));
    if (rc)
        fprintf(stderr, "ibex migrate: %s\n", err);
    else
        printf("%s: schema at version %" PRId64 " (%d migration%s applied)\n", shown, version,
               applied, applied == 1 ? "" : "s");
    ibex_config_dispose(&cfg);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "migrate"))
        return migrate(argc - 2, argv + 2);
    if (!strcmp(cmd, "tenants") || !strcmp(cmd, "agents") || !strcmp(cmd, "keys"))
        return ibex_cli_admin(cmd, argc - 2, argv + 2);
    if (!strcmp(cmd, "credentials"))
        return ibex_cli_credentials(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("ibex %s (commit %s, built %s)\n", IBEX_VERSION, IBEX_GIT_COMMIT, __DATE__);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ibex: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
