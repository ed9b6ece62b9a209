#!/usr/bin/env bash
# Builds the seed corpus of each fuzz target from the example policies and the test corpus.
set -euo pipefail
cd "$(dirname "$0")"
for target in yaml json text; do mkdir -p "corpus/parse_$target"; done
for policy in ../policies/*.yaml; do cp "$policy" corpus/parse_yaml/; done
for policy in ../policies/*.json; do cp "$policy" corpus/parse_json/; done
for policy in ../policies/*.ppl; do cp "$policy" corpus/parse_text/; done
# The policy section of every corpus case, by its syntax.
for case in ../tests/corpus/*/*.case; do
  name=$(basename "$case" .case)
  section=$(sed -n 's/^--- policy\.\(yaml\|json\|ppl\)$/\1/p' "$case" | head -n 1)
  target=$([ "$section" = ppl ] && echo text || echo "$section")
  [ -n "$section" ] || continue
  awk '/^--- policy\./{on=1; next} /^--- /{on=0} on' "$case" > "corpus/parse_$target/case-$name"
done
echo "seeded: $(ls corpus/parse_yaml | wc -l) yaml, $(ls corpus/parse_json | wc -l) json, $(ls corpus/parse_text | wc -l) text"
