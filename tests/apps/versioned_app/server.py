"""A versioned stdlib app for staging, promote and zero-downtime tests.

GET / answers `version <VERSION file> message=<$MESSAGE>` (500 when a BROKEN file is in
the source or MESSAGE is "break", so a version can fail its health check); /slow?secs=N
answers the same after N seconds (a request in flight across a switch; it prints
`slow request started` when it arrives); a websocket
echoes `v<VERSION> <text>`, so a client sees which container it is talking to.
"""

import base64
import hashlib
import os
import signal
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip()
BROKEN = (HERE / "BROKEN").exists() or os.environ.get("MESSAGE") == "break"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms ACK wait

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
            return
        url = urlsplit(self.path)
        if url.path == "/slow":
            print("slow request started", flush=True)  # tests wait for this line
            time.sleep(float(parse_qs(url.query)["secs"][0]))
        status = 500 if BROKEN else 200
        body = f"version {VERSION} message={os.environ.get('MESSAGE', '')}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        read = self.rfile.read
        while True:
            head = read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 15, head[1] & 127
            if length == 126:
                length = struct.unpack(">H", read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", read(8))[0]
            mask = read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x02\x03\xe8")
                self.wfile.flush()
                return
            if opcode == 1:
                out = f"v{VERSION} ".encode() + data
                self.wfile.write(bytes([0x81, len(out)]) + out)
                self.wfile.flush()

    def log_message(self, fmt, *args):
        pass


def _stop(_signum, _frame):
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops SYNs
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
