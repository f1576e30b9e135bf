"""What the event bus tells the metrics: builds, cold starts, idle stops, health-check
failures, crashes and config reloads, counted as they are published.

Why from the bus: these happen off the request path, in the runtime and the server,
which already announce them as events; one subscriber counts them, so none of those
parts knows about metrics. Counts are kept by app label (its path, as `app list` shows
it), so a deleted app's series end when the collector next drops unknown labels.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable
from typing import TypeVar

from orun.bus import EventBus, Unsubscribe
from orun.events import (
    AppIdled,
    BuildFinished,
    ColdStart,
    ConfigReloadFinished,
    ContainerExited,
    ContainerUnhealthy,
    Event,
    HealthCheckFailed,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: build durations (seconds)
BUILD_BOUNDS: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                   1800.0)
#: cold start and thaw durations (seconds)
START_BOUNDS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                   30.0, 60.0, 120.0, 300.0)


class Histogram:
    """Fixed buckets (`le` bounds) and a sum, bumped off the request path."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class EventTally:
    """The bus subscriber behind the event-fed series (see the README's Metrics)."""

    def __init__(self, bus: EventBus, label_of: Callable[[str], str]) -> None:
        self._bus = bus
        self._label_of = label_of
        #: (app, outcome: built | failed | cached) -> builds
        self.builds: dict[tuple[str, str], int] = {}
        #: app -> durations of builds that ran (built or failed)
        self.build_seconds: dict[str, Histogram] = {}
        #: (app, kind: start | thaw, outcome: ok | failed) -> cold starts
        self.cold_starts: dict[tuple[str, str, str], int] = {}
        #: (app, kind) -> durations of the cold starts that served
        self.cold_start_seconds: dict[tuple[str, str], Histogram] = {}
        #: (app, action: stop | pause) -> idle actions
        self.idle: dict[tuple[str, str], int] = {}
        self.health_failures: dict[str, int] = {}
        self.unhealthy: dict[str, int] = {}
        self.crashes: dict[str, int] = {}
        #: outcome (applied | unchanged | rejected) -> reloads
        self.reloads: dict[str, int] = {"applied": 0, "unchanged": 0, "rejected": 0}
        self.last_reload_ok = 1
        self.last_reload_success = time.time()
        self._unsubscribe: Unsubscribe | None = None

    def start(self) -> None:
        self._unsubscribe = self._bus.subscribe(
            "metrics", (BuildFinished, ColdStart, AppIdled, HealthCheckFailed,
                        ContainerUnhealthy, ContainerExited, ConfigReloadFinished),
            self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _on_event(self, event: Event) -> None:
        self.count(event)

    def count(self, event: Event) -> None:
        """Add one event to the counts (the bus handler; tests call it directly)."""
        if isinstance(event, ConfigReloadFinished):
            outcome = "rejected" if not event.applied else \
                "applied" if event.changed else "unchanged"
            self.reloads[outcome] += 1
            self.last_reload_ok = int(event.applied)
            if event.applied:
                self.last_reload_success = time.time()
            return
        app_id = getattr(event, "app_id", "")
        label = self._label_of(app_id)
        if not label:
            return  # an app deleted meanwhile
        if isinstance(event, BuildFinished):
            outcome = "failed" if event.error else "built" if event.built else "cached"
            _bump(self.builds, (label, outcome))
            if outcome != "cached":
                _histogram(self.build_seconds, label, BUILD_BOUNDS).observe(event.seconds)
        elif isinstance(event, ColdStart):
            _bump(self.cold_starts, (label, event.kind, "failed" if event.error else "ok"))
            if not event.error:
                _histogram(self.cold_start_seconds, (label, event.kind),
                           START_BOUNDS).observe(event.seconds)
        elif isinstance(event, AppIdled):
            _bump(self.idle, (label, event.action))
        elif isinstance(event, HealthCheckFailed):
            _bump(self.health_failures, label)
        elif isinstance(event, ContainerUnhealthy):
            _bump(self.unhealthy, label)
        elif isinstance(event, ContainerExited) and not event.expected:
            _bump(self.crashes, label)

    def retain(self, labels: set[str]) -> None:
        """Forget the counts of apps that are gone."""
        _retain(self.builds, labels)
        _retain(self.cold_starts, labels)
        _retain(self.idle, labels)
        _retain(self.cold_start_seconds, labels)
        for by_label in (self.build_seconds, self.health_failures, self.unhealthy,
                         self.crashes):
            for name in [k for k in by_label if k not in labels]:
                del by_label[name]


def _retain(table: dict[K, V], labels: set[str]) -> None:
    """Drop the entries of `table` (keyed by tuples that start with an app label) whose
    app is not in `labels`."""
    for key in [k for k in table if k[0] not in labels]:  # type: ignore[index]
        del table[key]


def _bump(table: dict[K, int], key: K) -> None:
    table[key] = table.get(key, 0) + 1


def _histogram(table: dict[K, Histogram], key: K, bounds: tuple[float, ...]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(bounds)
    return hist
