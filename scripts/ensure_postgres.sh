#!/usr/bin/env bash
# A PostgreSQL server for airgrid's tests: installs Debian's `postgresql` when missing, starts a
# private cluster on a free loopback port (as the `postgres` user when run as root), creates the
# role and database `airgrid`, and prints the export line, so that
#     eval "$(bash scripts/ensure_postgres.sh)"
# sets AIRGRID_TEST_POSTGRES_URL. Progress goes to stderr; running it again reuses the server.
set -euo pipefail
PGDIR=${AIRGRID_PG_DIR:-/var/tmp/airgrid-pg}
say() { echo "ensure_postgres: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  say "installing Debian's postgresql package"
  started=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  say "installed in $(( $(date +%s) - started ))s"
fi
BIN=$(pg_bin)

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDIR"; fi
DATA=$PGDIR/data
SOCK=$PGDIR/sock
if [ ! -f "$DATA/PG_VERSION" ]; then
  say "initdb $DATA"
  as_owner mkdir -p "$SOCK"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null
fi
as_owner mkdir -p "$SOCK"
if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT=$(cat "$PGDIR/port")
  say "server already running on port $PORT"
else
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$PORT" > "$PGDIR/port"
  say "starting the server on 127.0.0.1:$PORT"
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 start \
    -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >&2 \
    || { tail -20 "$PGDIR/server.log" >&2; exit 1; }
fi
psql_admin() { as_owner "$BIN/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -qtAX "$@"; }
if [ "$(psql_admin -c "select 1 from pg_roles where rolname = 'airgrid'")" != 1 ]; then
  psql_admin -c "create role airgrid login createdb password 'airgrid'" >/dev/null
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = 'airgrid'")" != 1 ]; then
  psql_admin -c "create database airgrid owner airgrid" >/dev/null
fi
URL="postgresql+psycopg://airgrid:airgrid@127.0.0.1:$PORT/airgrid"
say "ready: $URL"
echo "export AIRGRID_TEST_POSTGRES_URL='$URL'"
