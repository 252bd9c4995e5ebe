#!/usr/bin/env bash
# The console's page timings with many orders (issue #13): the overview and filtered order
# searches of the release `smm-gateway serve`, logged in as a console user, over a database
# seeded with ORDERS orders (1,000,000), all placed within the overview's 30 days (the worst
# case for it), on SQLite and PostgreSQL. Baseline H, measured in the same run on the same
# listener: GET /healthz (no database, no template), so each page is also reported as a ratio.
#
#   bench/console.sh            # 1,000,000 orders, 10 s per page, 3 interleaved rounds
#   bench/console.sh --quick    # 100,000 orders, 3 s, 1 round
#
# Knobs (environment): ORDERS, SECONDS_PER_RUN, ROUNDS, CONNECTIONS (wrk connections, 1: the
# time of one page view after another), DATABASES ("sqlite postgres"). PostgreSQL comes from
# TEST_DATABASE_URL, or a throwaway server started by scripts/with-postgres.sh. Load: wrk
# (installed from Debian's packages when missing), closed loop, so latencies carry no
# coordinated-omission correction; a reply that is not 200 with the page's marker is an error.
# Everything listens on 127.0.0.1; nothing is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [[ ${1:-} == --quick ]]; then QUICK=1; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: bench/console.sh [--quick]" >&2; exit 2; fi
if ((QUICK)); then : "${ORDERS:=100000}" "${SECONDS_PER_RUN:=3}" "${ROUNDS:=1}"; fi
ORDERS=${ORDERS:-1000000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-1}
DATABASES=${DATABASES:-"sqlite postgres"}

if [[ " $DATABASES " == *" postgres "* && -z ${TEST_DATABASE_URL:-} ]]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_wrk

echo "building release binaries..." >&2
cargo build --release -q -p smm-server --bin smm-gateway --example bench_tool
cargo build --release -q -p smm-panel-sim --bin smm-panel-sim
BIN=${CARGO_TARGET_DIR:-target}/release
TOOL=$BIN/examples/bench_tool

work=$(mktemp -d /tmp/smm-console-bench.XXXXXX)
results=$work/results.tsv # db  page  rps  p50_ms  p99_ms  errors
: >"$results"
trap cleanup EXIT

lua_get() { # $1 name, $2 cookie, $3 marker the page must contain
  cat >"$work/$1.lua" <<LUA
wrk.method = "GET"
wrk.headers["Cookie"] = "$2"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, [[$3]], 1, true) then errors = errors + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("ERRORS %d\n", total))
end
LUA
}

wrk_run() { # $1 db, $2 page, $3 url
  wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$work/$2.lua" "$3" >"$work/wrk.out" 2>&1 || {
    cat "$work/wrk.out" >&2; exit 1; }
  awk -v db="$1" -v page="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    $1 == "ERRORS" { err = $2 }
    END { printf "%s\t%s\t%s\t%.3f\t%.3f\t%s\n", db, page, rps, p50, p99, err }' "$work/wrk.out" >>"$results"
}

run_db() { # $1: sqlite | postgres
  local db=$1 dir=$work/$1
  mkdir -p "$dir"
  local gw_db
  if [[ $db == sqlite ]]; then gw_db="sqlite://$dir/gateway.db"; else
    gw_db=$($TOOL pg-create --admin "$TEST_DATABASE_URL" --name "smm_console_bench_$$")
  fi
  echo "== $db: seeding $ORDERS orders" >&2
  $TOOL seed --db "$gw_db" --key bench-key --closed "$ORDERS" >"$dir/seed.out"
  echo "   $(cat "$dir/seed.out") $($TOOL compact --db "$gw_db")" >&2

  local sim_port gw_port admin_port
  sim_port=$(free_port); gw_port=$(free_port); admin_port=$(free_port)
  start "sim-$db" $BIN/smm-panel-sim --port "$sim_port" --max-log 0
  cat >"$dir/gateway.toml" <<TOML
# Written by bench/console.sh.
[server]
listen = "127.0.0.1:$gw_port"

[admin]
listen = "127.0.0.1:$admin_port"

[database]
url = "$gw_db"

[[providers]]
name = "p1"
url = "http://127.0.0.1:$sim_port/api/v2"
key_env = "BENCH_SIM_KEY"
TOML
  local password="bench console password"
  SMM_ADMIN_PASSWORD=$password BENCH_SIM_KEY=sim-key \
    $BIN/smm-gateway --config "$dir/gateway.toml" admins create bench --role viewer >/dev/null
  BENCH_SIM_KEY=sim-key RUST_LOG=warn start "gateway-$db" $BIN/smm-gateway --config "$dir/gateway.toml" serve
  local gw_pid=$started_pid admin="http://127.0.0.1:$admin_port"
  for _ in $(seq 300); do curl -sf "$admin/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local cookie
  cookie=$(curl -s -o /dev/null -D - --data-urlencode "username=bench" --data-urlencode "password=$password" \
    "$admin/login" | sed -n 's/^[Ss]et-[Cc]ookie: \(smm_session=[^;]*\).*/\1/p' | tr -d '\r')
  if [[ -z $cookie ]]; then echo "console login failed" >&2; exit 1; fi

  lua_get healthz "$cookie" "ok"
  # page, URL, what its reply must contain (the order searches that match show order links).
  printf '%s\t%s\t%s\n' \
    overview "$admin/" "Orders by status" \
    orders_status "$admin/orders?status=Partial" 'id="orders"' \
    orders_customer "$admin/orders?customer=1&status=Completed" 'href="/orders/' \
    orders_link "$admin/orders?link=https%3A%2F%2Fx.test%2Fnone" 'id="orders"' >"$dir/pages.tsv"
  while IFS=$'\t' read -r page url marker; do # each answers before it is timed
    lua_get "$page" "$cookie" "$marker"
    curl -sf -H "Cookie: $cookie" "$url" | grep -F "$marker" >/dev/null || {
      echo "$page does not render: $url" >&2; exit 1; }
  done <"$dir/pages.tsv"

  echo "== $db: pages ($ROUNDS rounds of ${SECONDS_PER_RUN}s, $CONNECTIONS connection(s))" >&2
  local r
  for r in $(seq "$ROUNDS"); do
    wrk_run "$db" healthz "$admin/healthz"
    while IFS=$'\t' read -r page url _; do wrk_run "$db" "$page" "$url"; done <"$dir/pages.tsv"
  done
  kill "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
  if [[ $db == postgres ]]; then
    $TOOL pg-drop --admin "$TEST_DATABASE_URL" --name "smm_console_bench_$$"
  fi
}

for db in $DATABASES; do run_db "$db"; done

# Medians per database and page; each page as a ratio of H's requests per second.
python3 - "$results" "$ORDERS" "$CONNECTIONS" <<'PY'
import statistics, sys
from collections import defaultdict
path, orders, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = defaultdict(list)
for line in open(path):
    db, page, rps, p50, p99, err = line.rstrip("\n").split("\t")
    runs[(db, page)].append((float(rps), float(p50), float(p99), int(err or 0)))
names = {"healthz": "H: GET /healthz (baseline)", "overview": "overview `/`",
         "orders_status": "orders, status=Partial (none match)",
         "orders_customer": "orders, customer=1 & status=Completed",
         "orders_link": "orders, link (none match)"}
print(f"{orders:,} orders, wrk {conns} connection(s), medians of rounds\n")
print("| database | page | req/s | × H | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
for db in dict.fromkeys(k[0] for k in runs):
    h = statistics.median(r[0] for r in runs[(db, "healthz")])
    for page in names:
        rs = runs.get((db, page))
        if not rs:
            continue
        rps = statistics.median(r[0] for r in rs)
        print(f"| {db} | {names[page]} | {rps:,.0f} | {rps / h:.3f} | "
              f"{statistics.median(r[1] for r in rs):.2f} | {statistics.median(r[2] for r in rs):.2f} | "
              f"{sum(r[3] for r in rs)} |")
PY
