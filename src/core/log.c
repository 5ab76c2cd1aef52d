/* JSON-lines logger. Level and fd are process-wide and set once at start-up, before any worker
 * thread runs; the writes themselves need no lock because each line is one write(2). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static enum ibex_log_level min_level = IBEX_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ibex_log_set_level(enum ibex_log_level level)
{
    min_level = level;
}

void ibex_log_set_fd(int fd)
{
    log_fd = fd;
}

bool ibex_log_enabled(enum ibex_log_level level)
{
    return level >= min_level;
}

int ibex_log_parse_level(const char *name, enum ibex_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum ibex_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *ibex_log_level_name(enum ibex_log_level level)
{
    return level_names[level];
}

void ibex_log_begin(struct ibex_buf *b, enum ibex_log_level level, const char *msg)
{
    /* The timestamp up to the second is formatted once per second per thread: the access log
     * writes a line per request. */
    static _Thread_local uint64_t cached_sec = UINT64_MAX;
    static _Thread_local char cached[25];
    uint64_t now = ibex_clock_wall_ms();
    if (now / 1000 != cached_sec) {
        cached_sec = now / 1000;
        ibex_clock_rfc3339(now, cached);
    }
    unsigned ms = (unsigned)(now % 1000);
    cached[20] = (char)('0' + ms / 100);
    cached[21] = (char)('0' + ms / 10 % 10);
    cached[22] = (char)('0' + ms % 10);
    ibex_buf_append_cstr(b, "{\"ts\":\"");
    ibex_buf_append(b, cached, 24);
    ibex_buf_append_cstr(b, "\",\"level\":\"");
    ibex_buf_append_cstr(b, level_names[level]);
    ibex_buf_append_cstr(b, "\",\"msg\":");
    ibex_buf_append_json_str(b, msg, strlen(msg));
}

void ibex_log_end(struct ibex_buf *b)
{
    ibex_buf_append(b, "}\n", 2);
}

void ibex_log_write(const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(log_fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a log that cannot be written must not take the request down */
        off += (size_t)n;
    }
}

void ibex_log_emit(struct ibex_buf *b)
{
    ibex_log_end(b);
    ibex_log_write(b->p, b->len);
}

void ibex_log(enum ibex_log_level level, const char *msg, ...)
{
    if (!ibex_log_enabled(level))
        return;
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_log_begin(&b, level, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        const char *val = va_arg(ap, const char *);
        ibex_buf_append(&b, ",", 1);
        ibex_buf_append_json_str(&b, key, strlen(key));
        ibex_buf_append(&b, ":", 1);
        if (val == NULL)
            ibex_buf_append(&b, "null", 4);
        else
            ibex_buf_append_json_str(&b, val, strlen(val));
    }
    va_end(ap);
    ibex_log_emit(&b);
    ibex_buf_dispose(&b);
}
