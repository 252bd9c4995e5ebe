#!/usr/bin/env bash
# Throughput of smm-panel-sim's `status` action under a real load generator (wrk), so we know
# the simulator is never the bottleneck of a gateway benchmark.
#
#   bench/sim-status.sh            # 10 s per scenario, 64 connections, 3 rounds, medians
#
# Scenarios: `status` for one order and for 100 orders, each beside `balance` (the cheapest
# authenticated action) as the in-run baseline. Layouts: free (nothing pinned) and pinned (sim
# on CPU 0, wrk on CPU 1). Loopback only. Installs wrk from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}

if ! command -v wrk >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else
    echo "wrk is missing (apt-get install wrk)" >&2; exit 1; fi
fi
cargo build --release -q -p smm-panel-sim
SIM=target/release/smm-panel-sim
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
URL="http://127.0.0.1:$PORT/api/v2"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_sim() { # $1: taskset prefix or empty
  $1 "$SIM" --port "$PORT" --max-log 0 >"$work/sim.log" 2>&1 &
  for _ in $(seq 50); do curl -sf -o /dev/null -d key=sim-key -d action=balance "$URL" && return; sleep 0.1; done
  echo "sim did not start" >&2; exit 1
}

body_file() { # $1 name, $2 body
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "$2"
LUA
}

run() { # $1 lua, $2 wrk prefix -> "req/s p50 p99"
  $2 wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$work/$1.lua" "$URL" >"$work/out" 2>&1
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out")
  p50=$(awk '$1=="50%" {print $2}' "$work/out")
  p99=$(awk '$1=="99%" {print $2}' "$work/out")
  if grep -q "Non-2xx" "$work/out"; then echo "non-2xx replies in $1" >&2; cat "$work/out" >&2; exit 1; fi
  echo "$rps $p50 $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| layout | scenario | req/s (median of $ROUNDS) | p50 | p99 | ratio to balance |"
echo "|---|---|---|---|---|---|"
for layout in free pinned; do
  if [[ $layout == pinned ]]; then sim_prefix="taskset -c 0"; wrk_prefix="taskset -c 1"; else sim_prefix=""; wrk_prefix=""; fi
  start_sim "$sim_prefix"
  ids=()
  for _ in $(seq 100); do
    ids+=("$(curl -s -d key=sim-key -d action=add -d service=1 -d link=https://x.test/p -d quantity=100 "$URL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["order"])')")
  done
  joined=$(IFS=,; echo "${ids[*]}")
  body_file balance "key=sim-key&action=balance"
  body_file status1 "key=sim-key&action=status&order=${ids[0]}"
  body_file status100 "key=sim-key&action=status&orders=${joined//,/%2C}"
  declare -A rps p50 p99
  for scenario in balance status1 status100; do rps[$scenario]=""; p50[$scenario]=""; p99[$scenario]=""; done
  run balance "$wrk_prefix" >/dev/null  # warm-up
  for _ in $(seq "$ROUNDS"); do
    for scenario in balance status1 status100; do
      read -r r a b < <(run "$scenario" "$wrk_prefix")
      rps[$scenario]+="$r"$'\n'; p50[$scenario]+="$a"$'\n'; p99[$scenario]+="$b"$'\n'
    done
  done
  base=$(printf '%s' "${rps[balance]}" | median)
  for scenario in balance status1 status100; do
    m=$(printf '%s' "${rps[$scenario]}" | median)
    printf '| %s | %s | %s | %s | %s | %.2f |\n' "$layout" "$scenario" "$m" \
      "$(printf '%s' "${p50[$scenario]}" | head -1)" "$(printf '%s' "${p99[$scenario]}" | head -1)" \
      "$(python3 -c "print($m/$base)")"
  done
  kill %1 2>/dev/null || true; wait 2>/dev/null || true
done
echo
echo "wrk is closed-loop (no coordinated-omission correction); latencies are from the first round."
