/* Revocation watcher (revocation.h): a poller thread on its own store connection, a Redis
 * subscriber thread, and a publish connection shared by the callers of ibex_revocation_note.
 * Invariants:
 * - deliver() is the only caller of on_epoch; under deliver_mu it passes on only epochs larger
 *   than `seen`, so the callback sees a strictly increasing sequence whatever the thread.
 * - Redis I/O is ours (non-blocking sockets, send with MSG_NOSIGNAL, poll, recv); hiredis only
 *   formats commands and parses replies. So every wait has a deadline, a dead peer never raises
 *   SIGPIPE, and each wait of the subscriber also watches `wakefd`, an eventfd that stop makes
 *   readable and nobody drains: once stopping, every wait of that thread returns at once.
 * - The poller sleeps on a condvar (monotonic clock) that stop and "poll now" requests signal.
 * - Failures are logged once when a streak of them starts, then at most once a minute, and
 *   once more when it ends, so a Redis or database outage does not flood the log. */
#include "revocation.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/log.h"
#include "../core/str.h"
#include "../store/store.h"

#define SUB_CONNECT_MS 2000  /* connect + AUTH + SUBSCRIBE of the subscriber */
#define PUBLISH_MS 500       /* one whole publish, connection included */
#define PUBLISH_HOLD_MS 1000 /* no new publish connection for this long after a failure */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define REPLY_CAP (64 * 1024) /* unparsed bytes from Redis; more is a broken peer */
#define LOG_REPEAT_MS 60000
#define CHANNEL_MAX 256
#define STOPPED 1 /* internal: a wait ended because stop was requested */

struct rconn {
    int fd;
    redisReader *rd;
};

/* A run of failures of one activity, for the log (see the invariants above). */
struct streak {
    uint64_t fails;
    uint64_t last_log_ms;
};

struct ibex_revocation {
    char *store_url;
    char store_shown[512]; /* store_url without its password */
    char *channel;
    uint64_t interval_ms;
    ibex_revocation_epoch_fn on_epoch;
    void *data;
    bool has_redis;
    struct ibex_revocation_url redis;
    char redis_shown[300]; /* host:port */

    pthread_mutex_t deliver_mu;
    int64_t seen; /* largest epoch delivered; under deliver_mu */
    bool any_seen;

    pthread_mutex_t mu; /* stopping, poll_now */
    pthread_cond_t cv;
    bool stopping, poll_now;

    struct ibex_store *store; /* the poller's */
    struct streak poll_streak;
    pthread_t poller, subscriber;
    bool poller_started, subscriber_started;
    int wakefd;

    pthread_mutex_t pub_mu; /* pub, pub_hold_until, pub_streak */
    struct rconn pub;
    uint64_t pub_hold_until;
    struct streak pub_streak;

    atomic_uint_fast64_t polls, poll_errors, messages, publishes, publish_errors;
    atomic_bool connected;
    atomic_int_fast64_t epoch;
};

static uint64_t now_ms(void)
{
    return ibex_clock_mono_ns() / 1000000;
}

/* ---- logging ---- */

static void log_failure(struct streak *s, const char *msg, const char *where_key, const char *where,
                        const char *why)
{
    uint64_t now = now_ms();
    s->fails++;
    if (s->fails > 1 && now - s->last_log_ms < LOG_REPEAT_MS)
        return;
    s->last_log_ms = now;
    char n[24];
    snprintf(n, sizeof(n), "%" PRIu64, s->fails);
    ibex_log(IBEX_LOG_WARN, msg, where_key, where, "error", why, "failures", n, NULL);
}

static void log_recovery(struct streak *s, const char *msg, const char *where_key,
                         const char *where)
{
    if (s->fails == 0)
        return;
    char n[24];
    snprintf(n, sizeof(n), "%" PRIu64, s->fails);
    ibex_log(IBEX_LOG_INFO, msg, where_key, where, "failures", n, NULL);
    s->fails = 0;
}

/* Overwrites every occurrence of secret in s with '*': Redis does not echo passwords, but a
 * message that reaches the log must not depend on that. */
static void scrub(char *s, const char *secret)
{
    size_t n = strlen(secret);
    if (n == 0)
        return;
    for (char *p = strstr(s, secret); p != NULL; p = strstr(p + n, secret))
        memset(p, '*', n);
}

/* ---- delivery ---- */

static void deliver(struct ibex_revocation *r, int64_t epoch)
{
    pthread_mutex_lock(&r->deliver_mu);
    if (!r->any_seen || epoch > r->seen) {
        r->any_seen = true;
        r->seen = epoch;
        atomic_store(&r->epoch, epoch);
        r->on_epoch(r->data, epoch);
    }
    pthread_mutex_unlock(&r->deliver_mu);
}

/* ---- Redis URL ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes p[0..len) into out (cap bytes, NUL included). Returns 0 or -1. */
static int pct_decode(const char *p, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int url_error(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "redis URL: %s (want redis://[[user]:password@]host[:port][/db])", what);
    return IBEX_EINVAL;
}

static int parse_url(const char *url, struct ibex_revocation_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (url == NULL || strncmp(url, "redis://", 8) != 0) {
        if (url != NULL && strncmp(url, "rediss://", 9) == 0)
            return url_error(err, errlen, "TLS (rediss://) is not supported");
        return url_error(err, errlen, "not a redis:// URL");
    }
    const char *s = url + 8;
    /* The last '@' ends the user info: a host, port or db never holds one. */
    const char *at = strrchr(s, '@');
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon == NULL)
            return url_error(err, errlen, "a user needs a password (user:password@)");
        if (pct_decode(s, (size_t)(colon - s), out->user, sizeof(out->user)) != 0)
            return url_error(err, errlen, "bad or too long user");
        if (pct_decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password)) !=
            0)
            return url_error(err, errlen, "bad or too long password");
        if (out->password[0] == '\0')
            return url_error(err, errlen, "empty password");
        s = at + 1;
    }
    const char *host = s, *host_end;
    if (*s == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return url_error(err, errlen, "unclosed [ in host");
        s = host_end + 1;
    } else {
        host_end = s + strcspn(s, ":/?#");
        s = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(out->host))
        return url_error(err, errlen, "empty or too long host");
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (*s == ':') {
        s++;
        size_t n = strcspn(s, "/");
        uint64_t port;
        if (ibex_str_to_u64((struct ibex_str){s, n}, 65535, &port) != 0 || port == 0)
            return url_error(err, errlen, "bad port");
        out->port = (int)port;
        s += n;
    }
    if (*s == '/') {
        s++;
        if (*s != '\0') {
            uint64_t db;
            if (ibex_str_to_u64(ibex_str_from(s), INT_MAX, &db) != 0)
                return url_error(err, errlen, "bad database number");
            out->db = (int)db;
        }
        s += strlen(s);
    }
    if (*s != '\0')
        return url_error(err, errlen, "unexpected text after host and port");
    return 0;
}

int ibex_revocation_parse_url(const char *url, struct ibex_revocation_url *out, char *err,
                              size_t errlen)
{
    int rc = parse_url(url, out, err, errlen);
    if (rc != 0) /* a refused URL leaves no password behind */
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- Redis connections ---- */

enum { W_READY = 1, W_TIMEOUT, W_STOP };

/* Waits for events on fd until deadline_ms (monotonic; UINT64_MAX = none) or until wakefd
 * (-1 = none) is readable. */
static int wait_fd(int fd, short events, int wakefd, uint64_t deadline_ms)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms != UINT64_MAX) {
            uint64_t now = now_ms();
            if (now >= deadline_ms)
                return W_TIMEOUT;
            timeout = deadline_ms - now > INT_MAX ? INT_MAX : (int)(deadline_ms - now);
        }
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = wakefd, .events = POLLIN}};
        int n = poll(p, wakefd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            return W_READY; /* let the I/O call report the error */
        if (n > 0 && wakefd >= 0 && p[1].revents != 0)
            return W_STOP;
        if (n > 0 && p[0].revents != 0)
            return W_READY;
    }
}

static int wait_error(int w, const char *what, char *why, size_t whylen)
{
    if (w == W_STOP)
        return STOPPED;
    snprintf(why, whylen, "%s: timed out", what);
    return IBEX_ETIMEDOUT;
}

static void rconn_close(struct rconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->rd != NULL)
        redisReaderFree(c->rd);
    c->fd = -1;
    c->rd = NULL;
}

static void set_sockopts(int fd)
{
    int one = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* An idle subscriber learns of a silently vanished Redis within about 30 s; polling
     * covers the gap meanwhile. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Connects to u (non-blocking socket, deadline bounded; name resolution itself is not). */
static int rconn_open(const struct ibex_revocation_url *u, int wakefd, uint64_t deadline,
                      struct rconn *c, char *why, size_t whylen)
{
    c->fd = -1;
    c->rd = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(u->host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(why, whylen, "resolve: %s", gai_strerror(gai));
        return IBEX_ECONN;
    }
    int rc = IBEX_ECONN;
    snprintf(why, whylen, "connect: no address");
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(why, whylen, "socket: %s", strerror(errno));
            continue;
        }
        int e = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, wakefd, deadline);
            if (w != W_READY) {
                close(fd);
                rc = wait_error(w, "connect", why, whylen);
                break;
            }
            socklen_t len = sizeof(e);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                e = errno;
        }
        if (e != 0) {
            snprintf(why, whylen, "connect: %s", strerror(e));
            close(fd);
            continue;
        }
        set_sockopts(fd);
        c->fd = fd;
        c->rd = redisReaderCreate();
        if (c->rd == NULL) {
            fprintf(stderr, "ibex: out of memory (redis reader)\n");
            abort();
        }
        rc = 0;
        break;
    }
    freeaddrinfo(ai);
    return rc;
}

static int rconn_send(struct rconn *c, int argc, const char **argv, int wakefd, uint64_t deadline,
                      char *why, size_t whylen)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        fprintf(stderr, "ibex: out of memory (redis command)\n");
        abort();
    }
    int rc = 0;
    size_t off = 0;
    while (off < (size_t)len) {
        ssize_t n = send(c->fd, cmd + off, (size_t)len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int w = wait_fd(c->fd, POLLOUT, wakefd, deadline);
            if (w != W_READY) {
                rc = wait_error(w, "send", why, whylen);
                break;
            }
        } else {
            snprintf(why, whylen, "send: %s", strerror(errno));
            rc = IBEX_ECONN;
            break;
        }
    }
    redisFreeCommand(cmd);
    return rc;
}

/* Reads one reply into *out (free with freeReplyObject). */
static int rconn_reply(struct rconn *c, int wakefd, uint64_t deadline, redisReply **out, char *why,
                       size_t whylen)
{
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            snprintf(why, whylen, "protocol error: %s", c->rd->errstr);
            return IBEX_ECONN;
        }
        if (reply != NULL) {
            *out = reply;
            return 0;
        }
        if (c->rd->len - c->rd->pos > REPLY_CAP) {
            snprintf(why, whylen, "reply larger than %d bytes", REPLY_CAP);
            return IBEX_ECONN;
        }
        char buf[4096];
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            if (redisReaderFeed(c->rd, buf, (size_t)n) != REDIS_OK) {
                snprintf(why, whylen, "protocol error: %s", c->rd->errstr);
                return IBEX_ECONN;
            }
        } else if (n == 0) {
            snprintf(why, whylen, "connection closed by redis");
            return IBEX_ECONN;
        } else if (errno == EAGAIN || errno == EINTR) {
            int w = wait_fd(c->fd, POLLIN, wakefd, deadline);
            if (w != W_READY)
                return wait_error(w, "reply", why, whylen);
        } else {
            snprintf(why, whylen, "recv: %s", strerror(errno));
            return IBEX_ECONN;
        }
    }
}

/* Sends a command and checks that its reply is neither missing nor an error reply; *out (may
 * be NULL) receives the reply. */
static int rconn_command(struct rconn *c, int argc, const char **argv, const char *secret,
                         int wakefd, uint64_t deadline, redisReply **out, char *why, size_t whylen)
{
    redisReply *rep = NULL;
    int rc = rconn_send(c, argc, argv, wakefd, deadline, why, whylen);
    if (rc == 0)
        rc = rconn_reply(c, wakefd, deadline, &rep, why, whylen);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "%s refused: %.*s", argv[0], (int)(rep->len > 160 ? 160 : rep->len),
                 rep->str);
        scrub(why, secret);
        rc = IBEX_ECONN;
    }
    if (rc == 0 && out != NULL)
        *out = rep;
    else if (rep != NULL)
        freeReplyObject(rep);
    return rc;
}

/* Connects, authenticates and names the connection "<role>:<pid>" (CLIENT LIST then shows
 * which process holds it; an ACL user without CLIENT may refuse the name, which is harmless). */
static int rconn_login(struct ibex_revocation *r, const char *role, struct rconn *c, int wakefd,
                       uint64_t deadline, char *why, size_t whylen)
{
    const struct ibex_revocation_url *u = &r->redis;
    int rc = rconn_open(u, wakefd, deadline, c, why, whylen);
    if (rc == 0 && u->password[0] != '\0') {
        const char *argv[3] = {"AUTH", u->user, u->password};
        if (u->user[0] != '\0')
            rc = rconn_command(c, 3, argv, u->password, wakefd, deadline, NULL, why, whylen);
        else
            rc = rconn_command(c, 2, (const char *[]){"AUTH", u->password}, u->password, wakefd,
                               deadline, NULL, why, whylen);
    }
    if (rc == 0) {
        char name[64];
        snprintf(name, sizeof(name), "%s:%d", role, (int)getpid());
        redisReply *rep = NULL;
        rc = rconn_send(c, 3, (const char *[]){"CLIENT", "SETNAME", name}, wakefd, deadline, why,
                        whylen);
        if (rc == 0)
            rc = rconn_reply(c, wakefd, deadline, &rep, why, whylen);
        if (rep != NULL)
            freeReplyObject(rep);
    }
    if (rc != 0)
        rconn_close(c);
    return rc;
}

/* ---- publishing ---- */

int ibex_revocation_publish(struct ibex_revocation *r, int64_t epoch)
{
    if (!r->has_redis)
        return 0;
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, epoch);
    const char *argv[3] = {"PUBLISH", r->channel, num};
    char why[256] = "";
    int rc = IBEX_ECONN;
    bool held = false;

    pthread_mutex_lock(&r->pub_mu);
    uint64_t deadline = now_ms() + PUBLISH_MS;
    /* A kept connection may have died since the last publish (Redis restarted): it earns one
     * retry on a new connection; a new connection that fails does not. */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = false;
        if (r->pub.fd < 0) {
            if (now_ms() < r->pub_hold_until) {
                snprintf(why, sizeof(why), "not retried yet: redis failed less than %d ms ago",
                         PUBLISH_HOLD_MS);
                rc = IBEX_ECONN;
                held = true;
                break;
            }
            rc = rconn_login(r, "ibex-revocation-pub", &r->pub, -1, deadline, why, sizeof(why));
            if (rc != 0)
                break;
            fresh = true;
        }
        rc = rconn_command(&r->pub, 3, argv, r->redis.password, -1, deadline, NULL, why,
                           sizeof(why));
        if (rc == 0)
            break;
        rconn_close(&r->pub);
        if (fresh || rc == IBEX_ETIMEDOUT)
            break;
    }
    if (rc != 0) {
        if (!held) /* the hold runs from the last real attempt, not from each refusal */
            r->pub_hold_until = now_ms() + PUBLISH_HOLD_MS;
        atomic_fetch_add(&r->publish_errors, 1);
        log_failure(&r->pub_streak, "revocation: redis publish failed", "redis", r->redis_shown,
                    why);
    } else {
        atomic_fetch_add(&r->publishes, 1);
        log_recovery(&r->pub_streak, "revocation: redis publish recovered", "redis",
                     r->redis_shown);
    }
    pthread_mutex_unlock(&r->pub_mu);
    return rc;
}

void ibex_revocation_note(struct ibex_revocation *r, int64_t epoch)
{
    deliver(r, epoch);
    ibex_revocation_publish(r, epoch);
}

/* ---- subscriber ---- */

static bool reply_is(const redisReply *rep, size_t i, const char *s)
{
    return rep->type == REDIS_REPLY_ARRAY && rep->elements > i &&
           rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i]->len == strlen(s) &&
           memcmp(rep->element[i]->str, s, rep->element[i]->len) == 0;
}

static void request_poll(struct ibex_revocation *r)
{
    pthread_mutex_lock(&r->mu);
    r->poll_now = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_message(struct ibex_revocation *r, const redisReply *rep, struct streak *bad)
{
    atomic_fetch_add(&r->messages, 1);
    const redisReply *m = rep->elements == 3 ? rep->element[2] : NULL;
    uint64_t epoch;
    if (m == NULL || m->type != REDIS_REPLY_STRING ||
        ibex_str_to_u64((struct ibex_str){m->str, m->len}, INT64_MAX, &epoch) != 0) {
        /* The payload is not quoted: only ibex instances should publish on this channel. */
        log_failure(bad, "revocation: malformed message ignored", "channel", r->channel,
                    "not a decimal epoch");
        return;
    }
    deliver(r, (int64_t)epoch);
}

/* One connection of the subscriber: connect, AUTH, SUBSCRIBE, then messages until the
 * connection fails (an error code, the reason in why) or stop (STOPPED). *subscribed tells
 * whether the subscription was confirmed. */
static int subscribe_once(struct ibex_revocation *r, bool *subscribed, struct streak *sub_streak,
                          struct streak *bad, char *why, size_t whylen)
{
    struct rconn c;
    *subscribed = false;
    uint64_t deadline = now_ms() + SUB_CONNECT_MS;
    int rc = rconn_login(r, "ibex-revocation-sub", &c, r->wakefd, deadline, why, whylen);
    if (rc != 0)
        return rc;
    redisReply *rep = NULL;
    rc = rconn_command(&c, 2, (const char *[]){"SUBSCRIBE", r->channel}, r->redis.password,
                       r->wakefd, deadline, &rep, why, whylen);
    if (rc == 0 && !reply_is(rep, 0, "subscribe")) {
        snprintf(why, whylen, "SUBSCRIBE: unexpected reply");
        rc = IBEX_ECONN;
    }
    if (rep != NULL)
        freeReplyObject(rep);
    if (rc != 0) {
        rconn_close(&c);
        return rc;
    }
    *subscribed = true;
    atomic_store(&r->connected, true);
    if (sub_streak->fails > 0)
        log_recovery(sub_streak, "revocation: redis subscribed again", "redis", r->redis_shown);
    else
        ibex_log(IBEX_LOG_INFO, "revocation: redis subscribed", "redis", r->redis_shown, "channel",
                 r->channel, NULL);
    /* Whatever was published while we were away is lost: ask the store instead. */
    request_poll(r);
    for (;;) {
        rc = rconn_reply(&c, r->wakefd, UINT64_MAX, &rep, why, whylen);
        if (rc != 0)
            break;
        if (reply_is(rep, 0, "message"))
            on_message(r, rep, bad);
        freeReplyObject(rep);
    }
    atomic_store(&r->connected, false);
    rconn_close(&c);
    return rc;
}

static void *subscriber_main(void *arg)
{
    struct ibex_revocation *r = arg;
    struct streak sub_streak = {0}, bad = {0};
    uint64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        char why[256] = "";
        bool subscribed;
        int rc = subscribe_once(r, &subscribed, &sub_streak, &bad, why, sizeof(why));
        if (rc == STOPPED)
            break;
        if (subscribed)
            backoff = BACKOFF_MIN_MS;
        log_failure(&sub_streak, "revocation: redis subscriber disconnected, retrying", "redis",
                    r->redis_shown, why);
        struct pollfd p = {.fd = r->wakefd, .events = POLLIN};
        if (poll(&p, 1, (int)backoff) > 0)
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* ---- poller ---- */

struct epoch_row {
    bool found;
    int64_t epoch;
};

static int epoch_row(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    struct epoch_row *e = data;
    if (ncols == 1 && cols[0].type == IBEX_STORE_INT) {
        e->found = true;
        e->epoch = cols[0].i;
    }
    return 0;
}

static int read_epoch(struct ibex_store *st, int64_t *epoch, char *err, size_t errlen)
{
    struct epoch_row e = {0};
    int rc = ibex_store_exec(st, "SELECT epoch FROM identity_epoch WHERE id = 1", NULL, 0,
                             epoch_row, &e);
    if (rc != 0) {
        snprintf(err, errlen, "%s", ibex_store_errmsg(st));
        return rc < 0 ? rc : IBEX_EDB;
    }
    if (!e.found) {
        snprintf(err, errlen, "identity_epoch has no row with id 1 (is the store migrated?)");
        return IBEX_EDB;
    }
    *epoch = e.epoch;
    return 0;
}

static void poll_once(struct ibex_revocation *r)
{
    char err[512] = "";
    int64_t epoch = 0;
    int rc = 0;
    atomic_fetch_add(&r->polls, 1);
    if (r->store == NULL)
        rc = ibex_store_open(r->store_url, &r->store, err, sizeof(err));
    if (rc == 0) {
        rc = read_epoch(r->store, &epoch, err, sizeof(err));
        if (rc == IBEX_ECONN) {
            /* Reopened at the next poll. */
            ibex_store_close(r->store);
            r->store = NULL;
        }
    }
    if (rc != 0) {
        atomic_fetch_add(&r->poll_errors, 1);
        log_failure(&r->poll_streak, "revocation: poll failed", "store", r->store_shown, err);
        return;
    }
    log_recovery(&r->poll_streak, "revocation: poll recovered", "store", r->store_shown);
    deliver(r, epoch);
}

static void *poller_main(void *arg)
{
    struct ibex_revocation *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        uint64_t deadline = ibex_clock_mono_ns() + r->interval_ms * 1000000;
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000),
                              .tv_nsec = (long)(deadline % 1000000000)};
        while (!r->stopping && !r->poll_now && ibex_clock_mono_ns() < deadline)
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (r->stopping)
            break;
        r->poll_now = false;
        pthread_mutex_unlock(&r->mu);
        poll_once(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- start, stats, stop ---- */

int ibex_revocation_start(const struct ibex_revocation_opts *o, struct ibex_revocation **out,
                          char *err, size_t errlen)
{
    struct ibex_revocation *r = NULL;
    int rc = IBEX_EINVAL;
    *out = NULL;
    if (o == NULL || o->store_url == NULL || *o->store_url == '\0' || o->on_epoch == NULL) {
        snprintf(err, errlen, "revocation: store_url and on_epoch are required");
        goto out;
    }
    if (o->poll_interval_ms < IBEX_REVOCATION_MIN_INTERVAL_MS) {
        snprintf(err, errlen, "revocation: poll interval below %d ms",
                 IBEX_REVOCATION_MIN_INTERVAL_MS);
        goto out;
    }
    const char *channel = o->channel && *o->channel ? o->channel : IBEX_REVOCATION_CHANNEL;
    if (strlen(channel) > CHANNEL_MAX) {
        snprintf(err, errlen, "revocation: channel longer than %d bytes", CHANNEL_MAX);
        goto out;
    }

    r = ibex_xcalloc(1, sizeof(*r));
    r->wakefd = -1;
    r->pub.fd = -1;
    r->store_url = ibex_xstrdup(o->store_url);
    ibex_store_redact_url(o->store_url, r->store_shown, sizeof(r->store_shown));
    r->channel = ibex_xstrdup(channel);
    r->interval_ms = o->poll_interval_ms;
    r->on_epoch = o->on_epoch;
    r->data = o->data;
    pthread_mutex_init(&r->deliver_mu, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->pub_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);

    if (o->redis_url != NULL && *o->redis_url != '\0') {
        rc = ibex_revocation_parse_url(o->redis_url, &r->redis, err, errlen);
        if (rc != 0)
            goto out;
        r->has_redis = true;
        bool v6 = strchr(r->redis.host, ':') != NULL;
        snprintf(r->redis_shown, sizeof(r->redis_shown), "%s%s%s:%d", v6 ? "[" : "", r->redis.host,
                 v6 ? "]" : "", r->redis.port);
    }

    char why[512];
    rc = ibex_store_open(r->store_url, &r->store, why, sizeof(why));
    if (rc == 0) {
        int64_t epoch;
        rc = read_epoch(r->store, &epoch, why, sizeof(why));
        if (rc == 0)
            deliver(r, epoch);
    }
    if (rc != 0) {
        snprintf(err, errlen, "revocation: store %s: %s", r->store_shown, why);
        goto out;
    }

    if (r->has_redis) {
        r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->wakefd < 0) {
            snprintf(err, errlen, "revocation: eventfd: %s", strerror(errno));
            rc = IBEX_EINVAL;
            goto out;
        }
    }
    rc = pthread_create(&r->poller, NULL, poller_main, r);
    if (rc == 0) {
        r->poller_started = true;
        if (r->has_redis && (rc = pthread_create(&r->subscriber, NULL, subscriber_main, r)) == 0)
            r->subscriber_started = true;
    }
    if (rc != 0) {
        snprintf(err, errlen, "revocation: cannot start a thread: %s", strerror(rc));
        rc = IBEX_EINVAL;
        goto out;
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    ibex_revocation_stop(r);
    return rc;
}

void ibex_revocation_stats(struct ibex_revocation *r, struct ibex_revocation_stats *out)
{
    out->polls = atomic_load(&r->polls);
    out->poll_errors = atomic_load(&r->poll_errors);
    out->messages = atomic_load(&r->messages);
    out->publishes = atomic_load(&r->publishes);
    out->publish_errors = atomic_load(&r->publish_errors);
    out->redis_connected = atomic_load(&r->connected);
    out->epoch = atomic_load(&r->epoch);
}

void ibex_revocation_stop(struct ibex_revocation *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->wakefd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(r->wakefd, &one, sizeof(one));
        (void)n; /* an eventfd write of 1 cannot fail short of overflow */
    }
    if (r->poller_started)
        pthread_join(r->poller, NULL);
    if (r->subscriber_started)
        pthread_join(r->subscriber, NULL);
    if (r->store != NULL)
        ibex_store_close(r->store);
    rconn_close(&r->pub);
    if (r->wakefd >= 0)
        close(r->wakefd);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->pub_mu);
    pthread_mutex_destroy(&r->deliver_mu);
    memset(r->redis.password, 0, sizeof(r->redis.password));
    free(r->store_url);
    free(r->channel);
    free(r);
}
