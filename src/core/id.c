/* Random ids. getrandom() is called once per 4 KiB of randomness per thread, so a request id
 * costs a copy, not a syscall. */
#include "id.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static _Thread_local unsigned char pool[4096];
static _Thread_local size_t pool_left;

void ibex_id_random(void *out, size_t n)
{
    unsigned char *o = out;
    while (n > 0) {
        if (pool_left == 0) {
            size_t got = 0;
            while (got < sizeof(pool)) {
                ssize_t r = getrandom(pool + got, sizeof(pool) - got, 0);
                if (r < 0) {
                    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"getrandom failed\"}\n");
                    abort();
                }
                got += (size_t)r;
            }
            pool_left = sizeof(pool);
        }
        size_t take = n < pool_left ? n : pool_left;
        memcpy(o, pool + sizeof(pool) - pool_left, take);
        memset(pool + sizeof(pool) - pool_left, 0, take);
        pool_left -= take;
        o += take;
        n -= take;
    }
}

/* Writes 16 bytes as a UUID with the given version in the text form. */
static void uuid_text(unsigned char r[16], int version, char out[IBEX_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    r[6] = (unsigned char)((r[6] & 0x0F) | (version << 4));
    r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = '\0';
}

void ibex_id_uuid4(char out[IBEX_UUID_LEN + 1])
{
    unsigned char r[16];
    ibex_id_random(r, sizeof(r));
    uuid_text(r, 4, out);
}

/* The last (unix_ms << 12 | counter) this process put in a UUIDv7: RFC 9562 method 1, so ids
 * made one after the other in one process sort in that order even within a millisecond (a
 * 4097th id in one millisecond borrows the next one). */
static _Atomic uint64_t last_uuid7;

void ibex_id_uuid7(uint64_t unix_ms, char out[IBEX_UUID_LEN + 1])
{
    uint64_t want = (unix_ms & 0xFFFFFFFFFFFFull) << 12;
    uint64_t prev = atomic_load_explicit(&last_uuid7, memory_order_relaxed), next;
    do
        next = want > prev ? want : prev + 1;
    while (!atomic_compare_exchange_weak_explicit(&last_uuid7, &prev, next, memory_order_relaxed,
                                                  memory_order_relaxed));
    uint64_t ms = next >> 12;
    unsigned char r[16];
    ibex_id_random(r + 8, 8);
    for (int i = 0; i < 6; i++)
        r[i] = (unsigned char)(ms >> (40 - 8 * i));
    r[6] = (unsigned char)((next >> 8) & 0x0F); /* rand_a: the counter's 12 bits */
    r[7] = (unsigned char)(next & 0xFF);
    uuid_text(r, 7, out);
}

/* A hex digit's value (either case). */
static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

int64_t ibex_id_uuid7_ms(const char *s)
{
    if (!ibex_id_is_uuid(s, strnlen(s, IBEX_UUID_LEN + 1)) || s[14] != '7')
        return -1;
    int64_t ms = 0;
    for (size_t i = 0; i < 13; i++) { /* 48 bits: the first 12 hex digits around the dash */
        char c = s[i];
        if (c == '-')
            continue;
        ms = ms * 16 + hex_value(c);
    }
    return ms;
}

void ibex_id_uuid_bytes(const char *s, uint8_t out[16])
{
    for (size_t i = 0, o = 0; o < 16; i += 2, o++) {
        if (s[i] == '-')
            i++;
        out[o] = (uint8_t)(hex_value(s[i]) << 4 | hex_value(s[i + 1]));
    }
}

int ibex_id_is_uuid(const char *s, size_t len)
{
    if (len != IBEX_UUID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}
