#!/usr/bin/env bash
# Runs a command with TEST_DATABASE_URL pointing at a PostgreSQL server.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# If TEST_DATABASE_URL is already set, it is used as it is. Otherwise a throwaway cluster is
# created in a temporary directory from the system's PostgreSQL binaries (Debian's `postgresql`
# package is installed first when they are missing and the script runs as root), started on a
# free port on 127.0.0.1, and removed when the command ends. The URL names a database the
# tests may create and drop databases from.
set -euo pipefail

if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
  exec "$@"
fi

find_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/$name" ]]; then echo "$dir/$name"; return 0; fi
  done
  return 1
}

if ! find_bin initdb >/dev/null || ! find_bin pg_ctl >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "with-postgres: installing Debian's postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  else
    echo "with-postgres: no PostgreSQL server binaries (initdb, pg_ctl) and cannot install them;" >&2
    echo "  install PostgreSQL or set TEST_DATABASE_URL" >&2
    exit 1
  fi
fi
INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)

# initdb refuses to run as root: run the cluster as the 'postgres' system user then.
run_as=()
if [[ $(id -u) -eq 0 ]]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  run_as=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/smm-pg.XXXXXX)
chmod 755 "$dir"
[[ ${#run_as[@]} -gt 0 ]] && chown postgres "$dir"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

cleanup() {
  "${run_as[@]}" "$PG_CTL" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"${run_as[@]}" "$INITDB" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# Tuned for a throwaway test server: many short-lived databases, fsync kept on (the tests are
# about durability too), modest memory.
"${run_as[@]}" "$PG_CTL" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=300 -c shared_buffers=128MB" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: throwaway PostgreSQL at $TEST_DATABASE_URL" >&2
set +e
"$@"
status=$?
set -e
exit $status
