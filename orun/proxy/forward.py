"""Forwarding one HTTP request to an upstream, streaming both bodies.

One `ClientSession` is the persistent upstream pool for every app. The seam is
`Forwarder.forward()`: a faster upstream pool (own protocol, raw response bytes) can
replace the session without touching targets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from time import monotonic
from urllib.parse import unquote

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from orun.proxy.errors import error_response
from orun.proxy.headers import TrustedProxies, client_response_headers, upstream_request_headers
from orun.proxy.target import ActivityCounter, Route
from orun.proxy.websocket import WebSocketRelays
from orun.state.config import ProxyConfig

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
    further (`..%2f`, `..%5c`, `..\\`, Tomcat's `..;`). Cheap for ordinary paths: one
    scan when no segment starts with a dot and nothing is percent-encoded.
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

    @classmethod
    def from_config(cls, proxy: ProxyConfig, trusted_proxies: list[str]) -> ForwardSettings:
        return cls(TrustedProxies.parse(trusted_proxies), proxy.connect_timeout_secs,
                   proxy.read_timeout_secs)


class Forwarder:
    """Owns the upstream connection pool and the open websocket relays."""

    def __init__(self, proxy: ProxyConfig, trusted_proxies: list[str]) -> None:
        self.settings = ForwardSettings.from_config(proxy, trusted_proxies)
        self._idle_timeout = proxy.idle_conn_timeout_secs
        self._session: aiohttp.ClientSession | None = None
        self.websockets = WebSocketRelays()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, keepalive_timeout=self._idle_timeout, ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            read_bufsize=2**16,
        )

    def reconfigure(self, proxy: ProxyConfig, trusted_proxies: list[str]) -> None:
        self.settings = ForwardSettings.from_config(proxy, trusted_proxies)

    async def close(self) -> None:
        await self.websockets.close_all(1001, "server shutting down")
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Forwarder.start() was not called"
        return self._session

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
    ) -> web.StreamResponse:
        """Proxy `request` to `upstream` (the full upstream URL, query included).

        `base` is the upstream's base address (origin plus base path) that `Location`
        headers are made public against; it defaults to the upstream's origin.
        `activity`, when given, is touched as streamed chunks and websocket frames pass.
        """
        settings = self.settings
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        headers = upstream_request_headers(
            request.raw_headers, peer=request.remote or "", scheme=request.scheme,
            host=request.host, prefix=route.prefix, trusted=settings.trusted,
            keep_host=preserve_host or websocket, websocket=websocket,
            port="" if "Host" in request.headers else _listener_port(request),
        )
        if websocket:
            return await self.websockets.relay(
                request, route, upstream, headers, self.session, settings.connect_timeout,
                activity,
            )
        if headers.pop("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        return await self._http(request, route, upstream, headers, settings,
                                response_headers, base or upstream.origin(), activity)

    async def _http(self, request: web.BaseRequest, route: Route, upstream: URL,
                    headers: Mapping[str, str], settings: ForwardSettings,
                    extra: Mapping[str, str] | None, base: URL,
                    activity: ActivityCounter | None) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(settings.read_timeout)
        data = None
        if request.body_exists:
            data = _body(request, deadline, loop, settings.read_timeout)
        try:
            async with deadline:
                upstream_resp = await self.session.request(
                    request.method, upstream, headers=headers, data=data,
                    allow_redirects=False, compress=None, chunked=None,
                    timeout=aiohttp.ClientTimeout(total=None,
                                                  sock_connect=settings.connect_timeout),
                )
        except TimeoutError:
            return error_response(request, 504,
                                  f"app {route.label}: upstream {upstream.origin()} did not "
                                  f"respond within {settings.read_timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error.strerror or str(exc.os_error)
            return error_response(request, 502,
                                  f"app {route.label}: cannot connect to upstream "
                                  f"{upstream.origin()}: {cause}")
        except aiohttp.ClientError as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            return error_response(request, 502,
                                  f"app {route.label}: upstream {upstream.origin()} failed: "
                                  f"{exc.__class__.__name__}: {detail}".rstrip(": "))
        try:
            return await self._respond(request, route, base, upstream_resp, extra, activity)
        finally:
            upstream_resp.release()

    async def _respond(self, request: web.BaseRequest, route: Route, base: URL,
                       resp: aiohttp.ClientResponse,
                       extra: Mapping[str, str] | None,
                       activity: ActivityCounter | None) -> web.StreamResponse:
        headers = client_response_headers(resp.headers.items(), upstream_url=base,
                                          prefix=route.prefix, rewrite=True)
        if extra:
            headers.update(extra)
        status = resp.status
        length = resp.content_length
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            out = web.StreamResponse(status=status, reason=resp.reason, headers=headers)
            await out.prepare(request)
            await out.write_eof()
            return out
        if length is not None and length <= SMALL_BODY:
            body = await resp.read()
            return web.Response(status=status, reason=resp.reason, body=body,
                                headers=headers)
        out = web.StreamResponse(status=status, reason=resp.reason, headers=headers)
        await out.prepare(request)
        try:
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
                if activity is not None:
                    activity.last = monotonic()
        except aiohttp.ClientPayloadError as exc:
            # The head is sent; the only honest signal left is a cut connection.
            log.warning("upstream_body_error", app=route.label, error=str(exc))
            raise ConnectionResetError(f"upstream body error: {exc}") from exc
        await out.write_eof()
        return out


def _listener_port(request: web.BaseRequest) -> str:
    """The local port the request came in on ("" when the transport cannot say)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[1])
    return ""


async def _body(request: web.BaseRequest, deadline: asyncio.Timeout,
                loop: asyncio.AbstractEventLoop, timeout: float) -> AsyncIterator[bytes]:
    """The request body as a stream; every chunk moved pushes the read deadline back.

    So the read timeout measures upstream silence, not how long a large upload takes.
    """
    async for chunk in request.content.iter_any():
        deadline.reschedule(loop.time() + timeout)
        yield chunk
