#!/usr/bin/env bash
# The reconciliation sweep alone (issue #16's target: 100,000 open orders, 5 providers, 1,000
# upstream `status` calls in ≤ 5 s), with where the time goes: the release `smm-gateway serve`
# starts on a database seeded with CLOSED_ORDERS finished and OPEN_ORDERS open orders, all due,
# and `bench_tool sweep` times the simulators' first `status` call to the last id asked (the
# figure bench/run.sh reports). Around it, CPU seconds of the gateway, of every PostgreSQL
# process and of the idle machine are read from /proc.
#
#   bench/sweep.sh              # both databases
#   PROFILE=1 bench/sweep.sh    # also: time per SQL statement (sqlx's statement log) and, on
#                               # PostgreSQL, per trigger function (track_functions = 'pl')
#
# Knobs: DATABASES ("sqlite postgres"), CLOSED_ORDERS (1,000,000), OPEN_ORDERS (100,000),
# KEEP_WORK=1 keeps the databases and logs. PostgreSQL comes from TEST_DATABASE_URL, or a
# throwaway server started by scripts/with-postgres.sh. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

CLOSED_ORDERS=${CLOSED_ORDERS:-1000000}
OPEN_ORDERS=${OPEN_ORDERS:-100000}
DATABASES=${DATABASES:-"sqlite postgres"}
PROFILE=${PROFILE:-}
export CLOSED_ORDERS OPEN_ORDERS DATABASES PROFILE

if [[ " $DATABASES " == *" postgres "* && -z ${TEST_DATABASE_URL:-} ]]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh

echo "building release binaries..." >&2
cargo build --release -q -p smm-server --bin smm-gateway --example bench_tool
cargo build --release -q -p smm-panel-sim --bin smm-panel-sim
BIN=target/release
TOOL=$BIN/examples/bench_tool

work=$(mktemp -d /tmp/smm-sweep.XXXXXX)
trap cleanup EXIT

cpu_ticks() { # utime + stime of the given pids, in clock ticks (gone pids count 0)
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }

seconds() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}'; }

statement_profile() { # $1 gateway log: seconds, count, mean per statement, its first words
  python3 - "$1" <<'PY'
import collections, re, sys
totals = collections.defaultdict(lambda: [0, 0.0])
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r'summary="([^"]*)".*elapsed_secs=([0-9.e-]+)', line)
    if m:
        entry = totals[m.group(1)]
        entry[0] += 1
        entry[1] += float(m.group(2))
for summary, (n, t) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:12]:
    print(f"  {t:8.2f} s {n:7d} × {t / n * 1000:8.2f} ms  {summary}")
PY
}

sweep_db() { # $1 sqlite | postgres
  local db=$1 dir=$work/$1 sims=() sim_pids=() i port
  mkdir -p "$dir"
  for i in 1 2 3 4 5; do
    port=$(free_port)
    start "sim$i-$db" $BIN/smm-panel-sim --port "$port" --max-log 0
    sim_pids+=("$started_pid")
    sims+=("http://127.0.0.1:$port/api/v2")
  done
  local sim_list
  sim_list=$(IFS=,; echo "${sims[*]}")
  for i in $(seq 50); do
    if curl -sf -d "key=sim-key&action=balance" "${sims[4]}" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done

  local gw_db
  if [[ $db == sqlite ]]; then
    gw_db="sqlite://$dir/gateway.db"
  else
    gw_db=$($TOOL pg-create --admin "$TEST_DATABASE_URL" --name "smm_sweep_$$")
  fi
  echo "== $db: seeding $CLOSED_ORDERS finished + $OPEN_ORDERS open orders" >&2
  $TOOL seed --db "$gw_db" --key bench-key --closed "$CLOSED_ORDERS" --open "$OPEN_ORDERS" \
    --sims "$sim_list" | sed 's/ status_ids=.*//' >&2
  # The bulk seed's triggers leave a delta row per seeded order on PostgreSQL (aggregates,
  # scorecards); a running gateway folds them every 5 s, so it never holds a million. Folded
  # here, or the gateway's first compaction and its first scorecard read (about 4.5 s of
  # PostgreSQL time) land inside the timed sweep.
  echo "   $($TOOL compact --db "$gw_db")" >&2
  if [[ $db == postgres && -n $PROFILE ]]; then
    psql "$gw_db" -qc "ALTER DATABASE ${gw_db##*/} SET track_functions = 'pl'"
  fi

  local gw_port admin_port
  gw_port=$(free_port); admin_port=$(free_port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n\n[admin]\nlisten = "127.0.0.1:%s"\n\n' "$gw_port" "$admin_port"
    printf '[database]\nurl = "%s"\n\n' "$gw_db"
    printf '[[services]]\nid = 100001\nroutes = [{ provider = "p1", service = "1" }]\n\n'
    printf '[[exposures]]\nprovider = "p1"\n'
    for i in 1 2 3 4 5; do
      printf '\n[[providers]]\nname = "p%s"\nurl = "%s"\nkey_env = "BENCH_SIM_KEY"\n' "$i" "${sims[$((i - 1))]}"
    done
  } >"$dir/gateway.toml"

  local log_filter=warn
  if [[ -n $PROFILE ]]; then log_filter="warn,sqlx::query=debug"; fi
  $TOOL sweep --sims "$sim_list" --ids "$OPEN_ORDERS" >"$dir/sweep.out" &
  local sweep_pid=$!
  pids+=("$sweep_pid")
  local pg_pids=() gw_pid cpu0 pg0 idle0
  if [[ $db == postgres ]]; then mapfile -t pg_pids < <(pgrep -x postgres || true); fi
  idle0=$(idle_ticks)
  BENCH_SIM_KEY=sim-key RUST_LOG=$log_filter start "gateway-$db" $BIN/smm-gateway \
    --config "$dir/gateway.toml" serve
  gw_pid=$started_pid
  cpu0=$(cpu_ticks "$gw_pid")
  pg0=$(cpu_ticks "${pg_pids[@]}")
  wait "$sweep_pid"
  # The sweep tool waits 2 s after the last id for calls made twice: those 2 s are counted.
  local cpu1 pg1 idle1
  cpu1=$(cpu_ticks "$gw_pid")
  if [[ $db == postgres ]]; then mapfile -t pg_pids < <(pgrep -x postgres || true); fi
  pg1=$(cpu_ticks "${pg_pids[@]}")
  idle1=$(idle_ticks)
  local pg_cpu="–"
  if [[ $db == postgres ]]; then pg_cpu="$(seconds $((pg1 - pg0))) s"; fi
  printf '%s\t%s\tgateway CPU %s s\tPostgreSQL CPU %s\tidle CPU %s s\tgateway peak RSS %s MB\n' \
    "$db" "$(cat "$dir/sweep.out")" "$(seconds $((cpu1 - cpu0)))" "$pg_cpu" \
    "$(seconds $((idle1 - idle0)))" "$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$gw_pid/status")"
  if [[ -n $PROFILE ]]; then
    echo "  SQL statements, by total time (concurrent statements overlap):"
    statement_profile "$work/gateway-$db.log"
    if [[ $db == postgres ]]; then
      echo "  PostgreSQL trigger functions:"
      psql "$gw_db" -Atc "SELECT format('  %8s ms %8s calls  %s (self %s ms)', round(total_time),
        calls, funcname, round(self_time)) FROM pg_stat_user_functions
        ORDER BY total_time DESC LIMIT 8"
    fi
  fi
  kill "$gw_pid" "${sim_pids[@]}" 2>/dev/null || true
  if [[ $db == postgres && -z ${KEEP_WORK:-} ]]; then
    sleep 1
    $TOOL pg-drop --admin "$TEST_DATABASE_URL" --name "smm_sweep_$$"
  fi
}

for db in $DATABASES; do
  sweep_db "$db"
done
