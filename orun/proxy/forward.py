"""Forwarding one HTTP request to an upstream, streaming both bodies.

Used by aiohttp's request path (the fast path, orun/proxy/fast.py, shares the pools):
plain HTTP goes over orun's own keep-alive pools (orun/proxy/upstream.py), websocket
upgrades to the relay (orun/proxy/websocket.py), which opens its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from time import monotonic
from urllib.parse import unquote

import structlog
from aiohttp import web
from yarl import URL

from orun.proxy.auth.identity import apply as apply_auth
from orun.proxy.errors import error_response
from orun.proxy.headers import TrustedProxies, client_response_headers, upstream_request_headers
from orun.proxy.request import ProxyRequest
from orun.proxy.stats import LATENCY_BOUNDS
from orun.proxy.target import ActivityCounter, Route
from orun.proxy.upstream import (
    Exchange,
    ResponseLimits,
    UpstreamClosed,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
)
from orun.proxy.websocket import WebSocketRelays
from orun.state.config import LimitsConfig, ProxyConfig

log = structlog.get_logger("orun.proxy")

#: bodies up to this size are read whole and written in one go (one write, one syscall)
SMALL_BODY = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DOT_SEGMENTS = frozenset({".", ".."})


def resolve_rest(rest: str) -> str | None:
    """`rest` (the raw path after the app prefix: "" or "/...") without dot segments.

    `.` and `..` segments, spelled plainly or percent-encoded (`%2e%2E`, `.%2e`), are
    resolved as RFC 3986 does; the segments kept are returned as sent (`a%2Fb` stays).
    None when the path cannot be forwarded safely: a `..` that climbs above the app's
    root, or a dot segment an upstream would find only after decoding or splitting
    further (`..%2f`, `..%5c`, `..\\`, Tomcat's `..;`), or an encoded NUL (`..%00`). Cheap
    for ordinary paths: one scan when no segment starts with a dot and nothing is percent-encoded.
    """
    if "/." not in rest and "%" not in rest and "\\" not in rest:
        return rest if not rest or rest[0] == "/" else None
    if rest[0] != "/":
        return None
    out: list[str] = []
    segments = rest.split("/")
    last = len(segments) - 1
    for i in range(1, last + 1):
        seg = segments[i]
        name = unquote(seg) if "%" in seg else seg
        if name in _DOT_SEGMENTS:
            if name == "..":
                if not out:
                    return None
                out.pop()
            if i == last:
                out.append("")  # `/a/b/..` is `/a/`
            continue
        if "\x00" in name:
            return None  # `..%00`: a C upstream would stop reading at the NUL
        if ";" in name or "/" in name or "\\" in name:
            for piece in name.replace("\\", "/").split("/"):
                if piece.partition(";")[0] in _DOT_SEGMENTS:
                    return None
        out.append(seg)
    return "/" + "/".join(out)


def bad_path(request: web.BaseRequest, route: Route) -> web.Response:
    """The 400 for a path `resolve_rest` refused."""
    return error_response(request, 400, f"app {route.label}: the request path has dot "
                          f"segments (`..`, `%2e%2e`, `..%2f`) that leave the app path "
                          f"{route.prefix or '/'}")


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """Settings that can change on config reload; swapped as one object."""

    trusted: TrustedProxies
    connect_timeout: float
    read_timeout: float
    #: request bodies above this many bytes get 413 (0 = no limit); an app's
    #: `--conf limits.max_body_mb` wins (`Target.max_body`)
    max_body: int = 0

    @classmethod
    def from_config(cls, proxy: ProxyConfig, trusted_proxies: list[str],
                    limits: LimitsConfig) -> ForwardSettings:
        return cls(TrustedProxies.parse(trusted_proxies), proxy.connect_timeout_secs,
                   proxy.read_timeout_secs, mb_to_bytes(limits.max_body_mb))


def mb_to_bytes(mb: float) -> int:
    """A size in MiB from the config as bytes (0 stays 0: no limit)."""
    return int(mb * 1024 * 1024)


class Forwarder:
    """Owns the upstream connection pools and the open websocket relays.

    Plain HTTP goes through orun's own keep-alive pools (orun/proxy/upstream.py);
    websocket upgrades through the relays.
    """

    def __init__(self, proxy: ProxyConfig, trusted_proxies: list[str],
                 limits: LimitsConfig | None = None) -> None:
        limits = limits or LimitsConfig()
        self.settings = ForwardSettings.from_config(proxy, trusted_proxies, limits)
        self.response_limits = ResponseLimits(limits.max_response_header_bytes,
                                              limits.max_response_header_count)
        self._idle_timeout = proxy.idle_conn_timeout_secs
        self._pools: dict[tuple[str, str, int], UpstreamPool] = {}
        #: the same pools by origin text (`http://127.0.0.1:32768`), for the fast path
        self._by_origin: dict[str, UpstreamPool] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.websockets = WebSocketRelays()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="orun.proxy.sweep")

    def reconfigure(self, proxy: ProxyConfig, trusted_proxies: list[str],
                    limits: LimitsConfig) -> None:
        self.settings = ForwardSettings.from_config(proxy, trusted_proxies, limits)
        self.response_limits.max_bytes = limits.max_response_header_bytes
        self.response_limits.max_lines = limits.max_response_header_count
        self._idle_timeout = proxy.idle_conn_timeout_secs

    async def close(self) -> None:
        await self.websockets.close_all(1001, "server shutting down")
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._by_origin.clear()

    async def _sweep(self) -> None:
        """Close pooled connections idle for longer than `idle_conn_timeout_secs`."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.5, min(5.0, self._idle_timeout / 2)))
            cutoff = loop.time() - self._idle_timeout
            for pool in list(self._pools.values()):
                pool.sweep(cutoff)

    def _pool(self, upstream: URL) -> UpstreamPool:
        key = (upstream.scheme, upstream.raw_host or "", upstream.port or 80)
        pool = self._pools.get(key)
        if pool is None:
            tls = None
            if key[0] == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                tls = self._tls
            pool = self._pools[key] = UpstreamPool(key[1], key[2], tls,
                                                   upstream.raw_authority,
                                                   self.response_limits)
        return pool

    def pool_for(self, origin: str) -> UpstreamPool:
        """The pool for an origin given as text (`http://host:port`): one dict lookup."""
        pool = self._by_origin.get(origin)
        if pool is None:
            pool = self._by_origin[origin] = self._pool(URL(origin, encoded=True))
        return pool

    async def forward(
        self,
        request: web.BaseRequest,
        route: Route,
        upstream: URL,
        *,
        preserve_host: bool = False,
        response_headers: Mapping[str, str] | None = None,
        base: URL | None = None,
        activity: ActivityCounter | None = None,
        max_body: int | None = None,
    ) -> web.StreamResponse:
        """Proxy `request` to `upstream` (the full upstream URL, query included).

        `base` is the upstream's base address (origin plus base path) that `Location`
        headers are made public against; it defaults to the upstream's origin.
        `activity`, when given, is touched as streamed chunks and websocket frames pass.
        `max_body` is the app's request body limit in bytes (None: the server's).
        """
        settings = self.settings
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        headers = upstream_request_headers(
            request.raw_headers, peer=request.remote or "", scheme=request.scheme,
            host=request.host, prefix=route.prefix, trusted=settings.trusted,
            keep_host=preserve_host or websocket, websocket=websocket,
            port="" if "Host" in request.headers else _listener_port(request),
        )
        apply_auth(request, headers)  # the signed-in user, after the client's X-Orun-*
        if websocket:
            return await self.websockets.relay(
                request, route, upstream, headers, settings.connect_timeout,
                activity,
            )
        limit = settings.max_body if max_body is None else max_body
        if limit and request.body_exists:
            length = request.content_length
            if length is not None and length > limit:
                # answered before `100 Continue`: a client that asked never sends it
                return body_too_large(request, route, limit)
        if headers.pop("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        return await self._http(request, route, upstream, headers, settings,
                                response_headers, base or upstream.origin(), activity,
                                limit)

    async def _http(self, request: web.BaseRequest, route: Route, upstream: URL,
                    headers: Mapping[str, str], settings: ForwardSettings,
                    extra: Mapping[str, str] | None, base: URL,
                    activity: ActivityCounter | None, limit: int) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        pool = self._pool(upstream)
        method = request.method
        chunked = request.body_exists and "Content-Length" not in request.headers
        head = request_head(method, upstream.raw_path_qs or "/", headers,
                            upstream.raw_authority, chunked=chunked)
        upload = _Upload(request, chunked, loop, settings.read_timeout, limit) \
            if request.body_exists else None
        sent = monotonic()
        if isinstance(request, ProxyRequest):
            request.orun_upstream_at = sent
        try:
            async with asyncio.timeout(settings.read_timeout) as deadline:
                if upload is not None:
                    upload.deadline = deadline
                conn, ex = await self._exchange(pool, head, method, upload, settings)
            took = monotonic() - sent
            stats = route.stats
            stats.upstream[bisect_left(LATENCY_BOUNDS, took)] += 1
            stats.upstream_sum += took
        except TimeoutError:
            where = upstream_text(route, str(upstream.origin()))
            return error_response(request, 504, f"app {route.label}: {where} did not respond "
                                                f"within {settings.read_timeout:g}s")
        except _ConnectFailed as exc:
            return error_response(request, 502,
                                  f"app {route.label}: cannot connect to "
                                  f"{upstream_text(route, str(upstream.origin()))}: {exc}")
        except (UpstreamClosed, UpstreamProtocolError, OSError) as exc:
            if upload is not None and upload.too_large:
                return body_too_large(request, route, limit)
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            where = upstream_text(route, str(upstream.origin()))
            return error_response(request, 502,
                                  f"app {route.label}: {where} failed: "
                                  f"{exc.__class__.__name__}: {detail}".rstrip(": "))
        finally:
            if upload is not None:
                upload.deadline = None
        try:
            return await self._respond(request, route, base, ex, extra, activity)
        finally:
            if upload is not None and not upload.finished:
                upload.cancel()  # an early answer: the rest of the body is not wanted
                conn.close()
            pool.release(conn, loop.time())

    async def _exchange(self, pool: UpstreamPool, head: bytes, method: str,
                        upload: _Upload | None,
                        settings: ForwardSettings) -> tuple[UpstreamConnection, Exchange]:
        """Send the request and wait for the response head, on a pooled connection if
        one is idle. A pooled connection that closes before any response byte (stale:
        the upstream dropped it while idle) is replaced once by a fresh one, if the
        request can be sent again: nothing of its body was read from the client yet."""
        conn = pool.take_idle()
        reused = conn is not None
        while True:
            if conn is None:
                try:
                    conn = await pool.connect(settings.connect_timeout)
                except TimeoutError:
                    raise _ConnectFailed(
                        f"no connection within {settings.connect_timeout:g}s") from None
                except OSError as exc:
                    raise _ConnectFailed(exc.strerror or str(exc)) from None
            ex = conn.begin(head, head_only=method == "HEAD")
            if upload is not None:
                upload.start(conn)
            try:
                await ex.head()
                return conn, ex
            except BaseException as exc:
                conn.close()
                if upload is not None:
                    upload.cancel()
                stale = isinstance(exc, UpstreamClosed) and exc.no_response and reused
                if not stale or (upload is not None and upload.consumed):
                    raise
            log.debug("upstream_stale_retry", upstream=f"{pool.host}:{pool.port}")
            conn, reused = None, False

    async def _respond(self, request: web.BaseRequest, route: Route, base: URL,
                       ex: Exchange, extra: Mapping[str, str] | None,
                       activity: ActivityCounter | None) -> web.StreamResponse:
        headers = client_response_headers(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ex.headers],
            upstream_url=base, prefix=route.prefix, rewrite=True)
        if extra:
            headers.update(extra)
        status = ex.status
        reason = ex.reason.decode("latin-1") or None
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            out = web.StreamResponse(status=status, reason=reason, headers=headers)
            await out.prepare(request)
            await out.write_eof()
            return out
        length = headers.get("Content-Length")
        small = length is not None and length.isdigit() and int(length) <= SMALL_BODY
        if small or ex.complete():
            try:
                body = await ex.whole()
            except (UpstreamClosed, UpstreamProtocolError) as exc:
                raise _body_error(route, exc) from exc
            return web.Response(status=status, reason=reason, body=body, headers=headers)
        out = web.StreamResponse(status=status, reason=reason, headers=headers)
        await out.prepare(request)
        while True:
            for chunk in ex.take():
                await out.write(chunk)
            if activity is not None:
                activity.last = monotonic()
            if ex.complete() and not ex.body:
                break
            if ex.error is not None:
                raise _body_error(route, ex.error)
            await ex.more()
        await out.write_eof()
        return out


class _ConnectFailed(Exception):
    """The upstream could not be reached (the message says why)."""


class _Upload:
    """A request body on its way upstream, written by a task this request owns.

    It runs beside the wait for the response, so an upstream may answer early. Each
    chunk moved pushes the read deadline back while the head is awaited, so the read
    timeout measures upstream silence, not how long a large upload takes.
    """

    def __init__(self, request: web.BaseRequest, chunked: bool,
                 loop: asyncio.AbstractEventLoop, timeout: float, limit: int = 0) -> None:
        self.request = request
        #: bytes allowed (0: any); a chunked body that goes past it cuts the upstream
        #: connection, so the app never gets the whole of it, and the client gets 413
        self.limit = limit
        self.sent = 0
        self.too_large = False
        self.chunked = chunked
        self.loop = loop
        self.timeout = timeout
        self.deadline: asyncio.Timeout | None = None
        self.task: asyncio.Task[None] | None = None
        #: some of the body was read from the client (it cannot be sent again)
        self.consumed = False
        self.finished = False

    def start(self, conn: UpstreamConnection) -> None:
        self.task = self.loop.create_task(self._send(conn), name="orun.proxy.upload")
        self.task.add_done_callback(_retrieve)

    async def _send(self, conn: UpstreamConnection) -> None:
        async for chunk in self.request.content.iter_any():
            self.consumed = True
            self.sent += len(chunk)
            if self.limit and self.sent > self.limit:
                self.too_large = True
                conn.close()
                return
            deadline = self.deadline
            if deadline is not None:
                deadline.reschedule(self.loop.time() + self.timeout)
            if conn.closed:
                return
            if self.chunked:
                conn.write((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                conn.write(chunk)
            await conn.drain()
        if self.chunked and not conn.closed:
            conn.write(b"0\r\n\r\n")
        self.finished = True

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def upstream_text(route: Route, origin: str) -> str:
    """How an error page names the upstream: a `proxy` app's URL is the admin's own
    (shown, it helps), a container's address on this host is not for anonymous clients
    (`app list` and the log have it for the admin)."""
    return "upstream" if route.target.kind == "container" else f"upstream {origin}"


def body_too_large(request: web.BaseRequest, route: Route, limit: int) -> web.Response:
    """413 naming the app and its limit; the connection closes (the body stays unread)."""
    response = error_response(request, 413, f"app {route.label}: request body larger than "
                                            f"{size_text(limit)}")
    response.force_close()
    return response


def size_text(n: int) -> str:
    """A byte count as the config spells limits (MiB), or bytes below 1 MiB."""
    mb = n / (1024 * 1024)
    return f"{mb:g} MiB" if mb >= 1 else f"{n} bytes"


def _retrieve(task: asyncio.Task[None]) -> None:
    """An upload that failed (the client went away) has nowhere to report to."""
    if not task.cancelled():
        task.exception()


def _body_error(route: Route, error: BaseException) -> ConnectionResetError:
    # The head is sent; the only honest signal left is a cut connection.
    log.warning("upstream_body_error", app=route.label, error=str(error))
    return ConnectionResetError(f"upstream body error: {error}")


def request_head(method: str, target: str, headers: Mapping[str, str], authority: str, *,
                 chunked: bool) -> bytes:
    """The request line and headers as bytes (Host `authority` unless one is kept)."""
    parts = [method, " ", target, " HTTP/1.1\r\n"]
    if "Host" not in headers:
        parts += ("Host: ", authority, "\r\n")
    for name, value in headers.items():
        parts += (name, ": ", value, "\r\n")
    if chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def _listener_port(request: web.BaseRequest) -> str:
    """The local port the request came in on ("" when the transport cannot say)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[1])
    return ""
