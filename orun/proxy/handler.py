"""The catch-all request handler: one routing-table read, then the app's target."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import monotonic

from aiohttp import web
from yarl import URL

from orun.proxy.challenges import Challenges
from orun.proxy.errors import error_response
from orun.proxy.request import ProxyRequest, count_now
from orun.proxy.stats import NO_APP, RouteStats
from orun.proxy.target import RouteSource

HEALTH_PATH = "/_orun/health"
#: where Prometheus scrapes orun (orun/metrics), on the default domain
METRICS_PATH = "/_orun/metrics"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
Reserved = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
#: serves `METRICS_PATH`, or returns None when the request is not for it (another
#: domain's app may have that path)
Metrics = Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]


class ProxyHandler:
    """Serves every request on the HTTP listener. Knows nothing about Docker or the bus."""

    def __init__(self, routes: RouteSource, challenges: Challenges | None = None) -> None:
        self._routes = routes
        #: ACME http-01 answers, served before the redirect and the apps
        self.challenges = challenges or Challenges()
        #: requests being handled now (graceful shutdown waits for this to reach 0)
        self.in_flight = 0
        #: `http.redirect_to_https`: the HTTPS listener's port, else None
        self.https_redirect: int | None = None
        #: path prefixes orun keeps for itself (the admin API over HTTPS, the console)
        #: and what serves each; empty: every path belongs to the apps
        self.reserved: tuple[tuple[str, Reserved], ...] = ()
        #: the metrics endpoint while it is served on these listeners, else None
        self.metrics: Metrics | None = None
        #: the counters of requests no app takes (no route, bad requests, redirects)
        self.none_stats = RouteStats(NO_APP)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        if not isinstance(request, ProxyRequest):  # not from orun's server: not counted
            try:
                return await self._serve(request, None)
            finally:
                self.in_flight -= 1
        # counted once its status is known (orun/proxy/request.py); the bytes sent are
        # added by aiohttp's end-of-request hook, once they are out
        request.orun_started = monotonic()
        try:
            response = await self._serve(request, request)
        except web.HTTPException as exc:  # aiohttp answers it (a redirect)
            count_now(request, exc.status)
            raise
        except asyncio.CancelledError:  # the client went away
            count_now(request, 0)
            raise
        except Exception:  # aiohttp answers 500
            count_now(request, 500)
            raise
        finally:
            self.in_flight -= 1
        count_now(request, response.status)
        return response

    async def _serve(self, request: web.BaseRequest,
                     counted: ProxyRequest | None) -> web.StreamResponse:
        """Answer `request`; `counted` (the same request, when it is counted) gets the
        counters of the app that takes it (none for orun's own endpoints)."""
        answer = self.challenges.http_answer(request.raw_path)
        if answer is not None:
            return web.Response(text=answer, content_type="application/octet-stream")
        if counted is not None:
            counted.orun_stats = self.none_stats
        if self.https_redirect is not None and not request.secure:
            return https_redirect(request, self.https_redirect)
        raw_path = request.raw_path
        if raw_path[:1] != "/":
            found_request = origin_form(request)
            if isinstance(found_request, web.Response):
                return found_request
            request = found_request
            raw_path = request.raw_path
        path = raw_path.partition("?")[0]
        if self.metrics is not None and path == METRICS_PATH:
            metrics = await self.metrics(request)
            if metrics is not None:
                if counted is not None:
                    counted.orun_stats = None  # orun's own: not counted
                return metrics
        for prefix, serve in self.reserved:
            if path == prefix or path.startswith(prefix + "/"):
                if counted is not None:
                    counted.orun_stats = None  # orun's own: not counted
                return await serve(request)
        table = self._routes.current
        found = table.match(request.headers.get("Host", ""), path)
        if found is None:
            if path == HEALTH_PATH:
                if counted is not None:
                    counted.orun_stats = None
                return web.Response(text="OK")
            return error_response(request, 404, "no matching app found")
        route, rest = found
        if counted is not None:
            counted.orun_stats = route.stats
        return await route.target.serve(request, route, rest)


def https_redirect(request: web.BaseRequest, port: int) -> web.Response:
    """308 to the same host, path and query on the HTTPS listener (308 keeps the
    method and body, so a form POST is not turned into a GET)."""
    host = request.headers.get("Host", "")
    name = host[:host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
    if not name:
        return error_response(request, 400, "a Host header is needed to redirect to HTTPS")
    target = request.raw_path if request.raw_path.startswith("/") else "/"
    location = f"https://{name}{'' if port == 443 else f':{port}'}{target}"
    return web.Response(status=308, headers={"Location": location})


def target_authority(target: str) -> tuple[str, str, str] | None:
    """(scheme, authority, path and query) of an absolute-form request target, else None.

    The path is "/" when the target has none (`http://h?q` -> `/?q`); a fragment is cut.
    """
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        return None
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:].partition("#")[0]
    return scheme, authority, path if path.startswith("/") else "/" + path


def same_authority(authority: str, host: str, scheme: str) -> bool:
    """True when a target's authority and a Host header name the same host and port."""
    a, h = authority.lower(), host.lower()
    if a == h:
        return True
    default = _DEFAULT_PORTS.get(scheme, "")
    return bool(default) and a.removesuffix(default) == h.removesuffix(default)


def origin_form(request: web.BaseRequest) -> web.BaseRequest | web.Response:
    """The request with an origin-form target (`/path?query`), or a 400 for the client.

    An absolute-form target (`GET http://h/p HTTP/1.1`, which clients send only to
    proxies) is accepted only when its authority is the Host header's: routing, the
    path forwarded, `X-Forwarded-Host` and `Location` rewriting then all use one host
    and one path. `OPTIONS *` and CONNECT's authority form are refused too.
    """
    target = request.raw_path
    parsed = target_authority(target)
    if parsed is None:
        return error_response(request, 400, "unsupported request target: only a path "
                              "(/...) or an absolute http(s) URL is accepted")
    scheme, authority, path = parsed
    host = request.headers.get("Host", "")
    if not authority or not same_authority(authority, host, scheme):
        return error_response(request, 400, f"the request target's host {authority!r} "
                              f"is not the Host header {host!r}")
    try:
        return request.clone(rel_url=URL(path, encoded=True))
    except ValueError:
        return error_response(request, 400, "malformed request target")
