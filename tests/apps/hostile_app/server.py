"""A hostile repository's app (security tests): it runs as root and tries to change
whatever orun mounts into it.

GET /file?path=P reads a file, /write?path=P&text=T writes one, /symlink?path=P&to=T
replaces P with a symlink to T; each answers what happened (200) or the error (403).
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, body = 200, "hostile app"
        try:
            if url.path == "/file":
                with open(q["path"], encoding="utf-8") as f:
                    body = f.read()
            elif url.path == "/write":
                with open(q["path"], "w", encoding="utf-8") as f:
                    f.write(q["text"])
                body = "written"
            elif url.path == "/symlink":
                link = Path(q["path"])
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(q["to"])
                body = "linked"
        except OSError as exc:
            status, body = 403, f"{type(exc).__name__}: {exc.strerror}"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stdout.write("request " + (fmt % args) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))),
                        Handler).serve_forever()
