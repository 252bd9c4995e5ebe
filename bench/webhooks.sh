#!/usr/bin/env bash
# The webhook delivery burst (issue #14): ORDERS (10,000) status changes delivered by the release
# `smm-gateway serve` to a local receiver, on SQLite and PostgreSQL. The done-when: the outbox
# drained within 30 s of the first event recorded.
#
#   bench/webhooks.sh            # 10,000 orders, 3 rounds of the receiver baseline
#   bench/webhooks.sh --quick    # 2,000 orders, 1 round
#
# How: ORDERS orders sent upstream are seeded (`bench_tool seed --open`, each with its twin in
# one of two simulators) for a customer whose webhook points at `bench_tool receive` on
# 127.0.0.1 (set with `smm-gateway customers webhook set`; the secret it prints is the
# receiver's). The simulators' clocks jump past the end of every order before the gateway
# starts, so the reconciler's first poll of each order moves it from Pending to its end
# (Completed, Partial or Canceled, with a refund for the last two): ORDERS status changes and
# their refunds, recorded by the outbox triggers in the same transactions. `bench_tool
# webhook-drain` then waits until the outbox holds them all and none is pending, and reports
# the time from the first event recorded to then; the receiver verifies every signature and
# counts distinct event ids and duplicates. The gateway runs with the shipped defaults except
# `webhooks.allow_private_targets` (the receiver is on 127.0.0.1).
#
# Baseline R, measured in the same run: the receiver's own request rate under wrk (one signed
# event body posted to `/baseline`, verified the same way) at the notifier's concurrency
# (`webhooks.concurrency`, 32): what the receiver can take on this machine, so the delivery
# rate is also reported as a share of it.
#
# Knobs (environment): ORDERS, SECONDS_PER_RUN (wrk, 10), ROUNDS (3), DATABASES
# ("sqlite postgres"). PostgreSQL comes from TEST_DATABASE_URL, or a throwaway server started by
# scripts/with-postgres.sh. Everything listens on 127.0.0.1; nothing is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [[ ${1:-} == --quick ]]; then QUICK=1; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: bench/webhooks.sh [--quick]" >&2; exit 2; fi
if ((QUICK)); then : "${ORDERS:=2000}" "${SECONDS_PER_RUN:=3}" "${ROUNDS:=1}"; fi
ORDERS=${ORDERS:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=32 # webhooks.concurrency's default, which the gateway runs with
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

work=$(mktemp -d /tmp/smm-webhook-bench.XXXXXX)
results=$work/results.tsv # db  name  key=value ...
: >"$results"
trap cleanup EXIT

wait_http() { # $1 url (GET, or a form POST when $2 is given)
  for _ in $(seq 300); do
    if [[ -n ${2:-} ]]; then curl -sf --max-time 2 -d "$2" "$1" >/dev/null 2>&1 && return
    else curl -sf --max-time 2 "$1" >/dev/null 2>&1 && return; fi
    sleep 0.1
  done
  echo "no answer from $1" >&2; exit 1
}

run_db() { # $1: sqlite | postgres
  local db=$1 dir=$work/$1
  mkdir -p "$dir"
  local gw_db
  if [[ $db == sqlite ]]; then gw_db="sqlite://$dir/gateway.db"; else
    gw_db=$($TOOL pg-create --admin "$TEST_DATABASE_URL" --name "smm_webhook_bench_$$")
  fi

  echo "== $db: two simulators, $ORDERS orders sent upstream" >&2
  local sims=() sim_pids=() i port
  for i in 1 2; do
    port=$(free_port)
    start "sim$i-$db" $BIN/smm-panel-sim --port "$port" --max-log 0
    sim_pids+=("$started_pid")
    sims+=("http://127.0.0.1:$port/api/v2")
    wait_http "${sims[-1]}" "key=sim-key&action=balance"
  done
  local seed_out customer
  seed_out=$($TOOL seed --db "$gw_db" --key bench-key --open "$ORDERS" \
    --sims "$(IFS=,; echo "${sims[*]}")" --sim-key sim-key)
  customer=$(sed -n 's/^customer=\([0-9]*\) .*/\1/p' <<<"$seed_out")
  echo "   $(sed 's/ status_ids=.*//' <<<"$seed_out")" >&2
  for i in 0 1; do # past the end of every order: the first poll finds it finished
    curl -sf -H 'Content-Type: application/json' -d '{"seconds": 31536000}' \
      "${sims[$i]%/api/v2}/control/advance" >/dev/null
  done

  local gw_port admin_port hook_port
  gw_port=$(free_port); admin_port=$(free_port); hook_port=$(free_port)
  cat >"$dir/gateway.toml" <<TOML
# Written by bench/webhooks.sh: defaults everywhere except addresses, the database, and private
# webhook targets allowed (the receiver is on 127.0.0.1).
[server]
listen = "127.0.0.1:$gw_port"

[admin]
listen = "127.0.0.1:$admin_port"

[database]
url = "$gw_db"

[webhooks]
allow_private_targets = true

[[services]]
id = 100001
routes = [{ provider = "p1", service = "1" }]
TOML
  for i in 1 2; do
    printf '\n[[providers]]\nname = "p%s"\nurl = "%s"\nkey_env = "BENCH_SIM_KEY"\n' "$i" "${sims[$((i - 1))]}" >>"$dir/gateway.toml"
  done
  local out secret
  out=$(BENCH_SIM_KEY=sim-key $BIN/smm-gateway --config "$dir/gateway.toml" \
    customers webhook set "$customer" "http://127.0.0.1:$hook_port/hook")
  secret=$(grep -o 'whsec_[0-9a-f]*' <<<"$out" | head -n1)
  if [[ -z $secret ]]; then echo "no secret in: $out" >&2; exit 1; fi
  start "receiver-$db" $TOOL receive --port "$hook_port" --secret "$secret"
  local receiver_pid=$started_pid hook="http://127.0.0.1:$hook_port"
  wait_http "$hook/counts"

  echo "== $db: gateway up; the burst" >&2
  $TOOL webhook-drain --db "$gw_db" --events "$ORDERS" --timeout-secs 300 >"$dir/drain.out" &
  local drain_pid=$!
  pids+=("$drain_pid")
  BENCH_SIM_KEY=sim-key RUST_LOG=warn start "gateway-$db" $BIN/smm-gateway --config "$dir/gateway.toml" serve
  local gw_pid=$started_pid
  wait "$drain_pid"
  sleep 1 # a duplicate (none expected) would arrive now
  printf '%s\tdrain\t%s\n' "$db" "$(cat "$dir/drain.out")" >>"$results"
  printf '%s\treceiver\t%s\n' "$db" "$(curl -sf "$hook/counts")" >>"$results"
  echo "   $(cat "$dir/drain.out")" >&2
  echo "   $(curl -sf "$hook/counts")" >&2
  kill "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true

  echo "== $db: baseline R: the receiver under wrk, $CONCURRENCY connections ($ROUNDS x ${SECONDS_PER_RUN}s)" >&2
  local body='{"event_id":1,"event":"order.status","occurred_at":1767225600,"order":1,"previous_status":"Pending","charge":"0.09","start_count":0,"status":"Completed","remains":0,"currency":"USD"}'
  local r
  for r in $(seq "$ROUNDS"); do
    # Signed afresh each round: receivers refuse signatures older than 5 minutes.
    cat >"$work/baseline.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Smm-Signature"] = "$($TOOL sign --secret "$secret" --body "$body")"
wrk.headers["X-Smm-Event-Id"] = "1"
wrk.headers["X-Smm-Event"] = "order.status"
wrk.body = [[$body]]
LUA
    wrk -t1 -c"$CONCURRENCY" -d"${SECONDS_PER_RUN}s" -s "$work/baseline.lua" "$hook/baseline" >"$work/wrk.out" 2>&1 || {
      cat "$work/wrk.out" >&2; exit 1; }
    printf '%s\tbaseline\trps=%s\n' "$db" "$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.out")" >>"$results"
  done
  # Every baseline request verified too.
  printf '%s\tbaseline_check\t%s\n' "$db" "$(curl -sf "$hook/counts")" >>"$results"

  local pid
  for pid in "$receiver_pid" "${sim_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$receiver_pid" "${sim_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $db == postgres ]]; then
    $TOOL pg-drop --admin "$TEST_DATABASE_URL" --name "smm_webhook_bench_$$"
  fi
}

for db in $DATABASES; do run_db "$db"; done

python3 - "$results" "$ORDERS" <<'PY'
import statistics, sys
from collections import defaultdict
path, orders = sys.argv[1], int(sys.argv[2])
rows = defaultdict(list)
for line in open(path):
    db, name, rest = line.rstrip("\n").split("\t")
    rows[(db, name)].append(dict(kv.split("=", 1) for kv in rest.split()))
print(f"{orders:,} orders, each moved Pending -> its end by one status poll; refunds for Partial/Canceled\n")
print("| database | events (status) | drained in | events/s | × R | recorded over | tail | "
      "received distinct | duplicates | bad signatures | failed attempts | ≤ 30 s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for db in dict.fromkeys(k[0] for k in rows):
    d = rows[(db, "drain")][0]
    rcv = rows[(db, "receiver")][0]
    base = statistics.median(float(r["rps"]) for r in rows[(db, "baseline")])
    check = rows[(db, "baseline_check")][0]
    ok = d["outcome"] == "drained" and float(d["seconds"]) <= 30
    print(f"| {db} | {int(d['events']):,} ({int(d['status_events']):,}) | {d['seconds']} s | "
          f"{float(d['rate']):,.0f} | {float(d['rate']) / base:.3f} | {d['recorded_over']} s | "
          f"{d['tail']} s | {int(rcv['distinct']):,} of {int(d['events']):,} | {rcv['duplicates']} | "
          f"{check['bad_signatures']} | {d['failed_attempts']} | {'yes' if ok else 'NO'} |")
print()
for db in dict.fromkeys(k[0] for k in rows):
    rs = [float(r["rps"]) for r in rows[(db, "baseline")]]
    print(f"R ({db} run): receiver alone under wrk, {len(rs)} round(s), median {statistics.median(rs):,.0f} req/s "
          f"({', '.join(f'{x:,.0f}' for x in rs)})")
PY
