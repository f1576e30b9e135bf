"""The fast path: plain HTTP/1.1 requests to running container and `proxy` apps, relayed
by two protocols that write to each other, with no per-request task, request object or
stream writer.

Why: with orun's own upstream pool in place, aiohttp's per-request machinery (a task, a
`Request`, header multidicts, a `StreamWriter`, the response object) was about half of
the proxy's CPU per request. Here a client connection is an `asyncio.Protocol` that
frames request heads itself (exactly, so it always knows where a request starts),
validates each head with httptools, and writes the upstream head as bytes to a pooled
`UpstreamConnection`, whose parser callbacks write the response straight back: one
`writelines` per upstream read. Backpressure runs transport to transport.

Every connection of the HTTP listener starts here. The first request the fast path does
not take hands the connection, from that request's first byte on, to aiohttp's server
(`web.Server`, a documented protocol factory), which keeps it. Taken here: HTTP/1.1
requests with one Host header, a path (`/...`) target, no body or a Content-Length body,
no Upgrade, Expect or Transfer-Encoding header, for an app whose target offers a
`FastPlan` (a running container app or a `proxy` app, outside `/_orun_app/`). Everything
else (HTTP/1.0, websockets, 100-continue, chunked uploads, static files, starting pages,
errors, orun's own endpoints, heads httptools refuses) is aiohttp's, as before.

Response bodies pass as the upstream framed them when it sent a Content-Length; any
other body is re-framed as chunked from the parser's body callbacks, so nothing past
the end of a response ever reaches the client (an app cannot answer the next request of
a connection that another app may serve).
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import Callable
from time import monotonic
from time import time as wall_time
from typing import cast

import httptools
import structlog

from orun.limits import FILES_PER_WEBSOCKET, OWN_FILES
from orun.log import AccessRecord
from orun.proxy.challenges import HTTP01_PREFIX
from orun.proxy.errors import error_body, reason_phrase
from orun.proxy.forward import Forwarder, request_head, size_text, upstream_text
from orun.proxy.headers import (
    RequestHeaders,
    forwarded_lines,
    request_head_bytes,
    response_head_raw,
    upstream_request_headers,
)
from orun.proxy.stats import (
    LATENCY_BOUNDS,
    N_STATUS,
    NO_APP,
    RouteStats,
    method_class,
    status_class,
)
from orun.proxy.target import ActivityCounter, Counter, FastPlan, Route, RouteSource
from orun.proxy.upstream import (
    UpstreamClosed,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
)
from orun.state.config import LimitsConfig

log = structlog.get_logger("orun.proxy")

#: client bytes buffered (pipelined requests, a body waiting for its upstream) before
#: the client's socket is paused
CLIENT_HIGH_WATER = 256 * 1024
_NO_BODY = frozenset({204, 304})
_NO_HEADERS = RequestHeaders(b"")
_VERSION = b" HTTP/1.1"
_PAUSE_BUFFER = 1
_PAUSE_UPSTREAM = 2
_HTTP01 = HTTP01_PREFIX.encode()
#: how long a refused connection's further bytes are read and dropped before it closes
LINGER_SECS = 2.0
#: the answer to a connection beyond `limits.max_connections`
_FULL_BODY = b"orun is at its open-connection limit: retry\n"
_FULL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
         b"Connection: close\r\n\r\n%s" % (len(_FULL_BODY), _FULL_BODY))


class _Head:
    """The current request's head. httptools validates it (strictly: a head it accepts
    has one request line, CRLF line ends, valid names and values) and says whether the
    connection stays open; the request line and header block are read from the bytes,
    and the headers scanned once per distinct block (a client repeats the same headers
    on its connection: the last block and its scan are kept and compared)."""

    __slots__ = ("block", "complete", "headers", "keep", "parser", "url")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.complete = 0
        self.keep = True
        self.url = b""
        self.block = b""
        self.headers = _NO_HEADERS

    def on_headers_complete(self) -> None:
        self.complete += 1
        # read here: once the message is complete the parser forgets it
        self.keep = self.parser.should_keep_alive()


class FastFront:
    """The HTTP listener's protocol factory and the owner of its fast connections.

    `fallback` makes aiohttp's protocol for a connection handed over. `in_flight` counts
    fast requests being answered (graceful shutdown waits for it, and aiohttp's).

    Every connection is accepted here, so the abuse limits of the `limits` config that
    concern whole connections are enforced here for both paths: the open-connection cap
    (`handed` keeps the transports given to aiohttp, to count them) and the first
    request head's size and time (aiohttp parses later heads of a connection it took,
    with the same size limits, and closes one idle past the keep-alive timeout)."""

    def __init__(self, routes: RouteSource, forwarder: Forwarder,
                 fallback: Callable[[], asyncio.BaseProtocol], *, scheme: str = "http",
                 access: Callable[[AccessRecord], None] | None = None,
                 enabled: bool = True, limits: LimitsConfig | None = None,
                 open_files: int = 1024) -> None:
        self.routes = routes
        self.forwarder = forwarder
        self.fallback = fallback
        self.scheme = scheme
        self.access = access
        self.enabled = enabled
        #: path prefixes that are orun's own, left to aiohttp: ACME's http-01 answers,
        #: the admin API while `security.admin_over_tcp` is on and the console while
        #: `console.enabled` is (see `reserve`)
        self.reserved: tuple[bytes, ...] = (_HTTP01,)
        #: the counters of requests refused before any app took them
        self.none_stats = RouteStats(NO_APP)
        self.in_flight = 0
        self.closing = False
        self.connections: set[FrontConnection] = set()
        self.handed: set[asyncio.BaseTransport] = set()
        #: when the connection cap last made a log line (one per 10 s at most)
        self.full_logged = -1e9
        self.configure(limits or LimitsConfig(), open_files)
        #: connections whose request waits for its upstream's response head
        self.waiting: set[FrontConnection] = set()
        self._ticker: asyncio.Task[None] | None = None

    def reserve(self, *prefixes: str) -> None:
        """Leave the ACME answers and `prefixes` (orun's own endpoints that are on: the
        admin API, the console, the metrics; "" for one that is off) to aiohttp: one
        tuple, so the per-request check stays one `startswith`."""
        self.reserved = (_HTTP01, *(p.encode() for p in prefixes if p))

    def configure(self, limits: LimitsConfig, open_files: int) -> None:
        """Take the `limits` config (at start and on each reload). `open_files` is the
        process's open-files limit, which sizes the default connection cap: two files
        per connection (its own and its upstream's), less what orun keeps for itself."""
        self.max_line = limits.max_request_line_bytes
        self.max_header_line = limits.max_header_line_bytes
        self.max_header_count = limits.max_header_count
        self.max_head = limits.max_header_bytes
        self.header_timeout = limits.header_timeout_secs
        self.keepalive = limits.keepalive_timeout_secs
        self.max_connections = limits.max_connections or max(
            64, (open_files - OWN_FILES) // FILES_PER_WEBSOCKET)

    def __call__(self) -> asyncio.BaseProtocol:
        if self.closing:
            return self.fallback()
        return FrontConnection(self)

    def full(self) -> bool:
        """At the open-connection cap (transports aiohttp closed are counted until the
        next look, at most a second later; a full look happens here, when it matters)."""
        if len(self.connections) + len(self.handed) < self.max_connections:
            return False
        self._forget_closed()
        return len(self.connections) + len(self.handed) >= self.max_connections

    def open_connections(self) -> int:
        """Client connections open now, on either path (for the metrics)."""
        self._forget_closed()
        return len(self.connections) + len(self.handed)

    def _forget_closed(self) -> None:
        self.handed = {t for t in self.handed if not t.is_closing()}

    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick(), name="orun.proxy.fast.tick")

    async def _tick(self) -> None:
        """Read timeouts (coarse: 1/8 of the timeout, at most 0.5 s late) and idle
        keep-alive connections, without a timer per request."""
        loop = asyncio.get_running_loop()
        last_idle_check = loop.time()
        while True:
            timeout = self.forwarder.settings.read_timeout
            await asyncio.sleep(min(0.5, max(0.05, timeout / 8)))
            now = loop.time()
            for conn in [c for c in self.waiting if now - c.sent_at >= timeout]:
                conn.timed_out(timeout)
            if now - last_idle_check >= 1.0:
                last_idle_check = now
                self._forget_closed()
                head_limit = self.header_timeout
                for conn in list(self.connections):
                    if conn.active:
                        continue
                    if conn.head_since and now - conn.head_since > head_limit:
                        conn.refuse(408, f"the request head did not arrive complete "
                                         f"within {head_limit:g}s")
                    elif now - conn.idle_since > self.keepalive:
                        conn.close()

    def shutdown(self) -> None:
        """Stop taking requests: idle connections close now, busy ones after their
        response."""
        self.closing = True
        for conn in list(self.connections):
            if conn.active:
                conn.closing = True
            else:
                conn.close()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for conn in list(self.connections):
            conn.close()


class FrontConnection(asyncio.Protocol):
    """One client connection on the fast path; also the `ResponseSink` of the upstream
    connection its current request went to."""

    __slots__ = (
        "_fwd",
        "_fwd_key",
        "active",
        "activity",
        "body_left",
        "body_sent",
        "buf",
        "buffered",
        "chunked",
        "closing",
        "connecting",
        "done",
        "error",
        "front",
        "got_bytes",
        "head",
        "head_at",
        "head_len",
        "head_only",
        "head_sent",
        "head_since",
        "idle_since",
        "keep",
        "load",
        "loop",
        "method",
        "out",
        "paused",
        "peer",
        "plan",
        "pool",
        "reused",
        "rh",
        "route",
        "sent",
        "sent_at",
        "started",
        "status",
        "transport",
        "up",
        "up_keep",
        "upstream_at",
    )

    def __init__(self, front: FastFront) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.buf = b""
        self.rh = _Head()
        self.closing = False
        self.paused = 0
        self.idle_since = self.loop.time()
        #: when the first byte of a request head still incomplete arrived (0: none)
        self.head_since = 0.0
        self._fwd_key: tuple[bytes, str] | None = None
        self._fwd = b""
        # the current request
        self.active = False
        self.route: Route | None = None
        self.plan: FastPlan | None = None
        self.pool: UpstreamPool | None = None
        self.up: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.method = b""
        self.head = b""
        self.keep = True
        self.body_left = 0
        self.body_sent = 0
        self.reused = False
        self.sent_at = 0.0
        #: when the request head was complete, when it went upstream and when the
        #: response head came back (monotonic; 0: not yet), for the latency counters
        self.started = 0.0
        self.upstream_at = 0.0
        self.head_at = 0.0
        self.head_len = 0
        self.activity: ActivityCounter | None = None
        self.load: Counter | None = None
        # its response (the ResponseSink side)
        self.head_only = False
        self.buffered = 0  # never buffered here: every read is written out at once
        self.got_bytes = False
        self.head_sent = False
        self.status = 0
        self.up_keep = False
        self.chunked = False
        self.done = False
        self.error: BaseException | None = None
        self.sent = 0
        self.out: list[bytes] = []

    # -- client side: asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        front = self.front
        if front.full():
            now = self.loop.time()
            if now - front.full_logged >= 10.0:
                front.full_logged = now
                log.warning("connection_limit_reached", limit=front.max_connections,
                            hint="limits.max_connections (new connections get 503)")
            self.transport.write(_FULL)
            _Linger.take(self.transport)
            return
        front.connections.add(self)
        if not front.enabled:
            self._handoff()

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if not self.active:
            self._next()
            return
        if self.body_left and self.up is not None:
            self._pump()
        if len(self.buf) > CLIENT_HIGH_WATER:
            self._pause(_PAUSE_BUFFER)

    def eof_received(self) -> bool:
        # a client that half-closes after its request still gets the answer
        if self.active:
            self.closing = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        front = self.front
        front.connections.discard(self)
        front.waiting.discard(self)
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.active:
            up, self.up = self.up, None
            if up is not None:
                up.exchange = None
                up.close()  # in the middle of a response: not reusable
            self._end_request()

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume()

    # -- requests --------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next buffered request, or hand the connection to aiohttp."""
        buf = self.buf
        if not buf or self.closing:
            return
        front = self.front
        end = buf.find(b"\r\n\r\n")
        line_end = buf.find(b"\r\n", 0, end if end >= 0 else len(buf))
        if end < 0:
            if line_end < 0 and len(buf) > front.max_line:
                self.refuse(414, f"request line longer than {front.max_line} bytes")
            elif len(buf) > front.max_head:
                self.refuse(431, f"request head larger than {size_text(front.max_head)}")
            elif not self.head_since:
                self.head_since = self.loop.time()
            return
        end += 4
        if line_end > front.max_line:
            self.refuse(414, f"request line longer than {front.max_line} bytes")
            return
        if end > front.max_head:
            self.refuse(431, f"request head larger than {size_text(front.max_head)}")
            return
        self.head_since = 0.0
        rh = self.rh
        rh.complete = 0
        try:
            rh.parser.feed_data(buf if end == len(buf) else memoryview(buf)[:end])
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # an upgrade is aiohttp's; so is an invalid head, which it answers as before
            self._handoff()
            return
        sp1 = buf.find(b" ", 0, line_end)
        sp2 = buf.rfind(b" ", 0, line_end)
        block = buf[line_end:end - 4]
        if block == rh.block:
            headers = rh.headers
        else:
            headers = rh.headers = RequestHeaders(block)
            rh.block = block
            if len(headers.pairs) > front.max_header_count:
                self.refuse(431, f"more than {front.max_header_count} request headers",
                            headers.header(b"accept"))
                return
            if headers.longest > front.max_header_line:
                self.refuse(431, f"a request header line longer than "
                                 f"{front.max_header_line} bytes")
                return
        url = buf[sp1 + 1:sp2]
        if (rh.complete != 1 or headers.refuse or headers.hosts != 1
                or buf[sp2:line_end] != _VERSION or url[:1] != b"/"
                or not url.isascii() or b"#" in url):
            self._handoff()
            return
        if url.startswith(front.reserved):
            self._handoff()  # orun's own (ACME answers, the admin API): aiohttp's
            return
        rh.url = url
        method = buf[:sp1]
        raw = url.decode("latin-1")
        path, _, query = raw.partition("?")
        found = front.routes.current.match(headers.host.decode("latin-1"), path)
        if found is None:
            self._handoff()
            return
        route, rest = found
        plan = route.target.fast(route, rest, query)
        if plan is None:
            self._handoff()
            return
        limit = front.forwarder.settings.max_body if plan.max_body is None else plan.max_body
        if limit and headers.length > limit:
            self.refuse(413, f"app {route.label}: request body larger than {size_text(limit)}",
                        headers.header(b"accept"), route.stats)
            return
        self.buf = buf[end:]
        self._start(route, plan, method, rh, headers)

    def _start(self, route: Route, plan: FastPlan, method: bytes, rh: _Head,
               headers: RequestHeaders) -> None:
        front = self.front
        pool = front.forwarder.pool_for(plan.origin)
        head = self._head(route, plan, pool, method, headers)
        self.active = True
        front.in_flight += 1
        self.route, self.plan, self.pool = route, plan, pool
        self.method, self.head = method, head
        self.head_only = method == b"HEAD"
        self.keep = rh.keep
        self.body_left = headers.length
        if headers.length:
            # the parser now waits for the body, which is counted here: a fresh one
            # for the next head
            rh.parser = httptools.HttpRequestParser(rh)
        self.activity, self.load = plan.activity, plan.load
        if self.load is not None:
            self.load.open += 1
        if self.activity is not None:
            self.activity.open += 1
            self.activity.requests += 1
            self.activity.last = monotonic()
        self.started = monotonic()
        up = pool.take_idle()
        if up is None:
            self._connect()
        else:
            self._send(up, reused=True)

    def _head(self, route: Route, plan: FastPlan, pool: UpstreamPool, method: bytes,
              headers: RequestHeaders) -> bytes:
        """The upstream request head for `plan` through `pool` (its Host is the pool's
        authority unless the app keeps the client's)."""
        front = self.front
        settings = front.forwarder.settings
        authority = None if plan.preserve_host else pool.authority
        head: bytes | None = None
        if not settings.trusted.networks or not settings.trusted.trusts(self.peer):
            key = (headers.host, route.prefix)
            if key != self._fwd_key:
                self._fwd_key = key
                self._fwd = forwarded_lines(self.peer, front.scheme,
                                            headers.host.decode("latin-1"), route.prefix)
            head = request_head_bytes(method, plan.target.encode("latin-1"), headers,
                                      authority, self._fwd)
        if head is None:
            general = upstream_request_headers(
                [(n, v) for n, _, v in headers.pairs], peer=self.peer, scheme=front.scheme,
                host=headers.host.decode("latin-1"), prefix=route.prefix,
                trusted=settings.trusted, keep_host=plan.preserve_host)
            head = request_head(method.decode("latin-1"), plan.target, general,
                                pool.authority.decode("latin-1"), chunked=False)
        return head

    def _connect(self) -> None:
        assert self.pool is not None
        timeout = self.front.forwarder.settings.connect_timeout
        task = self.loop.create_task(self.pool.connect(timeout), name="orun.proxy.connect")
        self.connecting = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        if task is not self.connecting:
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            return
        self.connecting = None
        exc = task.exception()
        if exc is None:
            self._send(task.result(), reused=False)
            return
        if self.plan is not None and self.plan.alternate is not None and self._elsewhere():
            return
        if isinstance(exc, TimeoutError):
            why = f"no connection within {self.front.forwarder.settings.connect_timeout:g}s"
        else:
            why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        assert self.route is not None and self.pool is not None
        self._error(502, f"app {self.route.label}: cannot connect to "
                         f"{upstream_text(self.route, self.pool.origin)}: {why}")

    def _elsewhere(self) -> bool:
        """A replica refused (or did not take) the connection, and nothing was sent: the
        request goes to another replica instead, and the refusing one leaves the pool
        until its health check passes. False when there is no other."""
        plan, route = self.plan, self.route
        assert plan is not None and plan.alternate is not None and route is not None
        other = plan.alternate(plan.origin)
        if other is None:
            return False
        log.debug("replica_refused", app=route.label, upstream=plan.origin)
        if self.load is not None:
            self.load.open -= 1
        pool = self.front.forwarder.pool_for(other.origin)
        self.plan, self.pool, self.load = other, pool, other.load
        if self.load is not None:
            self.load.open += 1
        self.head = self._head(route, other, pool, self.method, self.rh.headers)
        up = pool.take_idle()
        if up is None:
            self._connect()
        else:
            self._send(up, reused=True)
        return True

    def _send(self, up: UpstreamConnection, *, reused: bool) -> None:
        self.up = up
        self.reused = reused
        up.attach(self)
        transport = up.transport
        assert transport is not None
        if up.closed:
            # gone between its connect and now (an upstream that accepts and dies at
            # once: a crashing container): nothing was sent, say so instead of writing
            # to a closed transport and leaving the client waiting
            self._upstream_failed(UpstreamClosed("the upstream closed the connection",
                                                 no_response=True))
            return
        if self.body_left and self.buf:
            transport.writelines((self.head, self._body_part()))
        else:
            transport.write(self.head)
        self.sent_at = self.loop.time()
        self.upstream_at = monotonic()
        self.front.waiting.add(self)

    def _body_part(self) -> bytes:
        buf = self.buf
        n = min(self.body_left, len(buf))
        part = buf if n == len(buf) else buf[:n]
        self.buf = buf[n:] if n < len(buf) else b""
        self.body_left -= n
        self.body_sent += n
        if self.paused & _PAUSE_BUFFER and len(self.buf) <= CLIENT_HIGH_WATER:
            self._resume(_PAUSE_BUFFER)
        return part

    def _pump(self) -> None:
        """Request body bytes that arrived go straight to the upstream."""
        up = self.up
        if up is not None and up.transport is not None and not up.closed:
            up.transport.write(self._body_part())

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None:
                self.transport.resume_reading()

    # -- the response: ResponseSink --------------------------------------------------

    def on_head(self, status: int, keep_alive: bool, head: bytes) -> None:
        self.head_at = monotonic()
        self.front.waiting.discard(self)
        self.status = status
        self.up_keep = keep_alive
        plan = self.plan
        route = self.route
        assert plan is not None and route is not None
        out, self.chunked = response_head_raw(
            status, head, base=plan.base, prefix=route.prefix, extra=plan.extra,
            extra_names=plan.extra_names, body=not self.head_only and status not in _NO_BODY,
            close=not self.keep or self.closing)
        self.out.append(out)
        self.head_len = len(out)
        self.head_sent = True

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)
        self.sent += len(body)

    def on_complete(self) -> None:
        if self.chunked:
            self.out.append(b"0\r\n\r\n")
        self.done = True

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error

    def write_paused(self, paused: bool) -> None:
        if paused:
            self._pause(_PAUSE_UPSTREAM)
        else:
            self._resume(_PAUSE_UPSTREAM)

    def after_read(self) -> None:
        out = self.out
        if out:
            self.out = []
            if self.transport is not None:
                self.transport.writelines(out)
            if self.activity is not None:
                self.activity.last = monotonic()
        if self.done:
            self._finish()
        elif self.error is not None:
            self._upstream_failed(self.error)

    # -- ends --------------------------------------------------------------------------

    def _finish(self) -> None:
        up, self.up = self.up, None
        if up is not None:
            if self.up_keep and not up.closed and self.error is None and self.pool is not None:
                self.pool.put(up, self.loop.time())
            else:
                up.exchange = None
                up.close()
        close = self.body_left > 0 or not self.keep or self.closing
        self._end_request()
        if close:
            # an early answer leaves body bytes unread: the connection cannot go on
            self.close()
            return
        self.idle_since = self.loop.time()
        if self.buf:
            self._next()

    def _end_request(self) -> None:
        """Counters, the access log, and a clean slate for the next request."""
        front = self.front
        front.in_flight -= 1
        route = self.route
        if route is not None:
            # the app's counters (orun/proxy/stats.py): plain ints and floats
            stats = route.stats
            method = self.method
            mc = 0 if method == b"GET" else 1 if method == b"HEAD" else \
                2 if method == b"POST" else method_class(method)
            status = self.status
            stats.requests[mc * N_STATUS + (status // 100 if 99 < status < 600 else 0)] += 1
            stats.bytes_in += self.body_sent
            stats.bytes_out += self.sent + self.head_len
            upstream_at = self.upstream_at
            spent = (upstream_at or monotonic()) - self.started
            stats.overhead[bisect_left(LATENCY_BOUNDS, spent)] += 1
            stats.overhead_sum += spent
            if self.head_at:
                took = self.head_at - upstream_at
                stats.upstream[bisect_left(LATENCY_BOUNDS, took)] += 1
                stats.upstream_sum += took
        front.waiting.discard(self)
        if self.load is not None:
            self.load.open -= 1
        if self.activity is not None:
            self.activity.open -= 1
            self.activity.last = monotonic()
        if front.access is not None:
            rh = self.rh
            front.access((wall_time(), self.method.decode("latin-1"),
                          rh.url.decode("latin-1"), rh.headers.host.decode("latin-1"),
                          self.status,
                          self.sent, round((monotonic() - self.started) * 1000, 2),
                          self.peer))
        self.active = False
        self.route = self.plan = self.pool = None
        self.activity = self.load = None
        self.head_only = self.got_bytes = self.head_sent = self.chunked = self.done = False
        self.error = None
        self.status = self.sent = self.body_sent = self.head_len = 0
        self.upstream_at = self.head_at = 0.0

    def _upstream_failed(self, error: BaseException) -> None:
        up, self.up = self.up, None
        if up is not None:
            up.exchange = None
            up.close()
        route, pool = self.route, self.pool
        assert route is not None and pool is not None
        if self.head_sent:
            # the head is out: the only honest signal left is a cut connection
            log.warning("upstream_body_error", app=route.label, error=str(error))
            if self.active:
                self._end_request()
            self.close()
            return
        if isinstance(error, UpstreamClosed) and error.no_response and self.reused \
                and not self.body_sent:
            # a stale pooled connection: once more on a fresh one (nothing of the body
            # went out, so the request cannot reach the app twice)
            log.debug("upstream_stale_retry", upstream=pool.origin)
            self.error = None
            self.got_bytes = False
            self.front.waiting.discard(self)
            self._connect()
            return
        if isinstance(error, (UpstreamClosed, UpstreamProtocolError, OSError)):
            detail = str(error).splitlines()[0][:200] if str(error) else ""
            message = f"app {route.label}: {upstream_text(route, pool.origin)} failed: " \
                      f"{error.__class__.__name__}: {detail}".rstrip(": ")
        else:
            message = f"app {route.label}: {upstream_text(route, pool.origin)} failed: " \
                      f"{error!r}"
        self._error(502, message)

    def timed_out(self, timeout: float) -> None:
        """No response head within the read timeout: 504 naming the app."""
        up, self.up = self.up, None
        if up is not None:
            up.exchange = None
            up.close()
        assert self.route is not None and self.pool is not None
        self._error(504, f"app {self.route.label}: "
                         f"{upstream_text(self.route, self.pool.origin)} did not respond "
                         f"within {timeout:g}s")

    def _error(self, status: int, message: str) -> None:
        """Answer the current request with orun's error and end it."""
        content_type, text = error_body(self.rh.headers.header(b"accept").decode("latin-1"),
                                        status, message)
        body = text.encode("utf-8")
        close = self.body_left > 0 or not self.keep or self.closing
        head = (f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
                f"Content-Type: {content_type}; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode("latin-1")
        if self.transport is not None:
            self.transport.write(head if self.head_only else head + body)
        self.status = status
        self.head_len = len(head)
        self.sent = 0 if self.head_only else len(body)
        self.up_keep = False
        self.done = True
        self._finish()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def refuse(self, status: int, message: str, accept: bytes = b"",
               stats: RouteStats | None = None) -> None:
        """Answer a request head orun will not take (over a limit, too slow) with
        `status` and close: nothing of it reaches an app, and what follows it on the
        connection cannot be framed. Counted for the app `stats` are of (none: no app)."""
        content_type, text = error_body(accept.decode("latin-1"), status, message)
        body = text.encode("utf-8")
        answer = (f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
                  f"Content-Type: {content_type}; charset=utf-8\r\n"
                  f"Content-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode("latin-1") + body
        if self.transport is not None:
            self.transport.write(answer)
        stats = stats or self.front.none_stats
        space = self.buf.find(b" ", 0, 8)
        mc = method_class(self.buf[:space]) if space > 0 else method_class(b"")
        stats.requests[mc * N_STATUS + status_class(status)] += 1
        stats.bytes_out += len(answer)
        self.buf = b""
        self.head_since = 0.0
        log.debug("request_refused", status=status, peer=self.peer, reason=message)
        self.front.connections.discard(self)
        if self.transport is not None:
            _Linger.take(self.transport)

    def _handoff(self) -> None:
        """aiohttp's server takes the connection, from the buffered request on."""
        transport = self.transport
        assert transport is not None
        self.front.connections.discard(self)
        self.front.handed.add(transport)
        protocol = self.front.fallback()
        buf, self.buf = self.buf, b""
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.paused:
            self.paused = 0
            transport.resume_reading()
        if buf:
            cast(asyncio.Protocol, protocol).data_received(buf)


class _Linger(asyncio.Protocol):
    """A refused connection's last moments: orun's answer is written and the sending
    side shut, and what the client still sends is read and dropped until it closes
    (or LINGER_SECS pass). Closing at once instead would make the kernel reset the
    connection over the unread bytes, and the client could lose the answer (nginx's
    lingering close, for the same reason)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(LINGER_SECS, transport.close)

    @classmethod
    def take(cls, transport: asyncio.Transport) -> None:
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        transport.set_protocol(cls(transport))
        transport.write_eof()
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


__all__ = ["CLIENT_HIGH_WATER", "LINGER_SECS", "FastFront", "FrontConnection"]
