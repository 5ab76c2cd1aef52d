/* Strings with a length (STYLE 8). A struct ibex_str never owns its bytes; NUL termination is
 * not promised. */
#ifndef IBEX_CORE_STR_H
#define IBEX_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ibex_str {
    const char *p;
    size_t len;
};

#define IBEX_STR_LIT(s) ((struct ibex_str){(s), sizeof(s) - 1})
#define IBEX_STR_NULL ((struct ibex_str){NULL, 0})

struct ibex_str ibex_str_from(const char *cstr);
bool ibex_str_eq(struct ibex_str a, struct ibex_str b);
bool ibex_str_eq_cstr(struct ibex_str a, const char *b);
/* ASCII case-insensitive equality, for header names and tokens. */
bool ibex_str_caseeq_cstr(struct ibex_str a, const char *b);
bool ibex_str_has_prefix(struct ibex_str s, const char *prefix);
struct ibex_str ibex_str_trim(struct ibex_str s);
/* Parses all of s as a decimal unsigned integer no larger than max. Returns 0 or -1. */
int ibex_str_to_u64(struct ibex_str s, uint64_t max, uint64_t *out);
/* Case-insensitive match of s against a pattern that may end with '*' (prefix match). */
bool ibex_str_glob_prefix(struct ibex_str s, const char *pattern);

/* Length (1-4) of the well-formed UTF-8 sequence at s, or 0: overlong forms, surrogates and
 * code points above U+10FFFF are not well-formed (RFC 3629). */
size_t ibex_utf8_seq_len(const unsigned char *s, size_t left);
/* Offset of the first byte that cannot appear in JSON text (RFC 8259): ill-formed UTF-8, or a
 * control character other than tab, LF and CR (which JSON allows only as whitespace); len when
 * there is none. */
size_t ibex_json_text_invalid_at(const char *s, size_t len);
/* How many bytes from s on are plain JSON string text, the same written as they are: up to the
 * first control character, '"', '\\' or byte 0x80 and up (where escaping or UTF-8 checking
 * starts), or len. Eight bytes at a time. */
size_t ibex_json_plain_len(const char *s, size_t len);
/* The bytes ibex_json_plain_len counts: printable ASCII other than '"' and '\\'. */
extern const bool ibex_json_plain_byte[256];

#endif
