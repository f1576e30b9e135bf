"""The route manager: the only writer of the routing table.

It is level-triggered: on any relevant event it rebuilds the whole table from a full
snapshot of the apps (never patching the old one) and swaps it in with one assignment.
Rebuilds are serialised and coalesced, so the latest state always wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from orun.bus import EventBus, Unsubscribe
from orun.events import (
    AppsChanged,
    ConfigReloaded,
    ContainerExited,
    ContainerHealthy,
    ContainerUnhealthy,
    Event,
    RoutesSwapped,
)
from orun.proxy.target import Route
from orun.routing.table import EMPTY_TABLE, RouteTable
from orun.routing.targets import TargetFactory
from orun.state.model import App

log = structlog.get_logger("orun.routes")


class RouteManager:
    def __init__(self, bus: EventBus, factory: TargetFactory,
                 apps: Callable[[], list[App]], default_domain: Callable[[], str]) -> None:
        self._bus = bus
        self._factory = factory
        self._apps = apps
        self._default_domain = default_domain
        #: the live table; the proxy reads this attribute once per request
        self.current: RouteTable = EMPTY_TABLE
        self._lock = asyncio.Lock()
        self._dirty = False
        self._unsubscribe: Unsubscribe | None = None

    async def start(self) -> None:
        await self.rebuild()
        self._unsubscribe = self._bus.subscribe(
            "routes",
            (AppsChanged, ConfigReloaded, ContainerHealthy, ContainerUnhealthy, ContainerExited),
            self._on_event,
        )

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _on_event(self, event: Event) -> None:
        await self.rebuild()

    async def rebuild(self) -> RouteTable:
        """Build a table from the current apps and swap it in; coalesces callers."""
        self._dirty = True
        async with self._lock:
            if not self._dirty:
                return self.current
            self._dirty = False
            apps = self._apps()
            default_domain = self._default_domain()
            entries: list[tuple[str, str, Route]] = []
            for app in apps:
                target = await self._factory.target_for(app)
                prefix = "" if app.path.path == "/" else app.path.path
                route = Route(app.id, str(app.path), prefix, target)
                entries.append((app.path.effective_domain(default_domain), app.path.path, route))
            self._factory.retain(apps)
            table = RouteTable.build(self.current.version + 1, default_domain, entries)
            self.current = table
        log.info("routes_swapped", version=table.version, routes=len(table))
        self._bus.publish(RoutesSwapped(table.version, len(table)))
        return table
