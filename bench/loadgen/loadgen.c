/*
 * loadgen.c - HTTP/1.1 load generator of ibex's benchmark (libuv + llhttp, one thread).
 *
 * Modes (exactly one):
 *   --rate R --duration S        open loop: request i is due at t0 + i/R whatever happened to
 *                                earlier ones; latency is measured from that due time, so a slow
 *                                target cannot hide queueing (no coordinated omission). The due
 *                                times are kept by a timerfd with nanosecond resolution.
 *   --concurrency C              closed loop: C keep-alive connections, each sends its next
 *      (--requests N | --duration S)  request when the previous one finished.
 *   --hold N                     opens N streams (one connection each), waits until every one
 *                                has delivered its first body byte, reports readiness (stderr
 *                                line and --ready-file), keeps them open until SIGTERM/SIGINT or
 *                                --hold-secs, then closes them.
 * Per request: time to response headers, to the first body byte (TTFT for SSE), to the end;
 * an SSE response (text/event-stream) only counts as ok when it carried "[DONE]".
 * Prints one JSON object on stdout; times in milliseconds.
 * Invariants: one loop thread; a record is finished exactly once (finish_req); a connection is
 * freed only in its close callback.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

enum mode { MODE_NONE = 0, MODE_RATE, MODE_CLOSED, MODE_HOLD };

enum err {
    ERR_NONE = 0,
    ERR_CONNECT,
    ERR_WRITE,
    ERR_CLOSED,
    ERR_PARSE,
    ERR_STATUS,
    ERR_TIMEOUT,
    ERR_SSE_INCOMPLETE,
    ERR_COUNT
};
static const char *const err_names[ERR_COUNT] = {"none",  "connect", "write",   "closed",
                                                 "parse", "status",  "timeout", "sse_incomplete"};

struct rec {
    uint64_t due, sent, hdr, first, done; /* CLOCK_MONOTONIC ns; 0 = not reached */
    int status;
    unsigned char err, finished, sse, sse_done;
};

enum conn_state { CONN_CONNECTING = 1, CONN_IDLE, CONN_BUSY, CONN_CLOSING };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t parser;
    enum conn_state state;
    int64_t req;    /* record index being served, -1 none */
    int reused;     /* served a request before: an EOF right away may be a keep-alive race */
    int msg_done;   /* on_message_complete fired during the current execute */
    int keep_alive; /* llhttp_should_keep_alive at message end */
    char hname[32];
    size_t hname_len;
    char hval[64];
    size_t hval_len;
    char tail[8];
    size_t tail_len;
    struct conn *prev, *next; /* all connections */
    struct conn *idle_next;   /* FIFO of idle connections */
};

/* ------------------------------------------------------------------ options */
static const char *o_url, *o_body_file, *o_label = "", *o_ready_file, *o_method;
static const char *o_headers[64];
static int o_nheaders;
static double o_rate, o_duration, o_timeout = 30, o_hold_secs;
static long o_conc, o_requests, o_hold, o_conns = 4, o_max_conns = 1024, o_connect_batch = 64;
static enum mode o_mode = MODE_NONE;

/* -------------------------------------------------------------------- state */
static uv_loop_t *g_loop;
static struct sockaddr_in g_addr;
static char *g_req_bytes; /* the whole request, serialised once */
static size_t g_req_len;
static struct rec *g_recs;
static size_t g_nrecs, g_cap_recs; /* records issued so far, capacity */
static size_t g_planned;           /* MODE_RATE/HOLD: fixed number; MODE_CLOSED: N or SIZE_MAX */
static size_t g_finished;
static uint64_t g_t0, g_t_end_issue, g_t_last_done, g_t_ready;
static int g_stopping;       /* no new requests */
static int g_shutting_down;  /* closing every handle */
static struct conn *g_conns; /* all connections (doubly linked) */
static struct conn *g_idle_head, *g_idle_tail;
static size_t g_nconns, g_conns_opened, g_max_open;
static int64_t *g_pending; /* MODE_RATE: FIFO of records waiting for a connection */
static size_t g_pend_head, g_pend_tail;
static int g_timer_fd = -1;
static uv_poll_t g_timer_poll;
static uv_timer_t g_watchdog, g_hold_timer;
static uv_signal_t g_sigint, g_sigterm;
static size_t g_hold_open;    /* MODE_HOLD: streams that delivered a first byte */
static size_t g_hold_opening; /* MODE_HOLD: connections not yet at first byte */
static int g_hold_ready;
static size_t g_max_pending;
static char g_read_buf[65536]; /* one loop thread: each read is consumed before the next alloc */
static llhttp_settings_t g_settings;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory");
    return q;
}

/* ------------------------------------------------------------------ records */
static int64_t new_rec(uint64_t due)
{
    if (g_nrecs == g_cap_recs) {
        g_cap_recs = g_cap_recs ? g_cap_recs * 2 : 4096;
        g_recs = xrealloc(g_recs, g_cap_recs * sizeof(*g_recs));
    }
    struct rec *r = &g_recs[g_nrecs];
    memset(r, 0, sizeof(*r));
    r->due = due;
    return (int64_t)g_nrecs++;
}

static void conn_close(struct conn *c);
static void conn_send(struct conn *c, int64_t ri);
static void conn_open(int64_t ri);
static void maybe_done(void);
static void hold_fill(void);
static void on_hold_timer(uv_timer_t *t);

/* The request's record is final; the connection is closed unless it can serve another one. */
static void finish_req(struct conn *c, enum err e)
{
    struct rec *r = &g_recs[c->req];
    uint64_t now = now_ns();
    if (!r->finished) {
        r->finished = 1;
        r->done = now;
        if (e == ERR_NONE && r->sse && !r->sse_done)
            e = ERR_SSE_INCOMPLETE;
        if (e == ERR_NONE && (r->status < 200 || r->status > 299))
            e = ERR_STATUS;
        r->err = (unsigned char)e;
        g_finished++;
        g_t_last_done = now;
        if (o_mode == MODE_HOLD) {
            if (r->first)
                g_hold_open--;
            else
                g_hold_opening--;
        }
    }
    c->req = -1;
    c->reused = 1;
    if (e != ERR_NONE || !c->keep_alive || g_shutting_down || o_mode == MODE_HOLD) {
        conn_close(c);
    } else {
        c->state = CONN_IDLE;
        c->idle_next = NULL;
        if (g_idle_tail)
            g_idle_tail->idle_next = c;
        else
            g_idle_head = c;
        g_idle_tail = c;
    }
    if (o_mode == MODE_HOLD)
        hold_fill();
}

static struct conn *pop_idle(void)
{
    struct conn *c = g_idle_head;
    if (c) {
        g_idle_head = c->idle_next;
        if (!g_idle_head)
            g_idle_tail = NULL;
        c->idle_next = NULL;
    }
    return c;
}

static size_t count_idle(void)
{
    size_t n = 0;
    for (struct conn *c = g_idle_head; c; c = c->idle_next)
        n++;
    return n;
}

static void unlink_idle(struct conn *c)
{
    struct conn **pp = &g_idle_head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->idle_next;
    }
    if (*pp) {
        *pp = c->idle_next;
        if (g_idle_tail == c)
            g_idle_tail = prev;
    }
    c->idle_next = NULL;
}

/* Give free connections work: pending records (rate mode) or the next request (closed). */
static void feed(void)
{
    struct conn *c;
    if (o_mode == MODE_RATE) {
        while (g_pend_head != g_pend_tail && (c = pop_idle()))
            conn_send(c, g_pending[g_pend_head++]);
        while (g_pend_head != g_pend_tail && g_nconns < (size_t)o_max_conns)
            conn_open(g_pending[g_pend_head++]);
    } else if (o_mode == MODE_CLOSED) {
        while (!g_stopping && g_nrecs < g_planned && (c = pop_idle())) {
            uint64_t t = now_ns();
            conn_send(c, new_rec(t));
        }
        /* keep C connections even when some were closed by the server */
        while (!g_stopping && g_nrecs < g_planned && g_nconns < (size_t)o_conc)
            conn_open(new_rec(now_ns()));
    }
    maybe_done();
}

/* ------------------------------------------------------------ llhttp glue */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t room = sizeof(c->hname) - 1 - c->hname_len;
    if (len > room)
        len = room;
    memcpy(c->hname + c->hname_len, at, len);
    c->hname_len += len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t room = sizeof(c->hval) - 1 - c->hval_len;
    if (len > room)
        len = room;
    memcpy(c->hval + c->hval_len, at, len);
    c->hval_len += len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->hname[c->hname_len] = '\0';
    c->hval[c->hval_len] = '\0';
    if (c->req >= 0 && strcasecmp(c->hname, "content-type") == 0 &&
        strncasecmp(c->hval, "text/event-stream", 17) == 0)
        g_recs[c->req].sse = 1;
    c->hname_len = c->hval_len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->req >= 0) {
        g_recs[c->req].hdr = now_ns();
        g_recs[c->req].status = llhttp_get_status_code(p);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->req < 0 || len == 0)
        return 0;
    struct rec *r = &g_recs[c->req];
    if (!r->first) {
        r->first = now_ns();
        if (o_mode == MODE_HOLD) {
            g_hold_opening--;
            g_hold_open++;
        }
    }
    if (r->sse && !r->sse_done) {
        /* "[DONE]" may straddle two reads: search the old tail + the new head, then the data */
        static const char marker[] = "[DONE]";
        const size_t mlen = sizeof(marker) - 1;
        char joint[16];
        size_t head = len < mlen - 1 ? len : mlen - 1;
        memcpy(joint, c->tail, c->tail_len);
        memcpy(joint + c->tail_len, at, head);
        if (memmem(joint, c->tail_len + head, marker, mlen) || memmem(at, len, marker, mlen))
            r->sse_done = 1;
        if (len >= mlen - 1) {
            memcpy(c->tail, at + len - (mlen - 1), mlen - 1);
            c->tail_len = mlen - 1;
        } else {
            size_t keep = c->tail_len + len > mlen - 1 ? mlen - 1 - len : c->tail_len;
            memmove(c->tail, c->tail + c->tail_len - keep, keep);
            memcpy(c->tail + keep, at, len);
            c->tail_len = keep + len;
        }
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->msg_done = 1;
    c->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

/* -------------------------------------------------------------- connections */
static void on_close(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state == CONN_IDLE)
        unlink_idle(c);
    c->state = CONN_CLOSING;
    if (c->prev)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g_nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = g_read_buf;
    buf->len = sizeof(g_read_buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->state == CONN_CLOSING)
        return;
    if (n < 0) {
        if (c->req < 0) { /* idle connection closed by the server: not an error */
            conn_close(c);
            feed();
            return;
        }
        if (n == UV_EOF) {
            llhttp_errno_t frc = llhttp_finish(&c->parser);
            if (frc != HPE_OK && frc != HPE_PAUSED)
                c->msg_done = 0;
        }
        if (n == UV_EOF && c->msg_done) {
            c->msg_done = 0;
            c->keep_alive = 0;
            finish_req(c, ERR_NONE);
        } else {
            finish_req(c, ERR_CLOSED);
        }
        feed();
        return;
    }
    const char *p = buf->base;
    size_t left = (size_t)n;
    while (left > 0 && c->state == CONN_BUSY) {
        llhttp_errno_t rc = llhttp_execute(&c->parser, p, left);
        if (rc == HPE_PAUSED) {
            size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
            llhttp_resume(&c->parser);
            c->msg_done = 0;
            finish_req(c, ERR_NONE);
            p += used;
            left -= used;
            if (left > 0 && c->state != CONN_CLOSING) { /* bytes nobody asked for */
                if (c->req >= 0)
                    finish_req(c, ERR_PARSE);
                else
                    conn_close(c);
            }
            break;
        }
        if (rc != HPE_OK) {
            finish_req(c, ERR_PARSE);
            break;
        }
        left = 0;
    }
    if (left > 0 && c->state == CONN_IDLE) /* data on an idle connection */
        conn_close(c);
    feed();
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    if (status < 0 && c->state == CONN_BUSY && c->req >= 0) {
        finish_req(c, ERR_WRITE);
        feed();
    }
}

static void conn_send(struct conn *c, int64_t ri)
{
    struct rec *r = &g_recs[ri];
    c->state = CONN_BUSY;
    c->req = ri;
    c->msg_done = 0;
    c->keep_alive = 1;
    c->tail_len = 0;
    c->hname_len = c->hval_len = 0;
    r->sent = now_ns();
    uv_buf_t b = uv_buf_init(g_req_bytes, (unsigned int)g_req_len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0)
        finish_req(c, ERR_WRITE);
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct conn *c = cr->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        if (c->req >= 0) {
            finish_req(c, ERR_CONNECT);
        } else {
            conn_close(c);
        }
        feed();
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->req >= 0) {
        int64_t ri = c->req;
        conn_send(c, ri);
    } else {
        c->state = CONN_IDLE;
        c->idle_next = NULL;
        if (g_idle_tail)
            g_idle_tail->idle_next = c;
        else
            g_idle_head = c;
        g_idle_tail = c;
        feed();
    }
}

/* Opens a connection; ri >= 0 is sent as soon as it is connected (its time counts). */
static void conn_open(int64_t ri)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        die("out of memory");
    c->req = ri;
    c->state = CONN_CONNECTING;
    c->tcp.data = c;
    c->creq.data = c;
    if (uv_tcp_init(g_loop, &c->tcp) < 0)
        die("uv_tcp_init failed");
    llhttp_init(&c->parser, HTTP_RESPONSE, &g_settings);
    c->parser.data = c;
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    g_nconns++;
    g_conns_opened++;
    if (g_nconns > g_max_open)
        g_max_open = g_nconns;
    uv_tcp_nodelay(&c->tcp, 1);
    if (ri >= 0)
        g_recs[ri].sent = now_ns();
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g_addr, on_connect);
    if (rc < 0) {
        if (ri >= 0) {
            c->state = CONN_BUSY;
            finish_req(c, ERR_CONNECT);
        } else {
            conn_close(c);
        }
    }
}

/* ---------------------------------------------------------------- open loop */
static uint64_t due_of(size_t i)
{
    return g_t0 + (uint64_t)((double)i * 1e9 / o_rate);
}

static void arm_timer(uint64_t at)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    if (at == 0)
        at = 1;
    its.it_value.tv_sec = (time_t)(at / 1000000000u);
    its.it_value.tv_nsec = (long)(at % 1000000000u);
    if (timerfd_settime(g_timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        die("timerfd_settime failed");
}

static void dispatch(int64_t ri)
{
    struct conn *c = pop_idle();
    if (c) {
        conn_send(c, ri);
    } else if (g_nconns < (size_t)o_max_conns) {
        conn_open(ri);
    } else {
        g_pending[g_pend_tail++] = ri;
        if (g_pend_tail - g_pend_head > g_max_pending)
            g_max_pending = g_pend_tail - g_pend_head;
    }
}

static void on_tick(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    uint64_t expirations;
    ssize_t rd = read(g_timer_fd, &expirations, sizeof(expirations));
    (void)rd;
    if (g_stopping)
        return;
    uint64_t now = now_ns();
    while (g_nrecs < g_planned && due_of(g_nrecs) <= now) {
        int64_t ri = new_rec(due_of(g_nrecs));
        dispatch(ri);
    }
    if (g_nrecs >= g_planned) {
        g_stopping = 1;
        g_t_end_issue = now;
        uv_poll_stop(&g_timer_poll);
        maybe_done();
        return;
    }
    arm_timer(due_of(g_nrecs));
}

/* -------------------------------------------------------------------- hold */
static void write_ready_file(void)
{
    if (!o_ready_file)
        return;
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", o_ready_file);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        die("--ready-file path too long");
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("cannot write --ready-file");
    fprintf(f, "%zu\n", g_hold_open);
    fclose(f);
    if (rename(tmp, o_ready_file) < 0)
        die("cannot rename --ready-file");
}

static void hold_fill(void)
{
    if (g_stopping)
        return;
    while (g_nrecs < g_planned && g_hold_opening < (size_t)o_connect_batch) {
        g_hold_opening++;
        conn_open(new_rec(now_ns()));
    }
    if (!g_hold_ready && g_nrecs >= g_planned && g_hold_opening == 0) {
        g_hold_ready = 1;
        g_t_ready = now_ns();
        fprintf(stderr, "loadgen: holding %zu of %zu streams open (%.1f ms to open)\n", g_hold_open,
                g_planned, (double)(g_t_ready - g_t0) / 1e6);
        write_ready_file();
        if (o_hold_secs > 0)
            uv_timer_start(&g_hold_timer, on_hold_timer, (uint64_t)(o_hold_secs * 1000), 0);
    }
}

/* ---------------------------------------------------------------- shutdown */
static void close_all(void)
{
    if (g_shutting_down)
        return;
    g_shutting_down = 1;
    g_stopping = 1;
    g_t_end_issue = g_t_end_issue ? g_t_end_issue : now_ns();
    while (g_conns) {
        struct conn *c = g_conns;
        if (c->req >= 0 && !g_recs[c->req].finished) {
            struct rec *r = &g_recs[c->req];
            if (o_mode == MODE_HOLD && r->first) {
                /* held stream closed by us: not an error, and not "finished" either */
                conn_close(c);
                continue;
            }
            finish_req(c, ERR_TIMEOUT);
        } else {
            conn_close(c);
        }
    }
    if (g_timer_fd >= 0 && !uv_is_closing((uv_handle_t *)&g_timer_poll))
        uv_close((uv_handle_t *)&g_timer_poll, NULL);
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_close((uv_handle_t *)&g_hold_timer, NULL);
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
}

static void maybe_done(void)
{
    if (g_shutting_down || o_mode == MODE_HOLD)
        return;
    if (o_mode == MODE_CLOSED && !g_stopping && g_nrecs >= g_planned) {
        g_stopping = 1;
        g_t_end_issue = now_ns();
    }
    if (g_stopping && g_finished == g_nrecs)
        close_all();
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    if (o_mode == MODE_HOLD || g_stopping) {
        close_all();
        return;
    }
    /* first signal: stop issuing, let what is in flight finish */
    g_stopping = 1;
    if (!g_t_end_issue)
        g_t_end_issue = now_ns();
    maybe_done();
}

static void on_hold_timer(uv_timer_t *t)
{
    (void)t;
    close_all();
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    uint64_t now = now_ns();
    uint64_t limit = (uint64_t)(o_timeout * 1e9);
    if (o_mode == MODE_CLOSED && !g_stopping && o_duration > 0 &&
        now - g_t0 >= (uint64_t)(o_duration * 1e9)) {
        g_stopping = 1;
        g_t_end_issue = now;
    }
    struct conn *c = g_conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->req < 0)
            continue;
        struct rec *r = &g_recs[c->req];
        if (o_mode == MODE_HOLD && r->first)
            continue; /* held streams have no deadline */
        uint64_t start = r->due ? r->due : r->sent;
        if (now > start && now - start > limit)
            finish_req(c, ERR_TIMEOUT);
    }
    if (o_mode == MODE_HOLD && !g_hold_ready)
        hold_fill();
    /* requests still queued for a connection past the deadline */
    while (o_mode == MODE_RATE && g_pend_head != g_pend_tail) {
        struct rec *r = &g_recs[g_pending[g_pend_head]];
        if (now - r->due <= limit)
            break;
        r->finished = 1;
        r->done = now;
        r->err = ERR_TIMEOUT;
        g_finished++;
        g_pend_head++;
    }
    feed();
}

/* ------------------------------------------------------------------ report */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)ceil(q / 100.0 * (double)n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1] / 1e6;
}

/* Prints "name":{min,mean,p50,p90,p99,p999,max} of (end - start) over the ok records. */
static void print_dist(const char *name, size_t off_end, size_t off_start, uint64_t *buf)
{
    size_t n = 0;
    double sum = 0;
    for (size_t i = 0; i < g_nrecs; i++) {
        const struct rec *r = &g_recs[i];
        int held = o_mode == MODE_HOLD && !r->finished && r->first;
        if (!held && (!r->finished || r->err != ERR_NONE))
            continue;
        uint64_t e = *(const uint64_t *)((const char *)r + off_end);
        uint64_t s = *(const uint64_t *)((const char *)r + off_start);
        if (!e || !s)
            continue;
        buf[n] = e > s ? e - s : 0;
        sum += (double)buf[n];
        n++;
    }
    qsort(buf, n, sizeof(*buf), cmp_u64);
    printf("\"%s\":{\"n\":%zu,\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f}",
           name, n, n ? (double)buf[0] / 1e6 : 0.0, n ? sum / (double)n / 1e6 : 0.0,
           pct(buf, n, 50), pct(buf, n, 90), pct(buf, n, 99), pct(buf, n, 99.9),
           n ? (double)buf[n - 1] / 1e6 : 0.0);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void report(void)
{
    size_t errs[ERR_COUNT] = {0}, ok = 0, sse = 0, sse_done = 0, total_err = 0, held = 0;
    int first_bad_status = 0;
    for (size_t i = 0; i < g_nrecs; i++) {
        const struct rec *r = &g_recs[i];
        if (r->sse)
            sse++;
        if (r->sse_done)
            sse_done++;
        if (!r->finished) {
            if (o_mode == MODE_HOLD && r->first) {
                held++;
            } else { /* never answered before we stopped (interrupted, or queued) */
                errs[ERR_TIMEOUT]++;
                total_err++;
            }
            continue;
        }
        if (r->err == ERR_NONE) {
            ok++;
        } else {
            errs[r->err]++;
            total_err++;
            if (r->err == ERR_STATUS && !first_bad_status)
                first_bad_status = r->status;
        }
    }
    uint64_t end = g_t_end_issue ? g_t_end_issue : now_ns();
    double issue_s = (double)(end - g_t0) / 1e9;
    double wall_s = (double)((g_t_last_done > end ? g_t_last_done : end) - g_t0) / 1e9;
    const char *mode = o_mode == MODE_RATE ? "rate" : o_mode == MODE_CLOSED ? "closed" : "hold";
    uint64_t *buf = xrealloc(NULL, (g_nrecs ? g_nrecs : 1) * sizeof(uint64_t));

    printf("{\"tool\":\"ibex-loadgen\",\"label\":");
    print_json_string(o_label);
    printf(",\"mode\":\"%s\",\"url\":", mode);
    print_json_string(o_url);
    printf(",\"target_rate\":%.3f,\"concurrency\":%ld,\"hold\":%ld,\"requests\":%zu,\"ok\":%zu,"
           "\"errors\":%zu,\"error_kinds\":{",
           o_mode == MODE_RATE ? o_rate : 0.0, o_mode == MODE_CLOSED ? o_conc : 0L,
           o_mode == MODE_HOLD ? o_hold : 0L, g_nrecs, ok, total_err);
    for (int k = 1; k < ERR_COUNT; k++)
        printf("%s\"%s\":%zu", k > 1 ? "," : "", err_names[k], errs[k]);
    printf("},\"first_bad_status\":%d,\"issue_s\":%.3f,\"wall_s\":%.3f,\"sent_rps\":%.1f,"
           "\"ok_rps\":%.1f,\"sse_responses\":%zu,\"sse_done\":%zu,\"connections_opened\":%zu,"
           "\"max_open_connections\":%zu,\"max_queued\":%zu,",
           first_bad_status, issue_s, wall_s, issue_s > 0 ? (double)g_nrecs / issue_s : 0.0,
           wall_s > 0 ? (double)ok / wall_s : 0.0, sse, sse_done, g_conns_opened, g_max_open,
           g_max_pending);
    if (o_mode == MODE_HOLD)
        printf("\"hold_ready\":%s,\"hold_ready_ms\":%.1f,\"held_open_at_stop\":%zu,",
               g_hold_ready ? "true" : "false", g_t_ready ? (double)(g_t_ready - g_t0) / 1e6 : 0.0,
               held);
    /* latency from the due time (open loop) or the send time (closed loop, due == sent) */
    print_dist("latency_ms", offsetof(struct rec, done), offsetof(struct rec, due), buf);
    putchar(',');
    print_dist("ttfb_ms", offsetof(struct rec, first), offsetof(struct rec, due), buf);
    putchar(',');
    print_dist("headers_ms", offsetof(struct rec, hdr), offsetof(struct rec, due), buf);
    putchar(',');
    print_dist("service_ms", offsetof(struct rec, done), offsetof(struct rec, sent), buf);
    putchar(',');
    print_dist("send_lag_ms", offsetof(struct rec, sent), offsetof(struct rec, due), buf);
    printf("}\n");
    free(buf);
}

/* -------------------------------------------------------------------- setup */
static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --url http://HOST:PORT/PATH [--body FILE] [-H 'Name: value']...\n"
            "         (--rate R --duration S | --concurrency C (--requests N | --duration S)\n"
            "          | --hold N [--hold-secs S] [--ready-file PATH])\n"
            "         [--method M] [--timeout S] [--conns N] [--max-conns N]\n"
            "         [--connect-batch N] [--label TEXT]\n");
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static double parse_double(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "loadgen: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "loadgen: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            buf = xrealloc(buf, cap);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

/* Append to the request being built. */
static void add(char **b, size_t *n, size_t *cap, const char *p, size_t len)
{
    if (*n + len > *cap) {
        while (*n + len > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        *b = xrealloc(*b, *cap);
    }
    memcpy(*b + *n, p, len);
    *n += len;
}

static void build_request(void)
{
    /* http://HOST[:PORT][/PATH] with a numeric IPv4 host or "localhost" */
    const char *u = o_url;
    if (strncmp(u, "http://", 7) != 0)
        die("--url must start with http://");
    u += 7;
    const char *slash = strchr(u, '/');
    const char *path = slash ? slash : "/";
    size_t hostport_len = slash ? (size_t)(slash - u) : strlen(u);
    char hostport[256], host[256];
    if (hostport_len == 0 || hostport_len >= sizeof(hostport))
        die("bad host in --url");
    memcpy(hostport, u, hostport_len);
    hostport[hostport_len] = '\0';
    long port = 80;
    char *colon = strrchr(hostport, ':');
    size_t host_len = colon ? (size_t)(colon - hostport) : hostport_len;
    if (colon)
        port = parse_long(colon + 1, 1, 65535, "port in --url");
    memcpy(host, hostport, host_len);
    host[host_len] = '\0';
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (uv_ip4_addr(ip, (int)port, &g_addr) != 0)
        die("--url host must be a numeric IPv4 address or localhost");

    size_t body_len = 0;
    char *body = o_body_file ? read_file(o_body_file, &body_len) : NULL;
    const char *method = o_method ? o_method : body ? "POST" : "GET";
    char *b = NULL, line[512];
    size_t n = 0, cap = 0;
    int has_ct = 0, has_accept = 0;
    for (int i = 0; i < o_nheaders; i++) {
        has_ct |= strncasecmp(o_headers[i], "content-type:", 13) == 0;
        has_accept |= strncasecmp(o_headers[i], "accept:", 7) == 0;
    }
    int len = snprintf(line, sizeof(line), "%s ", method);
    if (len < 0 || (size_t)len >= sizeof(line))
        die("bad --method");
    add(&b, &n, &cap, line, (size_t)len);
    add(&b, &n, &cap, path, strlen(path));
    len = snprintf(line, sizeof(line), " HTTP/1.1\r\nHost: %s\r\n", hostport);
    if (len < 0 || (size_t)len >= sizeof(line))
        die("host too long");
    add(&b, &n, &cap, line, (size_t)len);
    if (body) {
        len = snprintf(line, sizeof(line), "Content-Length: %zu\r\n%s", body_len,
                       has_ct ? "" : "Content-Type: application/json\r\n");
        if (len < 0 || (size_t)len >= sizeof(line))
            die("internal: header line");
        add(&b, &n, &cap, line, (size_t)len);
    }
    if (!has_accept)
        add(&b, &n, &cap, "Accept: */*\r\n", 13);
    for (int i = 0; i < o_nheaders; i++) {
        if (!strchr(o_headers[i], ':') || strpbrk(o_headers[i], "\r\n"))
            die("a -H header must look like 'Name: value'");
        add(&b, &n, &cap, o_headers[i], strlen(o_headers[i]));
        add(&b, &n, &cap, "\r\n", 2);
    }
    add(&b, &n, &cap, "\r\n", 2);
    if (body)
        add(&b, &n, &cap, body, body_len);
    free(body);
    g_req_bytes = b;
    g_req_len = n;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                                    \
    do {                                                                                           \
        if (!v)                                                                                    \
            usage();                                                                               \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--url")) {
            NEEDV();
            o_url = v;
        } else if (!strcmp(a, "--body")) {
            NEEDV();
            o_body_file = v;
        } else if (!strcmp(a, "-H") || !strcmp(a, "--header")) {
            NEEDV();
            if (o_nheaders == (int)(sizeof(o_headers) / sizeof(o_headers[0])))
                die("too many -H");
            o_headers[o_nheaders++] = v;
        } else if (!strcmp(a, "--method")) {
            NEEDV();
            o_method = v;
        } else if (!strcmp(a, "--rate")) {
            NEEDV();
            o_rate = parse_double(v, 0.001, 1e7, "--rate");
        } else if (!strcmp(a, "--duration")) {
            NEEDV();
            o_duration = parse_double(v, 0.001, 86400, "--duration");
        } else if (!strcmp(a, "--concurrency")) {
            NEEDV();
            o_conc = parse_long(v, 1, 100000, "--concurrency");
        } else if (!strcmp(a, "--requests")) {
            NEEDV();
            o_requests = parse_long(v, 1, 100000000, "--requests");
        } else if (!strcmp(a, "--hold")) {
            NEEDV();
            o_hold = parse_long(v, 1, 1000000, "--hold");
        } else if (!strcmp(a, "--hold-secs")) {
            NEEDV();
            o_hold_secs = parse_double(v, 0, 86400, "--hold-secs");
        } else if (!strcmp(a, "--ready-file")) {
            NEEDV();
            o_ready_file = v;
        } else if (!strcmp(a, "--timeout")) {
            NEEDV();
            o_timeout = parse_double(v, 0.001, 86400, "--timeout");
        } else if (!strcmp(a, "--conns")) {
            NEEDV();
            o_conns = parse_long(v, 0, 100000, "--conns");
        } else if (!strcmp(a, "--max-conns")) {
            NEEDV();
            o_max_conns = parse_long(v, 1, 1000000, "--max-conns");
        } else if (!strcmp(a, "--connect-batch")) {
            NEEDV();
            o_connect_batch = parse_long(v, 1, 100000, "--connect-batch");
        } else if (!strcmp(a, "--label")) {
            NEEDV();
            o_label = v;
        } else {
            usage();
        }
#undef NEEDV
    }
    int modes = (o_rate > 0) + (o_conc > 0) + (o_hold > 0);
    if (!o_url || modes != 1)
        usage();
    if (o_rate > 0) {
        if (o_duration <= 0)
            die("--rate needs --duration");
        o_mode = MODE_RATE;
        double planned = ceil(o_rate * o_duration);
        if (planned > 1e8)
            die("--rate x --duration is too large");
        g_planned = (size_t)planned;
        if (o_conns > o_max_conns)
            o_conns = o_max_conns;
    } else if (o_conc > 0) {
        if ((o_requests > 0) == (o_duration > 0))
            die("--concurrency needs exactly one of --requests / --duration");
        o_mode = MODE_CLOSED;
        g_planned = o_requests > 0 ? (size_t)o_requests : SIZE_MAX;
    } else {
        o_mode = MODE_HOLD;
        g_planned = (size_t)o_hold;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    build_request();
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;

    g_loop = uv_default_loop();
    uv_timer_init(g_loop, &g_watchdog);
    uv_timer_init(g_loop, &g_hold_timer);
    uv_signal_init(g_loop, &g_sigint);
    uv_signal_init(g_loop, &g_sigterm);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_timer_start(&g_watchdog, on_watchdog, 50, 50);

    if (o_mode == MODE_RATE) {
        g_cap_recs = g_planned;
        g_recs = xrealloc(NULL, g_cap_recs * sizeof(*g_recs));
        g_pending = xrealloc(NULL, g_planned * sizeof(*g_pending));
        for (long i = 0; i < o_conns; i++)
            conn_open(-1);
        /* let the warm connections connect before the clock starts */
        uint64_t deadline = now_ns() + 2000000000u;
        while (count_idle() < g_nconns && now_ns() < deadline)
            uv_run(g_loop, UV_RUN_ONCE);
        g_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (g_timer_fd < 0)
            die("timerfd_create failed");
        uv_poll_init(g_loop, &g_timer_poll, g_timer_fd);
        uv_poll_start(&g_timer_poll, UV_READABLE, on_tick);
        g_t0 = now_ns() + 1000000u; /* first request 1 ms from now */
        arm_timer(g_t0);
    } else if (o_mode == MODE_CLOSED) {
        g_t0 = now_ns();
        for (long i = 0; i < o_conc && g_nrecs < g_planned; i++)
            conn_open(new_rec(now_ns()));
    } else {
        g_cap_recs = g_planned;
        g_recs = xrealloc(NULL, g_cap_recs * sizeof(*g_recs));
        g_t0 = now_ns();
        hold_fill();
    }
    uv_run(g_loop, UV_RUN_DEFAULT);
    if (g_timer_fd >= 0)
        close(g_timer_fd);
    report();
    uv_loop_close(g_loop);
    free(g_recs);
    free(g_pending);
    free(g_req_bytes);
    return 0;
}
