#!/usr/bin/env bash
# bench/recording_threads.sh - where recording's CPU goes, per thread: ibex (one worker, pinned
# to CPU 1) behind wrk -c50 (pinned to CPU 0) for each `recording` mode, CPU microseconds per
# request of each ibex thread (the worker, the store writer), from /proc/<pid>/task/*/stat
# around the run. Modes alternate ROUNDS times so drift shows as spread, not as a difference.
#   MODES (default "off traces checkpoints"), ROUNDS (2), SECONDS_PER_RUN (5), STORE_URL (default:
#   a fresh SQLite file per run; e.g. STORE_URL=$(scripts/pg.sh url) measures the Postgres store,
#   whose inserts then run in the Postgres server, outside ibex's CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=${MODES:-"off traces checkpoints"}
ROUNDS=${ROUNDS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
IBEX=${IBEX:-build/release/ibex}
FAKELLM=${FAKELLM:-build/release/fakellm}
KEY=ibex_sk_benchKey000000000000000000000000000
WORK=$(mktemp -d)
log() { echo "recording_threads: $*" >&2; }
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'cleanup; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { log "wrk is not installed (scripts/deps.sh installs it)"; exit 1; }
FK_PORT=$((20000 + RANDOM % 10000))
"$FAKELLM" --listen "127.0.0.1:$FK_PORT" >"$WORK/fakellm.log" 2>&1 &
PIDS+=($!)
wait_health fakellm "http://127.0.0.1:$FK_PORT/health" "${PIDS[-1]}"

ticks() { for t in /proc/"$1"/task/*; do echo "${t##*/} $(awk '{print $14 + $15}' "$t/stat")"; done | sort; }

for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    port=$((FK_PORT + 1 + RANDOM % 1000))
    OPENAI_BASE_URL="http://127.0.0.1:$FK_PORT/v1" OPENAI_API_KEY=x IBEX_DEV_TOKEN=$KEY \
      taskset -c 1 "$IBEX" serve --dev --store-url "${STORE_URL:-sqlite://$WORK/$mode-$round.db}" \
      --listen "127.0.0.1:$port" --workers 1 --access-log false --recording "$mode" \
      >"$WORK/ibex-$mode-$round.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_health ibex "http://127.0.0.1:$port/health" "$pid"
    url="http://127.0.0.1:$port/v1/chat/completions"
    export BODY_FILE=bench/load/chat.json EXTRA_HEADERS="Authorization: Bearer $KEY"
    taskset -c 0 wrk -t1 -c50 -d2 -s bench/load/wrk_post.lua "$url" >/dev/null   # warm-up
    ticks "$pid" >"$WORK/before"
    n=$(taskset -c 0 wrk -t1 -c50 -d"$SECONDS_PER_RUN" -s bench/load/wrk_post.lua "$url" |
      awk '/requests in/ {print $1}')
    ticks "$pid" >"$WORK/after"
    hz=$(getconf CLK_TCK)
    join "$WORK/before" "$WORK/after" | awk -v n="$n" -v hz="$hz" -v mode="$mode" -v r="$round" '
      { d = $3 - $2; if (d > 0) { us = d * 1e6 / hz / n; parts = parts sprintf(" %.1f", us); total += us } }
      END { printf "%-12s round %d: %.1f us/req (threads:%s) over %d requests\n", mode, r, total, parts, n }'
    stop_pid "$pid"
  done
done
