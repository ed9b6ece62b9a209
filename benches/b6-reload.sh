#!/usr/bin/env bash
# Benchmark B6, reloads under load: what a reload of a 10,000-route configuration does to the
# requests in flight. wrk → pomerium (insecure_server, one worker thread as in B4) → an nginx
# upstream answering a small body, on a public route; the other routes carry B6's eight policy
# shapes (crates/bench-peers/src/b6.rs). Each round runs wrk twice per build: quiet (no reload),
# then while the configuration file is rewritten every RELOAD_EVERY seconds (a comment changes:
# the file is read, checked, compiled and built into a new runtime, swapped in atomically).
# Prints, per round and as medians, req/s, p50, p99 and max latency, and the reloads each run saw
# (`pomerium_config_reloads_total` from the metrics listener); and first each build's start-up, one at a
# time: spawn to the first answer, the whole B6 path from the file to a serving runtime.
#
# benches/b6-reload.sh [ROUNDS] [SECONDS] [ROUTES]   defaults: 3 rounds of 10 s, 10,000 routes
#
# POMERIUM_BIN=PATH uses that build rather than building target/release/pomerium; with
# B6_BASELINE=PATH another build (e.g. of an earlier commit) runs beside it, interleaved.
# RELOAD_EVERY (seconds, default 1) sets how often the file is rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
routes=${3:-10000}
every=${RELOAD_EVERY:-1}
connections=16

missing=()
command -v wrk > /dev/null || missing+=(wrk)
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
fi
PATH=$PATH:/usr/sbin

pomerium=${POMERIUM_BIN:-}
if [ -z "$pomerium" ]; then
  cargo build --quiet --release -p pomerium
  pomerium=$PWD/target/release/pomerium
fi
baseline=${B6_BASELINE:-}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

upstream_port=18180
mkdir -p "$work/upstream"
cat > "$work/upstream/nginx.conf" << EOF
daemon off;
worker_processes 1;
pid $work/upstream/nginx.pid;
error_log $work/upstream/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$upstream_port;
    location / { return 200 "hello world\n"; }
  }
}
EOF
nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" &
pids+=($!)

# config PORT METRICS_PORT: a public route on localhost:PORT first, then ROUTES - 1 routes with
# B6's policy shapes (the same text as `Config::generate`), all to the nginx upstream.
config() {
  python3 - "$1" "$2" "$routes" "$upstream_port" << 'PY'
import sys

port, metrics, routes, upstream = (int(a) for a in sys.argv[1:])


def policy(i):
    shape = i % 8
    if shape == 0:
        return f"allow:\n  or:\n    - email:\n        is: user{i}@example.com\n"
    if shape == 1:
        return f"allow:\n  or:\n    - domain:\n        is: corp{i}.example.com\n"
    if shape == 2:
        return f"allow:\n  or:\n    - groups:\n        has: group{i}\n"
    if shape == 3:
        return (f"allow:\n  or:\n    - email:\n        is: user{i}@example.com\n"
                f"deny:\n  or:\n    - http_path:\n        starts_with: /admin{i}/\n")
    if shape == 4:
        users = "".join(f"    - email:\n        is: user{i}-{k}@example.com\n" for k in range(10))
        return f"allow:\n  or:\n{users}"
    if shape == 5:
        return (f"allow:\n  and:\n    - domain:\n        is: corp{i}.example.com\n"
                "    - http_method:\n        in: [GET, HEAD]\n")
    if shape == 6:
        return f"allow:\n  or:\n    - source_ip: 10.{(i // 256) % 256}.{i % 256}.0/24\n"
    return (f"allow:\n  or:\n    - claim/department: dept{i}\n"
            "deny:\n  or:\n    - http_method:\n        is: DELETE\n")


out = [f"address: 127.0.0.1:{port}", "insecure_server: true", f"metrics_address: 127.0.0.1:{metrics}",
       "routes:", f"  - from: http://localhost:{port}", f"    to: http://127.0.0.1:{upstream}",
       "    allow_public_unauthenticated_access: true"]
for i in range(1, routes):
    out.append(f"  - from: http://app{i}.example.com:{port}\n    to: http://127.0.0.1:{upstream}\n    policy:")
    out.extend(f"      {line}" for line in policy(i).splitlines())
print("\n".join(out))
PY
}

targets=(pomerium)
declare -A bin=([pomerium]=$pomerium) port=([pomerium]=18183) metrics=([pomerium]=18193)
if [ -n "$baseline" ]; then
  targets+=(baseline)
  bin[baseline]=$baseline port[baseline]=18184 metrics[baseline]=18194
fi
for target in "${targets[@]}"; do
  config "${port[$target]}" "${metrics[$target]}" > "$work/$target.yaml"
done

# 10,000 routes take a while to load on a busy machine: wait up to two minutes.
wait_for() {
  for _ in $(seq 1200); do
    curl -sf -o /dev/null "http://localhost:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  cat "$work"/*.log "$work"/*/error.log 2> /dev/null >&2 || true
  return 1
}
wait_for $upstream_port
# One build at a time, so each start-up has the machine to itself: from the process's spawn to
# the first answer on the public route (the file read, checked, compiled and built: B6 end to end).
declare -A started_ms
for target in "${targets[@]}"; do
  t0=$(date +%s%N)
  POMERIUM_WATCH_INTERVAL_MS=100 TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
    "${bin[$target]}" --config "$work/$target.yaml" 2> "$work/$target.log" &
  pids+=($!)
  wait_for "${port[$target]}"
  started_ms[$target]=$((($(date +%s%N) - t0) / 1000000))
done

reloads() {
  { curl -sf "http://127.0.0.1:$1/metrics" || true; } |
    awk '/^pomerium_config_reloads_total\{result="success"\}/ { n = $2 } END { print n + 0 }'
}

# Latency in wrk's units → microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n = n; else if (u == "ms") n = n * 1000; else if (u == "s") n = n * 1000000
    printf "%.0f", n }'
}

# run TARGET MODE: one wrk run, quiet or with the file rewritten every RELOAD_EVERY seconds.
run() {
  local target=$1 mode=$2 out before after writer=
  before=$(reloads "${metrics[$target]}")
  if [ "$mode" = reload ]; then
    (
      n=0
      while :; do
        sleep "$every"
        n=$((n + 1))
        { grep -v '^# reload' "$work/$target.yaml"; echo "# reload $n"; } > "$work/$target.next"
        mv "$work/$target.next" "$work/$target.yaml"
      done
    ) &
    writer=$!
  fi
  out=$(wrk -t1 -c$connections -d"${seconds}s" --latency "http://localhost:${port[$target]}/")
  [ -n "$writer" ] && { kill "$writer"; wait "$writer" 2> /dev/null || true; }
  sleep 2 # the last reload finishes before the next run
  after=$(reloads "${metrics[$target]}")
  printf '%s %s %s %s %s %s %s\n' "$target" "$mode" \
    "$(awk '$1 == "Requests/sec:" {printf "%.0f", $2}' <<< "$out")" \
    "$(to_us "$(awk '$1 == "50%" {print $2}' <<< "$out")")" \
    "$(to_us "$(awk '$1 == "99%" {print $2}' <<< "$out")")" \
    "$(to_us "$(awk '$1 == "Latency" {print $4}' <<< "$out")")" \
    "$((after - before))"
}

echo "B6 reloads under load on $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $routes routes, $rounds rounds of wrk -t1 -c$connections -d${seconds}s, a rewrite every ${every}s"
echo
for target in "${targets[@]}"; do echo "start-up of $target, spawn to first answer: ${started_ms[$target]} ms"; done
echo
echo "| round | build | mode | req/s | p50 µs | p99 µs | max µs | reloads |"
echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"
results=()
for ((r = 1; r <= rounds; r++)); do
  for target in "${targets[@]}"; do
    for mode in quiet reload; do
      line=$(run "$target" "$mode")
      results+=("$line")
      read -r t m rps p50 p99 max n <<< "$line"
      echo "| $r | $t | $m | $rps | $p50 | $p99 | $max | $n |"
    done
  done
done
echo
echo "Medians:"
echo
echo "| build | mode | req/s | p50 µs | p99 µs | max µs | reloads |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${results[@]}" | awk '
  { key = $1 " " $2; n[key]++; for (c = 3; c <= 7; c++) v[key, c, n[key]] = $c; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
  function median(key, c,   i, j, t, a, m) {
    m = n[key]; for (i = 1; i <= m; i++) a[i] = v[key, c, i]
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END { for (i = 1; i <= k; i++) { split(order[i], p, " "); printf "| %s | %s |", p[1], p[2]; for (c = 3; c <= 7; c++) printf " %s |", median(order[i], c); print "" } }'
