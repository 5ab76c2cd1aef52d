/* Clocks: monotonic nanoseconds for durations, wall-clock milliseconds for timestamps. */
#ifndef IBEX_CORE_CLOCK_H
#define IBEX_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

uint64_t ibex_clock_mono_ns(void);
uint64_t ibex_clock_wall_ms(void);
/* Writes an RFC 3339 UTC timestamp with milliseconds ("2026-11-23T20:47:00.123Z"), NUL
 * included; out must hold 25 bytes. */
void ibex_clock_rfc3339(uint64_t wall_ms, char out[25]);

#endif
