"""Attacks on the proxy, end to end: a real orun process, a recording upstream, raw sockets.

Each test performs the attack from issue 10 and checks what the upstream actually saw:
path escapes above a `proxy` app's base path (dot segments, encoded ones, encoded
slashes), absolute-form request targets, and forwarding headers spoofed by clients.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from tests.conftest import Orun, serve_app


@dataclass
class Upstream:
    base: str
    #: every request the upstream got: (raw path, headers as sent)
    seen: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]


def _recording_app(up: Upstream) -> web.Application:
    async def record(request: web.Request) -> web.StreamResponse:
        headers = [(k, v) for k, v in request.headers.items()]
        up.seen.append((request.raw_path, headers))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await ws.send_str(json.dumps({"path": request.raw_path,
                                                  "headers": headers}))
            return ws
        body = (await request.read()).decode("latin-1")
        return web.json_response({"path": request.raw_path, "headers": headers, "body": body})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream("")
    async with serve_app(_recording_app(up)) as base:
        up.base = base
        yield up


async def create_proxy(orun: Orun, url: str, path: str, spec: str = "proxy") -> None:
    (await orun.cli("app", "create", "--spec", spec, "--param", f"url={url}", "-",
                    path)).ok()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(port: int, request_line: str, headers: list[tuple[str, str]],
                      body: bytes = b"") -> RawResponse:
    """Send exactly `request_line` and `headers` (no client normalises anything)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        writer.write((head + "Connection: close\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    parsed = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(status, parsed, body)


def resolved(raw_path: str) -> str:
    """The path an upstream ends up serving: query cut, %-decoded, dot segments resolved."""
    path = unquote(raw_path.partition("?")[0]).replace("\\", "/")
    return posixpath.normpath(path)


def assert_under(up: Upstream, base_path: str) -> None:
    for path in up.paths():
        where = resolved(path)
        assert where == base_path or where.startswith(base_path + "/"), \
            f"upstream served {path!r} (= {where!r}), outside {base_path!r}"


# -- defect 3: dot segments must not leave the proxy app's base path ---------------------

ESCAPES = [
    "/pub/../private/x",
    "/pub/..",
    "/pub/a/../../private/x",
    "/pub/%2e%2e/private/x",
    "/pub/%2E%2E/private/x",
    "/pub/%2E./private/x",
    "/pub/.%2e/private/x",
    "/pub/..%2fprivate/x",
    "/pub/..%2Fprivate%2Fx",
    "/pub/%2e%2e%2fprivate/x",
    "/pub/a%2f..%2f..%2fprivate/x",
    "/pub/..%5cprivate/x",
    "/pub/..\\private/x",
    "/pub/..;/private/x",
    "/pub/./../private/x",
    "/pub/a/./../../private?x=1",
]


@pytest.mark.parametrize("target", ESCAPES)
async def test_dot_segments_cannot_leave_the_base_path(orun: Orun, upstream: Upstream,
                                                         target: str) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    resp = await raw_request(orun.port, f"GET {target} HTTP/1.1",
                             [("Host", f"127.0.0.1:{orun.port}"), ("Accept", "text/plain")])
    assert resp.status == 400, (resp.status, resp.body[:300], upstream.paths())
    assert b"/pub" in resp.body  # a readable error naming the app
    assert upstream.seen == []


@pytest.mark.parametrize(("target", "expected"), [
    ("/pub/a/../b", "/public/b"),
    ("/pub/a/%2e%2e/b?q=1", "/public/b?q=1"),
    ("/pub/./a/./b", "/public/a/b"),
    ("/pub/a/..", "/public/"),
    ("/pub/a%2Fb", "/public/a%2Fb"),  # an encoded slash alone is data, kept as sent
    ("/pub/file.tar.gz", "/public/file.tar.gz"),
    ("/pub/.../x", "/public/.../x"),  # not a dot segment
    ("/pub/.hidden/x", "/public/.hidden/x"),
    ("/pub/a%20b", "/public/a%20b"),
])
async def test_dot_segments_inside_the_base_path_are_resolved(
        orun: Orun, upstream: Upstream, target: str, expected: str) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    resp = await raw_request(orun.port, f"GET {target} HTTP/1.1",
                             [("Host", f"127.0.0.1:{orun.port}")])
    assert resp.status == 200, resp.body[:300]
    assert upstream.paths() == [expected]


async def test_dot_segments_cannot_leave_the_app_prefix_when_it_is_kept(
        orun: Orun, upstream: Upstream) -> None:
    """A spec with `strip_app: false` sends the app path too: /keep/.. must not go up."""
    custom = orun.home / "specs" / "keep-path-proxy"
    custom.mkdir(parents=True)
    (custom / "spec.yaml").write_text(
        "description: proxy that keeps the app path\nkind: proxy\n"
        "params: {url: {type: string, required: true}}\nrouting: {strip_app: false}\n")
    await create_proxy(orun, upstream.base, "/keep", spec="keep-path-proxy")
    for target in ("/keep/../admin", "/keep/%2e%2e/admin", "/keep/..%2fadmin"):
        resp = await raw_request(orun.port, f"GET {target} HTTP/1.1",
                                 [("Host", f"127.0.0.1:{orun.port}")])
        assert resp.status == 400, (target, resp.status, upstream.paths())
    assert upstream.seen == []
    resp = await raw_request(orun.port, "GET /keep/a/../b HTTP/1.1",
                             [("Host", f"127.0.0.1:{orun.port}")])
    assert resp.status == 200
    assert upstream.paths() == ["/keep/b"]


async def test_dot_segment_escape_is_refused_for_websockets_too(
        orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    resp = await raw_request(orun.port, "GET /pub/%2e%2e/private/ws HTTP/1.1", [
        ("Host", f"127.0.0.1:{orun.port}"), ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
    ])
    assert resp.status == 400
    assert upstream.seen == []


async def test_json_clients_get_a_json_error(orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    resp = await raw_request(orun.port, "GET /pub/%2e%2e/private HTTP/1.1",
                             [("Host", f"127.0.0.1:{orun.port}"),
                              ("Accept", "application/json")])
    assert resp.status == 400
    data = json.loads(resp.body)
    assert data["status"] == 400 and "/pub" in data["error"]


# -- defect 4: absolute-form request targets ---------------------------------------------


async def test_absolute_form_target_for_another_host_is_refused(
        orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "app.:")
    host = f"app.localhost:{orun.port}"
    for target in ("http://attacker.example/reset", f"http://attacker.example:{orun.port}/x",
                   f"http://user@app.localhost:{orun.port}/x", "https://attacker.example/"):
        resp = await raw_request(orun.port, f"GET {target} HTTP/1.1", [("Host", host)])
        assert resp.status == 400, (target, resp.status, upstream.seen)
    assert upstream.seen == []


async def test_absolute_form_target_matching_host_uses_its_path(
        orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "app.:")
    await create_proxy(orun, f"{upstream.base}/other", "/pub")
    host = f"app.localhost:{orun.port}"
    resp = await raw_request(orun.port, f"GET http://APP.localhost:{orun.port}/reset?a=1 HTTP/1.1",
                             [("Host", host)])
    assert resp.status == 200, resp.body[:300]
    (path, headers), = upstream.seen
    assert path == "/public/reset?a=1"
    sent = {k.lower(): v for k, v in headers}
    assert sent["x-forwarded-host"] == host
    assert sent["x-forwarded-port"] == str(orun.port)
    upstream.seen.clear()
    resp = await raw_request(orun.port, f"POST http://{host}/form HTTP/1.1",
                             [("Host", host), ("Content-Length", "3")], b"abc")
    assert resp.status == 200
    assert json.loads(resp.body)["body"] == "abc"
    assert upstream.paths() == ["/public/form"]
    # routed, forwarded and checked on the target's path, dot segments included
    upstream.seen.clear()
    default = f"127.0.0.1:{orun.port}"
    resp = await raw_request(orun.port, f"GET http://{default}/pub/x HTTP/1.1",
                             [("Host", default)])
    assert resp.status == 200
    assert upstream.paths() == ["/other/x"]
    resp = await raw_request(orun.port, f"GET http://{default}/pub/../public/x HTTP/1.1",
                             [("Host", default)])
    assert resp.status == 400
    assert upstream.paths() == ["/other/x"]


async def test_other_request_target_forms_are_refused(orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/")
    host = f"127.0.0.1:{orun.port}"
    resp = await raw_request(orun.port, "OPTIONS * HTTP/1.1", [("Host", host)])
    assert resp.status == 400
    assert upstream.seen == []


# -- defect 5: forwarding headers from untrusted clients ---------------------------------

SPOOFED = [
    ("X-Forwarded-Port", "1"), ("X-Forwarded-Ssl", "on"), ("X-Forwarded-Scheme", "https"),
    ("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded_Host", "evil.test"),
    ("x_forwarded-proto", "https"), ("X-Original-URL", "/admin"),
    ("X-Original-Host", "evil.test"), ("X-Rewrite-URL", "/admin"),
    ("X-Forwarded-Server", "evil.test"), ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"), ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Prefix", "/evil"), ("X_Real_IP", "6.6.6.6"), ("X-Client-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
]
#: the forwarding headers orun sets itself, and their values for a direct client
OWN = {"x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host",
       "x-forwarded-prefix", "x-forwarded-port"}


def check_no_spoof(headers: list[tuple[str, str]], port: int) -> None:
    names = [k.lower() for k, _ in headers]
    for name, _ in SPOOFED:
        if name.lower() not in OWN:
            assert name.lower() not in names, f"{name} reached the app"
    sent = {k.lower(): v for k, v in headers}
    for name in OWN:
        assert names.count(name) == 1, f"{name}: {names}"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-real-ip"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == f"127.0.0.1:{port}"
    assert sent["x-forwarded-prefix"] == "/pub"
    assert sent["x-forwarded-port"] == str(port)
    assert "6.6.6.6" not in json.dumps(headers) and "evil" not in json.dumps(headers)


async def test_spoofed_forwarding_headers_never_reach_the_app(
        orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    resp = await raw_request(orun.port, "GET /pub/x HTTP/1.1",
                             [("Host", f"127.0.0.1:{orun.port}"), *SPOOFED,
                              ("X-Keep", "kept")])
    assert resp.status == 200
    (_, headers), = upstream.seen
    check_no_spoof(headers, orun.port)
    assert ("X-Keep", "kept") in headers


async def test_spoofed_forwarding_headers_never_reach_a_websocket_app(
        orun: Orun, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    async with http.ws_connect(orun.url("/pub/ws"), headers=SPOOFED) as ws:
        await ws.send_str("headers?")
        data: dict[str, Any] = json.loads((await ws.receive()).data)
    assert data["path"] == "/public/ws"
    check_no_spoof([(k, v) for k, v in data["headers"]], orun.port)


async def test_forwarded_port_follows_the_host_header(orun: Orun, upstream: Upstream) -> None:
    await create_proxy(orun, f"{upstream.base}/public", "/pub")
    for host, port in ((f"localhost:{orun.port}", str(orun.port)), ("localhost", "80"),
                       ("localhost:8080", "8080"), (f"[::1]:{orun.port}", str(orun.port))):
        upstream.seen.clear()
        resp = await raw_request(orun.port, "GET /pub/x HTTP/1.1",
                                 [("Host", host), ("X-Forwarded-Port", "1")])
        assert resp.status == 200, (host, resp.body)
        (_, headers), = upstream.seen
        sent = {k.lower(): v for k, v in headers}
        assert (sent["x-forwarded-host"], sent["x-forwarded-port"]) == (host, port)


async def test_trusted_proxy_forwarding_headers_pass(make_orun: Any, upstream: Upstream) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       "security: {trusted_proxies: [127.0.0.0/8]}\n")
    await server.start()
    await create_proxy(server, f"{upstream.base}/public", "/pub")
    resp = await raw_request(server.port, "GET /pub/x HTTP/1.1", [
        ("Host", f"127.0.0.1:{server.port}"), ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example"),
        ("X-Forwarded-Ssl", "on"), ("X-Original-URL", "/outer/x"),
        ("X_Forwarded_For", "6.6.6.6"),
    ])
    assert resp.status == 200
    (_, headers), = upstream.seen
    sent = {k.lower(): v for k, v in headers}
    assert sent["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert sent["x-real-ip"] == "203.0.113.9"
    assert sent["x-forwarded-host"] == "public.example"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-port"] == "443"  # from the trusted proxy's host and scheme
    assert sent["x-forwarded-ssl"] == "on"
    assert sent["x-original-url"] == "/outer/x"
    assert "x_forwarded_for" not in sent  # never a real proxy's header: always dropped
    upstream.seen.clear()
    resp = await raw_request(server.port, "GET /pub/x HTTP/1.1", [
        ("Host", f"127.0.0.1:{server.port}"), ("X-Forwarded-Port", "8443"),
    ])
    (_, headers), = upstream.seen
    assert {k.lower(): v for k, v in headers}["x-forwarded-port"] == "8443"
    await server.stop()


IDENTITY = [("X-Orun-User", "admin"), ("X-Orun-Email", "boss@example.test"),
            ("X_Orun_Groups", "admins"), ("x-orun-user", "root")]


@pytest.mark.parametrize("trusted", [False, True])
async def test_spoofed_identity_headers_never_reach_an_app(
        make_orun: Any, upstream: Upstream, trusted: bool) -> None:
    """X-Orun-* say who signed in: only orun sets them, so a client's (a trusted
    proxy's too) are dropped, on the fast path, aiohttp's path and websockets alike."""
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       + ("security: {trusted_proxies: [127.0.0.0/8]}\n" if trusted else ""))
    await server.start()
    await create_proxy(server, f"{upstream.base}/public", "/pub")
    host = ("Host", f"127.0.0.1:{server.port}")
    for line in ("GET /pub/fast HTTP/1.1", "GET /pub/old HTTP/1.0"):
        resp = await raw_request(server.port, line, [host, *IDENTITY, ("X-Orunner", "kept")])
        assert resp.status == 200
    async with aiohttp.ClientSession() as http, http.ws_connect(
            server.url("/pub/ws"), headers=dict(IDENTITY[:2])) as ws:
        await ws.send_str("headers")
        await ws.receive()
    assert len(upstream.seen) == 3
    for _path, headers in upstream.seen:
        names = {k.lower().replace("_", "-") for k, _ in headers}
        assert not {n for n in names if n.startswith("x-orun-")}, names
    assert ("X-Orunner", "kept") in upstream.seen[0][1]
    await server.stop()
