# What bench/run.sh and bench/console.sh share; sourced by both (they set `work`, the run's
# temp dir, before starting anything).

need_wrk() { # installs Debian's wrk when missing and run as root
  if ! command -v wrk >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else
      echo "wrk is missing (apt-get install wrk)" >&2; exit 1; fi
  fi
}

pids=()
cleanup() { # every process `start` started, then the work dir (kept with KEEP_WORK=1)
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n ${KEEP_WORK:-} ]]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() { # $1 log name, rest: command; sets $started_pid
  "${@:2}" >"$work/$1.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
