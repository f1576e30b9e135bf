"""Websockets on raw bytes for tests: frames written and read by hand, so a test can
cut them anywhere, send them right behind a handshake, or play a misbehaving end."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from orun.proxy.websocket import accept_key

#: a mask key of zeros leaves the payload as it is (cheap for big test frames)
ZERO_MASK = b"\0\0\0\0"


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False,
          mask: bytes | None = None) -> bytes:
    """One frame as a client (masked) or a server sends it."""
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, n | bit))
    elif n < 65536:
        head = bytes((first, 126 | bit)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127 | bit)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4) if mask is None else mask
    if key == ZERO_MASK:
        return head + key + payload
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame's first byte (FIN and opcode) and its unmasked payload."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if head[1] & 0x80 else b""
    payload = await reader.readexactly(n)
    if mask and mask != ZERO_MASK:
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head[0], payload


def upgrade_request(host: str, path: str, *, key: str | None = None,
                    extra: str = "") -> tuple[bytes, str]:
    """A client's upgrade request and its key."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n")
    return head.encode(), key


async def connect(port: int, path: str, first: bytes = b"",
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a websocket to 127.0.0.1:`port` by hand (`first` goes in the same write as
    the upgrade request); returns the streams and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request, key = upgrade_request(f"127.0.0.1:{port}", path)
    writer.write(request + first)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if head.startswith(b"HTTP/1.1 101"):
        assert f"Sec-WebSocket-Accept: {accept_key(key)}".encode() in head, head
    return reader, writer, head


def answer_101(request_head: bytes) -> bytes:
    """A server's 101 answer to `request_head`."""
    found = re.search(rb"sec-websocket-key:\s*(\S+)", request_head, re.I)
    assert found is not None, request_head
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(found.group(1).decode()).encode() + b"\r\n\r\n")


Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on a free loopback port that reads each request head and hands it,
    with the streams, to `handler`; yields its base URL."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await handler(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
