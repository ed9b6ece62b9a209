#!/usr/bin/env bash
# Benchmark B4, the loopback proxy (shared/spec/benchmarks.md): a load generator → proxy → an nginx
# upstream answering a small body, keep-alive on both sides. The targets run interleaved (every
# target of every variant once, then again) for R rounds so that the machine's drift falls on
# every target alike. Variants (B4_VARIANTS, comma-separated; default plain,tls,h2):
#
# plain: HTTP/1.1 from the client (wrk):
#   direct           wrk → upstream (the floor: what the upstream alone costs)
#   nginx            wrk → nginx (proxy_pass, upstream keep-alive) → upstream
#   haproxy          wrk → haproxy (mode http, keep-alive) → upstream
#   pingora          floor: wrk → a minimal Pingora proxy (crates/bench-pingora: threads 1, its
#                    keep-alive upstream pool, X-Forwarded-For; no TLS feature) → upstream
#   hyper            floor: wrk → a bare hyper proxy (crates/bench-hyper: our server's builder
#                    settings and our upstream client, no pipeline) → upstream
#   hyper-conn       with B4_HYPER_PER_CONNECTION=1: the same bare hyper proxy with one upstream
#                    connection per client connection instead of the pooled client (what the
#                    pooled client costs)
#   pomerium         B4(a): wrk → pomerium (insecure_server, a public route) → upstream
#   pomerium-signed  B4(b): wrk → pomerium, the same process, on a route that needs a signed-in
#                    user (allowed_domains: [example.com], pass_identity_headers: true), every
#                    request carrying alice's session cookie → upstream. The cookie comes from a
#                    real sign-in through the built-in development identity provider (a few lines
#                    of python3 follow the redirects and post its login form), so every request
#                    runs the session lookup, the policy and the identity headers.
# tls: B4(c), HTTPS from the client (wrk over TLS 1.3, keep-alive) to nginx (OpenSSL) and to a
#   second pomerium serving the public route over TLS (rustls), both with a test certificate (ECDSA
#   P-256) made by the openssl CLI at the start of the run. Both sides are pinned to
#   TLS_AES_128_GCM_SHA256 with X25519: the client offers nothing else (wrk through an OpenSSL
#   configuration in OPENSSL_CONF, h2load through --tls13-ciphers and --groups, as it sets its own
#   list), nginx is also pinned in its own configuration; the run prints what each server
#   negotiates (openssl s_client, same configuration) and stops if they differ.
# h2: B4(d), HTTP/2 from the client over TLS with ALPN (h2load -m1, same pinning) to nginx (http2) and
#   to the TLS pomerium.
# h2c: HTTP/2 with prior knowledge over cleartext (h2load) to nginx and to the plain pomerium.
#
# Every proxy runs one worker thread (nginx worker_processes 1, haproxy nbthread 1, Pingora
# threads 1, hyper and pomerium TOKIO_WORKER_THREADS=1), so that on two cores the load generator
# and the upstream keep theirs. Per round and target: req/s, p50 and p99 latency (wrk --latency;
# for h2load, from its per-request log) and the proxy's CPU per request: user and system time from
# /proc/PID/stat over the round, summed over the proxy's processes, divided by the requests
# completed. Prints every round, then per variant the medians and the ratios to that variant's
# nginx, and what the signed-in route adds per request over the public one (B4(b)'s target: ≤ 2 µs
# of CPU), both as the difference of the medians and as the median of each round's difference.
#
# benches/b4.sh [ROUNDS] [SECONDS]     defaults: 5 rounds of 8 s; installs wrk, nginx, haproxy,
#                                      h2load (nghttp2-client) and cmake (to build Pingora's zlib-ng)
#                                      with apt-get when they are missing
#
# B4_VARIANTS=plain,tls,h2,h2c         which variants run (default plain,tls,h2)
# POMERIUM_BIN=PATH uses that build rather than building target/release/pomerium.
# PINGORA_BIN=PATH, HYPER_BIN=PATH use those builds of the floors rather than building
# target/release/bench-pingora and bench-hyper; B4_FLOORS=0 leaves the two floors out;
# B4_PINGORA_NO_STEAL=1 runs Pingora on its no-steal runtime rather than its default.
# B4_PORT_BASE=N listens on ports N to N+13 (default 18080), e.g. for two runs at once.
# With B4_BASELINE=PATH (another build of `pomerium`, e.g. of an earlier commit), a target
# `baseline` runs that binary on the plain configuration, interleaved with the others, and the
# public route's CPU per request is compared with it round by round (did a change cost anything?).
set -euo pipefail
# Bash reads a script as it runs it; inside braces it reads the whole before running any of it, so
# a checkout that changes this file during a run cannot break the run.
{
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-8}
connections=32
variants=${B4_VARIANTS:-plain,tls,h2}
floors=${B4_FLOORS:-1}
for variant in ${variants//,/ }; do
  case $variant in
    plain | tls | h2 | h2c) ;;
    *) echo "B4_VARIANTS: unknown variant \`$variant\` (plain, tls, h2 or h2c)" >&2; exit 2 ;;
  esac
done
has() { [[ ",$variants," == *",$1,"* ]]; }
has plain || floors=0

missing=()
command -v wrk > /dev/null || missing+=(wrk)
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if has plain; then command -v haproxy > /dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy); fi
if has h2 || has h2c; then command -v h2load > /dev/null || missing+=(nghttp2-client); fi
if has tls || has h2; then command -v openssl > /dev/null || missing+=(openssl); fi
# Building Pingora builds zlib-ng (through flate2) with cmake.
if [ "$floors" = 1 ] && [ -z "${PINGORA_BIN:-}" ]; then command -v cmake > /dev/null || missing+=(cmake); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  timeout 300 $sudo apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
fi
PATH=$PATH:/usr/sbin

pomerium=${POMERIUM_BIN:-}
pingora=${PINGORA_BIN:-}
hyper=${HYPER_BIN:-}
# One package per cargo invocation: built together, Cargo would unify their dependencies' features
# (Pingora turns on flate2's zlib-ng) and build a different pomerium.
[ -n "$pomerium" ] || timeout 3600 cargo build --quiet --release -p pomerium
if [ "$floors" = 1 ]; then
  [ -n "$pingora" ] || timeout 3600 cargo build --quiet --release --manifest-path crates/bench-pingora/Cargo.toml --target-dir target
  [ -n "$hyper" ] || timeout 3600 cargo build --quiet --release -p bench-hyper
fi
pomerium=${pomerium:-$PWD/target/release/pomerium}
pingora=${pingora:-$PWD/target/release/bench-pingora}
hyper=${hyper:-$PWD/target/release/bench-hyper}

work=$(mktemp -d)
pids=()
# Stops what this run started: SIGTERM, up to 5 s to exit, then SIGKILL.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2> /dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_base=${B4_PORT_BASE:-18080}
upstream_port=$port_base
nginx_port=$((port_base + 1))
haproxy_port=$((port_base + 2))
pomerium_port=$((port_base + 3))
baseline_port=$((port_base + 4))
pingora_port=$((port_base + 5))
hyper_port=$((port_base + 6))
hyper_conn_port=$((port_base + 7))
nginx_tls_port=$((port_base + 11))
nginx_h2c_port=$((port_base + 12))
pomerium_tls_port=$((port_base + 13))
# Another run (or anything else) on these ports would be measured in place of ours.
for port in $(seq "$port_base" $((port_base + 13))); do
  if [ -n "$(ss -Hltn "sport = :$port")" ]; then
    echo "port $port is already in use (another b4.sh run?): set B4_PORT_BASE to another range" >&2
    exit 1
  fi
done
baseline=${B4_BASELINE:-}
tls=0
if has tls || has h2; then tls=1; fi

# The test certificate (B4(c), B4(d)), and the client's OpenSSL configuration that offers only
# TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519 (wrk and openssl s_client read it; h2load is given
# the same as options).
if [ $tls = 1 ]; then
  timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,DNS:authenticate.localhost.pomerium.io,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
  cat > "$work/client-openssl.cnf" << 'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = X25519
EOF
fi

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

# The nginx target: one process (one worker) for every variant, a server per variant.
nginx_location='location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }'
nginx_servers="server {
    listen 127.0.0.1:$nginx_port;
    $nginx_location
  }"
if [ $tls = 1 ]; then
  nginx_servers+="
  server {
    listen 127.0.0.1:$nginx_tls_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_ecdh_curve X25519;
    $nginx_location
  }"
fi
if has h2c; then
  nginx_servers+="
  server {
    listen 127.0.0.1:$nginx_h2c_port http2;
    $nginx_location
  }"
fi
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
  $nginx_servers
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

if has plain; then
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
fi

if [ "$floors" = 1 ]; then
  "$pingora" 127.0.0.1:$pingora_port 127.0.0.1:$upstream_port ${B4_PINGORA_NO_STEAL:+no-steal} 2> "$work/pingora.log" &
  pids+=($!)
  TOKIO_WORKER_THREADS=1 "$hyper" 127.0.0.1:$hyper_port 127.0.0.1:$upstream_port 2> "$work/hyper.log" &
  pids+=($!)
  if [ -n "${B4_HYPER_PER_CONNECTION:-}" ]; then
    TOKIO_WORKER_THREADS=1 "$hyper" 127.0.0.1:$hyper_conn_port 127.0.0.1:$upstream_port 1000 per-connection \
      2> "$work/hyper-conn.log" &
    pids+=($!)
  fi
fi

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
if [ -n "$baseline" ] && has plain; then
  sed "s/:$pomerium_port/:$baseline_port/g" "$work/pomerium.yaml" > "$work/baseline.yaml"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$baseline" --config "$work/baseline.yaml" 2> "$work/baseline.log" &
  pids+=($!)
else
  baseline=
fi
# B4(c) and B4(d): a second pomerium, the public route over TLS (HTTP/1.1 and h2 by ALPN).
if [ $tls = 1 ]; then
  cat > "$work/pomerium-tls.yaml" << EOF
address: 127.0.0.1:$pomerium_tls_port
certificate_file: $work/cert.pem
certificate_key_file: $work/key.pem
authenticate_service_url: https://authenticate.localhost.pomerium.io:$pomerium_tls_port
idp_provider: development
idp_development_users:
  - email: alice@example.com
routes:
  - from: https://localhost:$pomerium_tls_port
    to: http://127.0.0.1:$upstream_port
    allow_public_unauthenticated_access: true
EOF
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$pomerium" --config "$work/pomerium-tls.yaml" 2> "$work/pomerium-tls.log" &
  pids+=($!)
fi

# wait_for PORT [CURL ARGUMENTS...]: until the server on PORT answers the public route (10 s).
wait_for() {
  local port=$1 scheme=http
  shift
  [[ " $* " == *" -k "* ]] && scheme=https
  for _ in $(seq 100); do
    curl -sf -m 2 -o /dev/null "$@" "$scheme://localhost:$port/" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $port" >&2
  cat "$work"/*.log "$work"/*/error.log 2> /dev/null >&2 || true
  return 1
}
wait_for $upstream_port
wait_for $nginx_port
wait_for $pomerium_port
if has plain; then wait_for $haproxy_port; fi
if [ "$floors" = 1 ]; then wait_for $pingora_port && wait_for $hyper_port; fi
if [ "$floors" = 1 ] && [ -n "${B4_HYPER_PER_CONNECTION:-}" ]; then wait_for $hyper_conn_port; fi
if [ -n "$baseline" ]; then wait_for $baseline_port; fi
if has h2c; then wait_for $nginx_h2c_port --http2-prior-knowledge && wait_for $pomerium_port --http2-prior-knowledge; fi
if [ $tls = 1 ]; then
  wait_for $nginx_tls_port -k && wait_for $pomerium_tls_port -k
  # What each TLS server negotiates with the pinned client: the same, or the comparison is void.
  negotiated() {
    OPENSSL_CONF=$work/client-openssl.cnf timeout 10 openssl s_client -connect "127.0.0.1:$1" \
      -servername localhost -alpn "$2" < /dev/null 2> /dev/null |
      awk '/^New, / { c = $NF } /^Server Temp Key:/ { k = $4; sub(/,$/, "", k) } /^ALPN protocol:/ { a = $3 }
        END { printf "%s %s %s", c, k, a }'
  }
  for alpn in http/1.1 h2; do
    if [ $alpn = h2 ] && ! has h2; then continue; fi
    if [ $alpn = http/1.1 ] && ! has tls; then continue; fi
    theirs=$(negotiated $nginx_tls_port $alpn)
    ours=$(negotiated $pomerium_tls_port $alpn)
    echo "TLS (ALPN $alpn): nginx negotiates $theirs; pomerium $ours" >&2
    if [ "$theirs" != "$ours" ] || [ "$theirs" != "TLS_AES_128_GCM_SHA256 X25519 $alpn" ]; then
      echo "the two TLS servers do not negotiate TLS_AES_128_GCM_SHA256, X25519 and $alpn alike" >&2
      exit 1
    fi
  done
fi

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
if has plain; then
  cookie=$(sign_in)
  echo "signed in as alice: Cookie: ${cookie:0:60}… (${#cookie} bytes)" >&2
  # The cookie must get through on its own, and without it the route must refuse.
  status_of() { curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Host: $signed_host" "$@" "http://127.0.0.1:$pomerium_port/"; }
  [ "$(status_of -H "Cookie: $cookie")" = 200 ] || { echo "the session cookie is not accepted" >&2; exit 1; }
  [ "$(status_of -H 'Accept: application/json')" = 401 ] || { echo "the signed-in route lets anyone in" >&2; exit 1; }
fi

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

# Clock ticks of user and of system time over a set of processes (every thread of each).
cpu_ticks() {
  local user=0 system=0 pid u s
  for pid in "$@"; do
    # Fields 14 and 15, counted after the command name's closing parenthesis (it may hold spaces).
    read -r u s < <(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12, $13}')
    user=$((user + u))
    system=$((system + s))
  done
  echo "$user $system"
}
hz=$(getconf CLK_TCK)

# Latency in wrk's units → microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n = n; else if (u == "ms") n = n * 1000; else if (u == "s") n = n * 1000000
    printf "%.0f", n }'
}

# measure VARIANT TARGET PORT LOADER [ARGUMENTS...]: runs LOADER (wrk or h2load, with the
# arguments) for the round while watching the CPU time of whatever listens on PORT, and records
# "variant target req/s p50_us p99_us cpu_us user_us system_us" per request.
measure() {
  local variant=$1 target=$2 port=$3 loader=$4 before=(0 0) after=(0 0) out requests rps p50 p99
  shift 4
  local -a watched=()
  [ "$target" != direct ] && read -r -a watched <<< "$(proxy_pids "$port")"
  [ ${#watched[@]} -gt 0 ] && read -r -a before <<< "$(cpu_ticks "${watched[@]}")"
  if [ "$loader" = wrk ]; then
    out=$(env ${client_conf:+OPENSSL_CONF=$client_conf} timeout $((seconds + 60)) wrk -t1 -c$connections -d"${seconds}s" --latency "$@")
    [ ${#watched[@]} -gt 0 ] && read -r -a after <<< "$(cpu_ticks "${watched[@]}")"
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<< "$out")
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<< "$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<< "$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<< "$out")")
    if grep -q 'Non-2xx or 3xx responses' <<< "$out"; then
      echo "$variant $target: $(grep 'Non-2xx' <<< "$out" | tr -s ' ')" >&2
    fi
  else
    rm -f "$work/h2load.log"
    out=$(env ${client_conf:+OPENSSL_CONF=$client_conf} timeout $((seconds + 60)) h2load -t1 -c$connections -m1 -D "$seconds" ${client_conf:+--tls13-ciphers=TLS_AES_128_GCM_SHA256 --groups=X25519} --log-file="$work/h2load.log" "$@")
    [ ${#watched[@]} -gt 0 ] && read -r -a after <<< "$(cpu_ticks "${watched[@]}")"
    # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    requests=$(sed -n 's/^requests: .* \([0-9][0-9]*\) succeeded, .*/\1/p' <<< "$out")
    local failed
    failed=$(sed -n 's/^requests: .* \([0-9][0-9]*\) failed.*/\1/p' <<< "$out")
    [ "${failed:-0}" = 0 ] || echo "$variant $target: $failed requests failed" >&2
    # "status codes: N 2xx, N 3xx, N 4xx, N 5xx": anything but 2xx is not the route answering.
    grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' <<< "$out" ||
      echo "$variant $target: not every response was a 2xx: $(grep '^status codes:' <<< "$out")" >&2
    # The log's third column: microseconds from a request's start to the end of its response.
    read -r p50 p99 < <(cut -f3 "$work/h2load.log" | sort -n | awk '{ v[NR] = $1 }
      END { if (NR == 0) { print 0, 0; exit } i = int(NR * 0.5); j = int(NR * 0.99); if (i < 1) i = 1; if (j < 1) j = 1; print v[i], v[j] }')
    rps=$(sed -n 's/^finished in [0-9.]*m*s, \([0-9.]*\) req\/s.*/\1/p' <<< "$out")
  fi
  local cpu=- user=- system=-
  if [ ${#watched[@]} -gt 0 ] && [ "${requests:-0}" -gt 0 ]; then
    read -r cpu user system < <(awk -v u=$((after[0] - before[0])) -v s=$((after[1] - before[1])) -v hz="$hz" -v n="$requests" \
      'BEGIN { f = 1000000 / hz / n; printf "%.2f %.2f %.2f\n", (u + s) * f, u * f, s * f }')
  fi
  echo "$variant $target ${rps:-0} ${p50:-0} ${p99:-0} $cpu $user $system" | tee -a "$work/results" >&2
}

for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds (variant target req/s p50_us p99_us cpu_us_per_request user_us system_us)" >&2
  if has plain; then
    client_conf=
    measure plain direct $upstream_port wrk "http://localhost:$upstream_port/"
    measure plain nginx $nginx_port wrk "http://localhost:$nginx_port/"
    measure plain haproxy $haproxy_port wrk "http://localhost:$haproxy_port/"
    if [ "$floors" = 1 ]; then
      measure plain pingora $pingora_port wrk "http://localhost:$pingora_port/"
      measure plain hyper $hyper_port wrk "http://localhost:$hyper_port/"
      if [ -n "${B4_HYPER_PER_CONNECTION:-}" ]; then
        measure plain hyper-conn $hyper_conn_port wrk "http://localhost:$hyper_conn_port/"
      fi
    fi
    measure plain pomerium $pomerium_port wrk "http://localhost:$pomerium_port/"
    if [ -n "$baseline" ]; then
      measure plain baseline $baseline_port wrk -H "Host: localhost:$pomerium_port" "http://localhost:$baseline_port/"
    fi
    measure plain pomerium-signed $pomerium_port wrk -H "Host: $signed_host" -H "Cookie: $cookie" "http://localhost:$pomerium_port/"
  fi
  client_conf=$work/client-openssl.cnf
  if has tls; then
    measure tls nginx $nginx_tls_port wrk "https://localhost:$nginx_tls_port/"
    measure tls pomerium $pomerium_tls_port wrk "https://localhost:$pomerium_tls_port/"
  fi
  if has h2; then
    measure h2 nginx $nginx_tls_port h2load "https://localhost:$nginx_tls_port/"
    measure h2 pomerium $pomerium_tls_port h2load "https://localhost:$pomerium_tls_port/"
  fi
  client_conf=
  if has h2c; then
    measure h2c nginx $nginx_h2c_port h2load "http://localhost:$nginx_h2c_port/"
    measure h2c pomerium $pomerium_port h2load "http://localhost:$pomerium_port/"
  fi
done

echo "B4 on $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), $rounds rounds of ${seconds}s, $connections connections (wrk -t1; h2load -t1 -m1), variants $variants"
echo
echo "every round (variant target req/s p50_us p99_us cpu_us_per_request user_us system_us):"
echo '```'
cat "$work/results"
echo '```'
awk -v variants="$variants" '
  function min_of(list, n,   i, m) { m = list[1]; for (i = 2; i <= n; i++) if (list[i] < m) m = list[i]; return m }
  function max_of(list, n,   i, m) { m = list[1]; for (i = 2; i <= n; i++) if (list[i] > m) m = list[i]; return m }
  function median(list, n,   sorted, i, j, t) {
    for (i = 1; i <= n; i++) sorted[i] = list[i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (sorted[j] < sorted[i]) { t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t }
    return n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
  }
  function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "–" }
  {
    k = $1 SUBSEP $2; i = ++n[k]
    rps[k, i] = $3; p50[k, i] = $4; p99[k, i] = $5; cpu[k, i] = $6; usr[k, i] = $7; sys[k, i] = $8
  }
  END {
    title["plain"] = "B4(a) and B4(b): HTTP/1.1 (wrk)"
    title["tls"] = "B4(c): HTTP/1.1 over TLS 1.3, TLS_AES_128_GCM_SHA256, X25519 (wrk)"
    title["h2"] = "B4(d): HTTP/2 over TLS 1.3 with ALPN, same cipher and curve (h2load -m1)"
    title["h2c"] = "B4(d) cleartext: HTTP/2 with prior knowledge (h2load -m1)"
    vcount = split(variants, vlist, ",")
    for (v = 1; v <= vcount; v++) {
      variant = vlist[v]
      count = split("direct nginx haproxy pingora hyper hyper-conn pomerium baseline pomerium-signed", all, " ")
      targets = 0
      for (t = 1; t <= count; t++) if (n[variant, all[t]]) names[++targets] = all[t]
      if (!targets) continue
      for (t = 1; t <= targets; t++) {
        k = variant SUBSEP names[t]; m = n[k]
        for (i = 1; i <= m; i++) { a[i] = rps[k, i]; b[i] = p50[k, i]; c[i] = p99[k, i]; d[i] = cpu[k, i]; e[i] = usr[k, i]; f[i] = sys[k, i] }
        m_rps[k] = median(a, m); m_p50[k] = median(b, m); m_p99[k] = median(c, m)
        if (names[t] != "direct") { m_cpu[k] = median(d, m); m_usr[k] = median(e, m); m_sys[k] = median(f, m) }
      }
      nk = variant SUBSEP "nginx"
      printf "\n%s, medians:\n\n", title[variant]
      print "| target | req/s | × nginx | p50 µs | p99 µs | CPU µs/request | user µs | system µs | CPU × nginx |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (t = 1; t <= targets; t++) {
        name = names[t]; k = variant SUBSEP name
        if (name == "direct")
          printf "| %s | %.0f | %s | %d | %d | – | – | – | – |\n", name, m_rps[k], ratio(m_rps[k], m_rps[nk]), m_p50[k], m_p99[k]
        else
          printf "| %s | %.0f | %s | %d | %d | %.2f | %.2f | %.2f | %s |\n", name, m_rps[k], ratio(m_rps[k], m_rps[nk]), m_p50[k], m_p99[k],
            m_cpu[k], m_usr[k], m_sys[k], ratio(m_cpu[k], m_cpu[nk])
      }
      pk = variant SUBSEP "pomerium"
      if (n[pk] && n[nk])
        printf "\n%s: pomerium at %s× nginx CPU per request (target ≤ 1.25×, aim ≤ 1.0×: %s) and %s× its req/s (target ≥ 0.8×: %s); p99 %s× nginx\n",
          variant, ratio(m_cpu[pk], m_cpu[nk]), (m_cpu[pk] <= 1.25 * m_cpu[nk] ? "met" : "missed"),
          ratio(m_rps[pk], m_rps[nk]), (m_rps[pk] >= 0.8 * m_rps[nk] ? "met" : "missed"), ratio(m_p99[pk], m_p99[nk])
      sk = variant SUBSEP "pomerium-signed"
      if (n[sk] && n[pk]) {
        # B4(b): what the signed-in route adds, per round (interleaved, so paired) and by medians.
        rounds = n[pk] < n[sk] ? n[pk] : n[sk]
        for (i = 1; i <= rounds; i++) g[i] = cpu[sk, i] - cpu[pk, i]
        paired = median(g, rounds)
        printf "B4(b): the signed-in route adds %.2f µs CPU per request (difference of the medians), %.2f µs (median of the per-round differences); target ≤ 2 µs: %s\n",
          m_cpu[sk] - m_cpu[pk], paired, (paired <= 2 ? "met" : "missed")
      }
      bk = variant SUBSEP "baseline"
      if (n[bk] && n[pk]) {
        rounds = n[pk] < n[bk] ? n[pk] : n[bk]
        for (i = 1; i <= rounds; i++) q[i] = cpu[pk, i] / cpu[bk, i]
        printf "against the baseline build: public-route CPU per request %.3f× (median of the per-round ratios; range %.3f–%.3f)\n",
          median(q, rounds), min_of(q, rounds), max_of(q, rounds)
      }
      delete names
    }
  }' "$work/results"
exit
}
