/* Small JSON helpers shared by the format translators (src/providers, gateway/messages.c):
 * - json-c conveniences: typed member reads that treat a JSON null like an absent member, and
 *   appending values to a buffer as JSON text;
 * - a scanner that reads JSON text in place, for the translators' fast paths (a provider's
 *   common stream events read without building a json-c tree).
 *
 * Pure functions; nothing here keeps state or takes a reference. */
#ifndef IBEX_CORE_JSON_H
#define IBEX_CORE_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

/* The member key of o, or NULL when o is not an object, or the member is absent or null. */
json_object *ibex_json_get(json_object *o, const char *key);
/* The member as a string (its length in *len when len is not NULL), or NULL when it is not
 * one. */
const char *ibex_json_get_str(json_object *o, const char *key, size_t *len);
/* Whether v is the string s. */
bool ibex_json_is_str(json_object *v, const char *s);
/* Appends v as compact JSON text (numbers keep the text they were parsed from; "/" is not
 * escaped). */
void ibex_json_append(struct ibex_buf *out, json_object *v);
/* Appends the string s (a json_type_string) as a JSON string literal. */
void ibex_json_append_str(struct ibex_buf *out, json_object *s);

/* ---- the in-place scanner ----
 * It reads a strict subset of what ibex_json_parse accepts: RFC 8259 JSON without raw control
 * characters in strings, without lone surrogates (\ud800-\udfff not in a high-low pair) and
 * with nesting bounded by the caller; what it refuses the caller hands to json-c, which decides.
 * Strings must be well-formed UTF-8 (RFC 3629) and outside them only JSON's ASCII tokens are
 * read, so what the scanner accepts also passes ibex_json_text_invalid_at, ibex_json_parse's
 * first check. Offsets index s[0..len); a function that fails returns 0 (never a valid end:
 * every value takes at least one byte). */

/* The offset of the first byte at or after at that is not JSON whitespace (space, tab, LF, CR);
 * len when there is none. Inline: callers step over whitespace between every two tokens, and
 * mostly there is none. */
size_t ibex_json_skip_ws_slow(const char *s, size_t len, size_t at);
static inline size_t ibex_json_skip_ws(const char *s, size_t len, size_t at)
{
    return at < len && (unsigned char)s[at] > ' ' ? at : ibex_json_skip_ws_slow(s, len, at);
}
/* The string literal starting at s[at] ('"'): the offset after its closing quote, or 0.
 * *escaped (when not NULL) says whether it holds a backslash escape; when it does not, its
 * inside is the text it stands for, byte for byte, and ibex_buf_append_json_inner would write
 * it unchanged. */
size_t ibex_json_scan_str(const char *s, size_t len, size_t at, bool *escaped);
/* The value starting at s[at] (a string, number, literal, array or object; no whitespace
 * before it), with at most depth arrays and objects nested in it, itself included: the offset
 * after it, or 0. */
size_t ibex_json_skip_value(const char *s, size_t len, size_t at, unsigned depth);
/* Appends the inside of a string literal that ibex_json_scan_str accepted (quotes excluded)
 * as ibex_buf_append_json_inner writes the text it stands for: the bytes json-c would decode it
 * to, escaped again the one way ibex escapes ("\/" becomes "/", "\u00e9" "é", "\b"
 * "\u0008"), so a fast path writes what its json-c path would. */
void ibex_json_append_canonical(struct ibex_buf *out, const char *inner, size_t len);
/* The same, unescaped: the bytes json-c would decode the literal to. */
void ibex_json_append_decoded(struct ibex_buf *out, const char *inner, size_t len);

/* A read position in JSON text s[0..len), for walking one value token by token: the fast paths
 * read the members they know and step over the rest. Every read steps over whitespace first;
 * a read that fails says false (or -1), and the walk is then abandoned. */
struct ibex_json_cursor {
    const char *s;
    size_t len, at;
};

/* Whitespace, then ch: read. */
static inline bool ibex_json_cur_ch(struct ibex_json_cursor *c, char ch)
{
    c->at = ibex_json_skip_ws(c->s, c->len, c->at);
    if (c->at >= c->len || c->s[c->at] != ch)
        return false;
    c->at++;
    return true;
}
/* Whitespace, then the next byte, not read ('\0' at the end): which kind of value comes. */
static inline char ibex_json_cur_peek(struct ibex_json_cursor *c)
{
    c->at = ibex_json_skip_ws(c->s, c->len, c->at);
    return c->at < c->len ? c->s[c->at] : '\0';
}
/* A string literal: *v is its inside, as it is written (escapes kept; *escaped says whether it
 * holds one). */
bool ibex_json_cur_str(struct ibex_json_cursor *c, struct ibex_str *v, bool *escaped);
/* Steps over one value with at most depth arrays and objects nested in it. */
bool ibex_json_cur_skip(struct ibex_json_cursor *c, unsigned depth);
/* The next member of the object being read (*first: right after its '{'): 1 with its key in
 * *k and the ':' read, 0 at the end of the object ('}' read), -1 for anything else, a key with
 * an escape (it could spell a known one) or a byte outside printable ASCII included. */
int ibex_json_cur_member(struct ibex_json_cursor *c, bool *first, struct ibex_str *k);
/* The next element of the array being read, as ibex_json_cur_member: 1 (its value follows), 0
 * at the end (']' read), -1. */
int ibex_json_cur_element(struct ibex_json_cursor *c, bool *first);
/* A non-negative integer as json-c reads it into an int64: at most 18 digits, no sign,
 * fraction or exponent (those give json-c another type, or a negative number). */
bool ibex_json_cur_count(struct ibex_json_cursor *c, int64_t *n);
/* The literal null: read (the caller's next read checks what follows it). */
bool ibex_json_cur_null(struct ibex_json_cursor *c);
/* Only whitespace is left. */
bool ibex_json_cur_end(struct ibex_json_cursor *c);
/* Sets bit in *seen; false when it was set already: a repeated member, which json-c resolves
 * by keeping the last, so a fast path declines it. */
static inline bool ibex_json_once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return false;
    *seen |= bit;
    return true;
}
/* The index of the key k (as ibex_json_cur_member gives it) in keys[0..n), or n. */
size_t ibex_json_key_index(struct ibex_str k, const char *const *keys, size_t n);
/* Whether the key k (as ibex_json_cur_member gives it) is the literal lit. */
#define IBEX_JSON_KEY_IS(k, lit) ((k).len == sizeof(lit) - 1 && memcmp((k).p, lit, (k).len) == 0)

#endif
