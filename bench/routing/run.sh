#!/usr/bin/env bash
# The simulated market of issue #15: provider scorecards and quality-aware routing, measured.
#
#   bench/routing/run.sh            # 21 simulated days, about 7 minutes
#   bench/routing/run.sh --quick    # 5 simulated days, about 2 minutes (smoke run)
#
# For each routing policy of market.toml (priority, cheapest, quality), at the same time: the
# release `smm-gateway serve` on gateway.toml with its own SQLite file, in front of three
# simulated providers (provider-a.toml: cheap and bad; provider-b.toml: mid-priced and good,
# degraded for a few days mid-run; provider-c.toml: expensive and good, first in the config
# order), and a population of customers ordering through the v2 API. The driver is
# crates/smm-server/examples/market.rs; it prints the policies side by side (profit after
# refunds, refunds, completion rate, time to complete, refills, orders per provider, B's share
# around its bad days) and checks its own accounts. Everything listens on 127.0.0.1.
#
# Release binaries go to $CARGO_TARGET_DIR (default target/). Extra arguments go to the driver,
# e.g. --policies quality, --omit-routing (a gateway without the [routing] section: every
# column then routes by priority), --work DIR. KEEP_WORK=1 keeps the gateways' configs,
# databases and logs.
set -euo pipefail
cd "$(dirname "$0")/../.."

args=("$@")
echo "building release binaries..." >&2
cargo build --release -q -p smm-server --bin smm-gateway --example market
BIN=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d /tmp/smm-market.XXXXXX)
cleanup() {
  if [[ -n ${KEEP_WORK:-} ]]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$BIN/examples/market" --config bench/routing/market.toml --gateway "$BIN/smm-gateway" \
  --work "$work" "${args[@]}"
