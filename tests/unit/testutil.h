/* Helpers shared by the unit tests: header-only, static inline, no state of their own.
 * - tu_parse_json: strict json-c parse (whole input, UTF-8 validated), or NULL.
 * - tu_write_temp: a temporary file with given contents (caller unlinks it).
 * - tu_run_until: runs a libuv loop until a flag is set or a deadline passes.
 * - tu_loop_finish: closes every handle still open on a loop, runs it dry and closes it.
 * - tu_closed_port: a loopback TCP port nothing listens on.
 * - tu_unsetenv_prefix: removes every environment variable whose name starts with a prefix.
 * - tu_capture_start / tu_capture_end: the process-wide log goes to a temp file meanwhile. */
#ifndef IBEX_TESTS_UNIT_TESTUTIL_H
#define IBEX_TESTS_UNIT_TESTUTIL_H

#include <json-c/json.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "../../src/core/log.h"

static inline json_object *tu_parse_json(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* The string at a dotted path of object keys ("error.code"), or NULL. */
static inline const char *tu_json_str(json_object *o, const char *path)
{
    char key[128];
    while (o && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        if (!json_object_object_get_ex(o, key, &o))
            return NULL;
        path += n + (dot ? 1 : 0);
    }
    return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

/* Writes contents to a new file under /tmp; path receives its name. Returns 0 or -1. */
static inline int tu_write_temp(const char *contents, char path[64])
{
    snprintf(path, 64, "/tmp/ibex-unit-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(contents), off = 0;
    while (off < len) {
        ssize_t n = write(fd, contents + off, len - off);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    close(fd);
    return 0;
}

static inline void tu_watchdog_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until *done becomes true or timeout_ms passes. Returns whether *done was set. */
static inline bool tu_run_until(uv_loop_t *loop, const volatile bool *done, uint64_t timeout_ms)
{
    bool expired = false;
    uv_timer_t watchdog;
    uv_timer_init(loop, &watchdog);
    watchdog.data = &expired;
    uv_timer_start(&watchdog, tu_watchdog_cb, timeout_ms, 0);
    while (!*done && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *done;
}

/* Runs the loop for ms milliseconds (to prove that nothing happens meanwhile). */
static inline void tu_run_for(uv_loop_t *loop, uint64_t ms)
{
    bool never = false;
    tu_run_until(loop, &never, ms);
}

static inline void tu_count_walk_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        (*(int *)arg)++;
}

static inline void tu_close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Returns how many handles were still open (0 when the code under test closed everything),
 * then closes them anyway so the loop itself can be closed. */
static inline int tu_loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    int open = 0;
    uv_walk(loop, tu_count_walk_cb, &open);
    uv_walk(loop, tu_close_walk_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return open;
}

/* A loopback port that refuses connections: bound, then released. */
static inline int tu_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

extern char **environ;

static inline void tu_unsetenv_prefix(const char *prefix)
{
    size_t plen = strlen(prefix);
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
            if (strncmp(*e, prefix, plen) == 0 && n < sizeof(name)) {
                memcpy(name, *e, n);
                name[n] = '\0';
                break;
            }
        }
        if (name[0] == '\0')
            return;
        unsetenv(name);
    }
}

struct tu_capture {
    char path[64];
    int fd;
};

/* Points the log at a temp file. Returns 0 or -1. */
static inline int tu_capture_start(struct tu_capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/ibex-test-log-XXXXXX");
    c->fd = mkstemp(c->path);
    if (c->fd < 0)
        return -1;
    ibex_log_set_fd(c->fd);
    return 0;
}

/* Restores stderr and returns everything logged meanwhile (free it), or NULL. */
static inline char *tu_capture_end(struct tu_capture *c)
{
    ibex_log_set_fd(2);
    off_t len = lseek(c->fd, 0, SEEK_END);
    char *s = len >= 0 ? calloc(1, (size_t)len + 1) : NULL;
    if (s != NULL && pread(c->fd, s, (size_t)len, 0) != len) {
        free(s);
        s = NULL;
    }
    close(c->fd);
    unlink(c->path);
    return s;
}

#endif
