#!/usr/bin/env bash
# B3: instructions per route lookup (callgrind), 100 / 1,000 / 10,000 routes, for a request that
# selects the route in the middle. Per lookup = (I(N+1001) - I(N+1)) / 1000, which removes building
# the table. Wall time: `cargo bench -p routing --bench lookup`.
#
# benches/b3.sh        (installs valgrind if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --quiet --release -p routing --example shapes
bin=target/release/examples/shapes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" "$@" 2>&1 >/dev/null \
    | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}

printf '| %-24s | %8s | %24s |\n' shape routes "instructions per lookup"
printf '| %-24s | %8s | %24s |\n' --- ---: ---:
for shape in one_host_per_route one_host_many_prefixes wildcard_hosts; do
  for routes in 100 1000 10000; do
    one=$(instructions "$shape" "$routes" 1)
    many=$(instructions "$shape" "$routes" 1001)
    printf '| %-24s | %8s | %24s |\n' "$shape" "$routes" $(((many - one) / 1000))
  done
done
