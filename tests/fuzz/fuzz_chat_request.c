/* libFuzzer target: chat completion body validation (src/gateway/chat_request.c). Any input
 * must yield either a request with a model and messages, or an error with a code; the alias
 * rewrite must serialise whatever validation accepted. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/gateway/chat_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(&chat, (const char *)data, size, &e) == 0) {
        assert(chat.model != NULL && chat.model_len > 0 && chat.nmessages > 0);
        struct ibex_buf out;
        ibex_buf_init(&out);
        ibex_chat_request_set_model(&chat, "alias-target");
        ibex_chat_request_add_directive(&chat, "be brief", data[0] & 1);
        ibex_chat_request_serialize(&chat, &out);
        assert(out.len > 0 && strstr(out.p, "alias-target") != NULL);
        assert(strstr(out.p, "\"be brief\"") != NULL && chat.nmessages >= 1);
        ibex_buf_dispose(&out);
        ibex_chat_request_dispose(&chat);
    } else {
        assert(e.code != NULL);
        assert(strcmp(e.code, "INVALID_JSON") == 0 || strcmp(e.code, "VALIDATION_ERROR") == 0);
    }
    ibex_chat_error_dispose(&e);
    return 0;
}
