/* Random identifiers: UUIDv4 text for request ids, and raw random bytes. Thread-safe: each
 * thread draws from its own getrandom() buffer. */
#ifndef IBEX_CORE_ID_H
#define IBEX_CORE_ID_H

#include <stddef.h>
#include <stdint.h>

#define IBEX_UUID_LEN 36

void ibex_id_random(void *out, size_t n);
/* Writes a lowercase UUIDv4 and a NUL: out must hold IBEX_UUID_LEN + 1 bytes. */
void ibex_id_uuid4(char out[IBEX_UUID_LEN + 1]);
/* A UUIDv7 (RFC 9562): unix_ms in the first 48 bits, then random. Ids made later sort later,
 * so rows keyed by them are appended at the end of an index instead of all over it. */
void ibex_id_uuid7(uint64_t unix_ms, char out[IBEX_UUID_LEN + 1]);
/* The unix ms of a UUIDv7 in text form (IBEX_UUID_LEN characters), or -1 for any other
 * string. */
int64_t ibex_id_uuid7_ms(const char *s);
/* The 16 bytes of a canonical UUID in text form (ibex_id_is_uuid holds; either case). */
void ibex_id_uuid_bytes(const char *s, uint8_t out[16]);
/* 1 when s[0..len) is a canonical UUID (8-4-4-4-12 hex digits), else 0. */
int ibex_id_is_uuid(const char *s, size_t len);

#endif
