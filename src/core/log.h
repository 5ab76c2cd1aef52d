/* Structured logs: one JSON object a line on one fd (stderr by default), written with a single
 * write(2) so lines from different threads never interleave (STYLE 17). Never pass secrets,
 * keys or prompt text. */
#ifndef IBEX_CORE_LOG_H
#define IBEX_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum ibex_log_level {
    IBEX_LOG_DEBUG = 0,
    IBEX_LOG_INFO = 1,
    IBEX_LOG_WARN = 2,
    IBEX_LOG_ERROR = 3,
};

void ibex_log_set_level(enum ibex_log_level level);
void ibex_log_set_fd(int fd);
bool ibex_log_enabled(enum ibex_log_level level);
/* Parses "debug", "info", "warn" or "error". Returns 0 or -1. */
int ibex_log_parse_level(const char *name, enum ibex_log_level *out);
const char *ibex_log_level_name(enum ibex_log_level level);

/* Logs {"ts":..,"level":..,"msg":msg,key:value,...}: the variadic part is pairs of C strings
 * closed by NULL; every value is written as a JSON string. */
void ibex_log(enum ibex_log_level level, const char *msg, ...) __attribute__((sentinel));

/* Opens a line in b ("{\"ts\":...,\"level\":...,\"msg\":...") so a caller can add fields of
 * its own; ibex_log_end closes the object and the line, ibex_log_emit also writes b. A caller
 * that batches lines (the access log) appends several and writes them with ibex_log_write. */
void ibex_log_begin(struct ibex_buf *b, enum ibex_log_level level, const char *msg);
void ibex_log_end(struct ibex_buf *b);
void ibex_log_emit(struct ibex_buf *b);
/* Writes whole lines (one write(2) for up to PIPE_BUF bytes, so lines stay intact). */
void ibex_log_write(const char *p, size_t len);

#endif
