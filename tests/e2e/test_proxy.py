"""`proxy`-spec apps end to end: real orun process, real upstream, real sockets."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
from aiohttp import WSMsgType
from yarl import URL

from tests.conftest import Orun, serve_app
from tests.upstream import WS_CLOSES, make_upstream


@pytest.fixture
async def upstream():  # type: ignore[no-untyped-def]
    app = make_upstream()
    async with serve_app(app) as base:
        yield base, app


async def create_proxy(orun: Orun, url: str, path: str = "/ext", *extra: str) -> None:
    (await orun.cli("app", "create", "--spec", "proxy", "--param", f"url={url}",
                    *extra, "-", path)).ok()


async def test_get_strips_prefix_and_sets_forwarded_headers(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.get(URL(orun.url("/ext/echo/a%20b?q=1&r=%2F"), encoded=True), headers={
        "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Connection": "X-Drop",
        "X-Drop": "gone", "X-Keep": "kept", "Host": f"LOCALHOST:{orun.port}",
    }) as resp:
        assert resp.status == 200
        data = await resp.json()
        # hop-by-hop headers of the upstream response never reach the client
        assert "X-Secret" not in resp.headers and "Keep-Alive" not in resp.headers
        assert resp.headers["X-App"] == "upstream"
    assert data["path"] == "/echo/a%20b?q=1&r=%2F"
    h = data["headers"]
    assert h["X-Forwarded-For"] == "127.0.0.1"
    assert h["X-Real-IP"] == "127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Forwarded-Host"] == f"LOCALHOST:{orun.port}"  # as sent, port included
    assert h["X-Forwarded-Prefix"] == "/ext"
    assert "X-Drop" not in h and h["X-Keep"] == "kept"
    assert h["Host"] == base.removeprefix("http://")


async def test_trusted_proxy_keeps_forwarded_chain(make_orun, upstream, http):
    base, _ = upstream
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       "security: {trusted_proxies: [127.0.0.0/8]}\n")
    await server.start()
    await create_proxy(server, base)
    async with http.get(server.url("/ext/echo"), headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
    }) as resp:
        h = (await resp.json())["headers"]
    assert h["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert h["X-Real-IP"] == "203.0.113.9"
    assert h["X-Forwarded-Proto"] == "https"
    await server.stop()


async def test_preserve_host_and_response_headers(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base, "/ph", "--param", "preserve_host=true", "--param",
                       'response_headers={"X-Frame-Options": "DENY", "X-App": "mine"}')
    async with http.get(orun.url("/ph/echo")) as resp:
        data = await resp.json()
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers.getall("X-App") == ["mine"]
    assert data["headers"]["Host"] == f"127.0.0.1:{orun.port}"


@pytest.mark.parametrize(("kind", "expected"), [
    ("abs", "/ext/target?x=1"), ("path", "/ext/target"), ("rel", "target"),
    ("ext", "https://elsewhere.test/x"),
])
async def test_location_rewrite(orun, upstream, http, kind, expected):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.get(orun.url(f"/ext/redirect?to={kind}"), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == expected


async def test_upstream_status_and_methods_pass_through(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.get(orun.url("/ext/status/418")) as resp:
        assert resp.status == 418
    async with http.put(orun.url("/ext/echo"), data=b"abc") as resp:
        data = await resp.json()
        assert (data["method"], data["body"]) == ("PUT", "abc")
    async with http.head(orun.url("/ext/download?mib=1&sized=1")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(1024 * 1024)
        assert await resp.read() == b""


async def test_large_bodies_stream_without_buffering(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    size = 200 * 1024 * 1024
    # warm up the pool and the process before measuring memory
    async with http.get(orun.url("/ext/download?mib=1")) as resp:
        await resp.read()
    before = orun.peak_kib()

    async def chunks():  # type: ignore[no-untyped-def]
        block = b"y" * (1024 * 1024)
        for _ in range(200):
            yield block

    async with http.post(orun.url("/ext/sink"), data=chunks()) as resp:
        result = await resp.json()
    assert result == {"received": size, "chunked": True, "content_length": None}

    async def sized():  # type: ignore[no-untyped-def]
        block = b"z" * (1024 * 1024)
        for _ in range(200):
            yield block

    async with http.post(orun.url("/ext/sink"), data=sized(),
                         headers={"Content-Length": str(size)}) as resp:
        result = await resp.json()
    assert result == {"received": size, "chunked": False, "content_length": str(size)}

    for sized_download in ("", "&sized=1"):
        received = 0
        async with http.get(orun.url(f"/ext/download?mib=200{sized_download}")) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += len(chunk)
        assert received == size
    growth_mib = (orun.peak_kib() - before) / 1024
    print(f"orun peak RSS growth over 4 x 200 MiB transfers: {growth_mib:.1f} MiB "
          f"(peak before {before / 1024:.1f} MiB)")
    assert growth_mib < 50, f"orun's peak RSS grew by {growth_mib:.1f} MiB"


async def test_sse_events_arrive_before_stream_ends(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.get(orun.url("/ext/sse")) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert first == b"data: first\n\n"
        # the upstream is still holding the stream open: release it now
        async with http.get(f"{base}/release") as rel:
            assert rel.status == 200
        rest = await asyncio.wait_for(resp.read(), 5)
    assert rest == b"data: second\n\ndata: last\n\n"


async def test_websocket_echo_10000_messages_and_close_codes(orun, upstream, http):
    base, app = upstream
    await create_proxy(orun, base)
    async with http.ws_connect(orun.url("/ext/ws"), protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        for i in range(10_000):
            await ws.send_str(f"m{i}")
        for i in range(10_000):
            msg = await ws.receive(timeout=10)
            assert msg.type is WSMsgType.TEXT and msg.data == f"m{i}"
        await ws.send_bytes(b"\x00\x01binary")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.BINARY and msg.data == b"\x00\x01binary"
        await ws.send_str("headers")
        headers = json.loads((await ws.receive(timeout=5)).data)
        assert headers["X-Forwarded-Prefix"] == "/ext"
        assert headers["Host"] == f"127.0.0.1:{orun.port}"  # websockets keep the client Host
        # upstream-initiated close: the code and reason reach the client
        await ws.send_str("close:4001")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4001 and msg.extra == "server closing"

    # client-initiated close: the code reaches the upstream
    async with http.ws_connect(orun.url("/ext/ws")) as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "hi"
        await ws.close(code=4002, message=b"bye")
    for _ in range(50):
        if 4002 in app[WS_CLOSES]:
            break
        await asyncio.sleep(0.05)
    assert 4002 in app[WS_CLOSES]


async def test_websocket_ping_pong_relayed(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.ws_connect(orun.url("/ext/ws"), autoping=False) as ws:
        await ws.ping(b"probe")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.PONG and msg.data == b"probe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_upstream_down_is_502_naming_app(orun, http):
    await create_proxy(orun, f"http://127.0.0.1:{_free_port()}")
    async with http.get(orun.url("/ext/x")) as resp:
        assert resp.status == 502
        text = await resp.text()
    assert "app /ext: cannot connect to upstream" in text
    async with http.get(orun.url("/ext/x"), headers={"Accept": "application/json"}) as resp:
        body = await resp.json()
    assert body["status"] == 502 and "/ext" in body["error"]
    async with http.get(orun.url("/ext/x"), headers={"Accept": "text/html"}) as resp:
        assert "<h1>502 Bad Gateway</h1>" in await resp.text()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(orun.url("/ext/ws"))
    assert info.value.status == 502


async def test_read_timeout_is_504(make_orun, upstream, http):
    base, _ = upstream
    server = make_orun("http: {host: 127.0.0.1, port: 0}\nproxy: {read_timeout_secs: 0.5}\n")
    await server.start()
    await create_proxy(server, base)
    async with http.get(server.url("/ext/slow?secs=3")) as resp:
        assert resp.status == 504
        assert "did not respond within 0.5s" in await resp.text()
    async with http.get(server.url("/ext/slow?secs=0.1")) as resp:
        assert resp.status == 200
    await server.stop()


async def test_unknown_app_is_404(orun, http):
    async with http.get(orun.url("/nothing/here")) as resp:
        assert resp.status == 404
        assert (await resp.text()).strip() == "no matching app found"
    async with http.get(orun.url("/"), headers={"Host": "other.example"}) as resp:
        assert resp.status == 404


async def test_custom_spec_can_keep_the_app_path(orun, upstream, http):
    base, _ = upstream
    custom = orun.home / "specs" / "keep-path-proxy"
    custom.mkdir(parents=True)
    (custom / "spec.yaml").write_text(
        "description: proxy that keeps the app path\nkind: proxy\n"
        "params: {url: {type: string, required: true}}\nrouting: {strip_app: false}\n"
    )
    (await orun.cli("app", "create", "--spec", "keep-path-proxy", "-p", f"url={base}", "-",
                    "/echo")).ok()
    async with http.get(orun.url("/echo/deeper?x=1")) as resp:
        data = await resp.json()
    assert data["path"] == "/echo/deeper?x=1"
    assert data["headers"]["X-Forwarded-Prefix"] == "/echo"


async def test_malformed_upstream_response_is_a_short_502(orun, http):
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT-HTTP " + b"z" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await create_proxy(orun, f"http://127.0.0.1:{port}")
        async with http.get(orun.url("/ext/x")) as resp:
            assert resp.status == 502
            text = await resp.text()
        assert text.startswith(f"app /ext: upstream http://127.0.0.1:{port} failed:")
        assert len(text) < 400
    finally:
        server.close()
        await server.wait_closed()


async def test_location_below_upstream_base_path_keeps_the_request_path(orun, upstream, http):
    base, _ = upstream
    # the upstream lives under /echo; its absolute redirects must map back under /ext
    await create_proxy(orun, f"{base}/echo")
    async with http.get(orun.url("/ext/x"), allow_redirects=False) as resp:
        assert (await resp.json())["path"] == "/echo/x"
    await create_proxy(orun, f"{base}/redirect", "/r")
    async with http.get(orun.url("/r?to=path"), allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/r/target"


async def test_access_log_line_per_request(orun, upstream, http):
    base, _ = upstream
    await create_proxy(orun, base)
    async with http.get(orun.url("/ext/echo/logged?x=1")) as resp:
        assert resp.status == 200
    for _ in range(100):  # the access log thread writes in batches
        lines = [e for e in orun.log_events()
                 if e.get("event") == "request" and e.get("path") == "/ext/echo/logged?x=1"]
        if lines:
            break
        await asyncio.sleep(0.05)
    (line,) = lines
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["logger"] == "orun.access" and line["remote"] == "127.0.0.1"
    assert line["host"] == f"127.0.0.1:{orun.port}"
