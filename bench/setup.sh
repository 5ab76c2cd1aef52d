#!/usr/bin/env bash
# bench/setup.sh - installs what `make bench` needs that `make` does not (Debian 12), then builds
# the load generator. Idempotent: checks first, so a second run costs a few dpkg/command look-ups.
# run.sh calls it before entering its private network namespace (apt needs the network).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

have_cmd cc         || missing+=(gcc libc6-dev)
have_cmd make       || missing+=(make)
have_cmd pkg-config || missing+=(pkg-config)
have_cmd wrk        || missing+=(wrk)
have_cmd curl       || missing+=(curl)
have_cmd jq         || missing+=(jq)
have_cmd taskset    || missing+=(util-linux)
have_cmd unshare    || missing+=(util-linux)
have_cmd ip         || missing+=(iproute2)
have_cmd ps         || missing+=(procps)
have_cmd node       || missing+=(nodejs)
have_cmd valgrind   || missing+=(valgrind)   # bench/translation_instructions.sh
have_pkg libuv1-dev || missing+=(libuv1-dev)
[[ -f /usr/share/llhttp/llhttp.c && -f /usr/share/include/llhttp/llhttp.h ]] || missing+=(node-llhttp)

if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  # de-duplicate (util-linux may be listed twice)
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "bench/setup: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

make -s -C loadgen loadgen
