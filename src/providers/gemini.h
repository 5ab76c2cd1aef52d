/* Testing hooks of the Gemini provider (src/providers/gemini.c; its ops table is
 * ibex_provider_gemini in provider.h). Its stream decoder reads the common events with a fast
 * scanner and every other one with json-c; the tests (tests/unit/gemini_test.c,
 * tests/fuzz/fuzz_gemini.c) run a json-c-only twin beside it and compare. Nothing in the
 * gateway calls these. */
#ifndef IBEX_PROVIDERS_GEMINI_H
#define IBEX_PROVIDERS_GEMINI_H

#include <stdbool.h>
#include <stdint.h>

#include "provider.h"

/* A stream decoder like ibex_provider_gemini.stream_open's whose every event goes through
 * json-c: the reference the fast scanner must match byte for byte. When twin (a Gemini stream
 * decoder) is not NULL, the new one takes its random id base and created time, so that both
 * write the same bytes for the same input. */
struct ibex_provider_stream *
ibex_gemini_stream_open_reference(const struct ibex_provider *p,
                                  const struct ibex_chat_request *chat, struct ibex_arena *arena,
                                  const struct ibex_provider_stream *twin);
/* How many events the decoder s read with the fast scanner. */
uint64_t ibex_gemini_stream_fast_events(const struct ibex_provider_stream *s);
/* How many of those it read by the shape of an earlier event, without walking their JSON. */
uint64_t ibex_gemini_stream_shape_events(const struct ibex_provider_stream *s);
/* Whether the Gemini stream decoders a and b are in the same state: given the same bytes next,
 * they write the same. */
bool ibex_gemini_stream_same(const struct ibex_provider_stream *a,
                             const struct ibex_provider_stream *b);

#endif
