#!/usr/bin/env bash
# bench/translation.sh - issue 5's translation target: "translation adds <= 15 us CPU per request
# for Anthropic and Gemini over the OpenAI pass-through", measured two ways in one run:
#   1. micro: build/release/bench/micro/{anthropic,gemini}_bench, the thread CPU of each
#      translation step (request, answer, stream) on one thread, minus the pass-through's;
#   2. end to end: one ibex (one worker pinned to CPU_IBEX, --recording off, auth on as in
#      production) with three providers at the same fakellm: types openai, anthropic and gemini.
#      loadgen sends REQUESTS copies of bench/load/chat.json to each in turn at RATE req/s (open
#      loop: the same load for all three), for ROUNDS rounds (the order rotates each round),
#      non-streaming and streaming (STREAM_REQUESTS at STREAM_RATE, STREAM_CHUNKS chunks each).
#      ibex CPU per request = utime+stime of the process (/proc/<pid>/stat) over the batch / its
#      requests; schedstat (ns) as a cross-check.
# Why a fixed rate: in a closed loop each type runs at its own pace, set by fakellm and loadgen
# sharing CPU_LOAD (fakellm's Anthropic and Gemini formats cost it more than OpenAI's), and ibex's
# CPU per request depends on that pace (how many requests one wake-up serves). RATE=0 /
# STREAM_RATE=0 run the closed loop (CONCURRENCY in flight) anyway.
# The difference to openai is paired within each round (same minute, same neighbours): the
# report gives its median and range over the rounds next to the 15 us target.
# Writes bench/out/translation-<timestamp>.json (+ raw files in bench/out/translation-<timestamp>/,
# and translation-latest.json) and prints the tables. Everything it starts it stops, by PID.
# Exit status: 0 = no errors (a missed target is reported; STRICT=1 makes it 1), 1 = errors,
# 2 = could not run. Knobs: the environment variables below; see bench/README.md.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO" || exit 2

# ---------------------------------------------------------------- knobs
ROUNDS=${ROUNDS:-10}                    # rounds of (openai, anthropic, gemini) per mode
REQUESTS=${REQUESTS:-10000}             # non-streaming requests per batch
RATE=${RATE:-5000}                      # their rate, req/s (open loop; 0 = closed loop)
STREAM_REQUESTS=${STREAM_REQUESTS:-1000} # streaming requests per batch (0 = skip streaming)
STREAM_RATE=${STREAM_RATE:-500}         # their rate, streams/s (open loop; 0 = closed loop)
STREAM_CHUNKS=${STREAM_CHUNKS:-20}      # content chunks per streamed answer
CONCURRENCY=${CONCURRENCY:-50}          # in flight, when a rate is 0
WARMUP_REQUESTS=${WARMUP_REQUESTS:-2000} # per provider and mode, before the rounds
MICRO_ITERATIONS=${MICRO_ITERATIONS:-20000}
MICRO_REPEAT=${MICRO_REPEAT:-3}         # runs of each micro-benchmark (spread)
TARGET_US=${TARGET_US:-15}
PIN=${PIN:-auto}                        # auto (pin when >= 2 CPUs) | 1 | 0
CPU_LOAD=${CPU_LOAD:-0}                 # loadgen and fakellm
CPU_IBEX=${CPU_IBEX:-1}
NETNS=${NETNS:-auto}                    # auto | 1 | 0: private network namespace (unshare -n)
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
FAKELLM_BIN=${FAKELLM_BIN:-$REPO/tools/fakellm/fakellm}
MICRO_DIR=${MICRO_DIR:-$REPO/build/release/bench/micro}
IBEX_EXTRA_ARGS=${IBEX_EXTRA_ARGS:-}    # appended to `ibex serve ...` (--recording off is set)
UPSTREAM_PORT=${UPSTREAM_PORT:-18461}
IBEX_PORT=${IBEX_PORT:-18462}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_MAX_PCT=${QUIET_MAX_PCT:-15}
STRICT=${STRICT:-0}
CLIENT_KEY=ibex_sk_benchKey000000000000000000000000000
TYPES=(openai anthropic gemini)

exec 3>&2
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&3; }
die() { log "ERROR: $*"; exit 2; }

# --------------------------------------------- build, then the private network namespace
if [[ "${IBEX_BENCH_IN_NETNS:-0}" != 1 ]]; then
  "$BENCH_DIR/setup.sh" || die "bench/setup.sh failed"
  make -s -C "$REPO" all build/release/bench/micro/anthropic_bench \
    build/release/bench/micro/gemini_bench >&2 || die "make failed"
  if [[ "$NETNS" != 0 ]] && unshare -n true 2>/dev/null && command -v ip >/dev/null; then
    exec unshare -n -- env IBEX_BENCH_IN_NETNS=1 bash "$BENCH_DIR/translation.sh" "$@"
  elif [[ "$NETNS" == 1 ]]; then
    die "NETNS=1 but 'unshare -n' is not permitted here"
  fi
fi
NETNS_USED=0
if [[ "${IBEX_BENCH_IN_NETNS:-0}" == 1 ]]; then
  ip link set lo up || die "cannot bring lo up in the private network namespace"
  NETNS_USED=1
fi
for c in curl jq node taskset; do command -v "$c" >/dev/null || die "missing '$c' (bench/setup.sh)"; done
LOADGEN="$BENCH_DIR/loadgen/loadgen"
for b in "$IBEX_BIN" "$FAKELLM_BIN" "$LOADGEN" "$MICRO_DIR/anthropic_bench" "$MICRO_DIR/gemini_bench"; do
  [[ -x "$b" ]] || die "$b not found: run 'make' first"
done
if [[ "$PIN" == auto ]]; then
  if (($(nproc) >= 2)); then PIN=1; else PIN=0; fi
fi

TS=$(date +%Y%m%d-%H%M%S)
RUN="$OUT_DIR/translation-$TS"
mkdir -p "$RUN" || die "cannot create $RUN"
log "output: $RUN (netns: $NETNS_USED, pin: $PIN)"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
PIN_LOAD=(); PIN_IBEX=()
if [[ "$PIN" == 1 ]]; then PIN_LOAD=(taskset -c "$CPU_LOAD"); PIN_IBEX=(taskset -c "$CPU_IBEX"); fi

# ---------------------------------------------------------------- 1. micro-benchmarks
# Before the servers start, so that they run alone; pinned where ibex will run.
for i in $(seq "$MICRO_REPEAT"); do
  for b in anthropic gemini; do
    "${PIN_IBEX[@]}" "$MICRO_DIR/${b}_bench" "$MICRO_ITERATIONS" >>"$RUN/micro-$b.jsonl" \
      || die "$b micro-benchmark failed"
  done
  log "micro-benchmarks: run $i of $MICRO_REPEAT"
done

# ---------------------------------------------------------------- 2. fakellm and ibex
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
GW="http://127.0.0.1:$IBEX_PORT"
for u in "$UPSTREAM" "$GW"; do
  [[ "$(http_code "$u/health")" == 000 ]] || die "something already answers on $u (set UPSTREAM_PORT / IBEX_PORT)"
done
"${PIN_LOAD[@]}" "$FAKELLM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" >"$RUN/fakellm.log" 2>&1 3>&- &
FAKELLM_PID=$!
PIDS+=("$FAKELLM_PID")
wait_health fakellm "$UPSTREAM/health" "$FAKELLM_PID" || die "fakellm did not start (see $RUN/fakellm.log)"

three_providers_yaml "$UPSTREAM" >"$RUN/ibex.yaml"
# shellcheck disable=SC2206  # IBEX_EXTRA_ARGS is a word list on purpose
IBEX_CMD=("$IBEX_BIN" serve --config "$RUN/ibex.yaml" --listen "127.0.0.1:$IBEX_PORT" --workers 1
          --recording off --dev --store-url "sqlite://$RUN/ibex.db" --forward-headers 'x-fakellm-*'
          $IBEX_EXTRA_ARGS)
echo "${IBEX_CMD[*]}" >"$RUN/ibex.cmd"
# The provider keys of the environment would add providers: the config names all there are.
"${PIN_IBEX[@]}" env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY \
  IBEX_DEV_TOKEN="$CLIENT_KEY" "${IBEX_CMD[@]}" >"$RUN/ibex.stdout" 2>"$RUN/ibex.log" 3>&- &
IBEX_PID=$!
PIDS+=("$IBEX_PID")
wait_health ibex "$GW/health" "$IBEX_PID" || die "ibex did not start (see $RUN/ibex.log)"
log "fakellm pid=$FAKELLM_PID, ibex pid=$IBEX_PID (one worker, --recording off)"

for t in "${TYPES[@]}"; do
  jq -c --arg m "fakellm-$t" '.model = $m' "$BENCH_DIR/load/chat.json" >"$RUN/chat-$t.json"
  jq -c --arg m "fakellm-$t" '.model = $m' "$BENCH_DIR/load/chat_stream.json" >"$RUN/chat_stream-$t.json"
  # one request of each kind, checked before measuring
  curl -s -m 10 -H "Authorization: Bearer $CLIENT_KEY" -H 'Content-Type: application/json' \
    --data-binary @"$RUN/chat-$t.json" "$GW/v1/chat/completions" >"$RUN/smoke-$t.json"
  jq -e '.object == "chat.completion" and .usage.completion_tokens > 0' "$RUN/smoke-$t.json" >/dev/null \
    || die "$t: no chat.completion through ibex (see $RUN/smoke-$t.json)"
  curl -s -N -m 10 -H "Authorization: Bearer $CLIENT_KEY" -H 'Content-Type: application/json' \
    -H "x-fakellm-chunks: $STREAM_CHUNKS" --data-binary @"$RUN/chat_stream-$t.json" \
    "$GW/v1/chat/completions" >"$RUN/smoke-$t.sse"
  grep -q '^data: \[DONE\]' "$RUN/smoke-$t.sse" || die "$t: stream without [DONE] (see $RUN/smoke-$t.sse)"
done

# ---------------------------------------------------------------- 3. the rounds
HDRS=(-H "Authorization: Bearer $CLIENT_KEY")
batch() {   # MODE TYPE N LABEL -> $RUN/LABEL.json (loadgen) + .meta.json (CPU)
  local mode=$1 t=$2 n=$3 label=$4 body extra=() load c0 n0 t0 fp rate=$RATE
  body="$RUN/chat-$t.json"
  if [[ "$mode" == stream ]]; then
    body="$RUN/chat_stream-$t.json"; extra=(-H "x-fakellm-chunks: $STREAM_CHUNKS"); rate=$STREAM_RATE
  fi
  load=(--concurrency "$CONCURRENCY" --requests "$n")
  ((rate > 0)) && load=(--rate "$rate" --duration "$(awk -v n="$n" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')")
  foreign_snapshot
  t0=$(now_ms); c0=$(cpu_ticks "$IBEX_PID"); n0=$(cpu_ns "$IBEX_PID")
  run_fg "${PIN_LOAD[@]}" timeout 600 "$LOADGEN" --url "$GW/v1/chat/completions" --body "$body" \
    "${HDRS[@]}" "${extra[@]}" "${load[@]}" --timeout 30 \
    --label "$label" >"$RUN/$label.json" 2>"$RUN/$label.err"
  fp=$(foreign_pct)
  jq -n --arg mode "$mode" --arg type "$t" --argjson n "$n" --argjson wall "$(($(now_ms) - t0))" \
    --argjson ticks "$(($(cpu_ticks "$IBEX_PID") - c0))" --argjson ns "$(($(cpu_ns "$IBEX_PID") - n0))" \
    --argjson tck "$CLK_TCK" --argjson other "$fp" \
    '{mode:$mode, type:$type, requests:$n, wall_ms:$wall, ibex_cpu_ticks:$ticks, ibex_cpu_sched_ns:$ns,
      clk_tck:$tck, other_cpu_pct:$other}' >"$RUN/$label.meta.json"
  is_alive "$IBEX_PID" || die "ibex exited during $label (see $RUN/ibex.log)"
}

PREFLIGHT_PCT=null
((QUIET_WAIT > 0)) && wait_quiet
MODES=(non-stream)
((STREAM_REQUESTS > 0)) && MODES+=(stream)
for mode in "${MODES[@]}"; do
  n=$REQUESTS
  [[ "$mode" == stream ]] && n=$STREAM_REQUESTS
  for t in "${TYPES[@]}"; do
    batch "$mode" "$t" "$WARMUP_REQUESTS" "warmup-$mode-$t"
  done
  for r in $(seq "$ROUNDS"); do
    # rotate the order: each type goes first, second and third as often
    for k in 0 1 2; do
      t=${TYPES[$(((k + r - 1) % 3))]}
      batch "$mode" "$t" "$n" "round$r-$mode-$t"
    done
    log "$mode round $r of $ROUNDS: $(for t in "${TYPES[@]}"; do
      jq -r --arg t "$t" '"\($t) \(.ibex_cpu_ticks * 1e6 / .clk_tck / .requests | . * 10 | round / 10) us"' \
        "$RUN/round$r-$mode-$t.meta.json"; done | paste -sd, -)"
  done
done

IBEX_RSS_KB=$(rss_kb "$IBEX_PID")
stop_pid "$IBEX_PID"
cleanup
trap - EXIT

jq -n --arg ts "$TS" --arg date "$(date -Iseconds)" --arg host "$(hostname)" --argjson nproc "$(nproc)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
  --arg commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)" \
  --argjson dirty "$([[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo true || echo false)" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg cmd "$(cat "$RUN/ibex.cmd")" \
  --argjson rounds "$ROUNDS" --argjson requests "$REQUESTS" --argjson sreq "$STREAM_REQUESTS" \
  --argjson chunks "$STREAM_CHUNKS" --argjson conc "$CONCURRENCY" --argjson warm "$WARMUP_REQUESTS" \
  --argjson rate "$RATE" --argjson srate "$STREAM_RATE" \
  --argjson pin "$PIN" --argjson netns "$NETNS_USED" --argjson target "$TARGET_US" \
  --argjson preflight "${PREFLIGHT_PCT:-null}" --argjson rss "${IBEX_RSS_KB:-0}" \
  '{timestamp:$ts, date:$date, machine:{host:$host, nproc:$nproc, cpu:$cpu, loadavg_at_end:$load},
    git:{commit:$commit, dirty:$dirty}, ibex_cmd:$cmd, preflight_other_cpu_pct:$preflight,
    ibex_rss_kb_end:$rss,
    config:{rounds:$rounds, requests:$requests, stream_requests:$sreq, stream_chunks:$chunks,
      concurrency:$conc, rate:$rate, stream_rate:$srate, warmup_requests:$warm, pin:($pin==1), netns:($netns==1)},
    target_us:$target}' >"$RUN/run.json"
node "$BENCH_DIR/translation.mjs" "$RUN" "$OUT_DIR"
rc=$?
[[ -s "$RUN/ibex.log" ]] && gzip -f "$RUN/ibex.log"
if ((rc == 3)); then
  ((STRICT == 1)) && exit 1
  exit 0
fi
exit "$rc"
