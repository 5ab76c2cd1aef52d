/* Length-carrying string helpers; no allocation, no locale. */
#include "str.h"

#include <string.h>

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

struct ibex_str ibex_str_from(const char *cstr)
{
    return (struct ibex_str){cstr, cstr ? strlen(cstr) : 0};
}

bool ibex_str_eq(struct ibex_str a, struct ibex_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool ibex_str_eq_cstr(struct ibex_str a, const char *b)
{
    return ibex_str_eq(a, ibex_str_from(b));
}

bool ibex_str_caseeq_cstr(struct ibex_str a, const char *b)
{
    size_t n = strlen(b);
    if (n != a.len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(a.p[i]) != lower(b[i]))
            return false;
    return true;
}

bool ibex_str_has_prefix(struct ibex_str s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.p, prefix, n) == 0;
}

struct ibex_str ibex_str_trim(struct ibex_str s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int ibex_str_to_u64(struct ibex_str s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0 || s.len > 20)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s.p[i] - '0');
        if (d > max || v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool ibex_str_glob_prefix(struct ibex_str s, const char *pattern)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*') {
        n--;
        if (s.len < n)
            return false;
        s.len = n;
        for (size_t i = 0; i < n; i++)
            if (lower(s.p[i]) != lower(pattern[i]))
                return false;
        return true;
    }
    return ibex_str_caseeq_cstr(s, pattern);
}

/* Word-at-a-time byte tests on 8 bytes at once: the classic "has a zero byte" and "has a byte
 * less than n" expressions, exact as a yes or no for the whole word. */
#define BYTES(x) (0x0101010101010101ULL * (x))

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ibex_json_plain_len reads words as little-endian"
#endif

static inline uint64_t zero_byte(uint64_t w)
{
    return (w - BYTES(1)) & ~w & BYTES(0x80);
}

/* Nonzero when some byte of w is below 0x20 or 0x80 and up. */
static inline uint64_t control_or_high(uint64_t w)
{
    return (w | ((w - BYTES(0x20)) & ~w)) & BYTES(0x80);
}

size_t ibex_utf8_seq_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    unsigned int cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

size_t ibex_json_text_invalid_at(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* Eight printable ASCII bytes at a time. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (control_or_high(w) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x80) {
            i++;
        } else if (c < 0x20) {
            if (c != '\t' && c != '\n' && c != '\r')
                return i;
            i++;
        } else {
            size_t n = ibex_utf8_seq_len(u + i, len - i);
            if (n == 0)
                return i;
            i += n;
        }
    }
    return len;
}

const bool ibex_json_plain_byte[256] = {
    [0x20 ... '"' - 1] = true, ['"' + 1 ... '\\' - 1] = true, ['\\' + 1 ... 0x7f] = true};

size_t ibex_json_plain_len(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (uint64_t w; len - i >= 8; i += 8) {
        memcpy(&w, u + i, 8);
        uint64_t m = control_or_high(w) | zero_byte(w ^ BYTES('"')) | zero_byte(w ^ BYTES('\\'));
        /* A borrow can flag a byte above a flagged one, never below: the lowest flag is the
         * first byte to stop at (little-endian: the lowest byte comes first). */
        if (m != 0)
            return i + (size_t)__builtin_ctzll(m) / 8;
    }
    while (i < len && ibex_json_plain_byte[u[i]])
        i++;
    return i;
}
