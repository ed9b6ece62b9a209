#!/usr/bin/env bash
# Databroker: puts and gets per second (memory, PostgreSQL, and plain-SQL baselines through the
# same pool) and the time from a Put on one databroker to its arrival in a Sync stream on another
# over one PostgreSQL. Starts a throwaway PostgreSQL cluster (fsync on) from Debian's package.
#
# benches/databroker.sh [--seconds S] [--runs N] [--fsync on|off]     (defaults: 2 s, 5 runs, on)
set -euo pipefail
cd "$(dirname "$0")/.."
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
cargo build --quiet --release -p databroker --example databroker_bench
exec target/release/examples/databroker_bench --runs 5 "$@"
