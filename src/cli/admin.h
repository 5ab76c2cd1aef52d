/* The administration verbs of the command line: `ibex tenants|agents|keys ...`. */
#ifndef IBEX_CLI_ADMIN_H
#define IBEX_CLI_ADMIN_H

/* Runs `ibex <noun> <argv...>` (noun: tenants, agents or keys). Returns the exit status. */
int ibex_cli_admin(const char *noun, int argc, char **argv);

#endif
