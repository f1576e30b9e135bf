"""One TCP listener of the proxy: its fast front, its socket, the port it got.

Why a class: the HTTP and HTTPS listeners bind, re-bind on a config change (the new
address first, the old socket closed only once that worked) and stop the same way.
"""

from __future__ import annotations

import asyncio
import ssl

from orun.proxy.fast import FastFront


class Listener:
    def __init__(self, front: FastFront, tls: ssl.SSLContext | None = None) -> None:
        self.front = front
        self.tls = tls
        self.server: asyncio.Server | None = None
        #: the bound port (None: not listening)
        self.port: int | None = None
        self.host = ""

    async def bind(self, host: str, port: int) -> None:
        """Listen on `host:port` (port < 0: stop listening). On failure (OSError) the
        current socket keeps serving."""
        if port < 0:
            self.close()
            return
        server = await asyncio.get_running_loop().create_server(
            self.front, host, port, reuse_address=True, backlog=1024, ssl=self.tls,
            ssl_handshake_timeout=10.0 if self.tls is not None else None)
        old, self.server = self.server, server
        sockets = server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        self.host = host
        if old is not None:
            old.close()

    def close(self) -> None:
        """Stop accepting; open connections go on."""
        if self.server is not None:
            self.server.close()
            self.server = None
        self.port = None


__all__ = ["Listener"]
