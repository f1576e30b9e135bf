"""`proxy`-spec apps: forward to an external http:// or https:// URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from yarl import URL

from orun.errors import SpecError
from orun.proxy.forward import Forwarder, bad_path, resolve_rest
from orun.proxy.target import FastPlan, Route


def parse_upstream_url(url: str) -> URL:
    """Validate a `proxy` spec `url` param: absolute http(s) with a host, no fragment."""
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise SpecError(f"param url: {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SpecError(f"param url: {url!r} must be an absolute http:// or https:// URL")
    if parsed.fragment:
        raise SpecError(f"param url: {url!r} must not have a #fragment")
    return parsed


@dataclass(frozen=True, slots=True)
class ExternalProxyTarget:
    forwarder: Forwarder
    #: origin plus base path without trailing slash, e.g. "http://h:8080/base"
    base: str
    base_query: str
    preserve_host: bool
    response_headers: Mapping[str, str]
    #: False: the upstream sees the full public path, app prefix included
    strip_app: bool = True
    #: the app's request body limit (bytes), None for the server's
    max_body: int | None = None
    kind: str = "proxy"
    #: precomputed once: the base as a URL, split into its origin and its path ("" or
    #: "/base"), and the config's response headers as header lines
    base_url: URL = field(init=False)
    origin: str = field(init=False)
    path_base: str = field(init=False)
    extra: bytes = field(init=False)
    extra_names: frozenset[bytes] = field(init=False)

    def __post_init__(self) -> None:
        base_url = URL(self.base, encoded=True)
        path_base = base_url.raw_path.rstrip("/")
        object.__setattr__(self, "base_url", base_url)
        # split the text itself, so that origin + path_base is the base as given
        object.__setattr__(self, "origin", self.base[:len(self.base) - len(path_base)])
        object.__setattr__(self, "path_base", path_base)
        object.__setattr__(self, "extra", "".join(
            f"{n}: {v}\r\n" for n, v in self.response_headers.items()).encode("latin-1"))
        object.__setattr__(self, "extra_names", frozenset(
            n.lower().encode("latin-1") for n in self.response_headers))

    @classmethod
    def create(cls, forwarder: Forwarder, url: str, preserve_host: bool,
               response_headers: Mapping[str, str], *,
               strip_app: bool = True, max_body: int | None = None) -> ExternalProxyTarget:
        parsed = parse_upstream_url(url)
        base = str(parsed.with_query(None)).rstrip("/")
        return cls(forwarder, base, parsed.raw_query_string, preserve_host,
                   dict(response_headers), strip_app, max_body)

    def fast(self, route: Route, rest: str, query: str) -> FastPlan | None:
        resolved = resolve_rest(rest)
        if resolved is None:
            return None
        return FastPlan(self.origin, self._target(route, resolved, query), self.preserve_host,
                        self.base_url, None, None, self.extra, self.extra_names,
                        self.max_body)

    def _target(self, route: Route, rest: str, query: str) -> str:
        """The upstream request target (path and query, after the origin) for `rest`
        (dot segments resolved) and the client's query."""
        if self.base_query:
            query = f"{self.base_query}&{query}" if query else self.base_query
        if not self.strip_app:
            rest = route.prefix + rest
        path = (self.path_base + rest) or "/"
        return path + "?" + query if query else path

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        # appended to the base path as sent, `/../x` would climb out of it upstream
        resolved = resolve_rest(rest)
        if resolved is None:
            return bad_path(request, route)
        target = self._target(route, resolved, request.raw_path.partition("?")[2])
        return await self.forwarder.forward(
            request, route, URL(self.origin + target, encoded=True),
            preserve_host=self.preserve_host, response_headers=self.response_headers,
            base=self.base_url, max_body=self.max_body,
        )
