/* Redis client layer (redis.h): URL parsing, deadline-bounded connections, a command pool.
 * Invariants:
 * - every wait goes through wait_fd, which honours the deadline and the wake-up fd; sends use
 *   MSG_NOSIGNAL, so a vanished peer is an error return, never a signal;
 * - a message built from a reply passes through scrub() before it leaves this file;
 * - the pool's mutex is held only to push or pop a connection and to read or set the hold,
 *   never across I/O; every connection is owned by exactly one thread or by the idle stack. */
#include "redis.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/str.h"
#include "store.h"

#define STACK_ARGS 8

uint64_t ibex_redis_now_ms(void)
{
    return ibex_clock_mono_ns() / 1000000;
}

/* Overwrites every occurrence of secret in s with '*': Redis does not echo passwords, but a
 * message that reaches a log must not depend on that. */
static void scrub(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n == 0)
        return;
    for (char *p = strstr(s, secret); p != NULL; p = strstr(p + n, secret))
        memset(p, '*', n);
}

/* ---- URL ---- */

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

static int parse_url(const char *url, struct ibex_redis_url *out, char *err, size_t errlen)
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

int ibex_redis_parse_url(const char *url, struct ibex_redis_url *out, char *err, size_t errlen)
{
    int rc = parse_url(url, out, err, errlen);
    if (rc != 0) /* a refused URL leaves no password behind */
        memset(out, 0, sizeof(*out));
    return rc;
}

void ibex_redis_url_show(const struct ibex_redis_url *u, char *out, size_t outlen)
{
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(out, outlen, "%s%s%s:%d", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
}

/* ---- connections ---- */

enum { W_READY = 1, W_TIMEOUT, W_STOP };

/* Waits for events on fd until deadline_ms (monotonic; UINT64_MAX = none) or until wakefd
 * (-1 = none) is readable. */
static int wait_fd(int fd, short events, int wakefd, uint64_t deadline_ms)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms != UINT64_MAX) {
            uint64_t now = ibex_redis_now_ms();
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
        return IBEX_REDIS_STOPPED;
    snprintf(why, whylen, "%s: timed out", what);
    return IBEX_ETIMEDOUT;
}

void ibex_redis_close(struct ibex_redis_conn *c)
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
    /* An idle connection (a subscriber) learns of a silently vanished Redis within about 30 s. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Opens a TCP connection to u (non-blocking socket, deadline bounded). */
static int conn_open(const struct ibex_redis_url *u, int wakefd, uint64_t deadline,
                     struct ibex_redis_conn *c, char *why, size_t whylen)
{
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

int ibex_redis_send(struct ibex_redis_conn *c, int argc, const char **argv, const size_t *lens,
                    int wakefd, uint64_t deadline, char *why, size_t whylen)
{
    size_t stack[STACK_ARGS], *heap = NULL;
    if (lens == NULL) {
        size_t *l = argc <= STACK_ARGS ? stack : (heap = ibex_xcalloc((size_t)argc, sizeof(*l)));
        for (int i = 0; i < argc; i++)
            l[i] = strlen(argv[i]);
        lens = l;
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    free(heap);
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

int ibex_redis_reply(struct ibex_redis_conn *c, int wakefd, uint64_t deadline, redisReply **out,
                     char *why, size_t whylen)
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
        if (c->rd->len - c->rd->pos > c->reply_cap) {
            snprintf(why, whylen, "reply larger than %zu bytes", c->reply_cap);
            return IBEX_ECONN;
        }
        char buf[16384];
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

/* An error reply as a reason: the command's name and the reply's first 160 bytes. */
static void refused(const char *cmd, const redisReply *rep, const char *secret, char *why,
                    size_t whylen)
{
    snprintf(why, whylen, "%s refused: %.*s", cmd, (int)(rep->len > 160 ? 160 : rep->len),
             rep->str);
    scrub(why, secret);
}

int ibex_redis_command(struct ibex_redis_conn *c, int argc, const char **argv, const size_t *lens,
                       const char *secret, int wakefd, uint64_t deadline, redisReply **out,
                       char *why, size_t whylen)
{
    redisReply *rep = NULL;
    int rc = ibex_redis_send(c, argc, argv, lens, wakefd, deadline, why, whylen);
    if (rc == 0)
        rc = ibex_redis_reply(c, wakefd, deadline, &rep, why, whylen);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
        refused(argv[0], rep, secret, why, whylen);
        rc = IBEX_ECONN;
    }
    if (rc == 0 && out != NULL)
        *out = rep;
    else if (rep != NULL)
        freeReplyObject(rep);
    return rc;
}

int ibex_redis_connect(const struct ibex_redis_url *u, const char *name, size_t reply_cap,
                       int wakefd, uint64_t deadline, struct ibex_redis_conn *c, char *why,
                       size_t whylen)
{
    c->fd = -1;
    c->rd = NULL;
    c->reply_cap = reply_cap;
    int rc = conn_open(u, wakefd, deadline, c, why, whylen);
    if (rc == 0 && u->password[0] != '\0') {
        if (u->user[0] != '\0')
            rc = ibex_redis_command(c, 3, (const char *[]){"AUTH", u->user, u->password}, NULL,
                                    u->password, wakefd, deadline, NULL, why, whylen);
        else
            rc = ibex_redis_command(c, 2, (const char *[]){"AUTH", u->password}, NULL, u->password,
                                    wakefd, deadline, NULL, why, whylen);
    }
    if (rc == 0) {
        char cname[128];
        snprintf(cname, sizeof(cname), "%s:%d", name, (int)getpid());
        redisReply *rep = NULL;
        /* A refusal (an ACL user without CLIENT) is harmless: the reply is not checked. */
        rc = ibex_redis_send(c, 3, (const char *[]){"CLIENT", "SETNAME", cname}, NULL, wakefd,
                             deadline, why, whylen);
        if (rc == 0)
            rc = ibex_redis_reply(c, wakefd, deadline, &rep, why, whylen);
        if (rep != NULL)
            freeReplyObject(rep);
    }
    if (rc != 0)
        ibex_redis_close(c);
    return rc;
}

/* ---- pool ---- */

struct ibex_redis_pool {
    struct ibex_redis_url url;
    char *name;
    size_t max;
    uint64_t timeout_ms, hold_ms;
    size_t reply_cap;

    pthread_mutex_t mu; /* everything below */
    pthread_cond_t returned;
    struct ibex_redis_conn *idle;
    size_t nidle;
    size_t open; /* idle or in use */
    uint64_t hold_until;
};

struct ibex_redis_pool *ibex_redis_pool_new(const struct ibex_redis_pool_opts *o)
{
    struct ibex_redis_pool *p = ibex_xcalloc(1, sizeof(*p));
    p->url = *o->url;
    p->name = ibex_xstrdup(o->name);
    p->max = o->max_conns ? o->max_conns : 1;
    p->timeout_ms = o->timeout_ms;
    p->hold_ms = o->hold_ms;
    p->reply_cap = o->reply_cap;
    p->idle = ibex_xcalloc(p->max, sizeof(*p->idle));
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->returned, &ca);
    pthread_condattr_destroy(&ca);
    return p;
}

void ibex_redis_pool_free(struct ibex_redis_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nidle; i++)
        ibex_redis_close(&p->idle[i]);
    pthread_cond_destroy(&p->returned);
    pthread_mutex_destroy(&p->mu);
    memset(p->url.password, 0, sizeof(p->url.password));
    free(p->idle);
    free(p->name);
    free(p);
}

/* True when a kept connection is still usable: nothing to read (an idle Redis connection
 * never receives anything, so readable means EOF, a reset, or a stray reply). */
static bool still_open(const struct ibex_redis_conn *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

/* Takes a connection for one command: an idle one, or a new one under the limit (outside the
 * lock), or waits for one to come back until deadline. */
static int acquire(struct ibex_redis_pool *p, uint64_t deadline, struct ibex_redis_conn *c,
                   char *why, size_t whylen)
{
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->nidle > 0) {
            *c = p->idle[--p->nidle];
            if (still_open(c)) {
                pthread_mutex_unlock(&p->mu);
                return 0;
            }
            ibex_redis_close(c); /* one poll and one close: short enough under the lock */
            p->open--;
        }
        if (p->open < p->max)
            break;
        uint64_t now = ibex_redis_now_ms();
        if (now >= deadline) {
            pthread_mutex_unlock(&p->mu);
            snprintf(why, whylen, "no free redis connection (%zu in use): timed out", p->max);
            return IBEX_ETIMEDOUT;
        }
        uint64_t ns = ibex_clock_mono_ns() + (deadline - now) * 1000000;
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000),
                              .tv_nsec = (long)(ns % 1000000000)};
        pthread_cond_timedwait(&p->returned, &p->mu, &ts);
    }
    if (ibex_redis_now_ms() < p->hold_until) {
        pthread_mutex_unlock(&p->mu);
        snprintf(why, whylen, "not retried yet: redis failed less than %llu ms ago",
                 (unsigned long long)p->hold_ms);
        return IBEX_ECONN;
    }
    p->open++;
    pthread_mutex_unlock(&p->mu);

    int rc = ibex_redis_connect(&p->url, p->name, p->reply_cap, -1, deadline, c, why, whylen);
    if (rc == 0 && p->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", p->url.db);
        rc = ibex_redis_command(c, 2, (const char *[]){"SELECT", db}, NULL, p->url.password, -1,
                                deadline, NULL, why, whylen);
        if (rc != 0)
            ibex_redis_close(c);
    }
    if (rc != 0) {
        pthread_mutex_lock(&p->mu);
        p->open--;
        p->hold_until = ibex_redis_now_ms() + p->hold_ms;
        pthread_cond_signal(&p->returned);
        pthread_mutex_unlock(&p->mu);
    }
    return rc;
}

/* Returns c to the idle stack, or closes it when broken (and holds new connections back). */
static void put_back(struct ibex_redis_pool *p, struct ibex_redis_conn *c, bool broken)
{
    if (broken)
        ibex_redis_close(c);
    pthread_mutex_lock(&p->mu);
    if (broken) {
        p->open--;
        p->hold_until = ibex_redis_now_ms() + p->hold_ms;
    } else {
        p->idle[p->nidle++] = *c;
    }
    pthread_cond_signal(&p->returned);
    pthread_mutex_unlock(&p->mu);
}

int ibex_redis_pool_command(struct ibex_redis_pool *p, int argc, const char **argv,
                            const size_t *lens, redisReply **out, char *why, size_t whylen)
{
    uint64_t deadline = ibex_redis_now_ms() + p->timeout_ms;
    struct ibex_redis_conn c;
    redisReply *rep = NULL;
    *out = NULL;
    int rc = acquire(p, deadline, &c, why, whylen);
    if (rc != 0)
        return rc;
    rc = ibex_redis_send(&c, argc, argv, lens, -1, deadline, why, whylen);
    if (rc == 0)
        rc = ibex_redis_reply(&c, -1, deadline, &rep, why, whylen);
    /* After a timeout the reply may still come: the connection cannot be reused. */
    put_back(p, &c, rc != 0);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
        refused(argv[0], rep, p->url.password, why, whylen);
        freeReplyObject(rep);
        return IBEX_ECONN;
    }
    if (rc == 0)
        *out = rep;
    return rc;
}
