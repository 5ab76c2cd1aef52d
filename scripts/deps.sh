#!/usr/bin/env bash
# Installs every Debian package ibex builds, tests and benchmarks with (DESIGN.md section 4).
# Idempotent: packages already present are not touched, so a second run costs a dpkg query.
# Run as root (CI and the dev machines are); with sudo available it is used otherwise.
set -euo pipefail

packages=(
  build-essential pkg-config clang clang-format libclang-rt-14-dev
  libuv1-dev node-llhttp libcurl4-openssl-dev libjson-c-dev libcjose-dev libssl-dev
  libsqlite3-dev libpq-dev libhiredis-dev libyaml-dev libcmocka-dev
  libjansson-dev postgresql redis-server curl wrk procps
)
# Node.js (with its npm) runs the end-to-end suites; the machine image ships it, so only a
# machine without node gets Debian's.
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
