/* `ibex credentials rotate-key`: provider credentials at the command line (docs/credentials.md). */
#ifndef IBEX_CLI_CREDENTIALS_H
#define IBEX_CLI_CREDENTIALS_H

/* Runs `ibex credentials <argv...>`. Returns the exit status. */
int ibex_cli_credentials(int argc, char **argv);

#endif
