"""What a route points at: something that serves a request for one app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from orun.routing.table import Route


class Target(Protocol):
    """Serves requests for one app version. Built off the hot path, immutable after."""

    @property
    def kind(self) -> str:
        """The spec kind that produced this target (for listings and logs)."""
        ...

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        """Answer `request`; `rest` is the raw path after the app prefix ("" or "/...")."""
        ...
