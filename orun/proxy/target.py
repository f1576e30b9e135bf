"""The proxy's own interfaces: what a route is, what serves it, and what a container
app looks like from the request path.

The proxy depends on nothing above or beside it. Routing builds `Route`s and their
`Target`s; the runtime implements `Backend` for container apps; routing's target
factory wires the two. All of these are structural (`Protocol`), so implementations
need not import this module, and the hot path reads plain attributes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from yarl import URL

from orun.proxy.stats import RouteStats


@dataclass(frozen=True, slots=True)
class Route:
    """One app's place in the routing table and the target that serves it."""

    app_id: str
    #: the app path as users see it (`/x`, `counter.localhost:/`), used in messages
    label: str
    #: the path prefix to strip: "" for an app at `/`, else `/x`
    prefix: str
    target: Target
    #: the app's traffic counters (kept across route rebuilds by the route manager;
    #: the request paths bump them, the metrics exporter reads them)
    stats: RouteStats = field(default_factory=lambda: RouteStats(""))


class FastPlan:
    """Where the fast path sends one request (orun/proxy/fast.py): made by a target's
    `fast()`, read once. A plain slotted class: built on every fast request."""

    __slots__ = ("activity", "alternate", "base", "extra", "extra_names", "load",
                 "max_body", "origin", "preserve_host", "target")

    def __init__(self, origin: str, target: str, preserve_host: bool, base: URL,
                 activity: ActivityCounter | None, load: Counter | None,
                 extra: bytes = b"", extra_names: frozenset[bytes] = frozenset(),
                 max_body: int | None = None,
                 alternate: Callable[[str], FastPlan | None] | None = None) -> None:
        #: the upstream's origin text (`http://127.0.0.1:32768`): its connection pool
        self.origin = origin
        #: the request target upstream: path and query, as sent
        self.target = target
        self.preserve_host = preserve_host
        #: what `Location` headers are made public against (origin plus base path)
        self.base = base
        #: container apps: the idle-shutdown counter and the instance's drain counter
        self.activity = activity
        self.load = load
        #: response headers the app's config sets (`Name: value\r\n` lines) and their
        #: lowercase names (the upstream's own of those names are dropped)
        self.extra = extra
        self.extra_names = extra_names
        #: the app's own request body limit in bytes (`--conf limits.max_body_mb`);
        #: None: the server's
        self.max_body = max_body
        #: replicated apps: the plan for another replica when this one refuses the
        #: connection (given the refusing origin, which leaves the pool); None: no other
        self.alternate = alternate


class Target(Protocol):
    """Serves requests for one app version. Built off the hot path, immutable after."""

    @property
    def kind(self) -> str:
        """The spec kind that produced this target (for listings and logs)."""
        ...

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        """Answer `request`; `rest` is the raw path after the app prefix ("" or "/...")."""
        ...

    def fast(self, route: Route, rest: str, query: str) -> FastPlan | None:
        """Where a plain HTTP/1.1 request goes when the fast path may forward it as is,
        else None (it is answered by `serve` instead: a starting app, an error, a
        static file, orun's own endpoints). `query` is the raw query ("" if none)."""
        ...


class RouteLookup(Protocol):
    def match(self, host: str, path: str) -> tuple[Route, str] | None:
        """The route for `host` + raw `path` (no query) and the path left for the app."""
        ...


class RouteSource(Protocol):
    """Where the handler reads the current table, once per request."""

    @property
    def current(self) -> RouteLookup: ...


class Counter(Protocol):
    """Requests and websockets open now (a container drains before it stops)."""

    open: int


class ActivityCounter(Protocol):
    """An app's traffic for idle shutdown: open plain requests, last traffic time
    (monotonic). The proxy writes both as frames and chunks pass.

    `wake` is set while the app's container is paused by the idle tier: a websocket
    that stayed open awaits it before it passes a frame on, which thaws the container
    (plain requests need no hook: a paused app has no serving instance, so they take
    the cold path). None while the app runs: one attribute read per frame.

    `requests` counts plain requests ever started (the console's requests/min is read
    from it off the hot path: one integer add per request, next to `open`'s)."""

    open: int
    last: float
    requests: int
    wake: Callable[[], Awaitable[object]] | None


class Serving(Protocol):
    """A healthy container that requests go to."""

    @property
    def upstream(self) -> str:
        """The origin, e.g. ``http://127.0.0.1:32768``."""
        ...

    @property
    def base(self) -> URL: ...

    @property
    def load(self) -> Counter: ...

    @property
    def replicas(self) -> Replicas | None:
        """Several containers serve this version (a replicated service): each request
        goes to the one `Replicas.pick` names. None for a single container."""
        ...


class Replicas(Protocol):
    """The healthy replicas of an app version, read on every request."""

    def pick(self) -> Serving:
        """The replica for the next request (the runtime decides how: least outstanding
        requests); a websocket stays on the one it was given."""
        ...

    def evict(self, upstream: str) -> bool:
        """The replica at `upstream` refused a connection: no more requests until its
        health check passes again. False when no other replica is left to try."""
        ...


class LiveState(Protocol):
    """Read on every request: the serving container (None: not running, or paused by
    the idle tier; `Backend.ensure` starts or thaws it) and the traffic counter. Plain
    attributes in the implementation."""

    @property
    def instance(self) -> Serving | None: ...

    @property
    def activity(self) -> ActivityCounter: ...


class Backend(Protocol):
    """A container app version as the proxy needs it, off the hot path: bringing it up,
    the progress of that, and what an anonymous client may be told."""

    @property
    def live(self) -> LiveState: ...

    @property
    def state(self) -> str:
        """stopped, building, starting, running, paused, failed, crashed, ..."""
        ...

    def ensure(self) -> asyncio.Future[Serving]:
        """The single-flight start (or thaw, when paused) of this version, shared by
        concurrent callers. Raises `EngineError` when no container engine answers."""
        ...

    def request_wait(self) -> float:
        """How long a request may wait for a start, in seconds."""
        ...

    def busy(self) -> bool:
        """A start or change is in flight."""
        ...

    def reported_failure(self) -> str | None:
        """The failure of this very version when nothing is in flight (so a refresh
        does not rebuild it), else None."""
        ...

    def failure(self) -> str:
        """The last failure with its log tail ("" if none)."""
        ...

    def progress_lines(self) -> Sequence[str]:
        """The lines of the current start so far."""
        ...

    def subscribe(self) -> asyncio.Queue[str | None]:
        """New progress lines as they come (None: a separator)."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None: ...

    def public_text(self, text: str) -> str:
        """`text` without container, image and volume names, ids or upstream addresses."""
        ...

    def public_status(self) -> dict[str, object]:
        """State and error only, for `/_orun_app/status`."""
        ...


__all__ = [
    "ActivityCounter",
    "Backend",
    "Counter",
    "FastPlan",
    "LiveState",
    "Route",
    "RouteLookup",
    "RouteSource",
    "Serving",
    "Target",
]
