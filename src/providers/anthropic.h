/* Testing hooks of the Anthropic provider (src/providers/anthropic.c; its ops table is
 * ibex_provider_anthropic in provider.h). Its stream decoder reads the common events in place
 * (the deltas and the framing events) and every other one with json-c; the tests
 * (tests/unit/anthropic_test.c, tests/fuzz/fuzz_anthropic.c) run a json-c-only twin beside it
 * and compare. Nothing in the gateway calls this. */
#ifndef IBEX_PROVIDERS_ANTHROPIC_H
#define IBEX_PROVIDERS_ANTHROPIC_H

#include "provider.h"

/* A stream decoder like ibex_provider_anthropic.stream_open's whose every event goes through
 * json-c: the reference the in-place reads must match byte for byte. When twin (an Anthropic
 * stream decoder) is not NULL, the new one takes its created time, so that both write the same
 * bytes for the same input. */
struct ibex_provider_stream *
ibex_anthropic_stream_open_reference(const struct ibex_provider *p,
                                     const struct ibex_chat_request *chat, struct ibex_arena *arena,
                                     const struct ibex_provider_stream *twin);

/* How many events the decoder s read in place. */
uint64_t ibex_anthropic_stream_fast_events(const struct ibex_provider_stream *s);

#endif
