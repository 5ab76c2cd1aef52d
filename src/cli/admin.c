/* `ibex tenants|agents|keys create|list|revoke`: the administration API's operations straight on
 * the store (docs/identity.md), for the operator at the command line. The flags become the same
 * JSON body the API takes, so validation and answers are the API's. The answer is printed as
 * JSON on stdout; an error goes to stderr with exit status 1 (2 for a usage error). */
#include "admin.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/identity.h"
#include "../config/config.h"
#include "../core/buf.h"
#include "../core/clock.h"

struct args {
    const char *verb;
    const char *id;
    const char *tenant, *name, *directive, *scopes, *agents, *expires_in, *limit;
    char *config_argv[4]; /* --store-url URL and --config FILE, for ibex_config_load */
    int config_argc;
};

static void usage(FILE *out, const char *noun)
{
    fprintf(out,
            "Usage:\n"
            "  ibex tenants create --name NAME              a tenant and its first admin key\n"
            "  ibex tenants list\n"
            "  ibex tenants revoke ID\n"
            "  ibex agents create --tenant T --name NAME [--directive TEXT]\n"
            "  ibex agents list --tenant T\n"
            "  ibex agents revoke --tenant T ID\n"
            "  ibex keys create --tenant T --scopes chat,... [--agents ID,...] [--name NAME]\n"
            "                   [--expires-in 30d]          the key is shown once\n"
            "  ibex keys list --tenant T\n"
            "  ibex keys revoke --tenant T ID\n\n"
            "Every command also takes --store-url URL and --config FILE (default: setting\n"
            "store_url) and --limit N for lists. Scopes: chat, sessions:read, sessions:write,\n"
            "traces:read, keys:admin, credentials:admin, admin, approvals:decide.\n");
    (void)noun;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof(*a));
    if (argc < 1)
        return -1;
    a->verb = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char **slot = NULL;
        if (strncmp(f, "--", 2) != 0) {
            if (a->id)
                return -1;
            a->id = f;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        if (!strcmp(f, "--store-url") || !strcmp(f, "--config")) {
            if (a->config_argc + 2 > 4)
                return -1;
            a->config_argv[a->config_argc++] = argv[i];
            a->config_argv[a->config_argc++] = argv[i + 1];
            i++;
            continue;
        }
        if (!strcmp(f, "--tenant"))
            slot = &a->tenant;
        else if (!strcmp(f, "--name"))
            slot = &a->name;
        else if (!strcmp(f, "--directive"))
            slot = &a->directive;
        else if (!strcmp(f, "--scopes"))
            slot = &a->scopes;
        else if (!strcmp(f, "--agents"))
            slot = &a->agents;
        else if (!strcmp(f, "--expires-in"))
            slot = &a->expires_in;
        else if (!strcmp(f, "--limit"))
            slot = &a->limit;
        else
            return -1;
        *slot = argv[++i];
    }
    return 0;
}

/* "a,b,c" as a JSON array of strings. */
static json_object *list_of(const char *csv)
{
    json_object *arr = json_object_new_array();
    const char *p = csv;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len)
            json_object_array_add(arr, json_object_new_string_len(p, (int)len));
        p += len;
        p += *p == ',';
    }
    return arr;
}

/* The JSON body the API would receive for these flags. Returns NULL on a bad flag value. */
static json_object *body_of(const struct args *a, char *err, size_t errlen)
{
    json_object *b = json_object_new_object();
    if (a->name)
        json_object_object_add(b, "name", json_object_new_string(a->name));
    if (a->directive)
        json_object_object_add(b, "directive", json_object_new_string(a->directive));
    if (a->scopes)
        json_object_object_add(b, "scopes", list_of(a->scopes));
    if (a->agents)
        json_object_object_add(b, "agent_ids", list_of(a->agents));
    if (a->expires_in) {
        uint64_t ms;
        if (ibex_config_parse_duration(a->expires_in, &ms) != 0 || ms < 1000) {
            snprintf(err, errlen, "--expires-in: a duration like 30d, 12h or 90m");
            json_object_put(b);
            return NULL;
        }
        json_object_object_add(
            b, "expires_at", json_object_new_int64((int64_t)((ibex_clock_wall_ms() + ms) / 1000)));
    }
    return b;
}

int ibex_cli_admin(const char *noun, int argc, char **argv)
{
    struct args a;
    bool tenants = !strcmp(noun, "tenants"), agents = !strcmp(noun, "agents");
    if (argc >= 1 &&
        (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help"))) {
        usage(stdout, noun);
        return 0;
    }
    if (parse_args(argc, argv, &a) != 0 ||
        (strcmp(a.verb, "create") && strcmp(a.verb, "list") && strcmp(a.verb, "revoke")) ||
        (!strcmp(a.verb, "revoke") != (a.id != NULL))) {
        usage(stderr, noun);
        return 2;
    }
    /* ids are stored in lowercase (UUIDs from ibex); accept them in any case */
    for (char *c = (char *)a.id; c && *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (char *c = (char *)a.tenant; c && *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!tenants && a.tenant == NULL) {
        fprintf(stderr, "ibex %s %s: --tenant ID is required\n", noun, a.verb);
        return 2;
    }

    struct ibex_config cfg;
    char err[768];
    if (ibex_config_load(&cfg, a.config_argc, a.config_argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex %s: %s\n", noun, err);
        return 1;
    }
    struct ibex_store *s = NULL;
    int64_t version;
    int rc = 1;
    if (ibex_store_open(cfg.store_url, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "ibex %s: %s\n", noun, err);
        goto out;
    }
    if (ibex_store_migrate(s, NULL, NULL, &version) != 0) {
        fprintf(stderr, "ibex %s: %s\n", noun, ibex_store_errmsg(s));
        goto out;
    }

    int64_t limit = a.limit ? strtoll(a.limit, NULL, 10) : 100;
    struct ibex_actor actor = {
        .tenant_id = a.tenant, .subject = "cli", .scopes = IBEX_SCOPE_ALL, .request_id = NULL};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf out;
    ibex_buf_init(&out);
    json_object *body = NULL;
    if (!strcmp(a.verb, "create") && (body = body_of(&a, err, sizeof(err))) == NULL) {
        fprintf(stderr, "ibex %s create: %s\n", noun, err);
        goto done;
    }
    if (limit < 1 || limit > 1000) {
        fprintf(stderr, "ibex %s list: --limit must be 1 to 1000\n", noun);
        goto done;
    }
    if (!strcmp(a.verb, "create")) {
        if (tenants)
            ibex_tenant_create(s, &actor, body, &out, &r);
        else if (agents)
            ibex_agent_create(s, &actor, body, NULL, &out, &r);
        else
            ibex_key_create(s, &actor, body, NULL, &out, &r);
    } else if (!strcmp(a.verb, "list")) {
        if (tenants)
            ibex_tenant_list(s, &actor, limit, &out, &r);
        else if (agents)
            ibex_agent_list(s, &actor, limit, &out, &r);
        else
            ibex_key_list(s, &actor, limit, &out, &r);
    } else {
        if (tenants)
            ibex_tenant_revoke(s, &actor, a.id, &out, &r);
        else if (agents)
            ibex_agent_revoke(s, &actor, a.id, &out, &r);
        else
            ibex_key_revoke(s, &actor, a.id, &out, &r);
    }
    if (r.code) {
        fprintf(stderr, "ibex %s %s: %s (%s)\n", noun, a.verb, r.message, r.code);
    } else {
        fwrite(out.p, 1, out.len, stdout);
        fputc('\n', stdout);
        rc = 0;
    }
done:
    json_object_put(body);
    ibex_buf_dispose(&out);
    ibex_api_result_dispose(&r);
out:
    ibex_store_close(s);
    ibex_config_dispose(&cfg);
    return rc;
}
