"""The catch-all request handler: one routing-table read, then the app's target."""

from __future__ import annotations

from aiohttp import web

from orun.proxy.errors import error_response
from orun.routing.manager import RouteManager

HEALTH_PATH = "/_orun/health"


class ProxyHandler:
    """Serves every request on the HTTP listener. Knows nothing about Docker or the bus."""

    def __init__(self, routes: RouteManager) -> None:
        self._routes = routes
        #: requests being handled now (graceful shutdown waits for this to reach 0)
        self.in_flight = 0

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        try:
            table = self._routes.current
            raw_path = request.raw_path
            path = raw_path.partition("?")[0]
            found = table.match(request.headers.get("Host", ""), path)
            if found is None:
                if path == HEALTH_PATH:
                    return web.Response(text="OK")
                return error_response(request, 404, "no matching app found")
            route, rest = found
            return await route.target.serve(request, route, rest)
        finally:
            self.in_flight -= 1
