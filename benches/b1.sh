#!/usr/bin/env bash
# Benchmark B1, one decision: every case of crates/bench-peers/src/b1.rs (12 policies × 1, 10 and
# 100 values per list × an allowed and a denied request) in five engines: ours, regorus's
# interpreter and bytecode VM (suspending at host calls, and run to completion with the answers
# preloaded) on the Rego Pomerium would generate, and cedar-policy on hand-written Cedar. Prints the markdown tables of BENCHMARKS.md: instructions per decision (callgrind, the
# figure that repeats on a noisy machine), the peers' ratios to ours, heap allocations per decision,
# and, with --wall, the median wall time of R criterion runs; then whether each target is met.
#
# benches/b1.sh                  instructions and allocations (about 10 minutes on 2 cores)
# benches/b1.sh --wall [R]       also R runs of `cargo bench -p bench-peers --bench b1` (default 3,
#                                about 5 minutes each)
# CASES='email_in|groups' benches/b1.sh    only the cases whose name matches (grep -E)
# JOBS=1 benches/b1.sh           callgrind runs one at a time (default 2; counts do not change)
#
# Instructions: `b1_probe run` sets the engine up, decides once to warm up, then makes n decisions
# inside one function; callgrind collects only in it (--toggle-collect), and the count ÷ n is one
# decision. Installs valgrind with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

wall_runs=0
if [ "${1:-}" = --wall ]; then
  wall_runs=${2:-3}
fi
cases=${CASES:-.}
jobs=${JOBS:-2}

if ! command -v valgrind > /dev/null; then
  echo "valgrind is missing; installing it with apt-get" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind > /dev/null
fi

cargo build --quiet --release -p bench-peers --example b1_probe
bin=$PWD/target/release/examples/b1_probe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Decisions per callgrind run: enough that set-up effects vanish, few enough for slow engines.
iterations() {
  case $1 in
    ours) echo 5000 ;;
    cedar) echo 200 ;;
    *) echo 10 ;;
  esac
}

# measure <engine> <case> <probe>: prints `case probe engine instructions allocations`.
measure() {
  local n out collected allocations
  n=$(iterations "$1")
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
    --toggle-collect='*measured*' "$bin" run "$1" "$2" "$3" "$n" 2>&1) || {
    echo "b1_probe run $1 $2 $3 failed:" >&2
    echo "$out" >&2
    return 1
  }
  collected=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' <<< "$out")
  allocations=$(sed -n 's/^allocations \([^ ]*\) .*/\1/p' <<< "$out")
  awk -v c="$2" -v p="$3" -v e="$1" -v i="$collected" -v n="$n" -v a="$allocations" \
    'BEGIN { printf "%s %s %s %.1f %s\n", c, p, e, i / n, a }'
}
export -f measure iterations
export bin

"$bin" list | grep -E -- "$cases" | while read -r case probe; do
  for engine in ours regorus rvm rvm_preloaded cedar; do
    echo "$engine $case $probe"
  done
done | xargs -P "$jobs" -n 3 bash -c 'measure "$@"' _ > "$work/counts.tsv"

runs=()
for ((r = 1; r <= wall_runs; r++)); do
  echo "criterion run $r of $wall_runs" >&2
  filter=$(echo "$cases" | sed 's|/|_|g')
  rm -rf target/criterion/b1_*
  cargo bench --quiet -p bench-peers --bench b1 -- "$filter" > /dev/null
  mkdir -p "$work/run$r"
  cp -r target/criterion/b1_* "$work/run$r/"
  runs+=("$work/run$r")
done

echo "B1 on $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $(rustc --version)"
echo
"$bin" report "$work/counts.tsv" "${runs[@]}"
