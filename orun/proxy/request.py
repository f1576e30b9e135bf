"""The request object of the proxy's aiohttp path, with the three attributes the
traffic counters need (orun/proxy/stats.py).

Why a subclass: aiohttp's `Request` warns on unknown attributes and its mapping interface
is a dict per request; a request of this class carries its app's `RouteStats` and two
timestamps as plain attributes (declared in `ATTRS`, as aiohttp asks of subclasses), so
the handler, the forwarder and the end-of-request hook pass them along without lookups.
"""

from __future__ import annotations

from bisect import bisect_left
from time import monotonic

from aiohttp import web

from orun.proxy.stats import (
    LATENCY_BOUNDS,
    N_STATUS,
    RouteStats,
    method_class_text,
    status_class,
)


class ProxyRequest(web.Request):
    ATTRS = web.Request.ATTRS | frozenset({"orun_stats", "orun_started", "orun_upstream_at",
                                           "orun_counted"})
    #: the app's counters (set by the handler once it matched a route; None for orun's
    #: own endpoints, which are not counted)
    orun_stats: RouteStats | None = None
    #: when the handler took it (monotonic)
    orun_started = 0.0
    #: when the forwarder sent it upstream (0: it was not)
    orun_upstream_at = 0.0
    #: counted already (a request is counted once, as soon as its status is known)
    orun_counted = False


def record(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Add the bytes of a finished response of the aiohttp path (called from aiohttp's
    end-of-request hook, once they went out; the request was counted before)."""
    if isinstance(request, ProxyRequest) and request.orun_counted:
        stats = request.orun_stats
        if stats is not None:
            stats.bytes_out += response.body_length


def count_now(request: ProxyRequest, status: int) -> None:
    """Count `request` with `status`, once: when the handler has its answer (before
    aiohttp sends it: a client that leaves meanwhile cancels the rest, the hook
    included), or at a websocket's 101 (its connection ends with it)."""
    stats = request.orun_stats
    if stats is None or request.orun_counted:
        return
    request.orun_counted = True
    now = monotonic()
    stats.requests[method_class_text(request.method) * N_STATUS + status_class(status)] += 1
    stats.bytes_in += request.content.total_bytes
    started = request.orun_started
    if started:
        spent = (request.orun_upstream_at or now) - started
        stats.overhead[bisect_left(LATENCY_BOUNDS, spent)] += 1
        stats.overhead_sum += spent


__all__ = ["ProxyRequest", "count_now", "record"]
