#!/usr/bin/env bash
# bench/lib.sh - what the bench scripts share (run.sh, translation.sh, providers.sh): processes
# started and stopped by PID, a process's CPU (/proc/<pid>/stat ticks and schedstat ns), RSS, the
# CPU used by processes outside the bench, waiting for a server's health check, the
# three-provider config of the translation benchmarks, and one callgrind run of ibex for the
# instruction counts.
# Sourced, not run. The caller defines log() (one line to the console) and may set
# READY_TIMEOUT (s, default 20), QUIET_WAIT (s, default 30) and QUIET_MAX_PCT (default 15);
# wait_quiet sets PREFLIGHT_PCT. PIDS holds what cleanup() stops (the caller traps EXIT to it).
# shellcheck shell=bash

PIDS=()
is_alive() {   # running and not a zombie
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}
stop_pid() {   # SIGTERM, wait up to 5 s, then SIGKILL; only PIDs we started
  local pid=$1
  [[ -n "$pid" ]] || return 0
  if is_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do is_alive "$pid" || break; sleep 0.1; done
    is_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}
FG_PID=""
run_fg() {   # run a load tool in the background and wait, so that a signal is handled at once
  local rc
  "$@" &
  FG_PID=$!
  wait "$FG_PID"
  rc=$?
  FG_PID=""
  return "$rc"
}
cleanup() {
  local p
  for p in $FG_PID "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
  FG_PID=""
}
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {   # utime+stime of a process (all its threads, dead ones included), clock ticks
  local st f
  [[ -n "${1:-}" ]] || { echo 0; return; }
  read -r st 2>/dev/null <"/proc/$1/stat" || { echo 0; return; }
  st=${st##*) }
  read -r -a f <<<"$st"
  echo $((f[11] + f[12]))
}
cpu_ns() {   # on-CPU time of the live threads from schedstat, ns (finer than ticks)
  local t total=0 a
  [[ -n "${1:-}" ]] || { echo 0; return; }
  for t in /proc/"$1"/task/*/schedstat; do
    read -r a _ 2>/dev/null <"$t" || continue
    total=$((total + a))
  done
  echo "$total"
}
rss_kb() { awk -v k="${2:-VmRSS}:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# CPU used by processes that are not ours, during a phase (a busy neighbour skews everything).
declare -A FT0=()
foreign_snapshot() {
  local d p st f
  FT0=()
  local -A ours=()
  for p in $$ $(descendants $$); do ours[$p]=1; done
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ -n "${ours[$p]:-}" ]] && continue
    read -r st 2>/dev/null <"$d/stat" || continue
    st=${st##*) }
    read -r -a f <<<"$st"
    [[ "$p" == 2 || "${f[1]}" == 2 ]] && continue   # kernel threads
    FT0[$p]=$((f[11] + f[12]))
  done
  FT_T0=$(now_ms)
}
foreign_pct() {   # % of one core used since the snapshot by the processes seen then
  local p st f total=0 v
  for p in "${!FT0[@]}"; do
    read -r st 2>/dev/null <"/proc/$p/stat" || continue
    st=${st##*) }
    read -r -a f <<<"$st"
    v=$((f[11] + f[12] - FT0[$p]))
    ((v > 0)) && total=$((total + v))
  done
  local ms=$(($(now_ms) - FT_T0 + 1))
  echo $((total * 1000 * 100 / CLK_TCK / ms))
}
# shellcheck disable=SC2034  # PREFLIGHT_PCT is read by the caller
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-30})) pct
  while :; do
    foreign_snapshot; sleep 1; pct=$(foreign_pct)
    if ((pct < ${QUIET_MAX_PCT:-15})); then log "machine quiet (other processes: ${pct}% of a core)"; PREFLIGHT_PCT=$pct; return; fi
    if ((SECONDS >= deadline)); then log "WARNING: other processes use ${pct}% of a core; measuring anyway"; PREFLIGHT_PCT=$pct; return; fi
    log "other processes use ${pct}% of a core; waiting (up to ${QUIET_WAIT:-30}s)"
    sleep 2
  done
}

http_code() { curl -s -m 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null; }
wait_health() {   # NAME URL PID
  local deadline=$((SECONDS + ${READY_TIMEOUT:-20}))
  while ((SECONDS < deadline)); do
    is_alive "$3" || { log "$1 exited during start-up"; return 1; }
    [[ "$(http_code "$2")" == 200 ]] && return 0
    sleep 0.05
  done
  log "$1: $2 not 200 after ${READY_TIMEOUT:-20}s"
  return 1
}

# The config of bench/translation.sh and bench/translation_instructions.sh: three providers of
# the three types at the same fakellm ($1, its base URL). Each alias is the upstream model's
# own name, so that no request is serialised again for a new model name (a true pass-through
# for openai).
three_providers_yaml() {
  cat <<EOF
providers:
  - {name: fake-openai, type: openai, base_url: "$1/v1", api_key: bench}
  - {name: fake-anthropic, type: anthropic, base_url: "$1", api_key: bench}
  - {name: fake-gemini, type: gemini, base_url: "$1", api_key: bench}
models:
  - {name: fakellm-openai, provider: fake-openai}
  - {name: fakellm-anthropic, provider: fake-anthropic}
  - {name: fakellm-gemini, provider: fake-gemini}
EOF
}

# The instruction-count benchmarks (translation_instructions.sh, recording_instructions.sh).
# callgrind_setup: a work dir ($WORK, removed on exit), bench/setup.sh, valgrind, a build, a
# fakellm on 127.0.0.1:$UPSTREAM_PORT and the three-provider config in $WORK/ibex.yaml.
CALLGRIND_KEY=ibex_sk_benchKey000000000000000000000000000
callgrind_setup() {
  WORK=$(mktemp -d)
  trap 'cleanup; rm -rf "$WORK"' EXIT
  "$BENCH_DIR/setup.sh" || die "bench/setup.sh failed"
  command -v valgrind >/dev/null || die "valgrind is not installed (bench/setup.sh installs it)"
  make -s -C "$REPO" all >&2 || die "make failed"
  local upstream="http://127.0.0.1:$UPSTREAM_PORT"
  "$FAKELLM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" >"$WORK/fakellm.log" 2>&1 &
  PIDS+=($!)
  wait_health fakellm "$upstream/health" "${PIDS[-1]}" || die "fakellm did not start"
  three_providers_yaml "$upstream" >"$WORK/ibex.yaml"
}

# One run of ibex under valgrind's callgrind, threads counted apart: callgrind_run OUT N RATE
# BODY ARGS... starts `$IBEX_BIN serve --listen 127.0.0.1:$IBEX_PORT --workers 1 --dev
# --store-url sqlite://OUT.db ARGS...`, sends it N copies of BODY at RATE req/s with the
# loadgen headers in the array CALLGRIND_HEADERS (the bearer token added), keeps its /metrics
# in OUT.metrics and stops it. Leaves OUT.cg-<thread> (callgrind's files), OUT.json (loadgen's
# report) and OUT.count: "<thread> <instructions>" lines, sorted. Returns 1 when a request
# failed; dies when ibex does not start.
callgrind_run() {
  local out=$1 n=$2 rate=$3 body=$4 pid f
  shift 4
  rm -f "$out".db* "$out".cg*
  env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY IBEX_DEV_TOKEN="$CALLGRIND_KEY" \
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out.cg" "$IBEX_BIN" \
    serve --listen "127.0.0.1:$IBEX_PORT" --workers 1 --dev --store-url "sqlite://$out.db" "$@" \
    >"$out.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  READY_TIMEOUT=90 wait_health ibex "http://127.0.0.1:$IBEX_PORT/health" "$pid" ||
    die "ibex did not start under valgrind (see $out.log)"
  "$REPO/bench/loadgen/loadgen" --url "http://127.0.0.1:$IBEX_PORT/v1/chat/completions" \
    --body "$body" -H "Authorization: Bearer $CALLGRIND_KEY" "${CALLGRIND_HEADERS[@]}" \
    --rate "$rate" --duration "$(awk -v n="$n" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')" \
    --timeout 120 --label callgrind >"$out.json" 2>"$out.err"
  curl -s -H "Authorization: Bearer $CALLGRIND_KEY" "http://127.0.0.1:$IBEX_PORT/metrics" >"$out.metrics"
  stop_pid "$pid"
  [[ "$(jq -r '.errors' "$out.json")" == 0 ]] || { log "$out: failed requests (see $out.json)"; return 1; }
  for f in "$out.cg"-*; do awk -v t="${f##*-}" '/^summary:/ { print t, $2 }' "$f"; done |
    sort >"$out.count"
}
