#!/usr/bin/env bash
# The gateway benchmark suite (issue #7; targets of issue #16): the release `smm-gateway serve` binary beside baselines
# built for the purpose, measured in the same run on the same machine, on SQLite and PostgreSQL.
#
#   bench/run.sh             # full run: 10 s per measurement, 3 interleaved rounds, medians
#   bench/run.sh --quick     # smoke run: 3 s, 1 round, 100k finished + 10k open orders
#
# Knobs (environment): SECONDS_PER_RUN, ROUNDS, CONNECTIONS (wrk connections for services and
# status, 64), ADD_CONNECTIONS (concurrency of `add` and of baseline D, 16), CLOSED_ORDERS
# (finished orders seeded, 1,000,000), OPEN_ORDERS (orders due for the reconciliation sweep,
# 100,000), SERVICES (catalog size, 2,000), DATABASES ("sqlite postgres"), GATEWAY_LOG (the
# gateway's RUST_LOG, "warn"; "warn,sqlx::query=debug" logs every statement with its time, into
# the work dir kept by KEEP_WORK=1). PostgreSQL comes from TEST_DATABASE_URL, or a throwaway
# server started by scripts/with-postgres.sh.
#
# Baselines: A = axum server parsing the v2 body, fixed JSON reply (examples/bench_baseline_v2;
# A2 = the same answering with a copy of the gateway's `services` reply, for scale);
# B = axum + reqwest pass-through to the simulator (examples/bench_passthrough); D = bare sqlx
# placement transaction at ADD_CONNECTIONS concurrency (examples/bench_tool baseline-d, the code
# of smm-store's placement bench). Everything listens on 127.0.0.1; nothing is pinned (free
# layout). Load: wrk (installed from Debian's packages when missing), closed loop, so latencies
# carry no coordinated-omission correction; every reply is checked and `{"error":...}` replies
# are counted. Peak RSS is VmHWM from /proc/PID/status at the end of each database's block.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [[ ${1:-} == --quick ]]; then QUICK=1; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: bench/run.sh [--quick]" >&2; exit 2; fi
if ((QUICK)); then
  : "${SECONDS_PER_RUN:=3}" "${ROUNDS:=1}" "${CLOSED_ORDERS:=100000}" "${OPEN_ORDERS:=10000}"
fi
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
ADD_CONNECTIONS=${ADD_CONNECTIONS:-16}
CLOSED_ORDERS=${CLOSED_ORDERS:-1000000}
OPEN_ORDERS=${OPEN_ORDERS:-100000}
SERVICES=${SERVICES:-2000}
DATABASES=${DATABASES:-"sqlite postgres"}
export SECONDS_PER_RUN ROUNDS CONNECTIONS ADD_CONNECTIONS CLOSED_ORDERS OPEN_ORDERS SERVICES DATABASES

# PostgreSQL: run the whole script under a throwaway server unless one is configured.
if [[ " $DATABASES " == *" postgres "* && -z ${TEST_DATABASE_URL:-} ]]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
need_wrk

echo "building release binaries..." >&2
cargo build --release -q -p smm-server --bin smm-gateway \
  --example bench_baseline_v2 --example bench_passthrough --example bench_tool
cargo build --release -q -p smm-panel-sim --bin smm-panel-sim
BIN=target/release
TOOL=$BIN/examples/bench_tool

work=$(mktemp -d /tmp/smm-bench.XXXXXX)
results=$work/results.tsv   # db  scenario  rps  p50_ms  p99_ms  errors
extras=$work/extras.tsv     # db  name  value
: >"$results"; : >"$extras"
trap cleanup EXIT

wait_reply() { # $1 url, $2 form body, $3 expected reply prefix
  for _ in $(seq 300); do
    if curl -sf --max-time 2 -d "$2" "$1" 2>/dev/null | grep -q "^$3"; then return; fi
    sleep 0.1
  done
  echo "no reply starting with $3 from $1" >&2; exit 1
}

hwm_mb() { # peak RSS of a live process, MB
  awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

lua() { # $1 name, $2 form body[, $3 Accept-Encoding]: a wrk script that counts non-200 and
  # {"error":...} replies; with $3, also replies not sent with Content-Encoding: gzip
  local accept="" check=""
  if [[ -n ${3:-} ]]; then
    accept="wrk.headers[\"Accept-Encoding\"] = \"$3\""
    check='or headers["content-encoding"] ~= "gzip"'
  fi
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
$accept
wrk.body = "$2"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors = 0 end
function response(status, headers, body)
  if status ~= 200 or string.sub(body, 1, 9) == '{"error":' $check then errors = errors + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("ERRORS %d\n", total))
end
LUA
}

lua_add() { # $1 name, $2 form body without the key, rest: keys. Each request takes the next key,
  # so `add` spreads over as many customers as baseline D has tasks (one customer each): the
  # same contention on the customers' balance rows.
  local name=$1 body=$2; shift 2
  local keys="" k
  for k in "$@"; do keys+="\"$k\","; done
  cat >"$work/$name.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "key=$1&$body"
local keys = { $keys }
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) errors = 0; n = 0 end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, "key=" .. keys[(n % #keys) + 1] .. "&$body")
end
function response(status, headers, body)
  if status ~= 200 or string.sub(body, 1, 9) == '{"error":' then errors = errors + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("ERRORS %d\n", total))
end
LUA
}

wrk_run() { # $1 db, $2 scenario, $3 lua name, $4 url, $5 connections, $6 seconds
  wrk -t1 -c"$5" -d"$6s" --latency -s "$work/$3.lua" "$4" >"$work/wrk.out" 2>&1 || {
    cat "$work/wrk.out" >&2; exit 1; }
  awk -v db="$1" -v sc="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    $1 == "ERRORS" { err = $2 }
    END { printf "%s\t%s\t%s\t%.3f\t%.3f\t%s\n", db, sc, rps, p50, p99, err }' "$work/wrk.out" >>"$results"
}

run_db() { # $1: sqlite | postgres
  local db=$1 dir=$work/$1
  mkdir -p "$dir"
  echo "== $db: starting 5 simulators, baselines A and B" >&2
  local sims=() sim_pids=() i port
  for i in 1 2 3 4 5; do
    port=$(free_port)
    if [[ $i == 1 ]]; then
      start "sim$i-$db" $BIN/smm-panel-sim --port "$port" --max-log 0 --services "$SERVICES"
    else
      start "sim$i-$db" $BIN/smm-panel-sim --port "$port" --max-log 0
    fi
    sim_pids+=("$started_pid")
    sims+=("http://127.0.0.1:$port/api/v2")
    wait_reply "${sims[-1]}" "key=sim-key&action=balance" '{"balance"'
  done
  local sim_list
  sim_list=$(IFS=,; echo "${sims[*]}")
  local a_url b_url a_pid b_pid
  port=$(free_port); a_url="http://127.0.0.1:$port/api/v2"
  start "a-$db" $BIN/examples/bench_baseline_v2 "$port"; a_pid=$started_pid
  port=$(free_port); b_url="http://127.0.0.1:$port/api/v2"
  start "b-$db" $BIN/examples/bench_passthrough "$port" "${sims[0]}"; b_pid=$started_pid

  local gw_db d_db
  if [[ $db == sqlite ]]; then
    gw_db="sqlite://$dir/gateway.db"; d_db="sqlite://$dir/baseline-d.db"
  else
    local tag="smm_bench_$$"
    gw_db=$($TOOL pg-create --admin "$TEST_DATABASE_URL" --name "${tag}_gw")
    d_db=$($TOOL pg-create --admin "$TEST_DATABASE_URL" --name "${tag}_d")
  fi

  echo "== $db: seeding $CLOSED_ORDERS finished + $OPEN_ORDERS open orders" >&2
  local seed_out
  seed_out=$($TOOL seed --db "$gw_db" --key bench-key --closed "$CLOSED_ORDERS" \
    --open "$OPEN_ORDERS" --sims "$sim_list")
  # Folded as a running gateway keeps them folded (every 5 s): see bench/sweep.sh.
  echo "   $(sed 's/ status_ids=.*//' <<<"$seed_out") $($TOOL compact --db "$gw_db")" >&2
  local status_ids=${seed_out##*status_ids=}

  local gw_port admin_port
  gw_port=$(free_port); admin_port=$(free_port)
  local gw_url="http://127.0.0.1:$gw_port/api/v2"
  {
    cat <<TOML
# Written by bench/run.sh: defaults everywhere except addresses, the database, and a
# per-key rate limit out of the way (one key drives all the load).
[server]
listen = "127.0.0.1:$gw_port"
rate_limit_per_minute = 1000000000

[admin]
listen = "127.0.0.1:$admin_port"

[database]
url = "$gw_db"

[[services]]
id = 100001
routes = [{ provider = "p1", service = "1" }]

[[exposures]]
provider = "p1"
TOML
    for i in 1 2 3 4 5; do
      printf '\n[[providers]]\nname = "p%s"\nurl = "%s"\nkey_env = "BENCH_SIM_KEY"\n' "$i" "${sims[$((i - 1))]}"
    done
  } >"$dir/gateway.toml"

  echo "== $db: gateway up; reconciliation sweep of $OPEN_ORDERS orders" >&2
  $TOOL sweep --sims "$sim_list" --ids "$OPEN_ORDERS" >"$dir/sweep.out" &
  local sweep_pid=$!
  pids+=("$sweep_pid")
  BENCH_SIM_KEY=sim-key RUST_LOG=${GATEWAY_LOG:-warn} start "gateway-$db" $BIN/smm-gateway --config "$dir/gateway.toml" serve
  local gw_pid=$started_pid
  wait_reply "$gw_url" "key=bench-key&action=balance" '{"balance"'
  wait "$sweep_pid"
  printf '%s\tsweep\t%s\n' "$db" "$(cat "$dir/sweep.out")" >>"$extras"
  echo "   $(cat "$dir/sweep.out")" >&2

  # The sims' open orders start at 10001: B asks sim 1 about 100 of them.
  local sim_ids
  sim_ids=$(seq -s, 10001 10100)
  lua services "key=bench-key&action=services"
  # Most real clients (PHP's cURL with CURLOPT_ENCODING, browsers) send this header.
  lua services_gzip "key=bench-key&action=services" "gzip, deflate"
  lua status "key=bench-key&action=status&orders=${status_ids//,/%2C}"
  lua passthrough "key=sim-key&action=status&orders=${sim_ids//,/%2C}"
  # One funded customer per `add` connection (baseline D's tasks each have their own), created
  # through the gateway's own CLI.
  local add_keys=() out cid
  for i in $(seq "$ADD_CONNECTIONS"); do
    out=$(BENCH_SIM_KEY=sim-key $BIN/smm-gateway --config "$dir/gateway.toml" customers create --name "add-$i")
    add_keys+=("$(sed -n 's/^API key (shown once, store it now): //p' <<<"$out")")
    cid=$(head -n1 <<<"$out" | cut -f1)
    BENCH_SIM_KEY=sim-key $BIN/smm-gateway --config "$dir/gateway.toml" customers credit "$cid" 100000000 --reason bench >/dev/null
  done
  lua_add add "action=add&service=100001&link=https%3A%2F%2Fx.test%2Fp&quantity=100" "${add_keys[@]}"
  for name in services status add; do # each body answers without an error before it is timed
    if curl -s -d "$(lua_body "$name")" "$gw_url" | grep -q '^{"error"'; then
      echo "gateway refuses the $name body: $(curl -s -d "$(lua_body "$name")" "$gw_url" | head -c 300)" >&2; exit 1
    fi
  done

  if ! curl -s -o /dev/null -D - -H "Accept-Encoding: gzip, deflate" -d "$(lua_body services_gzip)" \
    "$gw_url" | grep -qi '^content-encoding: gzip'; then
    echo "gateway does not compress services for a gzip client" >&2; exit 1
  fi

  # A2: baseline A answering with the gateway's own services reply (same bytes on the wire).
  curl -s -d "$(lua_body services)" "$gw_url" >"$dir/services.json"
  local a2_url a2_pid
  port=$(free_port); a2_url="http://127.0.0.1:$port/api/v2"
  start "a2-$db" $BIN/examples/bench_baseline_v2 "$port" "$dir/services.json"; a2_pid=$started_pid
  wait_reply "$a2_url" "$(lua_body services)" '\['
  printf '%s\tservices_bytes\t%s\n' "$db" "$(wc -c <"$dir/services.json")" >>"$extras"

  echo "== $db: services, status ($ROUNDS rounds of ${SECONDS_PER_RUN}s)" >&2
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/services.lua" "$gw_url" >/dev/null # warm-up
  local r
  for r in $(seq "$ROUNDS"); do
    wrk_run "$db" A status "$a_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
    wrk_run "$db" B passthrough "$b_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
    wrk_run "$db" A2 services "$a2_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
    wrk_run "$db" services services "$gw_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
    wrk_run "$db" services_gzip services_gzip "$gw_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
    wrk_run "$db" status status "$gw_url" "$CONNECTIONS" "$SECONDS_PER_RUN"
  done

  echo "== $db: add vs baseline D at concurrency $ADD_CONNECTIONS" >&2
  local d_out lag
  for r in $(seq "$ROUNDS"); do
    d_out=$($TOOL baseline-d --db "$d_db" --concurrency "$ADD_CONNECTIONS" --seconds "$SECONDS_PER_RUN")
    awk -v db="$db" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
      END { printf "%s\tD\t%s\t%s\t%s\t0\n", db, v["rps"], v["p50_ms"], v["p99_ms"] }' <<<"$d_out" >>"$results"
    printf '%s\tstats_before\t%s\n' "$db" "$($TOOL db-stats --db "$gw_db")" >>"$extras"
    wrk_run "$db" add add "$gw_url" "$ADD_CONNECTIONS" "$SECONDS_PER_RUN"
    lag=$($TOOL drain --db "$gw_db")
    printf '%s\tlag\t%s\n' "$db" "$lag" >>"$extras"
    sleep 1 # PostgreSQL's statistics are reported at most every second
    printf '%s\tstats_after\t%s\n' "$db" "$($TOOL db-stats --db "$gw_db")" >>"$extras"
  done

  printf '%s\trss_gateway\t%s\n' "$db" "$(hwm_mb "$gw_pid")" >>"$extras"
  printf '%s\trss_A\t%s\n' "$db" "$(hwm_mb "$a_pid")" >>"$extras"
  printf '%s\trss_B\t%s\n' "$db" "$(hwm_mb "$b_pid")" >>"$extras"
  printf '%s\trss_A2\t%s\n' "$db" "$(hwm_mb "$a2_pid")" >>"$extras"
  local pid
  for pid in "$gw_pid" "$a_pid" "$a2_pid" "$b_pid" "${sim_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$gw_pid" "$a_pid" "$a2_pid" "$b_pid" "${sim_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $db == postgres ]]; then
    $TOOL pg-drop --admin "$TEST_DATABASE_URL" --name "smm_bench_$$_gw"
    $TOOL pg-drop --admin "$TEST_DATABASE_URL" --name "smm_bench_$$_d"
  fi
}

lua_body() { # the body of a generated wrk script
  sed -n 's/^wrk.body = "\(.*\)"$/\1/p' "$work/$1.lua"
}

for db in $DATABASES; do run_db "$db"; done

python3 bench/report.py "$results" "$extras"
