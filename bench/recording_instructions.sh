#!/usr/bin/env bash
# bench/recording_instructions.sh - issue 4's recording cost as a count of instructions, the
# figure this VM's noise cannot move: ibex (one worker, a SQLite store) runs under valgrind's
# callgrind once per recording mode with WARM non-streaming chat turns (bench/load/chat.json,
# the openai type at one fakellm) and once with WARM + REQUESTS; the difference over REQUESTS is
# per turn. For each mode it reports every thread, the worker (the busiest other thread), the
# store writer (the thread that ran ibex_store_batch) and the writer's commits per turn.
# A commit's cost (BEGIN, COMMIT, the WAL pages) is shared by the turns it holds, so the writer's
# share depends on the rate: at 40 req/s about one turn per commit, at 400 (as fast as valgrind
# serves) about ten. Kernel time (the disk, the sockets) is not counted.
# Knobs: MODES ("off checkpoints"), RATES ("40 400"), REQUESTS (400), WARM (40), IBEX_BIN,
# FAKELLM_BIN. Prints a table; exit 1 when a request failed, 2 when it could not run.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO" || exit 2
MODES=${MODES:-"off checkpoints"}
RATES=${RATES:-"40 400"}
REQUESTS=${REQUESTS:-400}
WARM=${WARM:-40}
UPSTREAM_PORT=${UPSTREAM_PORT:-18491}
IBEX_PORT=${IBEX_PORT:-18492}
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
FAKELLM_BIN=${FAKELLM_BIN:-$REPO/tools/fakellm/fakellm}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
callgrind_setup

jq -c '.model = "fakellm-openai"' bench/load/chat.json >"$WORK/body.json"
CALLGRIND_HEADERS=()

# The counts of run $1 with the writer's thread marked: "<thread> <instructions> writer|other".
marked() {
  local writer
  writer=$(grep -l 'ibex_store_batch' "$1.cg"-* 2>/dev/null | head -1)
  awk -v w="${writer##*-}" '{ print $1, $2, ($1 == w ? "writer" : "other") }' "$1.count"
}
batches() { awk '/^ibex_store_writer_batches_total/ { print $2 }' "$1.metrics"; }

status=0
printf '| recording | req/s | instructions per turn, all threads | worker | store writer | commits per turn |\n'
printf '|---|---|---|---|---|---|\n'
for rate in $RATES; do
  for mode in $MODES; do
    log "$mode at $rate req/s: $WARM and $((WARM + REQUESTS)) turns under callgrind"
    a="$WORK/cg-$mode-$rate-$WARM" b="$WORK/cg-$mode-$rate-$((WARM + REQUESTS))"
    if ! callgrind_run "$a" "$WARM" "$rate" "$WORK/body.json" --config "$WORK/ibex.yaml" \
      --recording "$mode" || ! callgrind_run "$b" "$((WARM + REQUESTS))" "$rate" \
      "$WORK/body.json" --config "$WORK/ibex.yaml" --recording "$mode"; then
      status=1
      continue
    fi
    join <(marked "$a") <(marked "$b") | awk -v n="$REQUESTS" -v mode="$mode" -v rate="$rate" \
      -v ba="$(batches "$a")" -v bb="$(batches "$b")" '
      { d = $4 - $2; all += d; if ($5 == "writer") wr = d; else if (d > top) top = d }
      END { printf "| %s | %s | %d | %d | %d | %.2f |\n", mode, rate, all / n, top / n, wr / n,
            (bb - ba) / n }'
  done
done
exit "$status"
