#!/usr/bin/env bash
# A local PostgreSQL for bsopt development and tests, without Docker.
#
#   storage/dev-postgres.sh start    # create the cluster (first time), start it, print its URL
#   storage/dev-postgres.sh stop
#   storage/dev-postgres.sh status
#   storage/dev-postgres.sh url      # postgresql://postgres@127.0.0.1:PORT/bsopt
#
# BSOPT_PG_DIR: the data directory (default ~/.local/share/bsopt/postgres; as root
#   /var/lib/bsopt/postgres, owned by the postgres user, since PostgreSQL refuses root).
# BSOPT_PG_PORT: the port (default 5432, where the tests look for a server).
#
# It listens on 127.0.0.1 only, with trust authentication and the databases `bsopt` (for
# studies) and `test` (the tests create and drop their own databases through it). That is
# for a development machine: for a shared server use compose.yaml (see README.md).
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
  DIR="${BSOPT_PG_DIR:-/var/lib/bsopt/postgres}"
else
  DIR="${BSOPT_PG_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/bsopt/postgres}"
fi
PORT="${BSOPT_PG_PORT:-5432}"
URL="postgresql://postgres@127.0.0.1:$PORT/bsopt"

find_bin() {  # on PATH, else Debian's versioned directory (newest first)
  command -v "$1" 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}
PG_CTL="$(find_bin pg_ctl)"
INITDB="$(find_bin initdb)"
PSQL="$(find_bin psql)"
if [ -z "$PG_CTL" ] || [ -z "$INITDB" ] || [ -z "$PSQL" ]; then
  echo "PostgreSQL's server programs are not installed:" \
       "apt-get install postgresql (Debian, Ubuntu) or brew install postgresql (macOS)" >&2
  exit 1
fi

as_owner() {  # PostgreSQL will not run as root: run it as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_owner "$PG_CTL" -D "$DIR" status >/dev/null 2>&1; }

sql() { "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atqc "$1"; }

start() {
  if [ ! -f "$DIR/PG_VERSION" ]; then
    mkdir -p "$DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
    chmod 700 "$DIR"
    as_owner "$INITDB" -D "$DIR" -U postgres --auth=trust --encoding=UTF8 >/dev/null
  fi
  if ! running; then
    # Workers hold about three connections each: allow a few dozen of them.
    if ! as_owner "$PG_CTL" -D "$DIR" -l "$DIR/server.log" -w -t 60 start \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null; then
      echo "PostgreSQL did not start; the end of $DIR/server.log:" >&2
      tail -n 5 "$DIR/server.log" >&2
      echo "(port $PORT taken? try BSOPT_PG_PORT=5433 $0 start)" >&2
      exit 1
    fi
  fi
  for db in bsopt test; do
    if [ -z "$(sql "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      sql "CREATE DATABASE $db" >/dev/null
    fi
  done
  echo "$URL"
}

case "${1:-}" in
  start) start ;;
  stop) if running; then as_owner "$PG_CTL" -D "$DIR" -w stop -m fast >/dev/null; fi ;;
  status) if running; then echo "running: $URL (data in $DIR)"; else echo "stopped"; exit 3; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
