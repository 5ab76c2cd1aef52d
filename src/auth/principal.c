/* Scope names. */
#include <string.h>

#include "principal.h"

/* Indexed by bit number (enum ibex_scope). */
static const char *const scope_names[] = {
    "chat",       "sessions:read",     "sessions:write", "traces:read",
    "keys:admin", "credentials:admin", "admin",          "approvals:decide",
};

const char *ibex_scope_name(uint32_t scope)
{
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
        if (scope == 1u << i)
            return scope_names[i];
    return NULL;
}

uint32_t ibex_scope_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
        if (strlen(scope_names[i]) == len && memcmp(scope_names[i], name, len) == 0)
            return 1u << i;
    return 0;
}
