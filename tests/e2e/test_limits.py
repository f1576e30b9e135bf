"""Abuse limits (`limits:` in the config), end to end: a real `orun serve`, raw client
sockets, raw upstreams that count what reached them.

Each limit is shown both ways: a request over it is answered by orun with the status
that names the problem (414, 431, 408, 413, 503, 502) and never reaches the app; a
request under it passes. Slowloris: a thousand connections that trickle their heads do
not stop another client being served, and each gets 408 once its time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Callable

import aiohttp

from tests.conftest import Orun, serve_app
from tests.e2e.test_fast_path import exchange, responses
from tests.e2e.test_upstream_pool import RawUpstream, create, ok, raw_upstream
from tests.upstream import make_upstream


async def count_only(up: RawUpstream, conn: int, req: int, head: bytes,
                     writer: asyncio.StreamWriter) -> bool:
    writer.write(ok(b"seen"))
    await writer.drain()
    return True


def limits_config(**limits: object) -> str:
    pairs = ", ".join(f"{k}: {v}" for k, v in limits.items())
    return f"http: {{host: 127.0.0.1, port: 0}}\nlimits: {{{pairs}}}\n"


async def started(make_orun: Callable[..., Orun], **limits: object) -> Orun:
    server = make_orun(limits_config(**limits))
    await server.start()
    return server


def status_of(data: bytes) -> int:
    return responses(data)[0][0]


async def test_heads_over_the_size_limits_are_answered_by_orun_and_never_reach_the_app(
        make_orun: Callable[..., Orun]) -> None:
    server = await started(make_orun, max_request_line_bytes=200, max_header_line_bytes=300,
                           max_header_count=10, max_header_bytes=2000)
    async with raw_upstream(count_only) as up:
        await create(server, up.port)
        long_line = await exchange(server.port, b"GET /up/" + b"a" * 300
                                   + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status_of(long_line) == 414
        assert b"request line longer than 200 bytes" in long_line
        # a request line with no end yet, already over the limit
        endless = await exchange(server.port, b"GET /up/" + b"a" * 400)
        assert status_of(endless) == 414
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
        too_many = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                                  + many + b"\r\n")
        assert status_of(too_many) == 431
        assert b"more than 10 request headers" in too_many
        long_header = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                                     b"X-Big: " + b"b" * 400 + b"\r\n\r\n")
        assert status_of(long_header) == 431
        big = b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 250) for i in range(9))
        too_big = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                                 + big + b"\r\n")
        assert status_of(too_big) == 431
        assert b"request head larger than 2000 bytes" in too_big
        unfinished = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                                    + big)
        assert status_of(unfinished) == 431
        # just under every limit: served
        fine = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                              + b"".join(b"X-H%d: v\r\n" % i for i in range(8))
                              + b"Connection: close\r\n\r\n")
        assert status_of(fine) == 200
    assert [r[2] for r in up.requests] == ["GET / HTTP/1.1"]


async def test_later_heads_on_a_connection_aiohttp_took_are_bounded_too(
        make_orun: Callable[..., Orun]) -> None:
    """HTTP/1.0 keep-alive hands the connection to aiohttp, whose parser then frames
    the next head with the same limits."""
    server = await started(make_orun, max_request_line_bytes=200)
    async with raw_upstream(count_only) as up:
        await create(server, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /up/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive"
                     b"\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"seen"), 10)
        writer.write(b"GET /up/" + b"a" * 300 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert first.split(b" ", 2)[1] == b"200"
    assert rest.split(b" ", 2)[1] == b"400" and b"200" in rest
    assert [r[2] for r in up.requests] == ["GET /a HTTP/1.1"]


async def test_slowloris_connections_get_408_and_never_stop_other_clients(
        make_orun: Callable[..., Orun]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3000 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    server = await started(make_orun, header_timeout_secs=2)
    slow_count = 1000
    async with raw_upstream(count_only) as up:
        await create(server, up.port)
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(slow_count):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n")
            slow.append((reader, writer))
        opened = time.monotonic()

        async def trickle() -> None:
            for i in range(20):
                for _, writer in slow:
                    if not writer.is_closing():
                        writer.write(b"X-%d: y\r\n" % i)
                await asyncio.sleep(0.25)

        trickling = asyncio.create_task(trickle())
        latencies = []
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - opened < 1.5:
                t0 = time.monotonic()
                async with http.get(server.url("/up/")) as resp:
                    assert resp.status == 200
                latencies.append(time.monotonic() - t0)
        answers = await asyncio.gather(
            *(asyncio.wait_for(reader.read(), 10) for reader, _ in slow),
            return_exceptions=True)
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
        for _, writer in slow:
            writer.close()
    assert len(latencies) >= 20 and max(latencies) < 1.0, latencies
    refused = [a for a in answers if isinstance(a, bytes) and a.startswith(b"HTTP/1.1 408")]
    assert len(refused) == slow_count, {type(a).__name__ for a in answers}
    assert b"did not arrive complete within 2s" in refused[0]
    assert all(r[2] == "GET / HTTP/1.1" for r in up.requests)
    assert len(up.requests) == len(latencies)


async def test_idle_keep_alive_connections_close_after_the_timeout_on_both_paths(
        make_orun: Callable[..., Orun]) -> None:
    server = await started(make_orun, keepalive_timeout_secs=1)
    async with raw_upstream(count_only) as up:
        await create(server, up.port)
        fast_r, fast_w = await asyncio.open_connection("127.0.0.1", server.port)
        fast_w.write(b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        aio_r, aio_w = await asyncio.open_connection("127.0.0.1", server.port)
        aio_w.write(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n")  # aiohttp's 404
        t0 = time.monotonic()
        fast = await asyncio.wait_for(fast_r.read(), 10)
        aio = await asyncio.wait_for(aio_r.read(), 10)
        waited = time.monotonic() - t0
        fast_w.close()
        aio_w.close()
    assert status_of(fast) == 200 and status_of(aio) == 404
    assert 0.9 < waited < 4, waited


async def test_connections_beyond_the_cap_get_503_and_retry_after(
        make_orun: Callable[..., Orun]) -> None:
    server = await started(make_orun, max_connections=20)
    async with raw_upstream(count_only) as up:
        await create(server, up.port)
        held = []
        for i in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # half on the fast path, half handed to aiohttp (a 404): both count
            path = b"/up/" if i % 2 else b"/nowhere"
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            held.append((reader, writer))
        extra = await exchange(server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status_of(extra) == 503
        assert b"Retry-After: 1" in extra
        for _, writer in held[:10]:
            writer.close()
        # once orun has seen those closes, new connections are served again (a 503
        # meanwhile is the cap still counting them; anything else is a failure)
        deadline = time.monotonic() + 10
        while status_of(again := await exchange(
                server.port, b"GET /up/ HTTP/1.1\r\nHost: localhost\r\n"
                b"Connection: close\r\n\r\n")) == 503:
            assert time.monotonic() < deadline, "closed connections were never released"
            await asyncio.sleep(0.02)
        assert status_of(again) == 200
        for _, writer in held[10:]:
            writer.close()
    # the operator is told, once (not once per refused connection)
    deadline = time.monotonic() + 5
    while "connection_limit_reached" not in server.log():
        assert time.monotonic() < deadline, "no connection_limit_reached line"
        await asyncio.sleep(0.05)
    assert server.log().count("connection_limit_reached") == 1


async def test_request_bodies_over_the_limit_get_413_on_both_paths_and_per_app(
        make_orun: Callable[..., Orun]) -> None:
    server = await started(make_orun, max_body_mb=0.001)  # 1,048 bytes
    async with serve_app(make_upstream()) as base:
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={base}",
                          "-", "/small")).ok()
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={base}",
                          "--conf", "limits.max_body_mb=0.01", "-", "/roomy")).ok()
        async with aiohttp.ClientSession() as http:
            # a sized body: refused from its head, before a byte of it is read
            async with http.post(server.url("/small/sink"), data=b"x" * 5000) as resp:
                assert resp.status == 413
                assert "app /small: request body larger than 1048 bytes" in await resp.text()
            async with http.post(server.url("/small/sink"), data=b"x" * 1000) as resp:
                assert resp.status == 200
                assert (await resp.json())["received"] == 1000

            async def chunks() -> object:
                for _ in range(5):
                    yield b"y" * 1000

            # chunked (aiohttp's path): cut once it passes the limit
            async with http.post(server.url("/small/sink"), data=chunks()) as resp:
                assert resp.status == 413
            async with http.post(server.url("/roomy/sink"), data=b"x" * 5000) as resp:
                assert resp.status == 200
                assert (await resp.json())["received"] == 5000
            async with http.post(server.url("/roomy/sink"), data=b"x" * 20000) as resp:
                assert resp.status == 413
        # 100-continue: refused without the 100, so the client never sends its body
        data = await exchange(server.port, b"POST /small/sink HTTP/1.1\r\nHost: localhost\r\n"
                              b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 413")
        # a reload changes the limit for the next request
        server.write_config(limits_config(max_body_mb=1))
        (await server.cli("config", "reload")).ok()
        async with aiohttp.ClientSession() as http, \
                http.post(server.url("/small/sink"), data=b"x" * 5000) as resp:
            assert resp.status == 200


async def test_oversized_upstream_response_heads_are_a_502_naming_the_app(
        make_orun: Callable[..., Orun]) -> None:
    server = await started(make_orun, max_response_header_bytes=4096,
                           max_response_header_count=20)

    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        path = head.split(b" ")[1]
        if path == b"/big":
            writer.write(ok(b"no", b"X-Big: " + b"z" * 5000))
        elif path == b"/many":
            writer.write(ok(b"no", *(b"X-%d: v" % i for i in range(25))))
        else:
            writer.write(ok(b"fine", *(b"X-%d: v" % i for i in range(10))))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(server, up.port)
        for version in (b"1.1", b"1.0"):  # the fast path, then aiohttp's
            for path, status in ((b"/up/big", 502), (b"/up/many", 502), (b"/up/ok", 200)):
                data = await exchange(server.port, b"GET " + path + b" HTTP/" + version
                                      + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                assert status_of(data) == status, (version, path, data[:300])
                if status == 502:
                    assert b"app /up: upstream" in data and b"response head" in data
