"""Websockets through orun: a real `orun serve`, real upstreams (aiohttp's, or raw ones
that misbehave on purpose), real clients, loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from orun.proxy.target import Route
from orun.proxy.tls import self_signed
from orun.proxy.websocket import WebSocketRelays
from tests.conftest import Orun, serve_app
from tests.upstream import WS_CLOSES, make_upstream
from tests.wsraw import ZERO_MASK, answer_101, connect, frame, raw_upstream, read_frame

CONFIG = "http: {host: 127.0.0.1, port: 0}\nlog: {access_log: false}\n"


@pytest.fixture
async def upstream():  # type: ignore[no-untyped-def]
    app = make_upstream()
    async with serve_app(app) as base:
        yield base, app


@pytest.fixture
async def wide_http():  # type: ignore[no-untyped-def]
    """A client session without aiohttp's 100-connection limit."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def proxy_app(server: Orun, url: str, path: str = "/p") -> None:
    (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={url}", "-",
                      path)).ok()


async def started(make_orun, extra: str = "") -> Orun:  # type: ignore[no-untyped-def]
    server: Orun = make_orun(CONFIG + extra)
    await server.start()
    return server


async def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.05)


def problems(server: Orun) -> list[dict[str, object]]:
    return [e for e in server.log_events() if e.get("level") in ("warning", "error")]


async def test_idle_websockets_outlive_the_proxy_timeouts(make_orun, upstream, wide_http):
    base, _ = upstream
    server = await started(make_orun, "proxy: {read_timeout_secs: 0.5, "
                                      "idle_conn_timeout_secs: 0.5, connect_timeout_secs: 1}\n")
    await proxy_app(server, base)
    sockets = [await wide_http.ws_connect(server.url("/p/ws")) for _ in range(200)]
    for i, ws in enumerate(sockets):
        await ws.send_str(f"before {i}")
    for i, ws in enumerate(sockets):
        assert (await ws.receive(timeout=5)).data == f"before {i}"
    await asyncio.sleep(3)  # six times every proxy timeout, without a single frame
    for i, ws in enumerate(sockets):
        assert not ws.closed
        await ws.send_str(f"after {i}")
    for i, ws in enumerate(sockets):
        assert (await ws.receive(timeout=5)).data == f"after {i}"
    for ws in sockets:
        await ws.close()
    assert problems(server) == []


async def test_fragments_pings_and_big_frames_pass_unchanged(orun, upstream):
    base, app = upstream
    await proxy_app(orun, base)
    # the first frame goes in the same write as the upgrade request
    reader, writer, head = await connect(orun.port, "/p/ws",
                                         first=frame(0x1, b"right behind", masked=True))
    assert head.startswith(b"HTTP/1.1 101")
    assert await read_frame(reader) == (0x81, b"right behind")
    # a fragmented text message with a ping between its fragments, cut at odd places
    stream = (frame(0x1, b"frag", fin=False, masked=True) + frame(0x9, b"probe", masked=True)
              + frame(0x0, b"mented", masked=True))
    for i in range(0, len(stream), 3):
        writer.write(stream[i:i + 3])
        await writer.drain()
    assert await read_frame(reader) == (0x8A, b"probe")  # the upstream answered the ping
    assert await read_frame(reader) == (0x81, b"fragmented")
    # a 3 MiB binary frame written in uneven pieces
    big = bytes(range(256)) * (3 * 4096)
    data = frame(0x2, big, masked=True)
    for i in range(0, len(data), 100_003):
        writer.write(data[i:i + 100_003])
    first, payload = await asyncio.wait_for(read_frame(reader), 10)
    assert first == 0x82 and payload == big
    writer.write(frame(0x8, (4000).to_bytes(2, "big") + b"done", masked=True))
    assert await read_frame(reader) == (0x88, (1000).to_bytes(2, "big"))  # aiohttp's answer
    assert await reader.read() == b""  # and the connection ends
    writer.close()
    await wait_until(lambda: 4000 in app[WS_CLOSES], 5, "the upstream's close 4000")


async def test_frames_right_behind_the_upstreams_101_arrive(orun):
    async def greet(head: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        writer.write(answer_101(head) + frame(0x1, b"hello first"))  # one write
        while True:
            first, payload = await read_frame(reader)
            writer.write(frame(first & 0x0F, payload))
            if first & 0x0F == 0x8:
                return

    async with raw_upstream(greet) as base:
        await proxy_app(orun, base)
        reader, writer, head = await connect(orun.port, "/p/")
        assert head.startswith(b"HTTP/1.1 101")
        assert await read_frame(reader) == (0x81, b"hello first")
        writer.write(frame(0x2, b"\x00\x01", masked=True))
        assert await read_frame(reader) == (0x82, b"\x00\x01")
        writer.close()


async def test_the_client_gets_1011_when_the_upstream_vanishes(orun, http):
    async def vanish(head: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        writer.write(answer_101(head))
        await read_frame(reader)  # one frame, then the connection just ends
        writer.transport.abort()

    async with raw_upstream(vanish) as base:
        await proxy_app(orun, base)
        async with http.ws_connect(orun.url("/p/")) as ws:
            await ws.send_str("bye")
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE
            assert (msg.data, msg.extra) == (1011, "upstream went away")


async def test_the_upstream_gets_1001_when_the_client_vanishes(orun, upstream):
    base, app = upstream
    await proxy_app(orun, base)
    reader, writer, _head = await connect(orun.port, "/p/ws")
    writer.write(frame(0x1, b"hi", masked=True))
    assert await read_frame(reader) == (0x81, b"hi")
    writer.transport.abort()
    await wait_until(lambda: 1001 in app[WS_CLOSES], 5, "the upstream's close 1001")


async def test_close_codes_pass_both_ways_verbatim(orun, upstream, http):
    base, app = upstream
    await proxy_app(orun, base)
    async with http.ws_connect(orun.url("/p/ws")) as ws:
        await ws.send_str("close:4321")  # the upstream closes with 4321
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4321, "server closing")
    async with http.ws_connect(orun.url("/p/ws")) as ws:
        await ws.close(code=4100, message=b"client done")
        assert ws.close_code == 1000  # the upstream's answer (aiohttp's is 1000), relayed
    await wait_until(lambda: 4100 in app[WS_CLOSES], 5, "the upstream's close 4100")


async def test_upstream_refusals_reach_the_client(make_orun, http):
    answers = {
        "/forbidden": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        "/plain": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/badkey": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
    }

    async def refuse(head: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        path = head.split(b" ")[1].decode()
        if path == "/silent":
            await asyncio.sleep(5)
            return
        writer.write(answers[path])
        await writer.drain()

    server = await started(make_orun, "proxy: {connect_timeout_secs: 0.5}\n")
    async with raw_upstream(refuse) as base:
        await proxy_app(server, base)
        expected = {"/forbidden": (403, "upstream refused the websocket upgrade (403 Forbidden)"),
                    "/plain": (502, "upstream refused the websocket upgrade (200 OK)"),
                    "/badkey": (502, "wrong Sec-WebSocket-Accept"),
                    "/silent": (504, "did not accept the websocket within 0.5s")}
        for path, (status, text) in expected.items():
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(server.url("/p" + path))
            assert info.value.status == status, path
            async with http.get(server.url("/p" + path), headers={
                    "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
                assert resp.status == status
                assert text in await resp.text(), path


async def test_a_bad_client_handshake_is_400(orun, upstream, http):
    base, _ = upstream
    await proxy_app(orun, base)
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    for extra, text in (({"Sec-WebSocket-Key": "c2hvcnQ="}, "bad Sec-WebSocket-Key"),
                        ({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                          "Sec-WebSocket-Version": "99"}, "Sec-WebSocket-Version")):
        async with http.get(orun.url("/p/ws"), headers={**headers, **extra}) as resp:
            assert resp.status == 400
            assert "app /p: bad websocket handshake" in await resp.text()
            assert text in await resp.text()


async def test_a_slow_reader_holds_back_the_sender_both_ways(orun):
    """Neither direction buffers in orun: a client that does not read stops the
    upstream's writes, and an upstream that does not read stops the client's."""
    total = 48 * 1024 * 1024
    chunk = frame(0x2, b"u" * (1024 * 1024))
    stats: dict[str, int] = {"sent": 0, "received": 0}
    upstream_reads = asyncio.Event()

    async def pour(head: bytes, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        writer.write(answer_101(head))
        while stats["sent"] < total:  # as fast as orun takes it
            writer.write(chunk)
            await writer.drain()
            stats["sent"] += len(chunk)
        await upstream_reads.wait()
        while stats["received"] < total:
            _first, payload = await read_frame(reader)
            stats["received"] += len(payload)

    async with raw_upstream(pour) as base:
        await proxy_app(orun, base)
        before = orun.peak_kib()
        reader, writer, _head = await connect(orun.port, "/p/")
        await asyncio.sleep(2)  # the client reads nothing
        assert stats["sent"] < total / 2, "the upstream was never held back"
        assert orun.peak_kib() - before < 24 * 1024
        got = 0
        while got < total:
            first, payload = await asyncio.wait_for(read_frame(reader), 10)
            assert first == 0x82
            got += len(payload)
        # now the other way: the upstream reads nothing until told to
        sender = asyncio.create_task(_send_all(writer, total))
        await asyncio.sleep(2)
        assert not sender.done(), "the client was never held back"
        assert orun.peak_kib() - before < 24 * 1024
        upstream_reads.set()
        await asyncio.wait_for(sender, 30)
        await wait_until(lambda: stats["received"] == total, 30, "the upstream's reads")
        assert orun.peak_kib() - before < 24 * 1024  # at no moment of either transfer
        writer.close()


async def _send_all(writer: asyncio.StreamWriter, total: int) -> None:
    data = frame(0x2, b"c" * (1024 * 1024), masked=True, mask=ZERO_MASK)
    for _ in range(total // (1024 * 1024)):
        writer.write(data)
        await writer.drain()


async def test_shutdown_closes_both_ends_with_1001(make_orun, upstream, http):
    base, app = upstream
    server = await started(make_orun, "system: {shutdown_timeout_secs: 0.3}\n")
    await proxy_app(server, base)
    async with http.ws_connect(server.url("/p/ws")) as ws:
        await ws.send_str("x")
        assert (await ws.receive(timeout=5)).data == "x"
        server.signal(signal.SIGTERM)
        msg = await ws.receive(timeout=10)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001,
                                                   "server shutting down")
    assert await server.wait_exit() == 0
    await wait_until(lambda: 1001 in app[WS_CLOSES], 5, "the upstream's close 1001")


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) and its key."""
    cert_pem, key_pem = self_signed("localhost")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


async def test_wss_upstreams_are_verified_and_relayed(make_orun, http, tmp_path):
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    runner = web.AppRunner(make_upstream(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        trusting = make_orun(CONFIG, name="trusting")
        trusting.extra_env["SSL_CERT_FILE"] = str(cert)  # orun trusts this certificate
        await trusting.start()
        await proxy_app(trusting, f"https://127.0.0.1:{port}")
        async with http.ws_connect(trusting.url("/p/ws")) as ws:
            await ws.send_str("over tls")
            assert (await ws.receive(timeout=5)).data == "over tls"
        # without trusting it, the certificate is refused: a 502 that says why
        doubting = make_orun(CONFIG, name="doubting")
        await doubting.start()
        await proxy_app(doubting, f"https://127.0.0.1:{port}")
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(doubting.url("/p/ws"))
        assert info.value.status == 502
        async with http.get(doubting.url("/p/ws"), headers={
                "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
            assert "certificate verify failed" in await resp.text()
    finally:
        await runner.cleanup()


def _open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


async def test_orun_raises_its_open_files_limit_to_the_hard_one(make_orun):
    """At 1,024 open files orun would refuse connections at ~500 websockets."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = hard if hard != resource.RLIM_INFINITY \
        else int(Path("/proc/sys/fs/nr_open").read_text())
    server: Orun = make_orun(CONFIG)
    server.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    await server.start()
    assert server.proc is not None
    assert _open_files(server.proc.pid)[0] == expected
    event = next(e for e in server.log_events() if e.get("event") == "open_files_limit")
    assert event["limit"] == expected and event["raised_from"] == 256
    assert event["websockets"] == (expected - 200) // 2
    await server.stop()


# -- in process: the relay's bookkeeping, on real sockets ---------------------------------


@dataclass
class Activity:
    """The proxy's ActivityCounter: no pause tier here (`wake` is None)."""

    open: int = 0
    last: float = 0.0
    wake: None = None


@contextlib.asynccontextmanager
async def relay_server(relays: WebSocketRelays, upstream: str, activity: Activity):
    """aiohttp's low-level server (as orun's listener) relaying every request upstream."""
    route = Route("app", "/r", "/r", target=None)  # type: ignore[arg-type]

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return await relays.relay(request, route, URL(upstream + "/ws"), {}, 5.0,
                                  activity)

    runner = web.ServerRunner(web.Server(handler, handler_cancellation=True),
                              handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_activity_counts_frames_not_open_sockets(upstream, http):
    base, _ = upstream
    relays, activity = WebSocketRelays(), Activity()
    async with relay_server(relays, base, activity) as url:
        async with http.ws_connect(url) as ws:
            assert len(relays) == 1
            await ws.send_str("a")
            await ws.receive(timeout=5)
            touched = activity.last
            assert touched > 0
            await asyncio.sleep(0.3)
            assert activity.last == touched  # an idle websocket is not traffic
            await ws.send_str("b")
            await ws.receive(timeout=5)
            assert activity.last > touched
            assert activity.open == 0
        await wait_until(lambda: len(relays) == 0, 5, "the relay's end")


async def test_close_all_ends_every_relay(upstream, wide_http):
    base, app = upstream
    relays = WebSocketRelays()
    async with relay_server(relays, base, Activity()) as url:
        sockets = [await wide_http.ws_connect(url) for _ in range(50)]
        for ws in sockets:
            await ws.send_str("x")
            await ws.receive(timeout=5)
        started_at = time.monotonic()
        await relays.close_all(1001, "bye")
        assert time.monotonic() - started_at < 2
        assert len(relays) == 0
        for ws in sockets:
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "bye")
            await ws.close()
    await wait_until(lambda: app[WS_CLOSES].count(1001) == 50, 5, "50 upstream closes")
