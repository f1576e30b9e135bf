"""The fault suite's container app (tests/faults): healthy, or broken on purpose.

MODE (a param, so an env var): `ok`; `crash_on_start` exits before listening; `hang`
accepts connections and never answers any. Endpoints of a running app: `/` answers,
`/crash` ends the process (a crash under load), `/hang` never answers, `/slow?s=N`
answers after N seconds, `/eat` allocates memory until the container's limit kills it.
`/spin?s=N` keeps one core busy for N seconds (in the background) and `/hold?mb=N` keeps
N MiB allocated: what the resource sampling tests measure.
"""

import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODE = os.environ.get("MODE", "ok")
PORT = int(os.environ.get("PORT", "8080"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/crash":
            print("fault app: crashing on request", flush=True)
            os._exit(4)
        if url.path == "/hang":
            time.sleep(3600)
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        if url.path == "/spin":
            seconds = float(parse_qs(url.query).get("s", ["1"])[0])
            threading.Thread(target=spin, args=(seconds,), daemon=True).start()
        if url.path == "/hold":
            megabytes = int(parse_qs(url.query).get("mb", ["1"])[0])
            HELD.append(bytearray(b"x" * (megabytes * 1024 * 1024)))
        if url.path == "/eat":
            print("fault app: eating memory", flush=True)
            hog = []
            while True:
                hog.append(bytearray(16 * 1024 * 1024))
        body = b"fault app ok " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


HELD: list[bytearray] = []


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def hang_forever() -> None:
    listener = socket.create_server(("0.0.0.0", PORT))
    held = []
    print("fault app: accepting and never answering", flush=True)
    while True:
        conn, _ = listener.accept()
        held.append(conn)


if __name__ == "__main__":
    if MODE == "crash_on_start":
        print("fault app: crashing on start", flush=True)
        sys.exit(3)
    if MODE == "hang":
        hang_forever()
    print(f"fault app listening on {PORT}", flush=True)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)
