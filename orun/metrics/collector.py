"""The Prometheus collector: orun's counters as metric families, made at scrape time.

Why two steps: the request path and the bus subscriber only add to plain numbers
(orun/proxy/stats.py, orun/metrics/tally.py). A scrape copies those numbers on the
event loop (`snapshot`, a few list copies per app), then builds the metric families and
renders the text in a thread (`render`), so a large scrape never holds the loop, and
the thread never reads what the loop is changing.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orun import __version__
from orun.metrics.tally import EventTally, Histogram
from orun.proxy.stats import LATENCY_BOUNDS, METHODS, N_STATUS, STATUSES, ProxyStats, RouteStats


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the server reads live at scrape time (no counters there)."""

    #: listener name (http, https) -> open client connections
    connections: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    containers_running: int = 0
    containers_paused: int = 0
    routes: int = 0
    started_at: float = 0.0
    #: app label -> (CPU % of one core, memory bytes, memory limit bytes), the newest
    #: engine reading of each app container (orun/runtime/stats.py)
    resources: dict[str, tuple[float, int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Traffic:
    label: str
    requests: list[int]
    bytes_in: int
    bytes_out: int
    overhead: list[int]
    overhead_sum: float
    upstream: list[int]
    upstream_sum: float
    websockets: int


@dataclass(frozen=True, slots=True)
class _Hist:
    bounds: tuple[float, ...]
    counts: list[int]
    sum: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Copies of every number a scrape shows, taken on the event loop."""

    traffic: list[_Traffic]
    builds: dict[tuple[str, str], int]
    build_seconds: dict[str, _Hist]
    cold_starts: dict[tuple[str, str, str], int]
    cold_start_seconds: dict[tuple[str, str], _Hist]
    idle: dict[tuple[str, str], int]
    health_failures: dict[str, int]
    unhealthy: dict[str, int]
    crashes: dict[str, int]
    reloads: dict[str, int]
    last_reload_ok: int
    last_reload_success: float
    gauges: Gauges


def _traffic(stats: RouteStats) -> _Traffic:
    return _Traffic(stats.label, list(stats.requests), stats.bytes_in, stats.bytes_out,
                    list(stats.overhead), stats.overhead_sum, list(stats.upstream),
                    stats.upstream_sum, stats.websockets)


def _hist(h: Histogram) -> _Hist:
    return _Hist(h.bounds, list(h.counts), h.sum)


class MetricsSource:
    """Reads the proxy's counters, the event tally and the server's gauges."""

    def __init__(self, stats: ProxyStats, tally: EventTally,
                 gauges: Callable[[], Gauges]) -> None:
        self.stats = stats
        self.tally = tally
        self.gauges = gauges

    def snapshot(self) -> Snapshot:
        """Copy every number now (on the event loop; cheap: no formatting)."""
        stats, tally = self.stats, self.tally
        tally.retain(set(stats.apps))  # apps deleted since: their series end
        traffic = [_traffic(s) for s in stats.apps.values()]
        traffic.append(_traffic(stats.none))
        return Snapshot(
            traffic, dict(tally.builds),
            {k: _hist(h) for k, h in tally.build_seconds.items()},
            dict(tally.cold_starts),
            {k: _hist(h) for k, h in tally.cold_start_seconds.items()},
            dict(tally.idle), dict(tally.health_failures), dict(tally.unhealthy),
            dict(tally.crashes), dict(tally.reloads), tally.last_reload_ok,
            tally.last_reload_success, self.gauges())


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative (`le`, count) pairs, +Inf last, from per-bucket counts."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(bounds, counts, strict=False):
        total += count
        out.append((_float_text(bound), total))
    total += counts[-1]
    out.append(("+Inf", total))
    return out


def _float_text(value: float) -> str:
    return repr(float(value))


def families(snap: Snapshot) -> list[Metric]:
    """Every orun metric family of `snap` (names and help in the README's Metrics)."""
    requests = CounterMetricFamily(
        "orun_http_requests", "HTTP requests answered, by app (its path), method class "
        "and status class ((none): requests no app took).",
        labels=["app", "method", "status"])
    body_in = CounterMetricFamily(
        "orun_http_request_body_bytes", "Request body bytes received from clients.",
        labels=["app"])
    out = CounterMetricFamily(
        "orun_http_response_bytes", "Response bytes sent to clients, heads included.",
        labels=["app"])
    overhead = HistogramMetricFamily(
        "orun_http_overhead_seconds", "orun's time on a request before the app saw it "
        "(routing, auth, connecting, waiting for a start), or to orun's own answer.",
        labels=["app"])
    upstream = HistogramMetricFamily(
        "orun_upstream_response_seconds", "An app's time from the request sent to it "
        "to its response head.", labels=["app"])
    websockets = GaugeMetricFamily("orun_websockets_open", "Websockets open now.",
                                   labels=["app"])
    for t in snap.traffic:
        label = [t.label]
        for index, count in enumerate(t.requests):
            if count:
                requests.add_metric([t.label, METHODS[index // N_STATUS],
                                     STATUSES[index % N_STATUS]], count)
        if any(t.requests):
            body_in.add_metric(label, t.bytes_in)
            out.add_metric(label, t.bytes_out)
        if any(t.overhead):
            overhead.add_metric(label, _buckets(LATENCY_BOUNDS, t.overhead),
                                t.overhead_sum)
        if any(t.upstream):
            upstream.add_metric(label, _buckets(LATENCY_BOUNDS, t.upstream),
                                t.upstream_sum)
        if t.websockets:
            websockets.add_metric(label, t.websockets)
    g = snap.gauges
    connections = GaugeMetricFamily("orun_open_connections",
                                     "Client connections open now, by listener.",
                                     labels=["listener"])
    for name, n in sorted(g.connections.items()):
        connections.add_metric([name], n)
    in_flight = GaugeMetricFamily("orun_http_requests_in_flight",
                                  "Requests being answered now.", value=g.in_flight)
    containers = GaugeMetricFamily("orun_containers", "App containers orun runs now, by "
                                   "state (paused: frozen by the idle pause tier).",
                                   labels=["state"])
    containers.add_metric(["running"], g.containers_running)
    containers.add_metric(["paused"], g.containers_paused)
    routes = GaugeMetricFamily("orun_routes", "Apps in the routing table.", value=g.routes)
    cold = CounterMetricFamily("orun_cold_starts", "Starts of apps no container served "
                               "(kind start: build if needed, create, start, health check; "
                               "thaw: unpaused), by outcome.",
                               labels=["app", "kind", "outcome"])
    for (app, kind, outcome), n in sorted(snap.cold_starts.items()):
        cold.add_metric([app, kind, outcome], n)
    cold_secs = HistogramMetricFamily("orun_cold_start_duration_seconds",
                                      "How long the cold starts that served took.",
                                      labels=["app", "kind"])
    for (app, kind), h in sorted(snap.cold_start_seconds.items()):
        cold_secs.add_metric([app, kind], _buckets(h.bounds, h.counts), h.sum)
    builds = CounterMetricFamily("orun_builds", "Image builds, by outcome (cached: the "
                                 "image was there, no build ran).",
                                 labels=["app", "outcome"])
    for (app, outcome), n in sorted(snap.builds.items()):
        builds.add_metric([app, outcome], n)
    build_secs = HistogramMetricFamily("orun_build_duration_seconds",
                                       "How long builds that ran took (slot wait included).",
                                       labels=["app"])
    for app, h in sorted(snap.build_seconds.items()):
        build_secs.add_metric([app], _buckets(h.bounds, h.counts), h.sum)
    idle_stops = CounterMetricFamily("orun_idle_stops", "Containers stopped for being idle.",
                                     labels=["app"])
    idle_pauses = CounterMetricFamily("orun_idle_pauses",
                                      "Containers paused for being idle.", labels=["app"])
    for (app, action), n in sorted(snap.idle.items()):
        (idle_stops if action == "stop" else idle_pauses).add_metric([app], n)
    health = _by_app("orun_health_check_failures",
                     "Failed periodic health checks of serving containers.",
                     snap.health_failures)
    unhealthy = _by_app("orun_containers_unhealthy",
                        "Containers taken out of service after failed health checks.",
                        snap.unhealthy)
    crashes = _by_app("orun_container_crashes", "Containers that stopped unexpectedly.",
                      snap.crashes)
    reloads = CounterMetricFamily("orun_config_reloads", "Config reloads, by outcome "
                                  "(rejected: the old config kept serving).",
                                  labels=["outcome"])
    for outcome, n in sorted(snap.reloads.items()):
        reloads.add_metric([outcome], n)
    last_ok = GaugeMetricFamily("orun_config_last_reload_successful",
                                "1 when the last config reload was applied.",
                                value=snap.last_reload_ok)
    last_time = GaugeMetricFamily("orun_config_last_reload_success_timestamp_seconds",
                                  "When a config was last applied (or orun started).",
                                  value=snap.last_reload_success)
    info = GaugeMetricFamily("orun_build_info", "orun's version (the value is 1).",
                             labels=["version", "python"])
    info.add_metric([__version__, platform.python_version()], 1)
    start = GaugeMetricFamily("orun_start_time_seconds", "When orun started (Unix time).",
                              value=g.started_at)
    cpu = GaugeMetricFamily("orun_app_cpu_percent", "CPU an app's container used at the "
                            "last engine reading, in percent of one core.", labels=["app"])
    memory = GaugeMetricFamily("orun_app_memory_bytes", "Memory an app's container used at "
                               "the last engine reading (less droppable page cache).",
                               labels=["app"])
    limit = GaugeMetricFamily("orun_app_memory_limit_bytes", "The memory limit of an app's "
                              "container (the host's memory when it has none).",
                              labels=["app"])
    for app, (cpu_percent, used, most) in sorted(g.resources.items()):
        cpu.add_metric([app], cpu_percent)
        memory.add_metric([app], used)
        limit.add_metric([app], most)
    return [requests, body_in, out, overhead, upstream, websockets, connections, in_flight,
            containers, routes, cold, cold_secs, builds, build_secs, idle_stops,
            idle_pauses, health, unhealthy, crashes, reloads, last_ok, last_time, info,
            start, cpu, memory, limit]


def _by_app(name: str, doc: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["app"])
    for app, n in sorted(counts.items()):
        family.add_metric([app], n)
    return family


class _Families(Collector):
    """One scrape's families, as the exposition functions want them."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


_process = ProcessCollector(registry=None)


def render(snap: Snapshot, accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when the scraper asks for it);
    run in a thread: it formats every series and reads /proc for the process series."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Families([*families(snap), *_process.collect()])), content_type


__all__ = ["Gauges", "MetricsSource", "Snapshot", "families", "render"]
