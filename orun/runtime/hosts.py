"""What the runtime's helpers (dev mode, housekeeping, the engine watcher, the pause
tier) need from the `Runtime` that owns them.

Each helper is given the runtime typed as one of these narrow interfaces, never the
`Runtime` class itself: the helpers do not import `runtime.py` (which imports them),
and each interface lists exactly what its helper may call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

from orun.engine.docker import Engine
from orun.errors import OrunError
from orun.events import Event
from orun.runtime.app import AppRuntime, Instance, StartError
from orun.runtime.health import HealthError, HealthProber
from orun.runtime.plan import ContainerPlan
from orun.state.config import Config
from orun.state.model import App


class RuntimeView(Protocol):
    """The app runtimes and the events every helper reads or raises."""

    def app(self, app_id: str) -> App | None: ...

    def get(self, app_id: str) -> AppRuntime | None: ...

    def runtimes(self) -> list[AppRuntime]: ...

    def publish(self, event: Event) -> None: ...


class HousekeeperHost(RuntimeView, Protocol):
    """Periodic health checks and idle stops."""

    @property
    def prober(self) -> HealthProber: ...

    def config(self) -> Config: ...

    async def stop_app(self, rt: AppRuntime, reason: str, *, state: str = "stopped",
                       timeout: int = 5) -> None: ...

    async def pause_app(self, rt: AppRuntime, reason: str) -> None: ...


class ReplicaHost(RuntimeView, Protocol):
    """Swarm mode's replica tracker."""

    def connected_engine(self) -> Engine | None: ...

    @property
    def prober(self) -> HealthProber: ...

    def lost(self, rt: AppRuntime, reason: str, exit_code: int | None) -> None: ...


class PauseHost(RuntimeView, Protocol):
    """Pausing idle containers and thawing them."""

    async def engine(self) -> Engine: ...

    @property
    def prober(self) -> HealthProber: ...

    def config(self) -> Config: ...

    def dev_generation(self, app_id: str) -> int: ...

    def ensure(self, app: App) -> asyncio.Future[Instance]: ...

    def resume(self, rt: AppRuntime, inst: Instance) -> None: ...


class ContainerHost(RuntimeView, Protocol):
    """Putting containers into service and following their output."""

    async def engine(self) -> Engine: ...

    def runtime_for(self, app: App) -> AppRuntime: ...

    def serve(self, rt: AppRuntime, inst: Instance) -> None: ...

    def follow_logs(self, engine: Engine, rt: AppRuntime, container_id: str,
                    since: float, *, adopted: bool = False) -> None: ...


class WatcherHost(ContainerHost, Protocol):
    """The engine's event stream, resyncs and adoption."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def watching(self) -> asyncio.Event: ...

    def lost(self, rt: AppRuntime, reason: str, exit_code: int | None) -> None: ...

    def adopt_paused(self, app: App, rt: AppRuntime, inst: Instance) -> None: ...

    async def drop_engine(self) -> None: ...


class DevHost(ContainerHost, Protocol):
    """Dev mode's restarts, recreates and rebuilds."""

    async def plan(self, app: App, engine: Engine) -> ContainerPlan: ...

    async def start_instance(self, app: App, rt: AppRuntime,
                             say: Callable[[str], None]) -> Instance: ...

    def record_failure(self, app: App, rt: AppRuntime, exc: OrunError | HealthError,
                       say: Callable[[str], None]) -> StartError: ...

    async def wait_healthy(self, engine: Engine, app: App, rt: AppRuntime, container_id: str,
                           name: str, host: str, host_port: int, health_path: str) -> None: ...

    async def container_tail(self, engine: Engine, container_id: str) -> str: ...


__all__ = ["ContainerHost", "DevHost", "HousekeeperHost", "PauseHost", "ReplicaHost",
           "RuntimeView", "WatcherHost"]


class SamplerHost(RuntimeView, Protocol):
    """Reading running containers' CPU and memory."""

    async def engine(self) -> Engine: ...

    def config(self) -> Config: ...
