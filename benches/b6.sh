#!/usr/bin/env bash
# Benchmark B6: loading a config with 100, 1,000 and 10,000 routes (crates/bench-peers/src/b6.rs).
# The policy part, each policy compiled from its own text (`each`) and the document parsed once
# with each route's `policy:` lowered from the tree (`document`); and end to end as the server
# loads it at start-up and on reload (`server`: YAML, typed config with every check, policies
# assembled and compiled, route table built).
# Prints instructions per config (callgrind, deterministic), instructions per route, and the wall
# time of R runs of b6_probe (each the mean of several compiles), median and range.
#
# benches/b6.sh [R]        (R wall-time runs, default 5); installs valgrind when it is missing
set -euo pipefail
cd "$(dirname "$0")/.."
wall_runs=${1:-5}

if ! command -v valgrind > /dev/null; then
  echo "valgrind is missing; installing it with apt-get" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind > /dev/null
fi

cargo build --quiet --release -p bench-peers --example b6_probe
bin=target/release/examples/b6_probe

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
    --toggle-collect='*measured*' "$bin" "$1" "$2" 1 2>&1 | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}

# Median and range of R wall-time runs, each the mean of enough compiles to take about 0.3 s.
wall() {
  local n=$((300000 / $2 + 1)) times=()
  for ((r = 0; r < wall_runs; r++)); do
    times+=("$("$bin" "$1" "$2" "$n" | sed -n 's/.*elapsed_ms \([0-9.]*\).*/\1/p')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{ t[NR] = $1 } END { printf "%.2f ms (%.2f–%.2f)", t[int((NR + 1) / 2)], t[1], t[NR] }'
}

echo "B6 (policy part) on $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $(rustc --version)"
echo
echo "| routes | way | instructions | per route | wall time, median of $wall_runs (range) |"
echo "| ---: | --- | ---: | ---: | ---: |"
for routes in 100 1000 10000; do
  for way in each document server; do
    i=$(instructions "$way" "$routes")
    printf '| %s | %s | %s | %s | %s |\n' "$routes" "$way" \
      "$(printf "%'d" "$i")" "$(printf "%'d" $((i / routes)))" "$(wall "$way" "$routes")"
  done
done
