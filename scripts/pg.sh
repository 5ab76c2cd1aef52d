#!/usr/bin/env bash
# A throwaway Postgres for tests: `pg.sh start` initialises a cluster in a temp dir, starts it on
# a free loopback port and prints its URL; `pg.sh url` prints the URL of the running one;
# `pg.sh stop` stops it and removes the dir. Idempotent: start on a running server prints its
# URL, stop on a stopped one does nothing. Postgres refuses to run as root, so as root the
# server runs as the `postgres` user (runuser). Only the URL goes to stdout.
# The dir defaults to one per checkout ($TMPDIR/ibex-pg-<hash of the repo path>); IBEX_PG_DIR
# overrides it. fsync is off: the data is thrown away.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${IBEX_PG_DIR:-${TMPDIR:-/tmp}/ibex-pg-$(printf %s "$root" | cksum | cut -d' ' -f1)}

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    die "Postgres server binaries not found under /usr/lib/postgresql (scripts/deps.sh installs postgresql)"
fi

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [ -f "$dir/port" ] && [ -f "$dir/data/PG_VERSION" ] &&
        as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

url() {
    echo "postgresql://ibex:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/ibex"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    if running; then
        url
        return
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/password"
        [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
        as_pg "$bindir/initdb" -D "$dir/data" -U ibex --pwfile="$dir/password" -E UTF8 \
            --locale=C --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
            die "initdb failed: $(tail -3 "$dir/initdb.log" | tr '\n' ' ')"
    fi
    local port started=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_free "$port" || continue
        if as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50" \
            start >/dev/null 2>&1; then
            started=1
            break
        fi
    done
    [ -n "$started" ] || die "postgres did not start: $(tail -3 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
    echo "$port" >"$dir/port"
    if ! as_pg "$bindir/psql" -h "$dir" -p "$port" -U ibex -d postgres -tAq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'ibex'" | grep -q 1; then
        as_pg "$bindir/createdb" -h "$dir" -p "$port" -U ibex ibex || die "createdb failed"
    fi
    url
}

stop() {
    if [ -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url) running && url || die "not running (scripts/pg.sh start)" ;;
*)
    echo "usage: scripts/pg.sh start|stop|url" >&2
    exit 2
    ;;
esac
