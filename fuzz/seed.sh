#!/usr/bin/env bash
# Builds the seed corpus of each fuzz target (fuzz/corpus/<target>, not committed) from the
# project's own test corpora: policies, configuration cases, Ingress manifests, and a few
# hand-made headers and messages. Targets with a structured (`arbitrary`) input need no seeds.
set -euo pipefail
cd "$(dirname "$0")"
for target in parse_yaml parse_json parse_text policy_differential config_load ingress_manifest proxy_protocol databroker_grpc zero_bootstrap; do
  mkdir -p "corpus/$target"
done

# A section of a `.case` file: the lines after `--- $2` up to the next `--- `.
section() { awk -v want="--- $2" '$0 == want {on=1; next} /^--- /{on=0} on' "$1"; }

for policy in ../policies/*.yaml; do cp "$policy" corpus/parse_yaml/; done
for policy in ../policies/*.json; do cp "$policy" corpus/parse_json/; done
for policy in ../policies/*.ppl; do cp "$policy" corpus/parse_text/; done
# The policy section of every corpus case, by its syntax.
for case in ../tests/corpus/*/*.case; do
  name=$(basename "$case" .case)
  syntax=$(sed -n 's/^--- policy\.\(yaml\|json\|ppl\)$/\1/p' "$case" | head -n 1)
  [ -n "$syntax" ] || continue
  target=$([ "$syntax" = ppl ] && echo text || echo "$syntax")
  section "$case" "policy.$syntax" > "corpus/parse_$target/case-$name"
done

# policy_differential: the policy, NUL NUL, the input document (the evaluation corpus).
for case in ../tests/eval/*/*.case; do
  { section "$case" policy.yaml; printf '\0\0'; section "$case" input.json; } > "corpus/policy_differential/$(basename "$case" .case)"
done

# config_load: a format byte (y or j), the configuration, NUL NUL, the environment's lines.
for case in ../tests/config/*.case; do
  name=$(basename "$case" .case)
  if grep -q '^--- config.json$' "$case"; then format=j; input=config.json; else format=y; input=config.yaml; fi
  { printf '%s' "$format"; section "$case" "$input"; printf '\0\0'; section "$case" env; } > "corpus/config_load/$name"
done

for case in ../tests/ingress/*.case; do
  section "$case" manifest.yaml > "corpus/ingress_manifest/$(basename "$case" .case)"
done

# PROXY protocol headers, versions 1 and 2, followed by the start of a TLS handshake.
printf 'PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n\x16\x03\x01' > corpus/proxy_protocol/v1-tcp4
printf 'PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n' > corpus/proxy_protocol/v1-tcp6
printf 'PROXY UNKNOWN\r\n' > corpus/proxy_protocol/v1-unknown
printf '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x01\xdc\x04\x01\xbb\x16\x03' > corpus/proxy_protocol/v2-tcp4
printf '\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00' > corpus/proxy_protocol/v2-local

# databroker_grpc: operations `kind length message`; kind 10 puts `type\nid\njson`, 11 patches it.
op() { local body; body=$(printf '%s' "$2"); printf "\\x$(printf %02x "$1")\\x$(printf %02x "${#body}")%s" "$body"; }
{ op 10 $'type.googleapis.com/session.Session\ns1\n{"user_id":"alice","claims":{"email":["a@example.com"]}}'
  op 11 $'type.googleapis.com/session.Session\ns1\n{"user_id":"bob"}'
  op 10 $'type.googleapis.com/user.User\nalice\n{"email":"a@example.com","name":"Alice"}'
  op 8 ''
} > corpus/databroker_grpc/put-patch-clear

# zero_bootstrap: a bootstrap configuration's JSON (sealed by the target itself).
printf '{"clusterId":"c1","organizationId":"o1","sharedSecret":"%s","pseudonymizationKey":"%s"}' \
  "$(head -c 32 /dev/zero | base64)" "$(head -c 32 /dev/zero | base64)" > corpus/zero_bootstrap/bootstrap.json

for target in corpus/*; do echo "seeded $(basename "$target"): $(ls "$target" | wc -l)"; done
