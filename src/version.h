/* Version and build identity. The Makefile passes IBEX_GIT_COMMIT (git rev-parse --short
 * HEAD); builds outside a git checkout say "unknown". */
#ifndef IBEX_VERSION_H
#define IBEX_VERSION_H

#define IBEX_VERSION "0.1.0"
#ifndef IBEX_GIT_COMMIT
#define IBEX_GIT_COMMIT "unknown"
#endif

#endif
