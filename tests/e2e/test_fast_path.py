"""The proxy's fast path (orun/proxy/fast.py), end to end: a real `orun serve`, raw
upstreams that misbehave on purpose, raw client sockets.

What only this path can get wrong: a connection moving to aiohttp in the middle (with
pipelined requests already read), bytes an upstream sends after its response (never
forwarded: the next request on that client connection may be another app's), bodies
re-framed when the upstream did not size them, early answers, clients that go away,
headers a `Connection` header lists, and the switch that turns the path off.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp

from tests.conftest import Orun
from tests.e2e.test_upstream_pool import RawUpstream, create, ok, raw_upstream


async def exchange(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    """Send `data` on one connection and read until orun closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def responses(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, head, body) of each response in `data` (sized or chunked bodies)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    rest = rest[2:]
                    break
                body, rest = body + rest[:size], rest[size + 2:]
        else:
            match = re.search(rb"content-length: *(\d+)", lower)
            length = int(match.group(1)) if match else len(rest)
            body, rest = rest[:length], rest[length:]
        out.append((status, head, body))
        data = rest
    return out


async def echo_path(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
    writer.write(ok(b"path=" + head.split(b" ")[1]))
    await writer.drain()
    return True


async def test_a_connection_moves_to_aiohttp_mid_stream_with_pipelined_requests(
        orun: Orun) -> None:
    """Fast, then requests only aiohttp answers (no app, 100-continue, HTTP/1.0...),
    then fast again, all pipelined in one write: every answer, in order."""
    async with raw_upstream(echo_path) as up:
        await create(orun, up.port)
        data = await exchange(orun.port, (
            b"GET /up/one HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /up/two HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"POST /up/three HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /up/four HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    got = [(status, body) for status, _, body in responses(data)]
    assert got == [(200, b"path=/one"), (404, b"no matching app found\n"),
                   (200, b"path=/two"), (200, b"path=/three"), (200, b"path=/four")]
    # the first went the fast way (no aiohttp Server header), the later ones aiohttp's
    heads = [head for _, head, _ in responses(data)]
    assert b"aiohttp" not in heads[0] and b"aiohttp" in heads[4]


async def test_a_head_split_across_packets_is_framed(orun: Orun) -> None:
    async with raw_upstream(echo_path) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        for piece in (b"GET /up/sl", b"ow HTTP/1.1\r\nHo", b"st: localhost\r\n\r", b"\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.readexactly(len(b"path=/slow")), 10)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200") and body == b"path=/slow"


async def test_bytes_after_the_response_never_reach_the_client(orun: Orun) -> None:
    """An app that appends a forged second response: the client's next request on the
    same connection gets a real answer, and the lying connection is dropped."""
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if head.split(b" ")[1] == b"/liar":
            writer.write(ok(b"ok") + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        else:
            writer.write(ok(b"honest %d" % conn))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"GET /up/liar HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        # the first answer is in: the forged bytes (sent in the same write) reached orun
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        first += await asyncio.wait_for(reader.readexactly(2), 10)
        writer.write(b"GET /up/next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = first + await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert b"forged" not in data
    assert [body for _, _, body in responses(data)] == [b"ok", b"honest 2"]


async def test_an_unsized_body_is_rechunked_and_ends_with_the_upstream(orun: Orun) -> None:
    """HTTP/1.0-style upstream (no length, ends by closing): the client gets a chunked
    body that ends properly, and its connection stays usable."""
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        await writer.drain()
        return False

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        data = await exchange(orun.port, (
            b"GET /up/a HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /up/b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    got = responses(data)
    assert [(s, b) for s, _, b in got] == [(200, b"part one, part two")] * 2
    assert b"transfer-encoding: chunked" in got[0][1].lower()


async def test_an_early_answer_closes_the_connection_with_the_body_unread(
        orun: Orun) -> None:
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
        await writer.drain()
        return False

    up = RawUpstream(reply)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # answers before reading any of the body
        await up.reply(up, 1, 1, b"", writer)
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        await create(orun, server.sockets[0].getsockname()[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"POST /up/big HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Length: 10000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # orun closes after the answer
        writer.close()
    finally:
        server.close()
    assert [(s, b) for s, _, b in responses(data)] == [(413, b"too big!")]


async def test_a_client_gone_mid_response_frees_the_upstream_connection(
        orun: Orun, http: aiohttp.ClientSession) -> None:
    stalled = asyncio.Event()

    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if head.split(b" ")[1] == b"/slow":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst bytes")
            await writer.drain()
            stalled.set()
            await asyncio.sleep(5)
            return False
        writer.write(ok(b"fresh %d" % conn))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"GET /up/slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.wait_for(reader.readuntil(b"first bytes"), 10)
        writer.close()  # the client leaves in the middle of the body
        deadline = asyncio.get_running_loop().time() + 5
        while 1 not in up.closed:
            assert asyncio.get_running_loop().time() < deadline, "upstream connection kept"
            await asyncio.sleep(0.05)
        async with http.get(orun.url("/up/again")) as resp:
            assert (resp.status, await resp.text()) == (200, "fresh 2")


async def test_headers_a_connection_header_lists_are_dropped_both_ways(orun: Orun) -> None:
    seen: list[bytes] = []

    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        seen.append(head)
        writer.write(ok(b"ok", b"Connection: X-Internal, keep-alive", b"X-Internal: secret",
                        b"Keep-Alive: timeout=5", b"X-Public: yes"))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        data = await exchange(orun.port, (
            b"GET /up/a HTTP/1.1\r\nHost: localhost\r\nConnection: X-Hop, close\r\n"
            b"X-Hop: private\r\nTE: trailers\r\nX-Kept: 1\r\n\r\n"))
    head = responses(data)[0][1].lower()
    assert b"x-public: yes" in head
    assert b"x-internal" not in head and b"keep-alive" not in head
    sent = seen[0].lower()
    assert b"x-kept: 1" in sent
    assert b"x-hop" not in sent and b"te: trailers" not in sent


async def test_the_fast_path_can_be_turned_off(make_orun: Callable[..., Orun]) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\nproxy: {fast_path: false}\n")
    await server.start()
    try:
        async with raw_upstream(echo_path) as up:
            await create(server, up.port)
            data = await exchange(server.port, (
                b"GET /up/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
        status, head, body = responses(data)[0]
        assert (status, body) == (200, b"path=/x")
        assert b"aiohttp" in head  # answered by aiohttp's server
    finally:
        await server.stop()


async def test_a_slow_upstream_gets_a_504_and_a_fast_one_still_serves(
        make_orun: Callable[..., Orun]) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\nproxy: {read_timeout_secs: 0.5}\n")
    await server.start()

    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        if head.split(b" ")[1] == b"/hang":
            await asyncio.sleep(3)
            return False
        writer.write(ok(b"quick"))
        await writer.drain()
        return True

    try:
        async with raw_upstream(reply) as up:
            await create(server, up.port)
            started = asyncio.get_running_loop().time()
            data = await exchange(server.port, (
                b"GET /up/hang HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n"
                b"GET /up/ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
            took = asyncio.get_running_loop().time() - started
        got = responses(data)
        assert got[0][0] == 504 and b'"app /up: upstream' in got[0][2]
        assert b"did not respond within 0.5s" in got[0][2]
        assert (got[1][0], got[1][2]) == (200, b"quick")
        assert took < 2.5
    finally:
        await server.stop()


async def test_a_client_that_half_closes_still_gets_its_answer(orun: Orun) -> None:
    async def reply(up: RawUpstream, conn: int, req: int, head: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.2)  # the client's end of sending arrives first
        writer.write(ok(b"still here"))
        await writer.drain()
        return True

    async with raw_upstream(reply) as up:
        await create(orun, up.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", orun.port)
        writer.write(b"GET /up/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)  # orun answers, then closes
        writer.close()
    assert [(s, b) for s, _, b in responses(data)] == [(200, b"still here")]


async def test_an_upstream_that_accepts_and_dies_at_once_gets_a_502_not_a_hang(
        orun: Orun) -> None:
    """Found by the fault suite (a crashing container): the connection closed between
    its connect and the request's write, which wrote to a closed transport and left
    the client waiting forever. Both paths answer 502 at once."""
    import socket
    import struct

    async def reset_at_once(reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await create(orun, port)
        # many at once: the close then often lands in the same loop turn as the connect
        answers = await asyncio.gather(*(
            exchange(orun.port, b"GET /up/ HTTP/" + version + b"\r\nHost: localhost\r\n"
                     b"Connection: close\r\n\r\n", timeout=10)
            for version in (b"1.1", b"1.0") * 100))  # the fast path and aiohttp's
        assert [responses(data)[0][0] for data in answers] == [502] * 200
    finally:
        server.close()
