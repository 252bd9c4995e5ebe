#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh          format check, clippy (warnings are errors), every test
#
# Needs a Rust toolchain. The panel simulators are started by the tests themselves on 127.0.0.1;
# PostgreSQL comes from TEST_DATABASE_URL when set, otherwise scripts/with-postgres.sh starts a
# throwaway server (installing Debian's postgresql package first when missing and run as root),
# so both database backends are always tested. The browser tests drive headless Chromium through
# ChromeDriver from CHROMIUM and CHROMEDRIVER when set, otherwise scripts/with-chromium.sh
# provides Debian's (installing the chromium and chromium-driver packages first when missing
# and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (SQLite, PostgreSQL and headless Chromium)"
if cargo nextest --version >/dev/null 2>&1; then
  scripts/with-postgres.sh scripts/with-chromium.sh cargo nextest run --workspace --locked --no-fail-fast
else
  scripts/with-postgres.sh scripts/with-chromium.sh cargo test --workspace --locked --no-fail-fast
fi
