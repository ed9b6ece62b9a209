#!/usr/bin/env bash
# Bounded state under floods (issue 17): the server's resident memory (VmRSS) before and after a
# client sends N requests each with something new, three floods in turn:
#
#   hosts    N distinct hosts on a wildcard route passing identity to anonymous users (each host
#            gets its own signed assertion: the assertion cache)
#   handles  N distinct, validly signed session handles (made with the shared secret, as only the
#            server could): the cache of verified handles
#   tokens   N distinct made-up bearer tokens on an `idp_access_token` route (each checked once
#            and refused: the memory of refusals, and the checks in flight)
#
# RSS is sampled after a warm-up of 2,000 requests and then every 10,000 requests; the target is
# flat within 32 MiB from the warm-up to the end. One keep-alive HTTP/1.1 connection at a time,
# plain HTTP (insecure_server), so the client is python3's standard library alone.
#
# benches/flood.sh [N]      default N: 50000; POMERIUM_BIN=PATH uses that build instead of
#                           building target/release/pomerium
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50000}
port=18093

pomerium=${POMERIUM_BIN:-}
if [ -z "$pomerium" ]; then
  cargo build --quiet --release -p pomerium
  pomerium=$PWD/target/release/pomerium
fi

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

secret=$(head -c 32 /dev/zero | tr '\0' '\7' | base64)
python3 -m http.server --bind 127.0.0.1 18094 --directory "$work" > /dev/null 2>&1 &
upstream=$!
cat > "$work/pomerium.yaml" << EOF
address: 127.0.0.1:$port
insecure_server: true
shared_secret: $secret
cookie_secret: $secret
authenticate_service_url: http://authenticate.localhost.pomerium.io:$port
idp_provider: development
idp_development_users:
  - email: alice@example.com
routes:
  - from: http://*.flood.localhost
    to: http://127.0.0.1:18094
    allow_public_unauthenticated_access: true
    pass_identity_headers: true
  - from: http://app.localhost.pomerium.io
    to: http://127.0.0.1:18094
    allowed_domains: [example.com]
  - from: http://api.localhost.pomerium.io
    to: http://127.0.0.1:18094
    bearer_token_format: idp_access_token
    allowed_domains: [example.com]
EOF
touch "$work/index.html"
RUST_LOG=warn "$pomerium" --config "$work/pomerium.yaml" > "$work/pomerium.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/ping"; then break; fi
  sleep 0.1
done

python3 - "$pid" "$port" "$count" "$secret" << 'EOF'
import base64, hashlib, hmac, http.client, json, sys, time

pid, port, count, secret = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), base64.b64decode(sys.argv[4])

def rss_mib():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS")

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def handle(n):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"jti": f"flood-{n}", "sub": f"user-{n}", "iss": "authenticate.localhost.pomerium.io",
              "iat": int(time.time()), "databroker_server_version": "1", "databroker_record_version": "1"}
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"

floods = {
    "hosts": lambda n: (f"h{n}.flood.localhost", {}),
    "handles": lambda n: ("app.localhost.pomerium.io", {"Cookie": f"_pomerium={handle(n)}", "Accept": "application/json"}),
    "tokens": lambda n: ("api.localhost.pomerium.io", {"Authorization": f"Bearer made-up-token-{n}", "Accept": "application/json"}),
}

print(f"{'flood':8} {'requests':>9} {'RSS MiB':>8} {'growth':>7}  statuses")
for name, make in floods.items():
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = {}
    baseline = None
    started = time.time()
    for n in range(count + 2000):
        host, headers = make(n)
        connection.request("GET", "/", headers={"Host": host, **headers})
        response = connection.getresponse()
        response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.getheader("connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        done = n + 1
        if done == 2000:
            baseline = rss_mib()
            print(f"{name:8} {0:>9} {baseline:>8.1f} {0:>7.1f}")
        elif done > 2000 and (done - 2000) % 10000 == 0:
            now = rss_mib()
            print(f"{name:8} {done - 2000:>9} {now:>8.1f} {now - baseline:>+7.1f}  {dict(sorted(statuses.items()))}")
    print(f"{name:8} done in {time.time() - started:.0f} s")
EOF
kill "$upstream" 2> /dev/null || true
