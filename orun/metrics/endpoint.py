"""Where Prometheus scrapes orun: `/_orun/metrics` on the default domain of the main
listeners, or a listener of its own (`metrics.listen`).

Who may scrape (`metrics` config): with a `token`, anyone who sends it as
`Authorization: Bearer <token>` (compared in constant time), on either kind of
listener; without one, on the main listeners only loopback clients whose request came
through no proxy (no `Forwarded`, `X-Forwarded-For` or `X-Real-IP` header: a proxy on
the same host would otherwise make every client local), and on the own listener
anyone who reaches its address (the admin chose it). Why refuse by default: the series
name every app path and show its traffic, which is not for anonymous clients.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import socket
from collections.abc import Callable

import structlog
from aiohttp import web

from orun.metrics.collector import MetricsSource, render
from orun.proxy.errors import error_response
from orun.routing.table import host_to_domain
from orun.state.config import MetricsConfig, parse_listen

log = structlog.get_logger("orun.metrics")

_READ = frozenset({"GET", "HEAD"})
_VIA_PROXY = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


class MetricsEndpoint:
    """Answers scrapes; owns the metrics' own listener while `metrics.listen` is set."""

    def __init__(self, source: MetricsSource, config: Callable[[], MetricsConfig],
                 default_domain: Callable[[], str]) -> None:
        self.source = source
        self._config = config
        self._default_domain = default_domain
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        #: the own listener's `host:port` as bound (None: not listening)
        self.address: str | None = None
        self._bound: str = ""

    # -- the main listeners --------------------------------------------------------

    async def serve_main(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """A scrape on the HTTP or HTTPS listener; None when the request is another
        domain's (its app may have this path)."""
        if host_to_domain(request.headers.get("Host", ""),
                          self._default_domain()) != self._default_domain():
            return None
        cfg = self._config()
        if not cfg.token and not (loopback(request.remote)
                                  and not any(h in request.headers for h in _VIA_PROXY)):
            return error_response(request, 403, "metrics are served to loopback clients "
                                  "only; set metrics.token to scrape from elsewhere, or "
                                  "metrics.listen for a listener of their own")
        return await self._scrape(request, cfg)

    # -- the own listener ----------------------------------------------------------

    async def _serve_own(self, request: web.Request) -> web.StreamResponse:
        return await self._scrape(request, self._config())

    async def apply(self, cfg: MetricsConfig) -> None:
        """Listen on `cfg.listen` (or stop listening). Binds the new address before the
        old one closes; raises OSError (the old listener keeps serving) when it cannot."""
        wanted = cfg.listen if cfg.enabled else ""
        if wanted == self._bound:
            return
        if not wanted:
            await self._close_site()
            return
        host, port = parse_listen(wanted)
        if self._runner is None:
            app = web.Application()
            for path in ("/metrics", "/_orun/metrics"):
                app.router.add_route("*", path, self._serve_own)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                         shutdown_timeout=1.0)
            await self._runner.setup()
        sock = await asyncio.to_thread(_listen_socket, host, port)
        site = web.SockSite(self._runner, sock)
        await site.start()
        await self._close_site()
        self._site = site
        self._bound = wanted
        bound_port = sock.getsockname()[1]
        self.address = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
        log.info("metrics_listening", address=self.address)

    async def _close_site(self) -> None:
        site, self._site = self._site, None
        self._bound = ""
        self.address = None
        if site is not None:
            await site.stop()

    async def close(self) -> None:
        await self._close_site()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- both ------------------------------------------------------------------------

    async def _scrape(self, request: web.BaseRequest,
                      cfg: MetricsConfig) -> web.StreamResponse:
        if cfg.token and not _token_ok(request.headers.get("Authorization", ""), cfg.token):
            response = error_response(request, 401, "metrics need the scrape token: "
                                      "Authorization: Bearer <metrics.token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="orun metrics"'
            return response
        if request.method not in _READ:
            return error_response(request, 405, "metrics are read with GET",
                                  headers={"Allow": "GET, HEAD"})
        snapshot = self.source.snapshot()
        body, content_type = await asyncio.to_thread(
            render, snapshot, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Cache-Control": "no-store"})


def listen_problem(listen: str, exc: OSError) -> str:
    """The one line a failed bind of `metrics.listen` is reported with."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"metrics.listen: cannot listen on {listen}: {why}"


def _token_ok(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False,
                                backlog=128)


__all__ = ["MetricsEndpoint", "listen_problem", "loopback"]
