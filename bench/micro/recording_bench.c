/* The store writer's CPU per recorded chat turn, apart from the gateway: what recording costs
 * the process however little the event loop does, and the least any store of this kind can
 * cost (issue 4's target, bench/RESULTS.md).
 *
 * Two phases against one store, each `turns` records deep, enqueued at once so the writer
 * commits full batches as it does at saturation:
 *   - turn: the three rows a sessionless chat turn queues (ibex_session_record_new,
 *     ibex_trace_record, ibex_checkpoint_record), with the request body of bench/load/chat.json
 *     as the checkpoint's request;
 *   - floor: one row per turn holding only that request body, in a table with no index but its
 *     rowid: no checkpoint the store keeps can cost less.
 * The writer thread's CPU is the process's (getrusage) less the producer's (its thread clock);
 * the producer's (making the turn's ids, queueing its records) is what a worker pays.
 *
 * Usage: recording_bench [turns] [store-url] [request-file]; the store defaults to a fresh SQLite
 * file in $TMPDIR (a Postgres URL measures libpq's side of the writer; the server's CPU is not
 * counted). Prints one JSON line per phase. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../../src/api/checkpoints.h"
#include "../../src/api/sessions.h"
#include "../../src/core/clock.h"
#include "../../src/core/id.h"
#include "../../src/store/store.h"
#include "../../src/store/writer.h"
#include "../../src/telemetry/trace.h"

#define ANSWER "This is a mock response from fakellm: the gateway recorded this turn."
#define ATTEMPTS                                                                                   \
    "[{\"provider\":\"openai\",\"model\":\"gpt-4o-mini\",\"outcome\":\"ok\",\"status\":200,"       \
    "\"ms\":0.412}]"

static double thread_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double process_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = malloc(1 << 20);
    *len = p ? fread(p, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (p)
        p[*len] = '\0';
    return p;
}

/* One sessionless turn: a new session, its trace, its checkpoint. */
static int queue_turn(struct ibex_store_writer *w, const char *tenant, const char *body,
                      size_t body_len)
{
    int64_t now = ibex_clock_wall_ms();
    char session[IBEX_UUID_LEN + 1], trace_id[IBEX_UUID_LEN + 1], request_id[IBEX_UUID_LEN + 1],
        checkpoint_id[IBEX_UUID_LEN + 1];
    ibex_id_uuid7((uint64_t)now, session);
    ibex_id_uuid7((uint64_t)now, trace_id);
    ibex_id_uuid4(request_id);
    ibex_id_uuid7((uint64_t)now, checkpoint_id);
    struct ibex_trace t = {
        .id = trace_id,
        .tenant_id = tenant,
        .request_id = request_id,
        .session_id = session,
        .model = "gpt-4o-mini",
        .provider = "openai",
        .status = 200,
        .duration_ns = 612000,
        .upstream_ns = 480000,
        .prompt_tokens = 310,
        .completion_tokens = 17,
        .total_tokens = 327,
        .attempts = ATTEMPTS,
        .attempts_len = sizeof(ATTEMPTS) - 1,
        .cost_nanousd = 56700,
    };
    struct ibex_checkpoint c = {
        .id = checkpoint_id,
        .trace = &t,
        .request = body,
        .request_len = body_len,
        .content = ANSWER,
        .content_len = sizeof(ANSWER) - 1,
        .finish_reason = "stop",
    };
    int rc = ibex_session_record_new(w, session, tenant, NULL, now);
    if (rc == 0)
        rc = ibex_trace_record(w, &t, now);
    if (rc == 0)
        rc = ibex_checkpoint_record(w, &c, now);
    return rc;
}

static int queue_floor(struct ibex_store_writer *w, const char *tenant, const char *body,
                       size_t body_len)
{
    (void)tenant;
    struct ibex_store_value p[] = {ibex_store_textn(body, body_len)};
    return ibex_store_writer_enqueue(w, "INSERT INTO bench_floor (request) VALUES ($1)", p, 1);
}

typedef int (*queue_fn)(struct ibex_store_writer *, const char *, const char *, size_t);

/* Queues `turns` turns with q, waits for the writer, prints the phase's JSON line. */
static int phase(struct ibex_store *s, const char *name, queue_fn q, long turns, const char *tenant,
                 const char *body, size_t body_len)
{
    struct ibex_store_writer_opts o = {.capacity = (size_t)turns * 4};
    struct ibex_store_writer *w;
    if (ibex_store_writer_new(s, &o, &w))
        return 1;
    double p0 = process_us(), t0 = thread_us();
    for (long i = 0; i < turns; i++)
        if (q(w, tenant, body, body_len)) {
            fprintf(stderr, "recording_bench: the writer refused a record\n");
            ibex_store_writer_free(w);
            return 1;
        }
    double producer = thread_us() - t0;
    int rc = ibex_store_writer_flush(w, 600000);
    double writer = process_us() - p0 - (thread_us() - t0);
    struct ibex_store_writer_stats st;
    ibex_store_writer_stats(w, &st);
    ibex_store_writer_free(w);
    if (rc || st.failed) {
        fprintf(stderr, "recording_bench: %s: %llu records failed: %s\n", name,
                (unsigned long long)st.failed, ibex_store_errmsg(s));
        return 1;
    }
    printf("{\"bench\":\"recording_%s\",\"store\":\"%s\",\"turns\":%ld,\"request_bytes\":%zu,"
           "\"records\":%llu,\"batches\":%llu,\"writer_us_per_turn\":%.2f,"
           "\"enqueue_us_per_turn\":%.2f}\n",
           name, ibex_store_backend(s), turns, body_len, (unsigned long long)st.committed,
           (unsigned long long)st.batches, writer / (double)turns, producer / (double)turns);
    return 0;
}

int main(int argc, char **argv)
{
    long turns = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    const char *request_file = argc > 3 ? argv[3] : "bench/load/chat.json";
    char url[512], dir[] = "/tmp/ibex-recording-bench-XXXXXX";
    if (argc > 2) {
        snprintf(url, sizeof(url), "%s", argv[2]);
        dir[0] = '\0';
    } else {
        if (!mkdtemp(dir))
            return 2;
        snprintf(url, sizeof(url), "sqlite://%s/ibex.db", dir);
    }
    size_t body_len;
    char *body = read_file(request_file, &body_len);
    if (turns < 1 || !body) {
        fprintf(stderr, "usage: recording_bench [turns] [store-url] [request-file] (%s: %s)\n",
                request_file, body ? "ok" : "cannot read");
        return 2;
    }
    struct ibex_store *s;
    char err[256];
    if (ibex_store_open(url, &s, err, sizeof(err))) {
        fprintf(stderr, "recording_bench: %s\n", err);
        return 1;
    }
    char tenant[IBEX_UUID_LEN + 1];
    ibex_id_uuid7((uint64_t)ibex_clock_wall_ms(), tenant);
    struct ibex_store_value p[] = {ibex_store_text(tenant), ibex_store_int(ibex_clock_wall_ms())};
    int rc = ibex_store_migrate(s, NULL, NULL, NULL);
    if (rc == 0)
        rc = ibex_store_exec(s,
                             "INSERT INTO tenants (id, name, metadata, created_at) "
                             "VALUES ($1, 'recording-bench', '{}', $2)",
                             p, 2, NULL, NULL);
    if (rc == 0)
        rc = ibex_store_script(s, "DROP TABLE IF EXISTS bench_floor; "
                                  "CREATE TABLE bench_floor (request TEXT NOT NULL)");
    if (rc == 0)
        rc = phase(s, "turn", queue_turn, turns, tenant, body, body_len);
    if (rc == 0)
        rc = phase(s, "floor", queue_floor, turns, tenant, body, body_len);
    if (rc < 0)
        fprintf(stderr, "recording_bench: %s\n", ibex_store_errmsg(s));
    ibex_store_script(s, "DROP TABLE IF EXISTS bench_floor");
    ibex_store_close(s);
    free(body);
    if (dir[0]) {
        char path[600];
        const char *files[] = {"ibex.db", "ibex.db-wal", "ibex.db-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return rc ? 1 : 0;
}
