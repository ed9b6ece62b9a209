#!/usr/bin/env python3
"""The quickstart's example upstream: shows what it receives from pomerium.

Listens on 127.0.0.1:8001 (or the port given as the first argument) and answers every request
with an HTML page of the request's headers and the claims of its X-Pomerium-Jwt-Assertion
(decoded, not verified: a real upstream verifies it against
https://<route host>/.well-known/pomerium/jwks.json).
"""
import base64
import html
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def claims_of(jwt):
    try:
        payload = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None


class WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self):
        claims = claims_of(self.headers.get("X-Pomerium-Jwt-Assertion", ""))
        who = claims.get("email") if claims else None
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in self.headers.items()
        )
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>whoami</title></head><body>"
            f"<h1>{'Hello, ' + html.escape(who) if who else 'Hello, anonymous visitor'}</h1>"
            "<h2>Identity (X-Pomerium-Jwt-Assertion claims)</h2>"
            f"<pre>{html.escape(json.dumps(claims, indent=2)) if claims else 'none'}</pre>"
            f"<h2>Request headers</h2><table>{rows}</table>"
            "<p><a href='/.pomerium/'>Your session</a> · <a href='/.pomerium/sign_out'>Sign out</a></p>"
            "</body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_POST = do_GET

    def log_message(self, format, *args):
        sys.stderr.write("whoami: " + format % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8001
    ThreadingHTTPServer(("127.0.0.1", port), WhoAmI).serve_forever()
