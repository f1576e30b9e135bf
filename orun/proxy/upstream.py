"""orun's own keep-alive connections to upstreams (instead of aiohttp's ClientSession).

Why: the ClientSession machinery (header merging, auto headers, tracing hooks, timer
contexts, a URL and a response object per request) cost about 120 µs of CPU per proxied
request; a connection that is an `asyncio.Protocol` with one httptools parser costs a
fraction of that. The request head is written as bytes, the parser's callbacks only
collect, and the waiting handler is woken once per upstream read, not per callback.

One `UpstreamPool` per upstream origin keeps idle connections (newest first); the
`Forwarder` owns the pools and sweeps connections idle for longer than
`proxy.idle_conn_timeout_secs`. An `Exchange` is one request/response on a connection:
the connection's protocol fills it, the forwarder's handler drains it. The fast path
(orun/proxy/fast.py) plugs in its own `ResponseSink` instead and writes each read
straight to the client.

Backpressure: response bytes buffered beyond `HIGH_WATER` pause reading from the
upstream until the handler has written them to the client; request bodies wait for the
upstream transport to drain (`pause_writing`/`resume_writing`).
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
from collections.abc import Iterable
from typing import Protocol, cast

import httptools

from orun.proxy.headers import split_head

#: response bytes buffered before the upstream socket is paused
HIGH_WATER = 256 * 1024
_FRAMING = (b"content-length", b"transfer-encoding")


class ResponseSink(Protocol):
    """Where one upstream response goes: its head (as the raw bytes httptools
    validated), its body pieces and its end, then `after_read` once per upstream read (so
    a waiting handler wakes once, and output is written once)."""

    #: the request was HEAD: the response ends at its head
    head_only: bool
    #: response bytes waiting for the handler (the connection pauses above HIGH_WATER)
    buffered: int
    #: some byte of the response arrived
    got_bytes: bool

    def on_head(self, status: int, keep_alive: bool, head: bytes) -> None:
        """The final response head: the status line and header lines, CRLF-separated,
        without the blank line (interim 1xx heads are skipped)."""
        ...

    def on_body(self, body: bytes) -> None: ...

    def on_complete(self) -> None: ...

    def after_read(self) -> None: ...

    def fail(self, error: BaseException) -> None:
        """The connection broke or the response was invalid; `after_read` follows."""
        ...

    def write_paused(self, paused: bool) -> None:
        """The upstream stopped (True) or resumed (False) taking request bytes."""
        ...


_FRAMED = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:", re.I)


class ResponseLimits:
    """How large an upstream's response head may be (bytes, header lines). One object
    shared by a forwarder's pools and updated in place on a config reload, so a reload
    reaches every pooled connection without a walk over them."""

    __slots__ = ("max_bytes", "max_lines")

    def __init__(self, max_bytes: int = 64 * 1024, max_lines: int = 200) -> None:
        self.max_bytes = max_bytes
        self.max_lines = max_lines


class UpstreamClosed(ConnectionError):
    """The connection closed before the response was complete. `no_response`: before
    any byte of it (a stale pooled connection, which a retry may cure)."""

    def __init__(self, message: str, *, no_response: bool) -> None:
        super().__init__(message)
        self.no_response = no_response


class UpstreamProtocolError(Exception):
    """The upstream answered with something that is not valid HTTP/1.x."""


class _HeadOnly(Exception):
    """Raised from the parser callback to stop after the head of a HEAD response."""


class _AfterEnd(Exception):
    """Raised from the parser callback when bytes follow the end of the response."""


class Exchange:
    """One request and its response on one connection."""

    __slots__ = ("body", "buffered", "conn", "done", "error", "got_bytes", "head_done",
                 "head_only", "headers", "keep_alive", "reason", "status", "waiter")

    def __init__(self, conn: UpstreamConnection, head_only: bool) -> None:
        self.conn = conn
        self.head_only = head_only
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self.got_bytes = False
        self.waiter: asyncio.Future[None] | None = None

    # -- ResponseSink: filled by the connection ------------------------------------------

    def on_head(self, status: int, keep_alive: bool, head: bytes) -> None:
        self.reason, self.headers = split_head(head)
        self.status = status
        self.keep_alive = keep_alive
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_complete(self) -> None:
        self.done = True

    def after_read(self) -> None:
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error

    def write_paused(self, paused: bool) -> None:
        """The request body's writer awaits `UpstreamConnection.drain` instead."""

    # -- used by the forwarder's handler ---------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        try:
            await waiter
        finally:
            self.waiter = None

    async def head(self) -> None:
        """Wait for the response head (raises what ended the connection instead)."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    def complete(self) -> bool:
        """The whole response arrived (its body may still be waiting in `body`)."""
        return self.done

    def take(self) -> list[bytes]:
        """The body bytes received so far (the upstream resumes if it was paused)."""
        chunks = list(self.body)
        self.body.clear()
        self.buffered = 0
        self.conn.resume()
        return chunks

    async def whole(self) -> bytes:
        """The rest of a small body, once all of it arrived (raises what cut it)."""
        while not self.done:
            if self.error is not None:
                raise self.error
            await self._wait()
        return b"".join(self.take())

    async def more(self) -> None:
        """Wait until more body bytes arrive, the body ends, or the connection fails."""
        if not self.body and not self.done and self.error is None:
            await self._wait()


class UpstreamConnection(asyncio.Protocol):
    """A connection to one upstream, parsed by httptools, one exchange at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: ResponseSink | None = None
        self.closed = False
        self.idle_since = 0.0
        self._paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._interim = False
        #: the head / the whole of the current response was parsed
        self._head_done = False
        self._done = False
        #: the read being parsed, the start of a head that began in earlier reads, and
        #: where in (pending + read) the current head starts (after interim heads)
        self._read = b""
        self._pending = b""
        self._head_start = 0
        self._head = b""

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        ex.got_bytes = True
        in_head = not self._head_done
        if in_head:
            self._read = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadOnly):  # a HEAD answer ends at its head
                self.parser = httptools.HttpResponseParser(self)
            elif isinstance(exc.__context__, _AfterEnd):
                # an upstream that sends more than it was asked for cannot be trusted
                # with the next request; what follows the response is never forwarded
                self.close()
            else:
                ex.fail(UpstreamProtocolError(f"invalid HTTP response: {exc.__context__}"))
                self.close()
        except httptools.HttpParserError as exc:
            ex.fail(UpstreamProtocolError(f"invalid HTTP response: {exc}"))
            self.close()
        if in_head:
            self._read = b""
            if not self._head_done and not self.closed:  # the head goes on in the next read
                self._pending = (self._pending + data)[self._head_start:]
                self._head_start = 0
                if len(self._pending) > self.pool.limits.max_bytes:
                    ex.fail(UpstreamProtocolError(
                        f"response head larger than {self.pool.limits.max_bytes} bytes"))
                    self.close()
        ex.after_read()
        if ex.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        ex = self.exchange
        if ex is not None and not self._done:
            if self._head_done and not self._interim and not _FRAMED.search(self._head):
                # HTTP/1.0 style: the body ran until the upstream closed; that is its end
                self._done = True
                ex.on_complete()
            else:
                why = f": {exc}" if exc else ""
                if ex.got_bytes:
                    ex.fail(UpstreamClosed(f"the upstream closed the connection in the "
                                           f"middle of the response{why}", no_response=False))
                else:
                    ex.fail(UpstreamClosed(f"the upstream closed the connection{why}",
                                           no_response=True))
            ex.after_read()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.exchange is not None:
            self.exchange.write_paused(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.exchange is not None:
            self.exchange.write_paused(False)
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            raise _AfterEnd

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        buf = self._pending + self._read if self._pending else self._read
        start = self._head_start
        end = buf.find(b"\r\n\r\n", start)
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:  # orun never asks this connection to switch protocols
                raise UpstreamProtocolError("unexpected 101 Switching Protocols")
            # an interim response (103 Early Hints, an unasked 100): not the answer
            self._interim = True
            self._head_start = end + 4
            return
        self._head = head = buf[start:end]
        limits = self.pool.limits
        if end - start > limits.max_bytes:
            raise UpstreamProtocolError(f"response head larger than {limits.max_bytes} bytes")
        if head.count(b"\r\n") > limits.max_lines:
            raise UpstreamProtocolError(
                f"response head with more than {limits.max_lines} header lines")
        self._pending = b""
        self._head_start = 0
        self._head_done = True
        ex.on_head(status, self.parser.should_keep_alive(), head)
        if ex.head_only:
            self._done = True
            ex.on_complete()
            raise _HeadOnly

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self._interim:
            ex.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.exchange is not None:
            self._done = True
            self.exchange.on_complete()

    # -- used by the forwarder ------------------------------------------------------

    def begin(self, head: bytes, *, head_only: bool) -> Exchange:
        """Send a request head; the response goes into the returned exchange."""
        if self.closed:  # it died before the request could go (see fast.py `_send`)
            raise UpstreamClosed("the upstream closed the connection", no_response=True)
        ex = Exchange(self, head_only)
        self.attach(ex)
        assert self.transport is not None
        self.transport.write(head)
        return ex

    def attach(self, sink: ResponseSink) -> None:
        """Direct the next response into `sink` (the caller then writes the request)."""
        self.exchange = sink
        self._head_done = self._done = self._interim = False
        self._pending = self._head = b""
        self._head_start = 0

    def write(self, data: bytes | Iterable[bytes]) -> None:
        assert self.transport is not None
        if isinstance(data, bytes):
            self.transport.write(data)
        else:
            self.transport.writelines(data)

    async def drain(self) -> None:
        """Wait while the upstream is not taking request bytes."""
        if self._write_paused and not self.closed:
            drain = asyncio.get_running_loop().create_future()
            self._drain = drain
            await drain

    def pause(self) -> None:
        """Stop reading the response (the client is not taking it yet)."""
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        ex = self.exchange
        return (not self.closed and isinstance(ex, Exchange) and ex.done and ex.keep_alive
                and ex.error is None and not ex.body)


class UpstreamPool:
    """Idle keep-alive connections to one origin (scheme, host, port)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None,
                 authority: str = "", limits: ResponseLimits | None = None) -> None:
        self.host = host
        self.limits = limits if limits is not None else ResponseLimits()
        self.port = port
        self.tls = tls
        #: the Host header for this origin (`h` or `h:port`), and the origin as text
        self.authority = (authority or f"{host}:{port}").encode("latin-1")
        self.origin = f"{'https' if tls is not None else 'http'}://{self.authority.decode()}"
        self.idle: list[UpstreamConnection] = []

    async def connect(self, timeout: float) -> UpstreamConnection:
        """A new connection (raises OSError or TimeoutError)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            transport, conn = await loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None)
        # uvloop may call connection_made only on its next loop iteration
        conn.transport = transport
        return conn

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Back to the pool if its last exchange ended cleanly, else closed."""
        if conn.reusable():
            self.put(conn, now)
        else:
            conn.close()

    def put(self, conn: UpstreamConnection, now: float) -> None:
        """Back to the pool: the caller knows its last response ended cleanly."""
        conn.exchange = None
        conn.idle_since = now
        conn.resume()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def sweep(self, older_than: float) -> None:
        """Close connections idle since before `older_than` (loop time)."""
        keep: list[UpstreamConnection] = []
        for conn in self.idle:
            if conn.idle_since < older_than:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


__all__ = ["HIGH_WATER", "Exchange", "ResponseLimits", "ResponseSink", "UpstreamClosed",
           "UpstreamConnection", "UpstreamPool", "UpstreamProtocolError"]
