#!/usr/bin/env bash
# bench/run.sh - ibex's own benchmark (`make bench`): the same load straight to fakellm ("direct")
# and through ibex ("ibex"), in one run, on loopback, pinned; reports the differences.
#
# Phases: smoke, wrk saturation at 100 connections (throughput, ibex CPU us/request), open-loop
# fixed rates (added latency, CPU), sequential SSE streams (TTFT overhead), ibex RSS idle and
# with HOLD_STREAMS open streams. With RECORDING_AB=1 (the default) a second ibex with
# `--recording off` ("ibex_off") runs the first three phases too, so the report compares the core
# figures with recording on and off in one run (issue 4's target), CPU split by thread name into
# the store writer and the rest. Writes bench/out/<timestamp>.json + .md (+ raw files in
# bench/out/<timestamp>/) and prints the tables. Everything it starts it stops, by PID.
# Exit status: 0 = ran with zero errors; 1 = some phase had errors; 2 = could not run.
# Knobs are the environment variables below; see bench/README.md.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO"

# ---------------------------------------------------------------- knobs
RATES=${RATES-"200 2000"}              # open-loop rates, req/s ("" = skip)
RATE_DURATION=${RATE_DURATION:-10}     # seconds per rate and path
SAT_DURATION=${SAT_DURATION:-10}       # wrk saturation, seconds per path
SAT_CONNS=${SAT_CONNS:-100}
WARMUP=${WARMUP:-2}                    # wrk warm-up per path, seconds (0 = none)
STREAM_N=${STREAM_N:-50}               # sequential SSE requests per path (0 = skip)
STREAM_CHUNKS=${STREAM_CHUNKS:-20}
STREAM_INTERVAL_MS=${STREAM_INTERVAL_MS:-5}
HOLD_STREAMS=${HOLD_STREAMS:-1000}     # streams held open through ibex for the RSS figure (0 = skip)
HOLD_TIMEOUT=${HOLD_TIMEOUT:-60}       # seconds to get them all open
IDLE_SETTLE=${IDLE_SETTLE:-1}          # seconds after /health before reading idle RSS
WORKERS=${WORKERS:-1}                  # ibex --workers
PIN=${PIN:-auto}                       # auto (pin when >= 2 CPUs) | 1 | 0
CPU_LOAD=${CPU_LOAD:-0}                # load generators (wrk, loadgen)
CPU_UPSTREAM=${CPU_UPSTREAM:-0}        # fakellm
CPU_IBEX=${CPU_IBEX:-1}                # ibex
NETNS=${NETNS:-auto}                   # auto | 1 | 0: private network namespace (unshare -n)
GATEWAY=${GATEWAY:-ibex}               # ibex | direct (tooling dry run: the "ibex" path is fakellm)
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
FAKELLM_BIN=${FAKELLM_BIN:-$REPO/tools/fakellm/fakellm}
IBEX_EXTRA_ARGS=${IBEX_EXTRA_ARGS:-}   # appended to `ibex serve ...`
RECORDING_AB=${RECORDING_AB:-1}        # 1: also measure an ibex with --recording off (path ibex_off)
IBEX_OFF_PORT=${IBEX_OFF_PORT:-18433}
IBEX_RENAME=${IBEX_RENAME:-0}          # 1: run a copy named "bench-gw" (out of reach of `pkill ibex`)
FAKELLM_ARGS=${FAKELLM_ARGS:-}         # appended to fakellm's command line, e.g. "--delay-ms 20"
MODEL=${MODEL:-gpt-4o-mini}            # forwarded unchanged (never "mock": ibex answers that itself)
CLIENT_KEY=${CLIENT_KEY:-ibex_sk_benchKey000000000000000000000000000}  # ibex key of the clients (--dev pins it)
BENCH_AUTH=${BENCH_AUTH:-1}            # 0: start ibex without --dev (a binary from before authentication, for A/B runs)
BENCH_AGENT=${BENCH_AGENT:-0}          # 1: the clients act as the dev agent (X-IBEX-Agent-ID: its directive is injected)
BENCH_AGENT_ID=8f1c6c9e-0d1a-4e7b-9a51-3c2b7d4e5f60
UPSTREAM_PORT=${UPSTREAM_PORT:-18431}
IBEX_PORT=${IBEX_PORT:-18432}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
READY_TIMEOUT=${READY_TIMEOUT:-20}
QUIET_WAIT=${QUIET_WAIT:-30}           # wait up to this long for other processes to go quiet
QUIET_MAX_PCT=${QUIET_MAX_PCT:-15}     #   ("quiet" = they use less than this % of one core)
STRICT=${STRICT:-0}                    # 1: also exit 1 when a target is missed

# Targets of the issue (the report compares the measured figures with these).
TARGET_CPU_US=30          # ibex CPU per non-streaming proxied request at saturation, us
TARGET_ADDED_P50_MS=0.2   # fixed-rate p50 added latency at 2000 req/s, ms
TARGET_TTFT_MS=0.25       # streaming TTFT overhead (p50), ms
TARGET_RSS_IDLE_MB=20
TARGET_RSS_HOLD_MB=64

exec 3>&2   # the console, also from inside functions whose output is redirected (traps)
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&3; }
die() { log "ERROR: $*"; exit 2; }

# ------------------------------------------- dependencies (before the netns: apt needs the net)
if [[ "${IBEX_BENCH_IN_NETNS:-0}" != 1 ]]; then
  "$BENCH_DIR/setup.sh" || die "bench/setup.sh failed"
fi

# --------------------------------------------- private network namespace (loopback only)
if [[ "${IBEX_BENCH_IN_NETNS:-0}" != 1 && "$NETNS" != 0 ]]; then
  if unshare -n true 2>/dev/null && command -v ip >/dev/null; then
    exec unshare -n -- env IBEX_BENCH_IN_NETNS=1 bash "$BENCH_DIR/run.sh" "$@"
  elif [[ "$NETNS" == 1 ]]; then
    die "NETNS=1 but 'unshare -n' is not permitted here"
  fi
fi
NETNS_USED=0
if [[ "${IBEX_BENCH_IN_NETNS:-0}" == 1 ]]; then
  ip link set lo up || die "cannot bring lo up in the private network namespace"
  NETNS_USED=1
fi

for c in wrk curl jq node taskset; do command -v "$c" >/dev/null || die "missing '$c' (bench/setup.sh)"; done
[[ -x "$FAKELLM_BIN" ]] || die "$FAKELLM_BIN not found: run 'make' first"
if [[ "$GATEWAY" == ibex ]]; then
  [[ -x "$IBEX_BIN" ]] || die "$IBEX_BIN not found: run 'make' first"
elif [[ "$GATEWAY" != direct ]]; then
  die "GATEWAY must be ibex or direct"
fi
LOADGEN="$BENCH_DIR/loadgen/loadgen"
[[ -x "$LOADGEN" ]] || make -s -C "$BENCH_DIR/loadgen" loadgen || die "cannot build bench/loadgen"

# 1,000 held streams need ~2,000 descriptors in ibex and 1,000 in each other process
want_fds=$((HOLD_STREAMS * 2 + 1024))
if (($(ulimit -n) < want_fds)); then
  ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

NCPU=$(nproc)
if [[ "$PIN" == auto ]]; then
  if ((NCPU >= 2)); then PIN=1; else PIN=0; fi
fi

TS=$(date +%Y%m%d-%H%M%S)
RUN="$OUT_DIR/$TS"
mkdir -p "$RUN" || die "cannot create $RUN"
log "output: $RUN (netns: $NETNS_USED, pin: $PIN, gateway: $GATEWAY)"

# ---------------------------------------------------------------- processes
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"   # PIDS, stop_pid, run_fg, cleanup, cpu_ticks, cpu_ns, wait_health, ...
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Command prefixes: taskset execs the command, so a background job's $! is the process itself.
PIN_LOAD=(); PIN_UP=(); PIN_IBEX=()
if [[ "$PIN" == 1 ]]; then
  PIN_LOAD=(taskset -c "$CPU_LOAD"); PIN_UP=(taskset -c "$CPU_UPSTREAM"); PIN_IBEX=(taskset -c "$CPU_IBEX")
fi
stat_of() { curl -s -m 5 "$UPSTREAM/_fakellm/stats" | jq -r ".$1 // 0" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- start fakellm and ibex
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
# shellcheck disable=SC2086  # FAKELLM_ARGS is a word list on purpose
"${PIN_UP[@]}" "$FAKELLM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" $FAKELLM_ARGS >"$RUN/fakellm.log" 2>&1 3>&- &
FAKELLM_PID=$!
PIDS+=("$FAKELLM_PID")
wait_health fakellm "$UPSTREAM/health" "$FAKELLM_PID" || die "fakellm did not start (see $RUN/fakellm.log)"
log "fakellm pid=$FAKELLM_PID on $UPSTREAM"

# start_ibex PORT NAME ARGS...: ibex on PORT, pinned, with its own SQLite store, command line in
# $RUN/NAME.cmd and output in $RUN/NAME.{stdout,log}; its PID in STARTED_PID.
start_ibex() {
  local port=$1 name=$2 auth=(--dev --store-url "sqlite://$RUN/$2.db")
  shift 2
  [[ "$BENCH_AUTH" == 1 ]] || auth=()
  # --dev with a pinned key and agent: authentication is on, as in production (a fresh SQLite
  # store per run; every request after the first is a credential-cache hit)
  # shellcheck disable=SC2206  # IBEX_EXTRA_ARGS is a word list on purpose
  local cmd=("$IBEX_BIN" serve --listen "127.0.0.1:$port" --workers "$WORKERS" --forward-headers 'x-fakellm-*'
             "${auth[@]}" $IBEX_EXTRA_ARGS "$@")
  echo "OPENAI_API_KEY=bench OPENAI_BASE_URL=$UPSTREAM/v1 ${cmd[*]}" >"$RUN/$name.cmd"
  "${PIN_IBEX[@]}" env OPENAI_API_KEY=bench OPENAI_BASE_URL="$UPSTREAM/v1" IBEX_DEV_TOKEN="$CLIENT_KEY" \
    IBEX_DEV_AGENT_ID="$BENCH_AGENT_ID" "${cmd[@]}" >"$RUN/$name.stdout" 2>"$RUN/$name.log" 3>&- &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

IBEX_PID=""
IBEX_OFF_PID=""
IBEX_START_MS=0
IBEX_READY_MS=0
if [[ "$GATEWAY" == ibex ]]; then
  GW="http://127.0.0.1:$IBEX_PORT"
  if [[ "$IBEX_RENAME" == 1 ]]; then
    cp "$IBEX_BIN" "$RUN/bench-gw" || die "cannot copy $IBEX_BIN"
    IBEX_BIN="$RUN/bench-gw"
  fi
  IBEX_START_MS=$(now_ms)
  start_ibex "$IBEX_PORT" ibex
  IBEX_PID=$STARTED_PID
  wait_health ibex "$GW/health" "$IBEX_PID" || die "ibex did not start (see $RUN/ibex.log)"
  IBEX_READY_MS=$(( $(now_ms) - IBEX_START_MS ))
  log "ibex pid=$IBEX_PID on $GW (healthy after ${IBEX_READY_MS} ms)"
  if [[ "$RECORDING_AB" == 1 ]]; then
    start_ibex "$IBEX_OFF_PORT" ibex-off --recording off
    IBEX_OFF_PID=$STARTED_PID
    wait_health ibex-off "http://127.0.0.1:$IBEX_OFF_PORT/health" "$IBEX_OFF_PID" ||
      die "ibex --recording off did not start (see $RUN/ibex-off.log)"
    log "ibex --recording off pid=$IBEX_OFF_PID on port $IBEX_OFF_PORT"
  fi
else
  GW="$UPSTREAM"
  log "GATEWAY=direct: the 'ibex' rows are fakellm again (tooling dry run, no CPU/RSS figures)"
fi
IDLE_NS0=$(cpu_ns "$IBEX_PID"); IDLE_T0=$(now_ms)
sleep "$IDLE_SETTLE"
RSS_IDLE_KB=0
[[ -n "$IBEX_PID" ]] && RSS_IDLE_KB=$(rss_kb "$IBEX_PID")
log "ibex idle RSS: ${RSS_IDLE_KB} kB"

PATHS_URL_direct="$UPSTREAM/v1/chat/completions"
PATHS_URL_ibex="$GW/v1/chat/completions"
PATHS_URL_ibex_off="http://127.0.0.1:$IBEX_OFF_PORT/v1/chat/completions"
url_of() { local v="PATHS_URL_$1"; echo "${!v}"; }
PATHS=(direct ibex)
[[ -n "$IBEX_OFF_PID" ]] && PATHS=(direct ibex_off ibex)
pid_of() { if [[ "$1" == ibex_off ]]; then echo "$IBEX_OFF_PID"; else echo "$IBEX_PID"; fi; }

BODY="$RUN/chat.json"
BODY_STREAM="$RUN/chat_stream.json"
jq -c --arg m "$MODEL" '.model = $m' "$BENCH_DIR/load/chat.json" >"$BODY"
jq -c --arg m "$MODEL" '.model = $m' "$BENCH_DIR/load/chat_stream.json" >"$BODY_STREAM"
AUTH="Authorization: Bearer $CLIENT_KEY"
HDRS=(-H "$AUTH")
WRK_HEADERS="$AUTH"
if [[ "$BENCH_AGENT" == 1 ]]; then
  HDRS+=(-H "X-IBEX-Agent-ID: $BENCH_AGENT_ID")
  WRK_HEADERS="$AUTH|X-IBEX-Agent-ID: $BENCH_AGENT_ID"
fi
STREAM_HDRS=(-H "x-fakellm-chunks: $STREAM_CHUNKS" -H "x-fakellm-interval-ms: $STREAM_INTERVAL_MS")

PREFLIGHT_PCT=null
((QUIET_WAIT > 0)) && wait_quiet
# ibex's own CPU while idle (timers, background threads), from schedstat
IDLE_WINDOW_MS=$(( $(now_ms) - IDLE_T0 ))
IDLE_CPU_PCT=$(awk -v ns="$(( $(cpu_ns "$IBEX_PID") - IDLE_NS0 ))" -v ms="$IDLE_WINDOW_MS" 'BEGIN { if (ns < 0) ns = 0; printf "%.3f", ns / 1e4 / (ms > 0 ? ms : 1) }')
[[ -n "$IBEX_PID" ]] || IDLE_CPU_PCT=null

# ---------------------------------------------------------------- smoke
smoke() {   # PATH -> $RUN/smoke-PATH.json
  local p=$1 url ok_ns=false ok_s=false
  url=$(url_of "$p")
  curl -s -m 10 -X POST "${HDRS[@]}" -H 'Content-Type: application/json' --data-binary @"$BODY" \
    -o "$RUN/smoke-$p.body" -w '%{http_code}' "$url" >"$RUN/smoke-$p.code" 2>/dev/null
  [[ "$(cat "$RUN/smoke-$p.code")" == 200 ]] && grep -q '"chat.completion"' "$RUN/smoke-$p.body" && ok_ns=true
  curl -s -N -m 20 -X POST "${HDRS[@]}" -H 'Content-Type: application/json' "${STREAM_HDRS[@]}" \
    --data-binary @"$BODY_STREAM" "$url" >"$RUN/smoke-$p.stream" 2>/dev/null
  grep -q '^data: \[DONE\]' "$RUN/smoke-$p.stream" && ok_s=true
  jq -n --argjson a "$ok_ns" --argjson b "$ok_s" '{non_stream_ok:$a, stream_ok:$b}' >"$RUN/smoke-$p.json"
  log "smoke $p: non-stream=$ok_ns stream=$ok_s"
}
for p in "${PATHS[@]}"; do smoke "$p"; done

# ---------------------------------------------------------------- measurement helpers
# Each phase writes $RUN/<phase>-<path>.meta.json with CPU, upstream counters and noise.
steal_ticks() {   # VM steal time of all CPUs, clock ticks (/proc/stat)
  local _c u n sy id io irq sirq steal _r
  read -r _c u n sy id io irq sirq steal _r </proc/stat
  echo "${steal:-0}"
}
thread_ticks() {   # PID -> "name ticks" per thread name (comm), summed
  local t n c
  [[ -n "$1" ]] || return 0
  for t in /proc/"$1"/task/*; do
    read -r n 2>/dev/null <"$t/comm" || continue
    c=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null) || continue
    echo "$n ${c:-0}"
  done | awk '{ s[$1] += $2 } END { for (n in s) print n, s[n] }'
}
phase_begin() {   # PATH: the ibex whose CPU is counted (direct: the main one, idle meanwhile)
  PH_PID=$(pid_of "$1")
  PH_S0=$(steal_ticks)
  foreign_snapshot
  PH_T0=$(now_ms); PH_C0=$(cpu_ticks "$PH_PID"); PH_N0=$(cpu_ns "$PH_PID")
  PH_TH0=$(thread_ticks "$PH_PID")
  PH_F0=$(cpu_ticks "$FAKELLM_PID"); PH_U0=$(stat_of chat)
}
IBEX_DIED=""      # phase during which ibex exited on its own (the rest of the run is skipped)
IBEX_DIED_STATUS=null
gw_alive() {   # false (and logs once) when ibex is gone; PHASE for the message
  [[ -z "$IBEX_PID" ]] && return 0
  [[ -n "$IBEX_DIED" ]] && return 1
  is_alive "$IBEX_PID" && return 0
  wait "$IBEX_PID" 2>/dev/null
  IBEX_DIED_STATUS=$?
  IBEX_DIED=$1
  log "ERROR: ibex exited during $1 (status $IBEX_DIED_STATUS; see $RUN/ibex.log); skipping the rest"
  return 1
}
phase_end() {   # NAME
  local t1 c1 n1 f1 u1 fp s1
  gw_alive "$1"
  fp=$(foreign_pct); s1=$(steal_ticks)
  t1=$(now_ms); c1=$(cpu_ticks "$PH_PID"); n1=$(cpu_ns "$PH_PID"); f1=$(cpu_ticks "$FAKELLM_PID"); u1=$(stat_of chat)
  threads=$(join <(echo "$PH_TH0" | sort) <(thread_ticks "$PH_PID" | sort) |
    jq -R -s 'split("\n") | map(select(length > 0) | split(" ")) | map({(.[0]): ((.[2] | tonumber) - (.[1] | tonumber))}) | add // {}')
  jq -n --argjson threads "$threads" --argjson wall "$((t1 - PH_T0))" --argjson ticks "$((c1 - PH_C0))" --argjson ns "$((n1 - PH_N0))" \
    --argjson fticks "$((f1 - PH_F0))" --argjson up "$((u1 - PH_U0))" --argjson other "$fp" \
    --argjson tck "$CLK_TCK" --argjson steal "$((s1 - PH_S0))" --argjson rss "$( [[ -n "$PH_PID" ]] && rss_kb "$PH_PID" || echo 0)" \
    '{wall_ms:$wall, ibex_cpu_ticks:$ticks, ibex_cpu_sched_ns:$ns, ibex_thread_cpu_ticks:$threads, fakellm_cpu_ticks:$fticks,
      upstream_requests:$up, other_cpu_pct:$other, steal_ticks:$steal, clk_tck:$tck, ibex_rss_kb_after:$rss}' >"$RUN/$1.meta.json"
  ((fp > 20)) && log "WARNING: other processes used ${fp}% of a core during $1"
  return 0
}
WRK_ENV=(env BODY_FILE="$BODY" EXTRA_HEADERS="$WRK_HEADERS")
wrk_run() {   # PATH SECONDS OUTFILE
  run_fg "${PIN_LOAD[@]}" timeout $(($2 + 30)) "${WRK_ENV[@]}" wrk -t1 -c"$SAT_CONNS" -d"$2s" --timeout 10s \
    -s "$BENCH_DIR/load/wrk_post.lua" "$(url_of "$1")" >"$3.txt" 2>&1
  sed -n 's/^WRKJSON //p' "$3.txt" >"$3.json"
  [[ -s "$3.json" ]] || { log "wrk produced no summary (see $3.txt)"; echo '{}' >"$3.json"; }
}

# ---------------------------------------------------------------- 1. saturation (wrk)
for p in "${PATHS[@]}"; do
  gw_alive "warm-up" || break
  if ((WARMUP > 0)); then
    log "warm-up $p: wrk -c$SAT_CONNS ${WARMUP}s"
    wrk_run "$p" "$WARMUP" "$RUN/warmup-$p"
  fi
done
for p in "${PATHS[@]}"; do
  gw_alive "saturation" || break
  log "saturation $p: wrk -c$SAT_CONNS ${SAT_DURATION}s"
  phase_begin "$p"
  wrk_run "$p" "$SAT_DURATION" "$RUN/sat-$p"
  phase_end "sat-$p"
done

# ---------------------------------------------------------------- 2. fixed rates (loadgen)
for r in $RATES; do
  ((r > 0)) || continue
  for p in "${PATHS[@]}"; do
    gw_alive "fixed rate $r" || break
    log "fixed rate $r req/s $p: ${RATE_DURATION}s"
    phase_begin "$p"
    run_fg "${PIN_LOAD[@]}" timeout $((RATE_DURATION + 60)) "$LOADGEN" --url "$(url_of "$p")" --body "$BODY" \
      "${HDRS[@]}" --rate "$r" --duration "$RATE_DURATION" --timeout 10 --label "$p-rate-$r" \
      >"$RUN/rate$r-$p.json" 2>"$RUN/rate$r-$p.err"
    phase_end "rate$r-$p"
  done
done

# ---------------------------------------------------------------- 3. streaming TTFT
if ((STREAM_N > 0)); then
  for p in "${PATHS[@]}"; do
    gw_alive "streams" || break
    log "streams $p: $STREAM_N sequential ($STREAM_CHUNKS chunks x ${STREAM_INTERVAL_MS} ms)"
    phase_begin "$p"
    run_fg "${PIN_LOAD[@]}" timeout 300 "$LOADGEN" --url "$(url_of "$p")" --body "$BODY_STREAM" "${HDRS[@]}" \
      "${STREAM_HDRS[@]}" --concurrency 1 --requests "$STREAM_N" --timeout 30 --label "$p-stream" \
      >"$RUN/stream-$p.json" 2>"$RUN/stream-$p.err"
    phase_end "stream-$p"
  done
fi

# ---------------------------------------------------------------- 4. RSS with N open streams
RSS_AFTER_LOAD_KB=0
gw_alive "streams" && [[ -n "$IBEX_PID" ]] && RSS_AFTER_LOAD_KB=$(rss_kb "$IBEX_PID")
if ((HOLD_STREAMS > 0)) && gw_alive "hold"; then
  log "hold: $HOLD_STREAMS streams open through $GATEWAY"
  ready="$RUN/hold.ready"
  rm -f "$ready"
  base_active=$(stat_of active)
  "${PIN_LOAD[@]}" "$LOADGEN" --url "$(url_of ibex)" --body "$BODY_STREAM" "${HDRS[@]}" \
    -H "x-fakellm-chunks: 100" -H "x-fakellm-interval-ms: 600000" --hold "$HOLD_STREAMS" \
    --timeout "$HOLD_TIMEOUT" --ready-file "$ready" --label hold >"$RUN/hold.json" 2>"$RUN/hold.err" &
  HOLD_PID=$!
  PIDS+=("$HOLD_PID")
  deadline=$((SECONDS + HOLD_TIMEOUT + 5))
  while [[ ! -f "$ready" ]] && ((SECONDS < deadline)) && is_alive "$HOLD_PID"; do sleep 0.1; done
  held=$(cat "$ready" 2>/dev/null || echo 0)
  sleep 0.5   # let the upstream side settle
  active=$(stat_of active)
  hold_rss=0; hold_hwm=0; hold_fds=0
  if [[ -n "$IBEX_PID" ]]; then
    hold_rss=$(rss_kb "$IBEX_PID"); hold_hwm=$(rss_kb "$IBEX_PID" VmHWM)
    hold_fds=$(ls "/proc/$IBEX_PID/fd" 2>/dev/null | wc -l)
  fi
  log "hold: client has $held open, fakellm active=$active, ibex RSS ${hold_rss} kB"
  stop_pid "$HOLD_PID"
  # the clients left: ibex must abort the upstream streams
  for _ in $(seq 50); do (( $(stat_of active) <= base_active )) && break; sleep 0.1; done
  active_after=$(stat_of active)
  rss_released=0
  [[ -n "$IBEX_PID" ]] && rss_released=$(rss_kb "$IBEX_PID")
  jq -n --argjson want "$HOLD_STREAMS" --argjson held "$held" --argjson active "$((active - base_active))" \
    --argjson after "$((active_after - base_active))" --argjson rss "$hold_rss" --argjson hwm "$hold_hwm" \
    --argjson fds "$hold_fds" --argjson rel "$rss_released" \
    '{wanted:$want, client_open:$held, upstream_active:$active, upstream_active_after_release:$after,
      ibex_rss_kb:$rss, ibex_hwm_kb:$hwm, ibex_fds:$fds, ibex_rss_kb_after_release:$rel}' >"$RUN/hold.meta.json"
fi

# ---------------------------------------------------------------- stop, collect
RSS_END_KB=0
IBEX_EXIT=null
IBEX_STOP_MS=null
if [[ -n "$IBEX_PID" ]] && gw_alive "hold"; then
  RSS_END_KB=$(rss_kb "$IBEX_PID")
  t0=$(now_ms)
  kill -TERM "$IBEX_PID" 2>/dev/null
  for _ in $(seq 100); do is_alive "$IBEX_PID" || break; sleep 0.05; done
  if is_alive "$IBEX_PID"; then
    log "WARNING: ibex still running 5 s after SIGTERM; killing it"
    kill -KILL "$IBEX_PID" 2>/dev/null
  fi
  wait "$IBEX_PID" 2>/dev/null
  IBEX_EXIT=$?
  IBEX_STOP_MS=$(( $(now_ms) - t0 ))
fi
FINAL_STATS=$(curl -s -m 5 "$UPSTREAM/_fakellm/stats" || echo '{}')
cleanup
trap - EXIT

commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)
dirty=false
[[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && dirty=true
ibex_version=$([[ "$GATEWAY" == ibex ]] && "$IBEX_BIN" version 2>/dev/null | head -1 || echo "")
jq -n \
  --arg ts "$TS" --arg date "$(date -Iseconds)" --arg host "$(hostname)" --argjson nproc "$NCPU" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" --arg kernel "$(uname -r)" \
  --arg commit "$commit" --argjson dirty "$dirty" --arg ibex_version "$ibex_version" \
  --arg wrk "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" --arg libuv "$(pkg-config --modversion libuv)" \
  --arg gateway "$GATEWAY" --argjson netns "$NETNS_USED" --argjson pin "$PIN" \
  --arg cpu_load "$CPU_LOAD" --arg cpu_up "$CPU_UPSTREAM" --arg cpu_ibex "$CPU_IBEX" \
  --argjson workers "$WORKERS" --arg rates "$RATES" --argjson rate_s "$RATE_DURATION" \
  --argjson sat_s "$SAT_DURATION" --argjson conns "$SAT_CONNS" --argjson warm "$WARMUP" \
  --argjson stream_n "$STREAM_N" --argjson chunks "$STREAM_CHUNKS" --argjson interval "$STREAM_INTERVAL_MS" \
  --argjson hold "$HOLD_STREAMS" --arg model "$MODEL" --argjson preflight "${PREFLIGHT_PCT:-null}" \
  --argjson rss_idle "$RSS_IDLE_KB" --argjson rss_after "$RSS_AFTER_LOAD_KB" --argjson rss_end "$RSS_END_KB" \
  --arg died "$IBEX_DIED" --argjson died_status "$IBEX_DIED_STATUS" --argjson ready_ms "$IBEX_READY_MS" --argjson idle_cpu "$IDLE_CPU_PCT" --argjson idle_ms "$IDLE_WINDOW_MS" --argjson exit "$IBEX_EXIT" --argjson stop_ms "$IBEX_STOP_MS" \
  --argjson fstats "$FINAL_STATS" --arg cmd "$(cat "$RUN/ibex.cmd" 2>/dev/null)" --arg fargs "$FAKELLM_ARGS" \
  --arg paths "${PATHS[*]}" --arg cmd_off "$(cat "$RUN/ibex-off.cmd" 2>/dev/null)" \
  --argjson t_cpu "$TARGET_CPU_US" --argjson t_lat "$TARGET_ADDED_P50_MS" --argjson t_ttft "$TARGET_TTFT_MS" \
  --argjson t_idle "$TARGET_RSS_IDLE_MB" --argjson t_hold "$TARGET_RSS_HOLD_MB" \
  '{timestamp:$ts, date:$date, machine:{host:$host, nproc:$nproc, cpu:$cpu, kernel:$kernel},
    git:{commit:$commit, dirty:$dirty}, ibex_version:$ibex_version, versions:{wrk:$wrk, libuv:$libuv},
    config:{gateway:$gateway, paths:($paths|split(" ")), ibex_cmd:$cmd, ibex_off_cmd:(if $cmd_off == "" then null else $cmd_off end), fakellm_args:$fargs, netns:($netns==1), pin:($pin==1), cpu_load:$cpu_load,
      cpu_upstream:$cpu_up, cpu_ibex:$cpu_ibex, workers:$workers,
      rates:($rates|split(" ")|map(select(length>0)|tonumber)), rate_duration_s:$rate_s,
      sat_duration_s:$sat_s, sat_connections:$conns, warmup_s:$warm, stream_n:$stream_n,
      stream_chunks:$chunks, stream_interval_ms:$interval, hold_streams:$hold, model:$model},
    preflight_other_cpu_pct:$preflight,
    ibex:{died_during:(if $died == "" then null else $died end), died_status:$died_status, ready_ms:$ready_ms, idle_cpu_pct:$idle_cpu, idle_window_ms:$idle_ms, rss_idle_kb:$rss_idle, rss_after_load_kb:$rss_after, rss_end_kb:$rss_end,
      exit_status:$exit, stop_ms:$stop_ms},
    fakellm_final_stats:$fstats,
    targets:{cpu_us_per_req:$t_cpu, added_p50_ms_at_2000:$t_lat, ttft_overhead_ms:$t_ttft,
      rss_idle_mb:$t_idle, rss_hold_mb:$t_hold}}' >"$RUN/run.json"

# The request log can be tens of MB after a saturation run: keep it compressed.
node "$BENCH_DIR/report.mjs" "$RUN" "$OUT_DIR"
rc=$?
[[ -s "$RUN/ibex.log" ]] && gzip -f "$RUN/ibex.log"
rm -f "$RUN/bench-gw"
if ((rc == 3)); then
  ((STRICT == 1)) && exit 1
  exit 0
fi
exit "$rc"
