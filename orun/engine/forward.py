"""Local listeners whose connections are carried over an SSH link to the remote side.

asyncssh can forward a local socket itself, but its listener dies with its connection;
these belong to orun and outlive reconnects: each accepted connection opens a channel on
whatever connection the link has now. They work at the protocol level (no streams, no
copy loop): bytes go from one transport's `data_received` straight into the other's
`write`, and each side pauses the other's reading when its buffer fills, so a slow end
throttles the fast one instead of growing memory.

Two kinds: a unix socket for the remote Docker API (the aiodocker client connects to it
as to a local engine), and a loopback TCP port per published container port (the proxy's
upstream address for a container on the remote machine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncssh
import structlog

from orun.engine.sshlink import SshLink
from orun.errors import EngineError

log = structlog.get_logger("orun.engine.forward")

class _RemoteSide:
    """The channel's end: what the remote side sends goes to the local client."""

    def __init__(self, local: _LocalSide) -> None:
        self._local = local

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        transport = self._local.transport
        if transport is not None:
            transport.write(data)

    def eof_received(self) -> bool:
        transport = self._local.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
            return True  # half-closed: the client may still send
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._local.remote_closed()

    def pause_writing(self) -> None:
        transport = self._local.transport
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self._local.transport
        if transport is not None:
            transport.resume_reading()


class _TcpRemoteSide(_RemoteSide, asyncssh.SSHTCPSession[bytes]):
    """A channel to a TCP port of the remote machine."""


class _UnixRemoteSide(_RemoteSide, asyncssh.SSHUNIXSession[bytes]):
    """A channel to a unix socket of the remote machine."""


class _LocalSide(asyncio.Protocol):
    """One accepted local connection; reading waits until its channel is open."""

    def __init__(self, forward: _Forward) -> None:
        self._forward = forward
        self.transport: asyncio.Transport | None = None
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        #: what arrived before the channel was open (uvloop may deliver data even though
        #: reading was paused in connection_made)
        self._early: list[bytes] = []
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but behave as one
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.pause_reading()  # nothing to write to until the channel is open
        self._forward.spawn(self._open())

    async def _open(self) -> None:
        try:
            channel = await self._forward.open_channel(self)
        except EngineError as exc:
            self._forward.failures += 1
            self._forward.last_error = exc.message
            if self.transport is not None:
                self.transport.abort()  # the client sees a refused/reset connection
            return
        if self.transport is None or self.transport.is_closing():
            channel.close()
            return
        self._channel = channel
        if self._early:
            channel.writelines(self._early)
            self._early.clear()
        if self._eof:
            channel.write_eof()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._channel is not None:
            self._channel.write(data)
        else:
            self._early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        if self._channel is not None:
            self._channel.write_eof()
        return True

    def pause_writing(self) -> None:
        if self._channel is not None:
            self._channel.pause_reading()

    def resume_writing(self) -> None:
        if self._channel is not None:
            self._channel.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def remote_closed(self) -> None:
        self._channel = None
        if self.transport is not None:
            self.transport.close()


#: opens the channel for one accepted connection, whose remote side writes to it
_Opener = Callable[[_LocalSide], Awaitable[Any]]


class _Forward:
    """A local listener and the tasks opening channels for it (owned here, cancelled on
    close); `open_channel` says where on the remote side a connection goes."""

    def __init__(self, open_channel: _Opener) -> None:
        self.open_channel = open_channel
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.last_error = ""

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _protocol(self) -> _LocalSide:
        return _LocalSide(self)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # established connections are closed with their channels by the link
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class UnixForward(_Forward):
    """`local_path` (a private socket, mode 0600) -> the remote unix socket `remote_path`."""

    def __init__(self, link: SshLink, local_path: Path, remote_path: str) -> None:
        super().__init__(lambda local: link.open_unix(lambda: _UnixRemoteSide(local),
                                                      remote_path))
        self.local_path = local_path
        self.remote_path = remote_path

    async def start(self) -> None:
        await asyncio.to_thread(self.local_path.unlink, True)
        self._server = await asyncio.get_running_loop().create_unix_server(
            self._protocol, str(self.local_path))
        # 0600 (its folder is 0700 already): the engine is root's to command. Not by
        # umask, which is the whole process's and would race with other threads' files.
        self.local_path.chmod(0o600)

    async def close(self) -> None:
        await super().close()
        await asyncio.to_thread(self.local_path.unlink, True)


class PortForward(_Forward):
    """A loopback port -> `remote_host:remote_port` as seen from the remote machine."""

    def __init__(self, link: SshLink, remote_host: str, remote_port: int) -> None:
        super().__init__(lambda local: link.open_tcp(lambda: _TcpRemoteSide(local),
                                                     remote_host, remote_port))
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.local_port = 0

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, "127.0.0.1", 0)
        self.local_port = int(self._server.sockets[0].getsockname()[1])



class PortForwards:
    """The loopback ports of a remote engine's published container ports, made on first
    use and kept while the remote port may still be in use."""

    def __init__(self, link: SshLink) -> None:
        self._link = link
        self._forwards: dict[int, PortForward] = {}
        self._lock = asyncio.Lock()

    async def local_port(self, remote_port: int) -> int:
        forward = self._forwards.get(remote_port)
        if forward is None:
            async with self._lock:
                forward = self._forwards.get(remote_port)
                if forward is None:
                    forward = PortForward(self._link, "127.0.0.1", remote_port)
                    await forward.start()
                    self._forwards[remote_port] = forward
                    log.debug("engine_port_forward", remote_port=remote_port,
                              local_port=forward.local_port)
        return forward.local_port

    async def retain(self, published: set[int]) -> None:
        """Close the forwards of remote ports no container publishes any more (a
        container gets a new port on every start)."""
        for port in [p for p in self._forwards if p not in published]:
            forward = self._forwards.pop(port)
            await forward.close()

    def __len__(self) -> int:
        return len(self._forwards)

    async def close(self) -> None:
        forwards, self._forwards = list(self._forwards.values()), {}
        for forward in forwards:
            with contextlib.suppress(Exception):
                await forward.close()
