/* Redis client layer shared by revocation (pub/sub, publish) and idempotency (commands): URL
 * parsing, connections whose every wait has a deadline, and a thread-safe pool of command
 * connections. The I/O is ours (non-blocking sockets, send with MSG_NOSIGNAL, poll, recv);
 * hiredis only formats commands and parses replies, so a dead peer never raises SIGPIPE and a
 * wait may also watch a wake-up fd that ends it at once.
 *
 * URLs: redis://[[user]:password@]host[:port][/db] (user and password percent-decoded, host may
 * be [IPv6]; port defaults to 6379, db to 0). With a password every connection sends AUTH
 * password, or AUTH user password (Redis 6 ACLs) when a user is given. Connections are named
 * "<name>:<pid>" with CLIENT SETNAME (CLIENT LIST then shows which process holds them; an ACL
 * user may refuse the name, which is harmless). Pool connections SELECT db when it is not 0;
 * pub/sub ignores it (channels are not per database). Passwords never appear in an error
 * message: every message built from a Redis reply is scrubbed of the password.
 *
 * Errors: IBEX_ECONN (cannot connect, connection lost, protocol error, or a command refused with
 * an error reply), IBEX_ETIMEDOUT (the deadline passed), from store.h; IBEX_REDIS_STOPPED when
 * the wake-up fd became readable. */
#ifndef IBEX_STORE_REDIS_H
#define IBEX_STORE_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* A wait ended because the caller's wake-up fd became readable (not an error). */
#define IBEX_REDIS_STOPPED 1

/* A parsed Redis URL; password is "" when none was given. */
struct ibex_redis_url {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
};

/* Parses a Redis URL (format above) into *out. Returns 0, or IBEX_EINVAL with one line in err
 * that never holds the password; a refused URL leaves no password behind in *out. */
int ibex_redis_parse_url(const char *url, struct ibex_redis_url *out, char *err, size_t errlen);
/* "host:port", or "[v6]:port", for logs. */
void ibex_redis_url_show(const struct ibex_redis_url *u, char *out, size_t outlen);

/* Milliseconds of the monotonic clock, the clock of every deadline below. */
uint64_t ibex_redis_now_ms(void);

/* One connection; fd is -1 when closed. reply_cap bounds the unparsed bytes of one reply, give
 * or take one read of 16 KiB (more is a broken peer: IBEX_ECONN). */
struct ibex_redis_conn {
    int fd;
    redisReader *rd;
    size_t reply_cap;
};

/* Connects to u, authenticates and names the connection "<name>:<pid>", all before deadline_ms
 * (monotonic; name resolution itself is not bounded). wakefd (-1 = none) readable ends every
 * wait with IBEX_REDIS_STOPPED. On success *c is open (close it with ibex_redis_close); on
 * failure it is closed and why holds the reason. */
int ibex_redis_connect(const struct ibex_redis_url *u, const char *name, size_t reply_cap,
                       int wakefd, uint64_t deadline_ms, struct ibex_redis_conn *c, char *why,
                       size_t whylen);
/* Sends one command of argc arguments; lens may be NULL (then every argv[i] is a C string). */
int ibex_redis_send(struct ibex_redis_conn *c, int argc, const char **argv, const size_t *lens,
                    int wakefd, uint64_t deadline_ms, char *why, size_t whylen);
/* Reads one reply into *out (free with freeReplyObject); an error reply is returned as a reply. */
int ibex_redis_reply(struct ibex_redis_conn *c, int wakefd, uint64_t deadline_ms, redisReply **out,
                     char *why, size_t whylen);
/* send, then reply; an error reply becomes IBEX_ECONN with its first 160 bytes in why, scrubbed
 * of secret (may be NULL). *out (may be NULL) receives the reply on success. */
int ibex_redis_command(struct ibex_redis_conn *c, int argc, const char **argv, const size_t *lens,
                       const char *secret, int wakefd, uint64_t deadline_ms, redisReply **out,
                       char *why, size_t whylen);
/* Closes c (a closed c is a no-op). */
void ibex_redis_close(struct ibex_redis_conn *c);

/* A pool of command connections: opened on demand up to max_conns and kept for reuse. A kept
 * connection that the peer closed meanwhile (Redis restarted, CLIENT KILL) is noticed before
 * use and replaced, so a command is sent at most once and never retried: a caller may run
 * commands that are not idempotent. A connection whose I/O failed or timed out is closed, never
 * returned; one that got an error reply is kept. After a failure to connect or an I/O failure,
 * no new connection is tried for hold_ms: commands that would need one fail at once.
 * Thread: every function but new and free may be called from any number of threads at once. */
struct ibex_redis_pool_opts {
    const struct ibex_redis_url *url; /* copied */
    const char *name;                 /* CLIENT SETNAME "<name>:<pid>"; copied */
    size_t max_conns;                 /* >= 1 */
    uint64_t timeout_ms;              /* one whole command: a free connection, connect, reply */
    uint64_t hold_ms;                 /* 0 = retry at once */
    size_t reply_cap;                 /* per reply, see struct ibex_redis_conn */
};

struct ibex_redis_pool;

struct ibex_redis_pool *ibex_redis_pool_new(const struct ibex_redis_pool_opts *o);
/* Closes every connection. No command may be in progress or follow. NULL is a no-op. */
void ibex_redis_pool_free(struct ibex_redis_pool *p);
/* Runs one command within timeout_ms. Returns 0 with the reply in *out (never an error reply;
 * free with freeReplyObject), or IBEX_ECONN / IBEX_ETIMEDOUT with the reason in why (an error
 * reply's text scrubbed of the password). */
int ibex_redis_pool_command(struct ibex_redis_pool *p, int argc, const char **argv,
                            const size_t *lens, redisReply **out, char *why, size_t whylen);

#endif
