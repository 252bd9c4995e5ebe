#!/usr/bin/env bash
# Runs a command with CHROMIUM and CHROMEDRIVER naming a headless-capable Chromium and its
# WebDriver server, for the browser tests (crates/smm-server/tests/it/support/browser.rs).
#
#   scripts/with-chromium.sh CMD [ARGS...]
#
# Variables already set are kept as they are. Otherwise /usr/bin/chromium and
# /usr/bin/chromedriver are used, installing Debian's `chromium` and `chromium-driver` packages
# first when they are missing and the script runs as root. When they cannot be had, the script
# fails under CI=true (the browser tests must run there, not skip); elsewhere it warns and runs
# the command anyway, and the browser tests skip with a note.
set -euo pipefail

in_ci() { [[ -n "${CI:-}" && "${CI// /}" != "0" && "${CI// /}" != "false" ]]; }

chromium=${CHROMIUM:-/usr/bin/chromium}
chromedriver=${CHROMEDRIVER:-/usr/bin/chromedriver}

# The binaries that are not there, as "what (path)".
missing() {
  local out=()
  [[ -x "$chromium" ]] || out+=("Chromium ($chromium)")
  [[ -x "$chromedriver" ]] || out+=("ChromeDriver ($chromedriver)")
  local IFS=,
  echo "${out[*]}"
}

# Debian's packages provide the default paths only: a path set by hand is never installed.
if [[ ( -z "${CHROMIUM:-}" && ! -x "$chromium" ) || ( -z "${CHROMEDRIVER:-}" && ! -x "$chromedriver" ) ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "with-chromium: installing Debian's chromium and chromium-driver packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >&2 \
      || echo "with-chromium: apt-get failed" >&2
  fi
fi

absent=$(missing)
if [[ -z "$absent" ]]; then
  export CHROMIUM=$chromium CHROMEDRIVER=$chromedriver
  echo "with-chromium: $("$chromium" --version 2>/dev/null | head -n 1) via $chromedriver" >&2
elif in_ci; then
  echo "with-chromium: no ${absent//,/ or } and cannot install it; under CI the browser tests" >&2
  echo "  must run: install Debian's chromium and chromium-driver packages (as root), or set" >&2
  echo "  CHROMIUM and CHROMEDRIVER" >&2
  exit 1
else
  echo "with-chromium: warning: no ${absent//,/ or }; the browser tests will be skipped" >&2
  echo "  (install Debian's chromium and chromium-driver packages, or set CHROMIUM and CHROMEDRIVER)" >&2
fi

exec "$@"
