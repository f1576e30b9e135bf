"""A small HTTP CONNECT proxy for tests whose builds run where there is no route out.

The test nodes (tests/netnodes.py) have no default route; a build on them that installs
from PyPI goes through this proxy on the host's address on the nodes' network, given to
the build as the standard `HTTPS_PROXY` build arg (pip and uv honour it). Only CONNECT to
port 443 is relayed; anything else is refused with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


async def _serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(client_r.readuntil(b"\r\n\r\n"), 10)
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or port != "443":
            client_w.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream_r, upstream_w = await asyncio.wait_for(
            asyncio.open_connection(host, 443), 15)
        client_w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
        upstream_w.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
            ValueError):
        pass
    finally:
        client_w.close()


@contextlib.asynccontextmanager
async def connect_proxy(host: str) -> AsyncIterator[str]:
    """A CONNECT proxy listening on `host` (a free port); yields its `http://host:port`."""
    server = await asyncio.start_server(_serve, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()
