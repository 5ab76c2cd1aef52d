/* fakellm: a fake LLM upstream (OpenAI, Anthropic and Gemini dialects) for ibex's tests and
 * benchmarks. This file holds the command line, the process lifecycle (one libuv loop,
 * SIGTERM/SIGINT stop it and exit 0) and the router; chat.c plays out generations with their
 * faults, openai.c, anthropic.c and gemini.c speak the wire formats (body.c holds what they share),
 * reqlog.c remembers what was received.
 *
 * Invariants: single thread; every request except the /_fakellm/ control routes is recorded
 * in the request log before it is answered; the server is freed only after uv_run() returns,
 * when every handle (its own and the generation timers) is closed. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../src/core/log.h"
#include "fakellm.h"

#define DEFAULT_LISTEN "127.0.0.1:9090"
#define JSON_DEPTH 64

struct fakellm_defaults fakellm_defaults = {
    .chunks = 8, .retry_after = 1, .reset_after = FAKELLM_NEVER};
struct fakellm_stats fakellm_stats;

static struct ibex_http_server *server;
static uv_signal_t sigterm, sigint;
static bool stopping;

static const char usage_text[] =
    "usage: fakellm [--listen HOST:PORT] [--chunks N] [--interval-ms N] [--delay-ms N]\n"
    "               [--chunk-bytes N] [--status N] [--retry-after N] [--reset-after N] [--help]\n"
    "\n"
    "A fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats, with fault\n"
    "injection, for tests and benchmarks.\n"
    "\n"
    "Options (the numeric ones set the default of the x-fakellm-* header of the same name):\n"
    "  --listen HOST:PORT  address to listen on (env FAKELLM_LISTEN; default " DEFAULT_LISTEN ";\n"
    "                      port 0 picks a free port, printed in the start-up line)\n"
    "  --chunks N          content chunks per answer (default 8, max 100000)\n"
    "  --interval-ms N     pause between stream chunks (default 0, max 600000)\n"
    "  --delay-ms N        pause before the response headers (default 0, max 600000)\n"
    "  --chunk-bytes N     pad each chunk with 'x' up to N characters (default 0, max 1048576)\n"
    "  --status N          fail every generation with error status N (400-599); tests give each\n"
    "                      deployment of a model its own fault this way\n"
    "  --retry-after N     Retry-After of an injected 429 or 503 (default 1)\n"
    "  --reset-after N     streams: reset after N chunks; non-streaming with 0: reset at once\n"
    "  --help              this text\n"
    "\n"
    "On start it writes {\"msg\":\"listening\",\"listen\":\"HOST:PORT\",...} to stderr;\n"
    "SIGTERM and SIGINT stop it with exit status 0.\n"
    "\n"
    "Endpoints:\n"
    "  POST   /v1/chat/completions  OpenAI Chat Completions; needs Authorization: Bearer <token>\n"
    "                               (else 401) and a JSON body with model (string) and messages\n"
    "                               (array) (else 400). \"stream\":true answers with SSE;\n"
    "                               stream_options.include_usage adds a usage chunk.\n"
    "  POST   /openai/deployments/{name}/chat/completions?api-version=V\n"
    "                               Azure OpenAI: the OpenAI format; needs api-key (else 401)\n"
    "                               and api-version (else 404)\n"
    "  POST   /v1/messages          Anthropic Messages; needs x-api-key (else 401\n"
    "                               authentication_error), anthropic-version (else 400) and a\n"
    "                               body with model, max_tokens (integer) and messages (else 400\n"
    "                               invalid_request_error). \"stream\":true answers with events\n"
    "                               message_start, content_block_start, ping,\n"
    "                               content_block_delta per chunk, content_block_stop,\n"
    "                               message_delta, message_stop.\n"
    "  POST   /v1beta/models/{model}:generateContent\n"
    "  POST   /v1beta/models/{model}:streamGenerateContent?alt=sse\n"
    "                               Gemini; needs x-goog-api-key or ?key= (absent: 403\n"
    "                               PERMISSION_DENIED, empty: 400) and a body with contents\n"
    "                               (else 400 INVALID_ARGUMENT). The stream is one data: event\n"
    "                               per chunk, then one with finishReason STOP and\n"
    "                               usageMetadata; streamGenerateContent without alt=sse is 400.\n"
    "                               In every format chunk i is \"tok<i> \" padded with 'x' to\n"
    "                               chunk-bytes; completion tokens = chunks, prompt tokens =\n"
    "                               characters of all text content, system included, / 4 (at\n"
    "                               least 1).\n"
    "  GET    /v1/models            one model, \"fake-model\"\n"
    "  GET    /health               {\"status\":\"ok\"}\n"
    "  GET    /_fakellm/requests    the last 1000 requests received (control routes excluded),\n"
    "                               oldest first: method, path, query, headers, body\n"
    "  DELETE /_fakellm/requests    forget them\n"
    "  GET    /_fakellm/stats       counters: requests (any route), chat (generation requests,\n"
    "                               every format), completed (answered to the end, errors\n"
    "                               included), aborted (client left first), active; responses\n"
    "                               reset on purpose count in chat only\n"
    "  anything else                404 (OpenAI-shaped)\n"
    "\n"
    "Per-request knobs: headers of the three generation routes, ignored elsewhere. Values are\n"
    "decimal integers clamped to the maxima above; anything else is answered 400 at once.\n"
    "Checks run in this order: knobs (400), credentials (401/403), x-fakellm-status, body (400).\n"
    "Errors take the shape of the route's format.\n"
    "  x-fakellm-status: N          answer with error status N (400-599), code fakellm_injected\n"
    "  x-fakellm-retry-after: N     Retry-After of an injected 429 or 503 (Anthropic: and 529)\n"
    "                               (default 1)\n"
    "  x-fakellm-delay-ms: N        wait before the response headers (errors too)\n"
    "  x-fakellm-chunks: N          content chunks\n"
    "  x-fakellm-chunk-bytes: N     characters per chunk (0: no padding)\n"
    "  x-fakellm-interval-ms: N     wait between stream chunks\n"
    "  x-fakellm-first-token-ms: N  stream: wait after the headers, before the first chunk\n"
    "  x-fakellm-stall-after: N     stream: after N chunks send nothing more, keep the\n"
    "                               connection open until the client leaves\n"
    "  x-fakellm-reset-after: N     stream: after N chunks reset the connection;\n"
    "                               non-streaming with N=0: reset instead of answering\n"
    "  x-fakellm-tool-call: NAME    answer with a call of function NAME (a letter or '_', then\n"
    "                               letters, digits, '_' or '-', at most 64) with arguments\n"
    "                               {\"i\":0} instead of text; 400 unless the request declares\n"
    "                               that tool. The call streams in 2 chunks (OpenAI, Anthropic)\n"
    "                               or 1 (Gemini), which are also its completion tokens.\n";

/* The request body as JSON, or NULL when it is empty or not one complete JSON value. */
static json_object *parse_body(struct ibex_str body)
{
    struct json_tokener *tok = NULL;
    json_object *obj = NULL;
    enum json_tokener_error err;

    if (body.len == 0 || body.len > INT_MAX)
        goto out;
    tok = json_tokener_new_ex(JSON_DEPTH);
    if (tok == NULL)
        goto out;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, body.p, (int)body.len);
    err = json_tokener_get_error(tok);
    if (err == json_tokener_continue) {
        /* A bare number or literal ends only at a delimiter: the NUL provides one. */
        obj = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
    } else if (err == json_tokener_success && json_tokener_get_parse_end(tok) != body.len) {
        err = json_tokener_error_parse_unexpected; /* trailing bytes after the value */
    }
    if (err != json_tokener_success) {
        json_object_put(obj);
        obj = NULL;
    }
out:
    if (tok != NULL)
        json_tokener_free(tok);
    return obj;
}

static void send_json(struct ibex_req *req, int status, const struct ibex_buf *b)
{
    ibex_res_send(req, status, "application/json", NULL, b->p, b->len);
}

static void not_found(struct ibex_req *req, struct ibex_buf *b)
{
    struct ibex_buf msg;

    ibex_buf_init(&msg);
    ibex_buf_append_cstr(&msg, "Unknown route: ");
    ibex_buf_append_str(&msg, req->method);
    ibex_buf_append_cstr(&msg, " ");
    ibex_buf_append_str(&msg, req->path);
    fakellm_openai_error(b, 404, "not_found", msg.p, NULL);
    ibex_buf_dispose(&msg);
    send_json(req, 404, b);
}

static bool route(const struct ibex_req *req, const char *method, const char *path)
{
    return ibex_str_eq_cstr(req->method, method) && ibex_str_eq_cstr(req->path, path);
}

/* POST /openai/deployments/{name}/chat/completions */
static bool azure_route(const struct ibex_req *req)
{
    static const char tail[] = "/chat/completions";
    size_t n = sizeof(tail) - 1;
    return ibex_str_eq_cstr(req->method, "POST") &&
           ibex_str_has_prefix(req->path, "/openai/deployments/") && req->path.len > 20 + n &&
           memcmp(req->path.p + req->path.len - n, tail, n) == 0;
}

static void handle(struct ibex_req *req, void *data)
{
    json_object *body = NULL;
    struct ibex_buf b;

    ibex_buf_init(&b);
    fakellm_stats.requests++;
    if (!ibex_str_has_prefix(req->path, "/_fakellm/")) {
        body = parse_body(req->body);
        fakellm_reqlog_add(req, body);
    }

    if (route(req, "POST", "/v1/chat/completions")) {
        fakellm_gen_start(req, &fakellm_openai, body);
    } else if (azure_route(req)) {
        fakellm_gen_start(req, &fakellm_azure, body);
    } else if (route(req, "POST", "/v1/messages")) {
        fakellm_gen_start(req, &fakellm_anthropic, body);
    } else if (fakellm_gemini_route(req)) {
        fakellm_gen_start(req, &fakellm_gemini, body);
    } else if (route(req, "GET", "/v1/models")) {
        fakellm_openai_models(&b);
        send_json(req, 200, &b);
    } else if (route(req, "GET", "/health")) {
        ibex_buf_append_cstr(&b, "{\"status\":\"ok\"}");
        send_json(req, 200, &b);
    } else if (route(req, "GET", "/_fakellm/requests")) {
        fakellm_reqlog_render(&b);
        send_json(req, 200, &b);
    } else if (route(req, "DELETE", "/_fakellm/requests")) {
        fakellm_reqlog_clear();
        ibex_buf_append_cstr(&b, "{\"cleared\":true}");
        send_json(req, 200, &b);
    } else if (route(req, "GET", "/_fakellm/stats")) {
        const struct fakellm_stats *s = &fakellm_stats;
        ibex_buf_appendf(&b,
                         "{\"requests\":%llu,\"chat\":%llu,\"completed\":%llu,\"aborted\":%llu,"
                         "\"active\":%llu}",
                         (unsigned long long)s->requests, (unsigned long long)s->chat,
                         (unsigned long long)s->completed, (unsigned long long)s->aborted,
                         (unsigned long long)s->active);
        send_json(req, 200, &b);
    } else {
        not_found(req, &b);
    }
    json_object_put(body);
    ibex_buf_dispose(&b);
}

static void on_signal(uv_signal_t *s, int signum)
{
    if (stopping)
        return;
    stopping = true;
    ibex_log(IBEX_LOG_INFO, "stopping", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    /* No close callback: main frees the server once uv_run() returns, outside its callbacks. */
    ibex_http_server_close(server, NULL, NULL);
}

/* Parses a numeric option into *out, clamped to max; exits with status 2 when malformed. */
static void option_u64(const char *name, const char *value, uint64_t max, uint64_t *out)
{
    if (fakellm_parse_u64(ibex_str_from(value), max, out) == 0)
        return;
    fprintf(stderr, "fakellm: --%s takes a non-negative integer, not '%s'\n%s", name, value,
            usage_text);
    exit(2);
}

static const char *parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"chunks", required_argument, NULL, 'c'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"chunk-bytes", required_argument, NULL, 'b'},
        {"status", required_argument, NULL, 's'},
        {"retry-after", required_argument, NULL, 'r'},
        {"reset-after", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = getenv("FAKELLM_LISTEN");
    int ch;

    if (listen == NULL || listen[0] == '\0')
        listen = DEFAULT_LISTEN;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen = optarg;
            break;
        case 'c':
            option_u64("chunks", optarg, FAKELLM_MAX_CHUNKS, &fakellm_defaults.chunks);
            break;
        case 'i':
            option_u64("interval-ms", optarg, FAKELLM_MAX_MS, &fakellm_defaults.interval_ms);
            break;
        case 'd':
            option_u64("delay-ms", optarg, FAKELLM_MAX_MS, &fakellm_defaults.delay_ms);
            break;
        case 'b':
            option_u64("chunk-bytes", optarg, FAKELLM_MAX_CHUNK_BYTES,
                       &fakellm_defaults.chunk_bytes);
            break;
        case 's':
            option_u64("status", optarg, 599, &fakellm_defaults.status);
            if (fakellm_defaults.status < 400) {
                fprintf(stderr, "fakellm: --status takes an error status from 400 to 599\n%s",
                        usage_text);
                exit(2);
            }
            break;
        case 'r':
            option_u64("retry-after", optarg, FAKELLM_MAX_RETRY_AFTER,
                       &fakellm_defaults.retry_after);
            break;
        case 'x':
            option_u64("reset-after", optarg, FAKELLM_MAX_CHUNKS + 1,
                       &fakellm_defaults.reset_after);
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        default:
            fputs(usage_text, stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fakellm: unexpected argument '%s'\n%s", argv[optind], usage_text);
        exit(2);
    }
    return listen;
}

int main(int argc, char **argv)
{
    const char *listen = parse_args(argc, argv);
    const struct ibex_http_config cfg = {
        .max_header_bytes = 64 * 1024,
        .max_headers = 256,
        .max_body_bytes = 32 * 1024 * 1024,
        .header_timeout_ms = 30000,
        .body_timeout_ms = 60000,
        .idle_timeout_ms = 300000, /* longer than any client pool keeps a connection */
        .write_high_water = 64 * 1024,
        .server_header = "fakellm",
        .handler = handle,
    };
    struct ibex_buf addr;
    uv_loop_t loop;
    int rc = 1, r;

    ibex_buf_init(&addr);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    server = ibex_http_server_new(&loop, &cfg);
    r = ibex_http_server_listen(server, listen, false);
    if (r < 0) {
        ibex_log(IBEX_LOG_ERROR, "cannot listen", "listen", listen, "error", uv_strerror(r), NULL);
        goto out;
    }
    /* Report the port actually bound, so --listen 127.0.0.1:0 is usable. */
    ibex_buf_append(&addr, listen, (size_t)(strrchr(listen, ':') - listen));
    ibex_buf_appendf(&addr, ":%d", ibex_http_server_port(server));
    ibex_log(IBEX_LOG_INFO, "listening", "listen", addr.p, NULL);

    uv_signal_init(&loop, &sigterm);
    uv_signal_init(&loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    rc = 0;
out:
    /* Runs until SIGTERM/SIGINT closed everything; after a failed listen it only completes the
     * close of the listener handle, which must happen before the server is freed. */
    uv_run(&loop, UV_RUN_DEFAULT);
    ibex_http_server_free(server);
    uv_loop_close(&loop);
    fakellm_reqlog_clear();
    ibex_buf_dispose(&addr);
    return rc;
}
