"""orun's own upstream connections, end to end: a real `orun serve`, raw upstream
servers on loopback that misbehave on purpose, and raw client sockets.

Covers the rules a keep-alive pool must get right: a pooled connection that turns out
stale is retried once on a fresh one when the request can be sent again (never a POST
whose body went out), early upstream answers, interim 1xx responses, pipelined client
requests, HTTP/1.0 clients, and idle pooled connections being closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.conftest import Orun

Reply = Callable[["RawUpstream", int, int, bytes, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawUpstream:
    """An HTTP/1.1 upstream written on raw sockets. `reply(up, conn_no, req_no, head,
    writer)` answers one request and returns False to close the connection."""

    reply: Reply
    port: int = 0
    connections: int = 0
    #: (connection number, request number on it, request line, body bytes read)
    requests: list[tuple[int, int, str, int]] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_no = self.connections
        req_no = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                req_no += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((conn_no, req_no, head.split(b"\r\n")[0].decode(),
                                      len(body)))
                if not await self.reply(self, conn_no, req_no, head, writer):
                    break
        finally:
            self.closed.append(conn_no)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_upstream(reply: Reply) -> AsyncIterator[RawUpstream]:
    up = RawUpstream(reply)
    server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body) + b"".join(
        h + b"\r\n" for h in extra)
    return head + b"\r\n" + body


async def create(orun: Orun, port: int, path: str = "/up") -> None:
    (await orun.cli("app", "create", "--spec", "proxy", "--param",
                    f"url=http://127.0.0.1:{port}", "-", path)).ok()


async def test_a_stale_pooled_connection_is_retried_for_a_get(
        orun: Orun, http: aiohttp.ClientSession) -> None:
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if conn == 1 and req == 2:
            return False  # gone as the request arrives: what a stale connection looks like
        writer.write(ok(b"answer %d.%d" % (conn, req)))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        for expected in ("answer 1.1", "answer 2.1", "answer 2.2"):
            async with http.get(orun.url("/up/x")) as resp:
                assert (resp.status, await resp.text()) == (200, expected)
        assert [(c, r) for c, r, _line, _n in up.requests] == [(1, 1), (1, 2), (2, 1), (2, 2)]


async def test_a_post_whose_body_went_out_is_never_sent_twice(
        orun: Orun, http: aiohttp.ClientSession) -> None:
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if conn == 1 and req == 2:
            return False
        writer.write(ok(b"fine"))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        async with http.get(orun.url("/up/warm")) as resp:
            assert resp.status == 200
        async with http.post(orun.url("/up/pay"), data=b"x" * 1000) as resp:
            assert resp.status == 502
            assert "app /up: upstream" in await resp.text()
        posts = [r for r in up.requests if r[2].startswith("POST")]
        assert posts == [(1, 2, "POST /pay HTTP/1.1", 1000)]


async def test_an_early_answer_reaches_the_client(orun: Orun) -> None:
    """The upstream refuses a large upload after its head: the client gets the answer."""
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                     b"Connection: close\r\n\r\ntoo big!")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(early, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await create(orun, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"POST /up/upload HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Length: 50000000\r\n\r\n" + b"x" * 65536)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(65536), 10)
        assert response.startswith(b"HTTP/1.1 413 Payload Too Large\r\n"), response
        assert response.endswith(b"too big!")
        writer.close()
    finally:
        server.close()


async def test_interim_responses_are_skipped(orun: Orun, http: aiohttp.ClientSession) -> None:
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(ok(b"final", b"X-Final: yes"))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        async with http.get(orun.url("/up/")) as resp:
            assert (resp.status, await resp.text()) == (200, "final")
            assert resp.headers["X-Final"] == "yes" and "Link" not in resp.headers


async def chunked_reply(up: RawUpstream, conn: int, req: int, head: bytes,
                        writer: asyncio.StreamWriter) -> bool:
    path = head.split(b" ")[1]
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in (b"path=", path, b" done"):
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


def body_of(message: bytes) -> bytes:
    """The body of one response: sized (the upstream's answer arrived whole) or chunked
    (orun streamed it and re-chunked it for the client)."""
    head, _, data = message.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return data
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]


async def test_pipelined_requests_are_answered_in_order(orun: Orun) -> None:
    async with raw_upstream(chunked_reply) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"GET /up/one HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /up/two HTTP/1.1\r\nHost: localhost\r\n\r\n"
                     b"GET /up/three HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # until orun closes: all three
        writer.close()
        bodies = [body_of(part) for part in data.split(b"HTTP/1.1 200 OK\r\n")[1:]]
        assert bodies == [b"path=/one done", b"path=/two done", b"path=/three done"]


async def test_an_http_1_0_client_gets_a_plain_body(orun: Orun) -> None:
    async with raw_upstream(chunked_reply) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"GET /up/old HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # HTTP/1.0: orun closes at the end
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b" 200 OK" in head.split(b"\r\n")[0]
        assert b"chunked" not in head.lower()
        assert body == b"path=/old done"


async def test_pooled_connections_are_reused_then_closed_when_idle(
        make_orun: Callable[..., Orun], http: aiohttp.ClientSession) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       "proxy: {idle_conn_timeout_secs: 1}\n")
    await server.start()

    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"r%d" % req))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(server, up.port)
        for _ in range(5):
            async with http.get(server.url("/up/")) as resp:
                assert resp.status == 200
        assert up.connections == 1  # one keep-alive connection served all five
        deadline = asyncio.get_running_loop().time() + 10
        while up.closed != [1]:
            assert asyncio.get_running_loop().time() < deadline, "idle connection kept"
            await asyncio.sleep(0.1)
        async with http.get(server.url("/up/")) as resp:
            assert (resp.status, await resp.text()) == (200, "r1")
        assert up.connections == 2
    await server.stop()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_head_and_get_share_a_connection(orun: Orun, method: str) -> None:
    """A HEAD answer has a length but no body: the connection stays usable after it."""
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        else:
            writer.write(ok(b"hello"))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up, aiohttp.ClientSession() as http:
        await create(orun, up.port)
        for _ in range(3):
            async with http.request(method, orun.url("/up/")) as resp:
                assert resp.status == 200
                assert await resp.read() == (b"" if method == "HEAD" else b"hello")
        async with http.get(orun.url("/up/")) as resp:
            assert await resp.read() == b"hello"
        assert up.connections == 1
