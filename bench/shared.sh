#!/usr/bin/env bash
# bench/shared.sh - runs the shared gateway comparison harness (../shared/bench, beside the repo)
# with ibex in its "gw" slot, next to direct, nginx and Portkey, in the same run.
# Runs the harness's setup.sh first when its tools or npm packages are missing (needs apt + npm).
# Results go to bench/out/shared/ (RESULTS_DIR), not into shared/.
#   bench/shared.sh                      # TARGETS="direct nginx portkey gw"
#   ROUNDS=3 bench/shared.sh             # any knob of ../shared/bench/run.sh passes through
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
[[ -x "$SHARED/run.sh" ]] || { echo "shared.sh: no harness at $SHARED (set SHARED_BENCH)" >&2; exit 2; }
SHARED="$(cd "$SHARED" && pwd)"
IBEX_BIN=${IBEX_BIN:-$REPO/ibex}
[[ -x "$IBEX_BIN" ]] || make -C "$REPO" all
[[ -x "$IBEX_BIN" ]] || { echo "shared.sh: $IBEX_BIN missing after make" >&2; exit 2; }

needs_setup=0
for c in wrk nginx curl node taskset; do command -v "$c" >/dev/null || needs_setup=1; done
[[ -x "$SHARED/mock/mock_upstream" && -x "$SHARED/loadgen/llmload" ]] || needs_setup=1
[[ -d "$SHARED/targets/npm/node_modules/@portkey-ai/gateway" ]] || needs_setup=1
if ((needs_setup)); then
  echo "shared.sh: running $SHARED/setup.sh (once)" >&2
  "$SHARED/setup.sh"
fi

# The harness runs GW_CMD with bash -c from its own directory, with MOCK_BASE_URL and GW_PORT set;
# `exec` keeps ibex's own PID so the harness measures its CPU exactly. GW_MODEL (default
# gpt-4o-mini) is forwarded to the mock unchanged.
ibex_q=$(printf '%q' "$IBEX_BIN")
export GW_NAME=${GW_NAME:-ibex}
# Authentication on, as in production: --dev pins the key the harness sends (API_KEY) in a
# fresh SQLite store.
export API_KEY=${API_KEY:-ibex_sk_benchKey000000000000000000000000000}
store_dir=$(mktemp -d)
export GW_CMD="OPENAI_API_KEY=x OPENAI_BASE_URL=\$MOCK_BASE_URL IBEX_DEV_TOKEN=\$API_KEY exec $ibex_q serve --listen 127.0.0.1:\$GW_PORT --workers ${WORKERS:-1} --dev --store-url sqlite://$store_dir/ibex.db"
export TARGETS=${TARGETS:-"direct nginx portkey gw"}
export RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/out/shared}
mkdir -p "$RESULTS_DIR"
echo "shared.sh: GW_CMD=$GW_CMD" >&2
exec "$SHARED/run.sh" "$@"
