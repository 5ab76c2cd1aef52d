#!/usr/bin/env bash
# A throwaway Redis for tests: `redis.sh start` starts redis-server on a free loopback port with
# a random password and no persistence and prints its URL; `redis.sh url` prints the URL of the
# running one; `redis.sh stop` stops it and removes its dir. Idempotent like scripts/pg.sh.
# The dir defaults to one per checkout ($TMPDIR/ibex-redis-<hash of the repo path>);
# IBEX_REDIS_DIR overrides it. Only the URL goes to stdout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${IBEX_REDIS_DIR:-${TMPDIR:-/tmp}/ibex-redis-$(printf %s "$root" | cksum | cut -d' ' -f1)}

die() {
    echo "redis.sh: $*" >&2
    exit 1
}

command -v redis-server >/dev/null || die "redis-server not found (scripts/deps.sh installs redis-server)"

url() {
    echo "redis://:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/0"
}

running() {
    [ -f "$dir/pid" ] && [ -f "$dir/port" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    if running; then
        url
        return
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/password"
    local port
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_free "$port" || continue
        printf 'port %s\nbind 127.0.0.1\nrequirepass %s\ndir %s\nsave ""\nappendonly no\ndaemonize yes\npidfile %s/pid\nlogfile %s/server.log\n' \
            "$port" "$(cat "$dir/password")" "$dir" "$dir" "$dir" >"$dir/redis.conf"
        redis-server "$dir/redis.conf" || continue
        for _ in $(seq 50); do
            [ -f "$dir/pid" ] && ! port_free "$port" && break
            sleep 0.1
        done
        if [ -f "$dir/pid" ] && ! port_free "$port"; then
            echo "$port" >"$dir/port"
            url
            return
        fi
    done
    die "redis did not start: $(tail -3 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
}

stop() {
    if [ -f "$dir/pid" ]; then
        local pid
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url) running && url || die "not running (scripts/redis.sh start)" ;;
*)
    echo "usage: scripts/redis.sh start|stop|url" >&2
    exit 2
    ;;
esac
