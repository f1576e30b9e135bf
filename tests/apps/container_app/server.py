"""`container` spec test app: a stdlib HTTP server built from its own Dockerfile.

GET /env shows the environment, /file?path=P a file's text (volumes, secrets), /sick
makes / answer 500 from then on (health-check tests); anything else echoes the path.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATE = {"sick": False}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        status = 200
        if url.path == "/env":
            body = json.dumps(dict(os.environ))
        elif url.path == "/file":
            path = parse_qs(url.query)["path"][0]
            try:
                with open(path, encoding="utf-8") as f:
                    body = f.read()
            except OSError as exc:
                status, body = 404, str(exc)
        elif url.path == "/sick":
            STATE["sick"] = True
            body = "sick now"
        elif url.path == "/" and STATE["sick"]:
            status, body = 500, "sick"
        else:
            body = json.dumps({"app": "container", "path": self.path, "user": os.getuid(),
                               "message": os.environ.get("MESSAGE", "")})
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stdout.write("request " + (fmt % args) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"container app listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
