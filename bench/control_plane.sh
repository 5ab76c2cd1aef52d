#!/usr/bin/env bash
# bench/control_plane.sh - latency of the control-plane API (issue 4's target: every endpoint
# under 5 ms p99 at 200 req/s on SQLite). Starts ibex (--dev, a fresh SQLite store, one worker,
# the mock model), seeds it with sessions, turns (traces and checkpoints), tasks and approvals,
# then sends each endpoint RATE req/s for DURATION s with bench/loadgen (open loop: latency from
# each request's due time) and prints p50/p99/p99.9 per endpoint. Everything it starts it stops.
# Knobs: RATE (200), DURATION (10), IBEX_BIN, IBEX_PORT (18441), SEED (200 of each object),
# TARGET_P99_MS (5). Exit status: 0 = no errors (targets are reported), 1 = errors, 2 = could not
# run.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
RATE=${RATE:-200}
DURATION=${DURATION:-10}
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
IBEX_PORT=${IBEX_PORT:-18441}
SEED=${SEED:-200}
TARGET_P99_MS=${TARGET_P99_MS:-5}
KEY=ibex_sk_benchKey000000000000000000000000000
URL="http://127.0.0.1:$IBEX_PORT"
LOADGEN="$BENCH_DIR/loadgen/loadgen"

die() { echo "control_plane: $*" >&2; exit 2; }
[[ -x "$IBEX_BIN" ]] || die "no ibex binary at $IBEX_BIN (run make)"
[[ -x "$LOADGEN" ]] || make -s -C "$BENCH_DIR/loadgen" loadgen || die "cannot build bench/loadgen"
command -v curl >/dev/null && command -v python3 >/dev/null || die "needs curl and python3"

WORK=$(mktemp -d /tmp/ibex-cp-bench.XXXXXX)
IBEX_PID=""
cleanup() { [[ -n "$IBEX_PID" ]] && kill "$IBEX_PID" 2>/dev/null && wait "$IBEX_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

IBEX_DEV_TOKEN=$KEY "$IBEX_BIN" serve --dev --workers 1 --access-log false \
    --store-url "sqlite://$WORK/ibex.db" --listen "127.0.0.1:$IBEX_PORT" >"$WORK/ibex.out" 2>"$WORK/ibex.log" &
IBEX_PID=$!
for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done
curl -sf "$URL/health" >/dev/null || die "ibex did not start: $(tail -3 "$WORK/ibex.log")"

api() { # METHOD PATH [BODY] -> the answer's body
    curl -sf -X "$1" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$URL$2"
}
field() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }

echo "seeding $SEED sessions with a turn each, $SEED tasks and $SEED approvals..."
curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"name":"bench-worker","role":"worker"}' "$URL/v1/agents" >/dev/null || die "cannot create an agent"
for i in $(seq "$SEED"); do
    sid=$(api POST /v1/sessions '{"agent_role":"bench","metadata":{"i":'"$i"'}}' | field session_id)
    curl -sf -o /dev/null -D "$WORK/turn.h" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -H "X-IBEX-Session-ID: $sid" \
        -d '{"model":"mock","messages":[{"role":"user","content":"seed turn"}]}' \
        "$URL/v1/chat/completions" || die "a seeding turn failed"
    tid=$(api POST /v1/tasks '{"name":"bench task","agent_role":"worker","phases":["a","b"]}' | field id)
    api PUT "/v1/tasks/$tid" '{"state":"running"}' >/dev/null
    api POST /v1/approvals '{"action":"bench approval"}' >/dev/null
done
trace=$(tr -d '\r' <"$WORK/turn.h" | awk -F': ' 'tolower($1)=="x-ibex-trace-id"{print $2}')
sleep 0.2 # the writer's batch window: the last turn's rows are committed

cat >"$WORK/session.json" <<'EOF'
{"agent_role":"bench"}
EOF
cat >"$WORK/meta.json" <<'EOF'
{"metadata":{"bench":true}}
EOF
cat >"$WORK/task.json" <<'EOF'
{"name":"bench task","agent_role":"worker"}
EOF

# name | method | path | body file
ENDPOINTS=(
    "GET /v1/sessions/{id}|GET|/v1/sessions/$sid|"
    "GET /v1/sessions (page of 20)|GET|/v1/sessions?page_size=20|"
    "GET /v1/sessions?state=pending|GET|/v1/sessions?state=pending&page_size=20|"
    "POST /v1/sessions|POST|/v1/sessions|$WORK/session.json"
    "PUT /v1/sessions/{id} (metadata)|PUT|/v1/sessions/$sid|$WORK/meta.json"
    "GET /v1/sessions/{id}/checkpoints|GET|/v1/sessions/$sid/checkpoints|"
    "GET /v1/traces/{id}|GET|/v1/traces/$trace|"
    "POST /v1/tasks|POST|/v1/tasks|$WORK/task.json"
    "GET /v1/tasks/{id}|GET|/v1/tasks/$tid|"
    "GET /v1/tasks (page of 20)|GET|/v1/tasks?page_size=20|"
    "GET /v1/approvals?state=pending|GET|/v1/approvals?state=pending&page_size=20|"
)

printf '\n%s req/s for %s s per endpoint, SQLite, 1 worker; latency from the due time (ms)\n\n' "$RATE" "$DURATION"
printf '| endpoint | requests | errors | p50 | p99 | p99.9 | max | p99 <= %s ms |\n|---|---|---|---|---|---|---|---|\n' "$TARGET_P99_MS"
status=0
for e in "${ENDPOINTS[@]}"; do
    IFS='|' read -r name method path body <<<"$e"
    args=(--url "$URL$path" --method "$method" --rate "$RATE" --duration "$DURATION"
        -H "Authorization: Bearer $KEY" --label "$name")
    [[ -n "$body" ]] && args+=(--body "$body" -H 'Content-Type: application/json')
    "$LOADGEN" "${args[@]}" >"$WORK/out.json" 2>"$WORK/loadgen.log" || { echo "loadgen failed: $(tail -2 "$WORK/loadgen.log")"; status=1; continue; }
    python3 - "$WORK/out.json" "$name" "$TARGET_P99_MS" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1])); name = sys.argv[2]; target = float(sys.argv[3])
l = r["latency_ms"]
verdict = "met" if l["p99"] <= target else "MISSED"
print(f"| {name} | {r['requests']} | {r['errors']} | {l['p50']:.3f} | {l['p99']:.3f} | {l['p999']:.3f} | {l['max']:.3f} | {verdict} |")
sys.exit(1 if r["errors"] else 0)
EOF
done
exit $status
