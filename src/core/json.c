/* JSON helpers for the translators.
 * - json-c conveniences: a JSON null reads as absent everywhere, so a client that sends
 *   "field": null gets what it gets without the field.
 * - The in-place scanner accepts only what json-c (strict, as ibex_json_parse runs it) accepts,
 *   and decodes strings the same way; tests/unit/json_test.c and the differential checks of the
 *   fast paths (fuzz_gemini) hold it to that. Every doubt is a refusal, never a guess. */
#include "json.h"

#include <string.h>

json_object *ibex_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

const char *ibex_json_get_str(json_object *o, const char *key, size_t *len)
{
    json_object *v = ibex_json_get(o, key);
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

bool ibex_json_is_str(json_object *v, const char *s)
{
    return json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), s) == 0;
}

void ibex_json_append(struct ibex_buf *out, json_object *v)
{
    /* Scalars, most of what the translators copy, without json-c's print buffer: an integer as
     * json-c prints it (one past int64 aside, which get_int64 cannot tell), a double the parser
     * made as the text it was parsed from (json_object_new_double_s keeps that text as its
     * userdata and its serializer prints it), a boolean. */
    switch (json_object_get_type(v)) {
    case json_type_int: {
        int64_t n = json_object_get_int64(v);
        if (n == INT64_MAX)
            break;
        if (n < 0)
            ibex_buf_append(out, "-", 1);
        ibex_buf_append_u64(out, n < 0 ? -(uint64_t)n : (uint64_t)n);
        return;
    }
    case json_type_double: {
        const char *text = json_object_get_userdata(v);
        if (text == NULL)
            break;
        ibex_buf_append_cstr(out, text);
        return;
    }
    case json_type_boolean:
        ibex_buf_append_cstr(out, json_object_get_boolean(v) ? "true" : "false");
        return;
    default:
        break;
    }
    size_t len;
    const char *s = json_object_to_json_string_length(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    ibex_buf_append(out, s, len);
}

void ibex_json_append_str(struct ibex_buf *out, json_object *s)
{
    ibex_buf_append_json_str(out, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

/* ---- the in-place scanner ---- */

size_t ibex_json_skip_ws_slow(const char *s, size_t len, size_t at)
{
    while (at < len && (s[at] == ' ' || s[at] == '\t' || s[at] == '\n' || s[at] == '\r'))
        at++;
    return at;
}

/* The four hex digits at s[at], or -1. */
static long hex4(const char *s, size_t len, size_t at)
{
    if (at > len || len - at < 4)
        return -1;
    long v = 0;
    for (size_t i = at; i < at + 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The escape at s[at] ('\\'): its length (2, 6, or 12 for a surrogate pair) and in *cp the code
 * point it stands for; 0 when it is not one the scanner reads. */
static size_t escape_at(const char *s, size_t len, size_t at, unsigned long *cp)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (at >= len || len - at < 2)
        return 0;
    const char *e = memchr(from, s[at + 1], sizeof(from) - 1);
    if (e != NULL) {
        *cp = (unsigned char)to[e - from];
        return 2;
    }
    if (s[at + 1] != 'u')
        return 0;
    long hi = hex4(s, len, at + 2);
    if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
        return 0; /* json-c makes a lone low surrogate U+FFFD: not read here */
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = (unsigned long)hi;
        return 6;
    }
    if (len - at < 12 || s[at + 6] != '\\' || s[at + 7] != 'u')
        return 0;
    long lo = hex4(s, len, at + 8);
    if (lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    *cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
    return 12;
}

size_t ibex_json_scan_str(const char *s, size_t len, size_t at, bool *escaped)
{
    if (at >= len || s[at] != '"')
        return 0;
    bool esc = false;
    size_t i = at + 1;
    while (i < len) {
        i += ibex_json_plain_len(s + i, len - i);
        if (i == len)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            if (escaped)
                *escaped = esc;
            return i + 1;
        }
        if (c < 0x20) /* json-c takes raw controls in strings; RFC 8259 does not */
            return 0;
        if (c >= 0x80) {
            size_t n = ibex_utf8_seq_len((const unsigned char *)s + i, len - i);
            if (n == 0)
                return 0;
            i += n;
            continue;
        }
        unsigned long cp;
        size_t n = escape_at(s, len, i, &cp);
        if (n == 0)
            return 0;
        esc = true;
        i += n;
    }
    return 0;
}

/* The number at s[at] (RFC 8259's grammar): the offset after it, or 0. json-c reads every such
 * number (an integer out of range is clamped, a double may become an infinity). */
static size_t skip_number(const char *s, size_t len, size_t at)
{
    size_t i = at;
    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return 0;
    }
    if (i < len && s[i] == '.') {
        size_t d = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    /* "01" or "1x" are no numbers the grammar ends well; the caller sees what follows */
    return i;
}

static size_t skip_literal(const char *s, size_t len, size_t at, const char *lit, size_t n)
{
    return len - at >= n && memcmp(s + at, lit, n) == 0 ? at + n : 0;
}

size_t ibex_json_skip_value(const char *s, size_t len, size_t at, unsigned depth)
{
    if (at >= len)
        return 0;
    char c = s[at];
    if (c == '"')
        return ibex_json_scan_str(s, len, at, NULL);
    if (c == 't')
        return skip_literal(s, len, at, "true", 4);
    if (c == 'f')
        return skip_literal(s, len, at, "false", 5);
    if (c == 'n')
        return skip_literal(s, len, at, "null", 4);
    if (c != '[' && c != '{')
        return skip_number(s, len, at);
    if (depth == 0)
        return 0;
    char close = c == '[' ? ']' : '}';
    size_t i = ibex_json_skip_ws(s, len, at + 1);
    if (i < len && s[i] == close)
        return i + 1;
    for (;;) {
        if (c == '{') {
            i = ibex_json_scan_str(s, len, i, NULL);
            if (i == 0)
                return 0;
            i = ibex_json_skip_ws(s, len, i);
            if (i >= len || s[i] != ':')
                return 0;
            i = ibex_json_skip_ws(s, len, i + 1);
        }
        i = ibex_json_skip_value(s, len, i, depth - 1);
        if (i == 0)
            return 0;
        i = ibex_json_skip_ws(s, len, i);
        if (i < len && s[i] == close)
            return i + 1;
        if (i >= len || s[i] != ',')
            return 0;
        i = ibex_json_skip_ws(s, len, i + 1);
    }
}

/* cp as UTF-8 in b; returns the length. */
static size_t utf8(unsigned long cp, unsigned char b[4])
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | cp >> 18);
    b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static void append_raw(struct ibex_buf *out, const char *s, size_t len)
{
    ibex_buf_append(out, s, len);
}

/* The text the inside of a string literal stands for, appended raw or, when escape, escaped
 * again the one way ibex escapes. */
static void append_unescaped(struct ibex_buf *out, const char *inner, size_t len, bool escape)
{
    void (*put)(struct ibex_buf *, const char *, size_t) =
        escape ? ibex_buf_append_json_inner : append_raw;
    size_t i = 0;
    while (i < len) {
        const char *bs = memchr(inner + i, '\\', len - i);
        size_t run = bs ? (size_t)(bs - inner) - i : len - i;
        put(out, inner + i, run);
        i += run;
        if (i == len)
            break;
        unsigned long cp;
        size_t n = escape_at(inner, len, i, &cp);
        unsigned char b[4];
        if (n == 0) { /* not from ibex_json_scan_str: the backslash as text, never a misread */
            put(out, "\\", 1);
            i++;
            continue;
        }
        put(out, (const char *)b, utf8(cp, b));
        i += n;
    }
}

void ibex_json_append_canonical(struct ibex_buf *out, const char *inner, size_t len)
{
    append_unescaped(out, inner, len, true);
}

void ibex_json_append_decoded(struct ibex_buf *out, const char *inner, size_t len)
{
    append_unescaped(out, inner, len, false);
}

/* ---- the cursor ---- */

bool ibex_json_cur_str(struct ibex_json_cursor *c, struct ibex_str *v, bool *escaped)
{
    c->at = ibex_json_skip_ws(c->s, c->len, c->at);
    size_t end = ibex_json_scan_str(c->s, c->len, c->at, escaped);
    if (end == 0)
        return false;
    *v = (struct ibex_str){c->s + c->at + 1, end - c->at - 2};
    c->at = end;
    return true;
}

bool ibex_json_cur_skip(struct ibex_json_cursor *c, unsigned depth)
{
    c->at = ibex_json_skip_ws(c->s, c->len, c->at);
    c->at = ibex_json_skip_value(c->s, c->len, c->at, depth);
    return c->at != 0;
}

int ibex_json_cur_member(struct ibex_json_cursor *c, bool *first, struct ibex_str *k)
{
    if (ibex_json_cur_ch(c, '}'))
        return 0;
    if (!*first && !ibex_json_cur_ch(c, ','))
        return -1;
    *first = false;
    /* Keys are short: read byte by byte, without ibex_json_scan_str's word loop. */
    if (!ibex_json_cur_ch(c, '"'))
        return -1;
    size_t i = c->at;
    while (i < c->len && ibex_json_plain_byte[(unsigned char)c->s[i]])
        i++;
    if (i >= c->len || c->s[i] != '"')
        return -1;
    *k = (struct ibex_str){c->s + c->at, i - c->at};
    c->at = i + 1;
    return ibex_json_cur_ch(c, ':') ? 1 : -1;
}

size_t ibex_json_key_index(struct ibex_str k, const char *const *keys, size_t n)
{
    size_t i = 0;
    while (i < n && !(k.len == strlen(keys[i]) && memcmp(k.p, keys[i], k.len) == 0))
        i++;
    return i;
}

int ibex_json_cur_element(struct ibex_json_cursor *c, bool *first)
{
    if (ibex_json_cur_ch(c, ']'))
        return 0;
    if (!*first && !ibex_json_cur_ch(c, ','))
        return -1;
    *first = false;
    return 1;
}

static bool digit_at(const struct ibex_json_cursor *c, size_t i)
{
    return i < c->len && c->s[i] >= '0' && c->s[i] <= '9';
}

bool ibex_json_cur_count(struct ibex_json_cursor *c, int64_t *n)
{
    c->at = ibex_json_skip_ws(c->s, c->len, c->at);
    size_t i = c->at;
    int64_t v = 0;
    while (digit_at(c, i) && i - c->at < 18)
        v = v * 10 + (c->s[i++] - '0');
    if (i == c->at || (c->s[c->at] == '0' && i - c->at > 1) || digit_at(c, i) ||
        (i < c->len && (c->s[i] == '.' || c->s[i] == 'e' || c->s[i] == 'E')))
        return false;
    c->at = i;
    *n = v;
    return true;
}

bool ibex_json_cur_null(struct ibex_json_cursor *c)
{
    size_t at = ibex_json_skip_ws(c->s, c->len, c->at);
    if (c->len - at < 4 || memcmp(c->s + at, "null", 4) != 0)
        return false;
    c->at = at + 4;
    return true;
}

bool ibex_json_cur_end(struct ibex_json_cursor *c)
{
    return ibex_json_skip_ws(c->s, c->len, c->at) == c->len;
}
