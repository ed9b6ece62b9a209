#!/usr/bin/env bash
# Benchmark B4, the loopback proxy (shared/spec/benchmarks.md): wrk → proxy → an nginx upstream
# answering a small body, HTTP/1.1 keep-alive on both sides. Five targets, run interleaved
# (direct, nginx, haproxy, pomerium, pomerium-signed, then again) for R rounds so that the
# machine's drift falls on every target alike:
#
#   direct           wrk → upstream (the floor: what the upstream alone costs)
#   nginx            wrk → nginx (proxy_pass, upstream keep-alive) → upstream
#   haproxy          wrk → haproxy (mode http, keep-alive) → upstream
#   pomerium         B4(a): wrk → pomerium (insecure_server, a public route) → upstream
#   pomerium-signed  B4(b): wrk → pomerium, the same process, on a route that needs a signed-in
#                    user (allowed_domains: [example.com], pass_identity_headers: true), every
#                    request carrying alice's session cookie → upstream. The cookie comes from a
#                    real sign-in through the built-in development identity provider (a few lines
#                    of python3 follow the redirects and post its login form), so every request
#                    runs the session lookup, the policy and the identity headers.
#
# Every proxy runs one worker thread (nginx worker_processes 1, haproxy nbthread 1, pomerium
# TOKIO_WORKER_THREADS=1), so that on two cores wrk and the upstream keep theirs.
# Per round and target: req/s, p50 and p99 latency (wrk --latency), and the proxy's CPU per
# request: user + system time from /proc/PID/stat over the round, summed over the proxy's
# processes, divided by the requests wrk completed. Prints medians, the ratios to nginx, and what
# the signed-in route adds per request over the public one (B4(b)'s target: ≤ 2 µs of CPU),
# both as the difference of the medians and as the median of each round's difference.
#
# benches/b4.sh [ROUNDS] [SECONDS]     defaults: 5 rounds of 8 s; installs wrk, nginx and haproxy
#                                      with apt-get when they are missing
#
# POMERIUM_BIN=PATH uses that build rather than building target/release/pomerium.
# With B4_BASELINE=PATH (another build of `pomerium`, e.g. of an earlier commit), a sixth target
# `baseline` runs that binary on the same configuration, interleaved with the others, and the
# public route's CPU per request is compared with it round by round (did a change cost anything?).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-8}
connections=32

missing=()
command -v wrk > /dev/null || missing+=(wrk)
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy > /dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
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

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

upstream_port=18080
nginx_port=18081
haproxy_port=18082
pomerium_port=18083
baseline_port=18084
baseline=${B4_BASELINE:-}

# The upstream: nginx answering 12 bytes from memory.
mkdir -p "$work/upstream" "$work/nginx"
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

cat > "$work/nginx/nginx.conf" << EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$upstream_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

cat > "$work/haproxy.cfg" << EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
frontend front
  bind 127.0.0.1:$haproxy_port
  default_backend back
backend back
  http-reuse always
  server upstream 127.0.0.1:$upstream_port
EOF
haproxy -f "$work/haproxy.cfg" -db > /dev/null 2>&1 &
pids+=($!)

# One pomerium for (a) and (b): a public route, and a route for signed-in example.com users. The
# authenticate service and its development identity provider run in the same process; every host
# is served by the one listener (requests name their host in the Host header).
signed_host=app.localhost.pomerium.io:$pomerium_port
cat > "$work/pomerium.yaml" << EOF
address: 127.0.0.1:$pomerium_port
insecure_server: true
authenticate_service_url: http://authenticate.localhost.pomerium.io:$pomerium_port
idp_provider: development
idp_development_users:
  - email: alice@example.com
routes:
  - from: http://localhost:$pomerium_port
    to: http://127.0.0.1:$upstream_port
    allow_public_unauthenticated_access: true
  - from: http://$signed_host
    to: http://127.0.0.1:$upstream_port
    allowed_domains: [example.com]
    pass_identity_headers: true
EOF
TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$pomerium" --config "$work/pomerium.yaml" 2> "$work/pomerium.log" &
pids+=($!)
if [ -n "$baseline" ]; then
  sed "s/:$pomerium_port/:$baseline_port/g" "$work/pomerium.yaml" > "$work/baseline.yaml"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$baseline" --config "$work/baseline.yaml" 2> "$work/baseline.log" &
  pids+=($!)
fi

wait_for() {
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://localhost:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  cat "$work"/*.log "$work"/*/error.log 2> /dev/null >&2 || true
  return 1
}
for port in $upstream_port $nginx_port $haproxy_port $pomerium_port ${baseline:+$baseline_port}; do wait_for "$port"; done

# Signs in as alice through the development identity provider, the way a browser does: the route
# sends us to the authenticate service, which sends us to the provider's login page; its form is
# posted, and the redirects lead back through the authenticate service and the route's callback
# (which sets the route host's session cookie) to the route. Prints the route host's Cookie header.
sign_in() {
  python3 - "$pomerium_port" "http://$signed_host/" << 'PY'
import html, http.client, re, sys, urllib.parse

port, url = int(sys.argv[1]), sys.argv[2]
jar = {}  # (domain, name) -> value; cookies are Secure, but here everything is plain HTTP


def cookie_header(host):
    pairs = [f"{name}={value}" for (domain, name), value in sorted(jar.items())
             if host == domain or host.endswith("." + domain)]
    return "; ".join(pairs)


def request(method, target, body=None):
    parts = urllib.parse.urlsplit(target)
    headers = {"Host": parts.netloc, "Accept": "text/html"}
    if cookie_header(parts.hostname):
        headers["Cookie"] = cookie_header(parts.hostname)
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers)
    response = connection.getresponse()
    data = response.read()
    for line in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = line.partition("=")
        value, *attributes = rest.split(";")
        attrs = dict((a.strip().partition("=")[0].lower(), a.strip().partition("=")[2]) for a in attributes)
        domain = attrs.get("domain", "").lstrip(".") or parts.hostname
        if value == "" or attrs.get("max-age") == "0":
            jar.pop((domain, name.strip()), None)
        else:
            jar[(domain, name.strip())] = value
    return response.status, response.headers.get("Location"), data


status, location, data = request("GET", url)
for _ in range(20):
    if status in (301, 302, 303, 307):
        url = urllib.parse.urljoin(url, location)
        status, location, data = request("GET", url)
    elif status == 200 and "/dev-idp/" in url:
        page = data.decode()
        form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page, re.S)
        fields = {name: html.unescape(value) for name, value in
                  re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2))}
        url = urllib.parse.urljoin(url, form.group(1))
        status, location, data = request("POST", url, urllib.parse.urlencode(fields))
    else:
        break
host = urllib.parse.urlsplit(sys.argv[2]).hostname
if status != 200 or data != b"hello world\n" or not cookie_header(host):
    sys.exit(f"the sign-in did not end at the route: {status} {url} {data[:200]!r}")
print(cookie_header(host))
PY
}
cookie=$(sign_in)
echo "signed in as alice: Cookie: ${cookie:0:60}… (${#cookie} bytes)" >&2
# The cookie must get through on its own, and without it the route must refuse.
status_of() { curl -s -o /dev/null -w '%{http_code}' -H "Host: $signed_host" "$@" "http://127.0.0.1:$pomerium_port/"; }
[ "$(status_of -H "Cookie: $cookie")" = 200 ] || { echo "the session cookie is not accepted" >&2; exit 1; }
[ "$(status_of -H 'Accept: application/json')" = 401 ] || { echo "the signed-in route lets anyone in" >&2; exit 1; }

# The processes whose CPU time counts for a target: the listener's process and its children.
proxy_pids() {
  local port=$1 pid
  pid=$(ss -Hltnp "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
  [ -n "$pid" ] || return 0
  local parent
  parent=$(awk '{print $4}' "/proc/$pid/stat")
  # nginx: the listening worker's master owns the other workers.
  if [ "$(cat "/proc/$parent/comm" 2> /dev/null)" = nginx ]; then pid=$parent; fi
  echo "$pid" $(pgrep -P "$pid" || true)
}

# Clock ticks of user + system time over a set of processes.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

# Latency in wrk's units → microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n = n; else if (u == "ms") n = n * 1000; else if (u == "s") n = n * 1000000
    printf "%.0f", n }'
}

# run TARGET PORT [WRK ARGUMENTS...]
run() {
  local target=$1 port=$2 before after out requests
  shift 2
  local -a watched=()
  [ "$target" != direct ] && read -r -a watched <<< "$(proxy_pids "$port")"
  [ ${#watched[@]} -gt 0 ] && before=$(cpu_ticks "${watched[@]}")
  out=$(wrk -t1 -c$connections -d"${seconds}s" --latency "$@" "http://localhost:$port/")
  [ ${#watched[@]} -gt 0 ] && after=$(cpu_ticks "${watched[@]}")
  requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<< "$out")
  local rps p50 p99 cpu=-
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<< "$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<< "$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<< "$out")")
  if [ ${#watched[@]} -gt 0 ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1000000 / n }')
  fi
  echo "$target $rps $p50 $p99 $cpu" | tee -a "$work/results" >&2
}

for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds (target req/s p50_us p99_us cpu_us_per_request)" >&2
  run direct $upstream_port
  run nginx $nginx_port
  run haproxy $haproxy_port
  run pomerium $pomerium_port
  [ -n "$baseline" ] && run baseline $baseline_port -H "Host: localhost:$pomerium_port"
  run pomerium-signed $pomerium_port -H "Host: $signed_host" -H "Cookie: $cookie"
done

echo "B4(a) and B4(b) on $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $rounds rounds of wrk -t1 -c$connections -d${seconds}s"
echo
awk '
  function min_of(list, n,   i, m) { m = list[1]; for (i = 2; i <= n; i++) if (list[i] < m) m = list[i]; return m }
  function max_of(list, n,   i, m) { m = list[1]; for (i = 2; i <= n; i++) if (list[i] > m) m = list[i]; return m }
  function median(list, n,   sorted, i, j, t) {
    for (i = 1; i <= n; i++) sorted[i] = list[i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (sorted[j] < sorted[i]) { t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t }
    return n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
  }
  { n[$1]++; rps[$1, n[$1]] = $2; p50[$1, n[$1]] = $3; p99[$1, n[$1]] = $4; cpu[$1, n[$1]] = $5 }
  END {
    count = split("direct nginx haproxy pomerium pomerium-signed baseline", targets, " ")
    if (!n["baseline"]) count = 5
    for (t = 1; t <= count; t++) {
      name = targets[t]
      for (i = 1; i <= n[name]; i++) { a[i] = rps[name, i]; b[i] = p50[name, i]; c[i] = p99[name, i]; d[i] = cpu[name, i] }
      m_rps[name] = median(a, n[name]); m_p50[name] = median(b, n[name]); m_p99[name] = median(c, n[name])
      m_cpu[name] = name == "direct" ? 0 : median(d, n[name])
    }
    print "| target | req/s (median) | × nginx | p50 µs | p99 µs | proxy CPU µs/request | × nginx |"
    print "|---|---:|---:|---:|---:|---:|---:|"
    for (t = 1; t <= count; t++) {
      name = targets[t]
      cpu_cell = name == "direct" ? "–" : sprintf("%.2f", m_cpu[name])
      cpu_ratio = name == "direct" ? "–" : sprintf("%.2f", m_cpu[name] / m_cpu["nginx"])
      printf "| %s | %.0f | %.2f | %d | %d | %s | %s |\n", name, m_rps[name], m_rps[name] / m_rps["nginx"], m_p50[name], m_p99[name], cpu_cell, cpu_ratio
    }
    printf "\ntargets: CPU ≤ 0.9× nginx: %s; req/s ≥ nginx: %s; p99 ≤ nginx: %s\n",
      (m_cpu["pomerium"] <= 0.9 * m_cpu["nginx"] ? "met" : "missed"),
      (m_rps["pomerium"] >= m_rps["nginx"] ? "met" : "missed"),
      (m_p99["pomerium"] <= m_p99["nginx"] ? "met" : "missed")
    # B4(b): what the signed-in route adds, per round (interleaved, so paired) and by medians.
    rounds = n["pomerium"] < n["pomerium-signed"] ? n["pomerium"] : n["pomerium-signed"]
    for (i = 1; i <= rounds; i++) e[i] = cpu["pomerium-signed", i] - cpu["pomerium", i]
    paired = median(e, rounds)
    added = m_cpu["pomerium-signed"] - m_cpu["pomerium"]
    printf "B4(b): the signed-in route adds %.2f µs CPU per request (difference of the medians), %.2f µs (median of the per-round differences); target ≤ 2 µs: %s\n",
      added, paired, (paired <= 2 ? "met" : "missed")
    if (n["baseline"]) {
      for (i = 1; i <= n["baseline"]; i++) q[i] = cpu["pomerium", i] / cpu["baseline", i]
      printf "against the baseline build: public-route CPU per request %.3f× (median of the per-round ratios; range %.3f–%.3f)\n",
        median(q, n["baseline"]), min_of(q, n["baseline"]), max_of(q, n["baseline"])
    }
  }' "$work/results"
