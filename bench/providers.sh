#!/usr/bin/env bash
# bench/providers.sh - the provider benchmark of issue 5: the same prompts at several sizes
# (SIZES characters), streaming and not, sent through ibex to every configured provider, one at a
# time, RUNS times each. Reports per provider, size and mode: TTFT and total latency p50/p95,
# prompt and completion tokens, and the estimated cost from the PRICES table below. Writes
# bench/out/providers-<timestamp>.json + .md (and providers-latest.*) and prints the table.
#
# It starts its own fakellm and ibex. ibex's YAML config has one provider of each type (openai,
# anthropic, gemini) at fakellm, plus the real providers whose key is set: OPENAI_API_KEY,
# ANTHROPIC_API_KEY, GEMINI_API_KEY (and *_BASE_URL). A real provider without its key is
# reported as "SKIP: <ENV> is not set", in the table and the JSON. Real providers cost money:
# REAL_RUNS (3) requests per size and mode, MAX_TOKENS (128) tokens at most per answer.
# Everything it starts it stops, by PID. Exit status: 0 = every request answered, 1 = some
# failed, 2 = could not run. Knobs: the environment variables below; see bench/README.md.
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
cd "$REPO" || exit 2

# ---------------------------------------------------------------- knobs
SIZES=${SIZES:-"100 2000 20000"}       # prompt sizes, characters
MODES=${MODES:-"non-stream stream"}
RUNS=${RUNS:-20}                       # measured requests per provider, size and mode (fakellm)
REAL_RUNS=${REAL_RUNS:-3}              # the same for real providers (they bill each one)
WARMUP=${WARMUP:-2}                    # unmeasured requests first (fakellm; real ones: 1)
MAX_TOKENS=${MAX_TOKENS:-128}          # max_completion_tokens of every request
TIMEOUT=${TIMEOUT:-120}                # seconds per request
FAKE_CHUNKS=${FAKE_CHUNKS:-16}         # fakellm's answer: chunks (= completion tokens)
FAKELLM_ARGS=${FAKELLM_ARGS:-}         # e.g. "--delay-ms 200 --interval-ms 20" to look like a real model
OPENAI_MODEL=${OPENAI_MODEL:-gpt-4o-mini}
ANTHROPIC_MODEL=${ANTHROPIC_MODEL:-claude-haiku-4-5}
GEMINI_MODEL=${GEMINI_MODEL:-gemini-2.5-flash}
PRICES_FILE=${PRICES_FILE:-}           # replaces the PRICES table below (same format)
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
FAKELLM_BIN=${FAKELLM_BIN:-$REPO/tools/fakellm/fakellm}
IBEX_EXTRA_ARGS=${IBEX_EXTRA_ARGS:-}   # appended to `ibex serve ...`
UPSTREAM_PORT=${UPSTREAM_PORT:-18451}
IBEX_PORT=${IBEX_PORT:-18452}
NETNS=${NETNS:-auto}                   # auto: a private network namespace when no real key is set
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
CLIENT_KEY=ibex_sk_benchKey000000000000000000000000000

# US dollars per million tokens: model, input, output, note. ESTIMATES from the providers' public
# price lists (standard tier, short contexts) when this table was written; check and edit them
# (or point PRICES_FILE at your own) before trusting a cost figure. The fakellm models are priced
# as the real model in their note, so their cost column reads "what these tokens would cost".
PRICES="
fakellm-openai     0.15  0.60   as gpt-4o-mini
fakellm-anthropic  1.00  5.00   as claude-haiku-4-5
fakellm-gemini     0.30  2.50   as gemini-2.5-flash
gpt-4o-mini        0.15  0.60   estimate
gpt-4o             2.50 10.00   estimate
gpt-4.1-mini       0.40  1.60   estimate
gpt-4.1            2.00  8.00   estimate
gpt-5-mini         0.25  2.00   estimate
gpt-5              1.25 10.00   estimate
claude-haiku-4-5   1.00  5.00   estimate
claude-sonnet-4-5  3.00 15.00   estimate
claude-opus-4-1   15.00 75.00   estimate
gemini-2.5-flash-lite 0.10 0.40 estimate
gemini-2.5-flash   0.30  2.50   estimate
gemini-2.5-pro     1.25 10.00   estimate (prompts up to 200k tokens)
"

exec 3>&2
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&3; }
die() { log "ERROR: $*"; exit 2; }

# The real providers: name, type, key variable, base URL variable, default base URL, model.
REAL=(
  "openai openai OPENAI_API_KEY OPENAI_BASE_URL https://api.openai.com/v1 $OPENAI_MODEL"
  "anthropic anthropic ANTHROPIC_API_KEY ANTHROPIC_BASE_URL https://api.anthropic.com $ANTHROPIC_MODEL"
  "gemini gemini GEMINI_API_KEY GEMINI_BASE_URL https://generativelanguage.googleapis.com $GEMINI_MODEL"
)
any_key=0
for r in "${REAL[@]}"; do
  read -r _ _ kv _ <<<"$r"
  [[ -n "${!kv:-}" ]] && any_key=1
done

# --------------------------------------- build, then (fakellm only) a private network namespace
if [[ "${IBEX_BENCH_IN_NETNS:-0}" != 1 ]]; then
  for c in curl jq node; do command -v "$c" >/dev/null || die "missing '$c' (bench/setup.sh)"; done
  make -s -C "$REPO" all >&2 || die "make failed"
  if [[ "$NETNS" == 1 || ("$NETNS" == auto && $any_key == 0) ]] &&
     unshare -n true 2>/dev/null && command -v ip >/dev/null; then
    exec unshare -n -- env IBEX_BENCH_IN_NETNS=1 bash "$BENCH_DIR/providers.sh" "$@"
  elif [[ "$NETNS" == 1 ]]; then
    die "NETNS=1 but 'unshare -n' is not permitted here"
  fi
fi
NETNS_USED=0
if [[ "${IBEX_BENCH_IN_NETNS:-0}" == 1 ]]; then
  ip link set lo up || die "cannot bring lo up in the private network namespace"
  NETNS_USED=1
fi
for b in "$IBEX_BIN" "$FAKELLM_BIN"; do [[ -x "$b" ]] || die "$b not found: run 'make' first"; done

TS=$(date +%Y%m%d-%H%M%S)
RUN="$OUT_DIR/providers-$TS"
mkdir -p "$RUN" || die "cannot create $RUN"
log "output: $RUN (netns: $NETNS_USED)"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- prices
if [[ -n "$PRICES_FILE" ]]; then
  PRICES=$(cat "$PRICES_FILE") || die "cannot read PRICES_FILE $PRICES_FILE"
fi
# model input output note... -> {"model": {"input":, "output":, "note":}}
PRICES_JSON=$(awk 'NF >= 3 && $1 !~ /^#/ { note = ""; for (i = 4; i <= NF; i++) note = note (i > 4 ? " " : "") $i;
  printf "%s\t%s\t%s\t%s\n", $1, $2, $3, note }' <<<"$PRICES" |
  jq -R -s 'split("\n") | map(select(length > 0) | split("\t")) |
    map({key: .[0], value: {input: (.[1] | tonumber), output: (.[2] | tonumber), note: (if .[3] == "" then "estimate" else .[3] end)}}) |
    from_entries') || die "the prices table is malformed (model input output [note] per line)"

# ---------------------------------------------------------------- fakellm and ibex
UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
GW="http://127.0.0.1:$IBEX_PORT"
for u in "$UPSTREAM" "$GW"; do
  [[ "$(http_code "$u/health")" == 000 ]] || die "something already answers on $u (set UPSTREAM_PORT / IBEX_PORT)"
done
# shellcheck disable=SC2086  # FAKELLM_ARGS is a word list on purpose
"$FAKELLM_BIN" --listen "127.0.0.1:$UPSTREAM_PORT" $FAKELLM_ARGS >"$RUN/fakellm.log" 2>&1 3>&- &
FAKELLM_PID=$!
PIDS+=("$FAKELLM_PID")
wait_health fakellm "$UPSTREAM/health" "$FAKELLM_PID" || die "fakellm did not start (see $RUN/fakellm.log)"

# The plan's providers: the three fakellm ones, then each real one or its SKIP.
PROVIDERS_JSON="[]"
add_provider() {   # NAME TYPE KIND MODEL RUNS WARMUP HEADERS_JSON SKIP
  PROVIDERS_JSON=$(jq -c --arg n "$1" --arg t "$2" --arg k "$3" --arg m "$4" --argjson runs "$5" \
    --argjson warm "$6" --argjson h "$7" --arg skip "$8" \
    '. + [{name:$n, type:$t, kind:$k, alias:$m, model:$m, runs:$runs, warmup:$warm,
           headers:$h, skip:(if $skip == "" then null else $skip end)}]' <<<"$PROVIDERS_JSON")
}
{
  echo "# written by bench/providers.sh: fakellm behind each provider type, then the real providers"
  echo "providers:"
  echo "  - {name: fake-openai, type: openai, base_url: \"$UPSTREAM/v1\", api_key: bench}"
  echo "  - {name: fake-anthropic, type: anthropic, base_url: \"$UPSTREAM\", api_key: bench}"
  echo "  - {name: fake-gemini, type: gemini, base_url: \"$UPSTREAM\", api_key: bench}"
} >"$RUN/ibex.yaml"
MODELS_YAML="models:   # each alias is the upstream model's own name: the request goes as sent"
FAKE_HEADERS=$(jq -nc --arg c "$FAKE_CHUNKS" '{"x-fakellm-chunks": $c}')
for t in openai anthropic gemini; do
  MODELS_YAML+=$'\n'"  - {name: fakellm-$t, provider: fake-$t}"
  add_provider "fake-$t" "$t" fakellm "fakellm-$t" "$RUNS" "$WARMUP" "$FAKE_HEADERS" ""
done
for r in "${REAL[@]}"; do
  read -r name type kv bv burl model <<<"$r"
  if [[ -z "${!kv:-}" ]]; then
    add_provider "$name" "$type" real "$model" 0 0 '{}' "$kv is not set"
    log "$name: SKIP: $kv is not set"
    continue
  fi
  echo "  - {name: $name, type: $type, base_url: \"${!bv:-$burl}\", api_key_env: $kv}" >>"$RUN/ibex.yaml"
  MODELS_YAML+=$'\n'"  - {name: \"$model\", provider: $name}"
  add_provider "$name" "$type" real "$model" "$REAL_RUNS" 1 '{}' ""
  log "$name: $model at ${!bv:-$burl} ($REAL_RUNS runs per size and mode)"
done
{
  echo "$MODELS_YAML"
  echo "prices:   # the bench's table: ibex's own cost counters are checked against the bench's sums"
  jq -r 'to_entries[] | "  - {model: \"\(.key)\", input: \(.value.input), output: \(.value.output)}"' <<<"$PRICES_JSON"
} >>"$RUN/ibex.yaml"

# shellcheck disable=SC2206  # IBEX_EXTRA_ARGS is a word list on purpose
IBEX_CMD=("$IBEX_BIN" serve --config "$RUN/ibex.yaml" --listen "127.0.0.1:$IBEX_PORT" --workers 1
          --dev --store-url "sqlite://$RUN/ibex.db" --forward-headers 'x-fakellm-*' $IBEX_EXTRA_ARGS)
echo "${IBEX_CMD[*]}" >"$RUN/ibex.cmd"
IBEX_DEV_TOKEN="$CLIENT_KEY" "${IBEX_CMD[@]}" >"$RUN/ibex.stdout" 2>"$RUN/ibex.log" 3>&- &
IBEX_PID=$!
PIDS+=("$IBEX_PID")
wait_health ibex "$GW/health" "$IBEX_PID" || die "ibex did not start (see $RUN/ibex.log)"
log "fakellm pid=$FAKELLM_PID, ibex pid=$IBEX_PID; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- the plan, then the client
jq -n --arg url "$GW" --arg key "$CLIENT_KEY" --arg sizes "$SIZES" --arg modes "$MODES" \
  --argjson max "$MAX_TOKENS" --argjson timeout "$TIMEOUT" --argjson prices "$PRICES_JSON" \
  --argjson providers "$PROVIDERS_JSON" --arg dir "$OUT_DIR" --arg name "providers-$TS" \
  --arg ts "$TS" --arg date "$(date -Iseconds)" --arg host "$(hostname)" --argjson nproc "$(nproc)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
  --arg commit "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg cmd "$(cat "$RUN/ibex.cmd")" \
  --arg fakellm "chunks $FAKE_CHUNKS${FAKELLM_ARGS:+, $FAKELLM_ARGS}" --argjson netns "$NETNS_USED" \
  '{url:$url, key:$key, sizes:($sizes | split(" ") | map(select(length > 0) | tonumber)),
    modes:($modes | split(" ") | map(select(length > 0))), max_tokens:$max, timeout_s:$timeout,
    prices:$prices, providers:$providers, out:{dir:$dir, name:$name},
    run:{timestamp:$ts, date:$date, host:$host, nproc:$nproc, cpu:$cpu, commit:$commit, loadavg:$load,
         ibex_cmd:$cmd, fakellm:$fakellm, netns:($netns == 1)}}' >"$RUN/plan.json"
node "$BENCH_DIR/providers.mjs" "$RUN/plan.json"
rc=$?
stop_pid "$IBEX_PID"
cleanup
trap - EXIT
[[ -s "$RUN/ibex.log" ]] && gzip -f "$RUN/ibex.log"
exit "$rc"
