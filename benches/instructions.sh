#!/usr/bin/env bash
# Instructions per compile of the language front end, counted by callgrind: the figure that stays
# put on a noisy machine. For each input, runs the compile loop 1 and 11 times and reports
# (I(11) - I(1)) / 10, which removes start-up and reading the file.
#
# benches/instructions.sh        (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p ppl --example compile_repeatedly
bin=target/release/examples/compile_repeatedly
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

users_policy() {
  printf 'allow:\n  or:\n    - email:\n        in:\n'
  for ((i = 0; i < $1; i++)); do printf '          - user%d@example.com\n' "$i"; done
  printf 'deny:\n  or:\n    - http_path:\n        starts_with: /admin\n'
}

instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" "$1" "$2" "$3" 2>&1 \
    | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}

per_compile() {
  local one eleven
  one=$(instructions "$1" "$2" 1)
  eleven=$(instructions "$1" "$2" 11)
  echo $(((eleven - one) / 10))
}

printf '%-34s %14s\n' "input" "instructions"
for users in 10 100 1000; do
  users_policy "$users" > "$work/users.yaml"
  target/release/pomerium-policy fmt --to json "$work/users.yaml" > "$work/users.json" 2>/dev/null \
    || cargo run --quiet --release -p pomerium-policy -- fmt --to json "$work/users.yaml" > "$work/users.json"
  cargo run --quiet --release -p pomerium-policy -- fmt --to text "$work/users.yaml" > "$work/users.ppl"
  for syntax in yaml json text; do
    ext=$([ "$syntax" = text ] && echo ppl || echo "$syntax")
    printf '%-34s %14s\n' "allowed users $users ($syntax)" "$(per_compile "$work/users.$ext" "$syntax")"
  done
done
for policy in policies/*.yaml policies/*.json policies/*.ppl; do
  case "$policy" in *.test.yaml) continue ;; esac # test files, not policies
  ext=${policy##*.}
  syntax=$([ "$ext" = ppl ] && echo text || echo "$ext")
  printf '%-34s %14s\n' "$(basename "$policy")" "$(per_compile "$policy" "$syntax")"
done
