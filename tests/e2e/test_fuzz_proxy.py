"""Property-based fuzzing through a running orun: request paths and headers (traversal,
encoded dots and slashes, NUL bytes, overlong and non-UTF-8 values) against a static app
and a proxied app, and random CLI arguments.

What must hold for every request: orun answers with a well-formed HTTP response (never
a hang, never a reset without one, never a 500 for bad input), a static app never
serves a byte from outside its folder (a secret file beside it, a symlink inside it),
an upstream never receives a path that climbs above the app or a client's X-Orun-*
header. For every CLI call: success, or one `error:` line and never a traceback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import Orun

SECRET = b"TOPSECRET-a1b2c3"
_SEGMENTS = ["", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "a", "index.html", "%2f", "%5c",
             "..;", "..%00", "%00", "\\..", "..\\", "secret.txt", "link", "%ff", "é", "%c0%ae",
             "%%32%65", "~", "?", "#", "a b", "*"]
paths = st.lists(st.sampled_from(_SEGMENTS), max_size=8).map(lambda s: "/" + "/".join(s))
header_names = st.sampled_from([b"X-Orun-User", b"x-orun_email", b"X-Forwarded-For", b"Host",
                                b"Content-Length", b"Transfer-Encoding", b"X-Any", b"Cookie",
                                b"Connection", b"Expect", b"X\x00Y", b"X Y", b"\xff"])
header_values = st.binary(max_size=40) | st.sampled_from(
    [b"chunked", b"0", b"-1", b"1, 2", b"close, X-Any", b"100-continue", b"a" * 9000,
     b"\xc3\x28", b"v\r\nX-Injected: 1", b"localhost", b"evil.example"])


@dataclass
class Seen:
    """What the upstream received."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class _Echo(BaseHTTPRequestHandler):
    seen: Seen

    def do_GET(self) -> None:
        self.seen.paths.append(self.path)
        self.seen.headers.append({k.lower(): v for k, v in self.headers.items()})
        body = b"upstream ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Fuzzed:
    server: Orun
    seen: Seen
    root: Path


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    site = root / "site"
    (site / "a").mkdir(parents=True)
    (site / "index.html").write_text("<h1>site</h1>")
    (root / "secret.txt").write_bytes(SECRET)
    (site / "link").symlink_to("index.html")  # one out of the folder is refused at create
    seen = Seen()
    handler = type("Echo", (_Echo,), {"seen": seen})
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    server = Orun(root / "home")
    asyncio.run(server.start())
    try:
        asyncio.run(server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
        port = upstream.server_address[1]
        asyncio.run(server.cli("app", "create", "--spec", "proxy", "--param",
                               f"url=http://127.0.0.1:{port}", "-", "/up")).ok()
        yield Fuzzed(server, seen, root)
    finally:
        asyncio.run(server.stop())
        upstream.shutdown()


def ask(port: int, request: bytes) -> bytes:
    """Send one request and read the whole answer (orun closes after it: the request
    says `Connection: close`, or orun refused it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), f"no HTTP answer: {answer[:200]!r}"
    return int(line.split(b" ")[2 - 1])


@example(app="/s", path="/link", headers=[])
@example(app="/s", path="/%2e%2e/secret.txt", headers=[])
@example(app="/up", path="/..%2f..%2fetc", headers=[(b"X-Orun-User", b"admin")])
@example(app="/up", path="/..%00", headers=[])  # reached the upstream as `/..%00`
@given(app=st.sampled_from(["/s", "/up"]), path=paths,
       headers=st.lists(st.tuples(header_names, header_values), max_size=4))
def test_no_request_escapes_an_app_or_breaks_orun(fuzzed: Fuzzed, app: str, path: str,
                                                  headers: list[tuple[bytes, bytes]]) -> None:
    before = len(fuzzed.seen.paths)
    head = b"GET " + app.encode() + path.encode("utf-8") + b" HTTP/1.1\r\nHost: localhost\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    answer = ask(fuzzed.server.port, head + b"Connection: close\r\n\r\n")
    status = status_of(answer)
    assert status < 500 or status in (502, 504), answer[:300]
    assert SECRET not in answer
    for got_path, got in zip(fuzzed.seen.paths[before:], fuzzed.seen.headers[before:],
                             strict=True):
        decoded = unquote(got_path.partition("?")[0]).replace("\\", "/")
        assert "\x00" not in decoded, got_path
        assert not any(seg.partition(";")[0] == ".." for seg in decoded.split("/")), got_path
        assert not [k for k in got if k.replace("_", "-").startswith("x-orun-")], got


_CLI_WORDS = ["app", "create", "list", "update", "delete", "param", "version", "spec",
              "--spec", "proxy", "static", "--param", "--copt", "--cvol", "--conf", "--carg",
              "url=http://127.0.0.1:1", "-", "/x", "x.:/y", "*:**", "all", "--dry-run",
              "--format", "json", "memory=lots", "cpus=-1", "/etc:/x", "=", "a=b", "conf",
              "--branch", "stage", "promote", "reload", "switch", "revert", "show"]


@settings(max_examples=25)
@given(st.lists(st.sampled_from(_CLI_WORDS) | st.text(max_size=12), min_size=1, max_size=7))
def test_cli_errors_are_one_line_never_a_traceback(fuzzed: Fuzzed, argv: list[str]) -> None:
    if any("\x00" in a for a in argv):
        return  # the OS refuses NUL in arguments before orun runs
    result = asyncio.run(fuzzed.server.cli(*argv))
    assert "Traceback" not in result.err, (argv, result.err)
    if result.code != 0:
        assert result.err.strip(), (argv, result)
        lines = result.err.strip().splitlines()
        # the error line; a usage error adds one hint line after it (`run 'orun app
        # --help' for usage`), a failed build puts its log tail before it
        assert [line for line in lines if line.startswith("error: ")], (argv, result.err)
        assert lines[0].startswith("error: ") or lines[-1].startswith("error: "), \
            (argv, result.err)
