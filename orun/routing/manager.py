"""The route manager: the only writer of the routing table.

It is level-triggered: on any relevant event it rebuilds the whole table from a full
snapshot of the apps (never patching the old one) and swaps it in with one assignment.
Rebuilds are serialised and coalesced, so the latest state always wins.

A rebuild reuses the route of every app that did not change since the last one (apps
are immutable, so "the same object" means "unchanged"): with a thousand apps, a change
to one of them costs a pass of dict lookups over the others, not a thousand new routes.
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
from orun.proxy.auth.service import AuthService
from orun.proxy.stats import ProxyStats
from orun.proxy.target import Route
from orun.routing.table import EMPTY_TABLE, RouteTable
from orun.routing.targets import TargetFactory
from orun.state.model import App

log = structlog.get_logger("orun.routes")


class RouteManager:
    def __init__(self, bus: EventBus, factory: TargetFactory,
                 apps: Callable[[], list[App]], default_domain: Callable[[], str],
                 auth: AuthService | None = None, stats: ProxyStats | None = None) -> None:
        self._bus = bus
        #: every app's traffic counters, handed to its routes (they outlive a route)
        self.stats = stats or ProxyStats()
        self._auth = auth
        self._factory = factory
        self._apps = apps
        self._default_domain = default_domain
        #: the live table; the proxy reads this attribute once per request
        self.current: RouteTable = EMPTY_TABLE
        self._lock = asyncio.Lock()
        self._dirty = False
        #: app id -> (the app, the default domain and default auth, its table entry) of
        #: the last rebuild
        self._entries: dict[str, tuple[App, str, tuple[str, str, Route]]] = {}
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
            # an entry is reused while neither default it depends on changed
            defaults = default_domain + "\0" + (self._auth.default_auth() if self._auth
                                                 else "")
            known = self._entries
            fresh: dict[str, tuple[App, str, tuple[str, str, Route]]] = {}
            entries: list[tuple[str, str, Route]] = []
            changed = len(known) != len(apps)
            for app in apps:
                last = known.get(app.id)
                if last is not None and last[0] is app and last[1] == defaults:
                    entry = last[2]
                else:
                    changed = True
                    entry = await self._entry(app, default_domain)
                fresh[app.id] = (app, defaults, entry)
                entries.append(entry)
            if changed:  # targets of versions no longer routed can go
                self._factory.retain(apps)
                self.stats.retain({entry[2].label for entry in entries})
            self._entries = fresh
            table = RouteTable.build(self.current.version + 1, default_domain, entries)
            self.current = table
        log.info("routes_swapped", version=table.version, routes=len(table))
        self._bus.publish(RoutesSwapped(table.version, len(table)))
        return table

    async def _entry(self, app: App, default_domain: str) -> tuple[str, str, Route]:
        """The app's (effective domain, path, route) in a table."""
        target = await self._factory.target_for(app)
        if self._auth is not None:
            target = self._auth.wrap(target, app.current.settings.auth, app.id)
        prefix = "" if app.path.path == "/" else app.path.path
        label = str(app.path)
        route = Route(app.id, label, prefix, target, self.stats.for_app(label))
        return app.path.effective_domain(default_domain), app.path.path, route
