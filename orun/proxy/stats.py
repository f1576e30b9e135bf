"""Per-app traffic counters the proxy bumps on every request.

Why this shape: the request path (the fast path in orun/proxy/fast.py, the aiohttp path
in orun/proxy/handler.py) must stay as cheap as it was, so it only adds to plain ints
and floats of a `RouteStats` it already holds (each `Route` carries its app's): no dict
lookups, no objects made, no calls into a metrics library. The exporter
(orun/metrics/) reads these at scrape time and turns them into metric families.

Histograms are fixed buckets: an int per bucket plus a float sum, the bucket found with
one `bisect` on a shared tuple of bounds (Prometheus buckets are `le`: a value equal to
a bound falls in that bound's bucket, which is what `bisect_left` gives).
"""

from __future__ import annotations

#: latency bucket bounds in seconds (orun's own time and an app's time to answer)
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0)
#: the method classes requests are counted by (anything else is "other")
METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                            "other")
_OTHER_METHOD = len(METHODS) - 1
_METHOD_INDEX = {m.encode(): i for i, m in enumerate(METHODS[:-1])}
#: the status classes: index `status // 100` (1..5); 0 is "other" (no response was
#: sent, the client went away first, or a status outside 100..599)
STATUSES: tuple[str, ...] = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
N_STATUS = len(STATUSES)
#: the label of requests no app took (no route, a bad request, a redirect to HTTPS)
NO_APP = "(none)"


def method_class(method: bytes) -> int:
    """The method class index of `method` (`METHODS`); the hot paths test GET, HEAD and
    POST inline first and call this for the rest."""
    return _METHOD_INDEX.get(method, _OTHER_METHOD)


def method_class_text(method: str) -> int:
    """As `method_class`, for aiohttp's str methods."""
    if method == "GET":
        return 0
    if method == "HEAD":
        return 1
    if method == "POST":
        return 2
    return _METHOD_INDEX.get(method.encode("latin-1"), _OTHER_METHOD)


def status_class(status: int) -> int:
    """The index into `STATUSES` of an HTTP status."""
    return status // 100 if 100 <= status <= 599 else 0


class RouteStats:
    """One app's counters. `requests[method * N_STATUS + status]` counts requests by
    method class and status class; byte counts are bodies (what apps and clients send,
    not heads); `overhead` is orun's time before the app sees a request (routing, auth,
    connecting, waiting for a start) or, for a request orun answers itself (static
    files, errors), the time to that answer; `upstream` is the app's time from the
    request sent to its response head."""

    __slots__ = ("bytes_in", "bytes_out", "label", "overhead", "overhead_sum", "requests",
                 "upstream", "upstream_sum", "websockets")

    def __init__(self, label: str) -> None:
        self.label = label
        self.requests = [0] * (len(METHODS) * N_STATUS)
        self.bytes_in = 0
        self.bytes_out = 0
        self.overhead = [0] * (len(LATENCY_BOUNDS) + 1)
        self.overhead_sum = 0.0
        self.upstream = [0] * (len(LATENCY_BOUNDS) + 1)
        self.upstream_sum = 0.0
        #: websockets open now (relayed by orun/proxy/websocket.py)
        self.websockets = 0


class ProxyStats:
    """Every app's `RouteStats` by app label (the routing manager hands each new Route
    its app's, so counters survive route rebuilds), and those of requests no app took."""

    def __init__(self) -> None:
        self.apps: dict[str, RouteStats] = {}
        self.none = RouteStats(NO_APP)

    def for_app(self, label: str) -> RouteStats:
        stats = self.apps.get(label)
        if stats is None:
            stats = self.apps[label] = RouteStats(label)
        return stats

    def retain(self, labels: set[str]) -> None:
        """Forget the counters of apps that are gone (their series end)."""
        for label in [k for k in self.apps if k not in labels]:
            del self.apps[label]


__all__ = ["LATENCY_BOUNDS", "METHODS", "NO_APP", "N_STATUS", "STATUSES", "ProxyStats",
           "RouteStats", "method_class", "method_class_text", "status_class"]
