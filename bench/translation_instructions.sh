#!/usr/bin/env bash
# bench/translation_instructions.sh - issue 5's translation cost as a count of instructions, the
# figure this VM's noise cannot move: ibex (one worker, --recording off) runs under valgrind's
# callgrind twice per provider type (openai, anthropic, gemini; one fakellm), once with WARM
# requests and once with WARM + REQUESTS, and the difference over REQUESTS is the user-space
# instructions per request (every ibex thread, start-up cancelled out). The translated types'
# excess over openai (the pass-through) is the translation's cost. Kernel time (the sockets)
# is not counted, so set the ratio beside bench/translation.sh's CPU figures, not for them.
# Knobs: MODE (stream | non-stream), REQUESTS (200), WARM (20), RATE (req/s under valgrind, 40),
# STREAM_CHUNKS (20). Prints a table; exit 1 when a request failed, 2 when it could not run.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO" || exit 2
MODE=${MODE:-stream}
REQUESTS=${REQUESTS:-200}
WARM=${WARM:-20}
RATE=${RATE:-40}
STREAM_CHUNKS=${STREAM_CHUNKS:-20}
UPSTREAM_PORT=${UPSTREAM_PORT:-18481}
IBEX_PORT=${IBEX_PORT:-18482}
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
FAKELLM_BIN=${FAKELLM_BIN:-$REPO/tools/fakellm/fakellm}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
case "$MODE" in
  stream) body=bench/load/chat_stream.json ;;
  non-stream) body=bench/load/chat.json ;;
  *) die "MODE is stream or non-stream" ;;
esac
callgrind_setup

# One callgrind run of N requests of type T: "thread instructions" lines in $WORK/cg-T-N.count.
CALLGRIND_HEADERS=(-H "x-fakellm-chunks: $STREAM_CHUNKS")
run() {
  jq -c --arg m "fakellm-$1" '.model = $m' "$body" >"$WORK/body-$1.json"
  callgrind_run "$WORK/cg-$1-$2" "$2" "$RATE" "$WORK/body-$1.json" --config "$WORK/ibex.yaml" \
    --recording off --forward-headers 'x-fakellm-*'
}

# Per request, from the two runs' counts: all threads, and the busiest thread (the worker).
per_request() {
  join "$1" "$2" | awk -v n="$REQUESTS" '
    { d = $3 - $2; all += d; if (d > top) top = d }
    END { printf "%d %d\n", all / n, top / n }'
}

declare -A all worker
status=0
for t in openai anthropic gemini; do
  log "$t: $WARM and $((WARM + REQUESTS)) $MODE requests under callgrind"
  if ! run "$t" "$WARM" || ! run "$t" "$((WARM + REQUESTS))"; then
    status=1
    continue
  fi
  read -r "all[$t]" "worker[$t]" < <(per_request "$WORK/cg-$t-$WARM.count" \
    "$WORK/cg-$t-$((WARM + REQUESTS)).count")
done
((status == 0)) || exit 1
printf '| %s (%s chunks) | instructions per request, all threads | over openai | worker thread | over openai | ratio to openai (worker) |\n' \
  "$MODE" "$STREAM_CHUNKS"
printf '|---|---|---|---|---|---|\n'
for t in openai anthropic gemini; do
  awk -v t="$t" -v a="${all[$t]}" -v oa="${all[openai]}" -v w="${worker[$t]}" -v ow="${worker[openai]}" \
    'BEGIN { printf "| %s | %d | %+d | %d | %+d | %.2f |\n", t, a, a - oa, w, w - ow, w / ow }'
done
