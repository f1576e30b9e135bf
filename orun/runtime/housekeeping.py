"""Housekeeping of running apps: periodic health checks, idle pause and idle stop.

One task for all apps. Its tick follows the shortest idle timeout still ahead of any
app (a quarter of it, at most 15 s), so an app with `--conf container.idle_shutdown_secs=2`
stops about 2 s after its last traffic; a newly served app wakes the task up so its
timeout is taken into account at once. Idle apps go through two tiers: paused after
`idle_pause_secs` (when that tier is on, see orun/runtime/pause.py), stopped after
`idle_shutdown_secs`. Paused containers are never health-checked: they cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from orun.events import AppIdled, ContainerUnhealthy, HealthCheckFailed
from orun.runtime.app import AppRuntime, app_setting
from orun.runtime.hosts import HousekeeperHost
from orun.state.model import App

log = structlog.get_logger("orun.runtime")

#: a container healthy for this long has its earlier crashes forgiven
FORGIVE_AFTER_SECS = 60.0


def idle_tick(idle_secs: float) -> float:
    return 15.0 if idle_secs <= 0 else max(0.2, min(idle_secs / 4, 15.0))


def idle_timeout(app: App, default: float) -> float:
    """The app's idle timeout: `--conf container.idle_shutdown_secs`, else the server's;
    dev apps never stop when idle unless their own setting says so (as OpenRun)."""
    return app_setting(app, "container.idle_shutdown_secs", 0 if app.kind == "dev" else default)


def pause_timeout(app: App, default: float, shutdown: float) -> float:
    """The app's pause timeout: `--conf container.idle_pause_secs`, else the server's;
    dev apps never pause unless their own setting says so (as for the idle stop). 0, no
    pause tier, when it is off or would not come before the stop (`shutdown`, 0 = never)."""
    pause = app_setting(app, "container.idle_pause_secs", 0 if app.kind == "dev" else default)
    if pause <= 0 or 0 < shutdown <= pause:
        return 0.0
    return pause


def idle_action(idle_for: float, open_requests: int, *, paused: bool, pause: float,
                shutdown: float) -> str | None:
    """What an app idle for `idle_for` seconds is due for: "stop", "pause" or None.
    `pause` and `shutdown` are its timeouts (0 = never); a request in flight (a stream
    included) keeps it as it is."""
    if open_requests > 0:
        return None
    if shutdown > 0 and idle_for >= shutdown:
        return "stop"
    if not paused and pause > 0 and idle_for >= pause:
        return "pause"
    return None


def next_timeout(*, paused: bool, pause: float, shutdown: float) -> float:
    """The timeout the housekeeper's tick must follow for one app (0 = none): a running
    app's pause, else its stop."""
    if not paused and pause > 0:
        return pause
    return shutdown


class Housekeeper:
    def __init__(self, runtime: HousekeeperHost) -> None:
        self._runtime = runtime
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        last_health = time.monotonic()
        while True:
            cfg = self._runtime.config().app_defaults
            tick = min(cfg.health_check_interval_secs, idle_tick(cfg.idle_shutdown_secs))
            for rt, pause, shutdown in self._idle_candidates():
                tick = min(tick, idle_tick(next_timeout(
                    paused=rt.instance is None, pause=pause, shutdown=shutdown)))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                # a newly served app may need a shorter tick: it wakes us up
                await asyncio.wait_for(self._wake.wait(), max(0.2, tick))
            now = time.monotonic()
            for rt, pause, shutdown in self._idle_candidates():
                if rt.operation is not None and not rt.operation.done():
                    continue
                act = rt.activity
                idle_for = now - act.last
                action = idle_action(idle_for, act.open, paused=rt.instance is None,
                                     pause=pause, shutdown=shutdown)
                if action == "stop":
                    await self._runtime.stop_app(rt, f"idle for {idle_for:.0f}s")
                    self._runtime.publish(AppIdled(rt.app_id, "stop", idle_for))
                elif action == "pause" and rt.pause_refused != act.last:
                    await self._runtime.pause_app(rt, f"idle for {idle_for:.0f}s")
                    if rt.paused is not None:
                        self._runtime.publish(AppIdled(rt.app_id, "pause", idle_for))
            if now - last_health >= cfg.health_check_interval_secs:
                last_health = now
                await self.check_health(cfg.health_timeout_secs, cfg.health_check_failures)

    def _idle_candidates(self) -> list[tuple[AppRuntime, float, float]]:
        """Apps with a container, serving or paused, and their pause and stop timeouts."""
        cfg = self._runtime.config().app_defaults
        found = []
        for rt in self._runtime.runtimes():
            app = self._runtime.app(rt.app_id)
            if app is None or (rt.instance is None and rt.paused is None):
                continue
            shutdown = idle_timeout(app, cfg.idle_shutdown_secs)
            found.append((rt, pause_timeout(app, cfg.idle_pause_secs, shutdown), shutdown))
        return found

    async def check_health(self, timeout: float, failures: int) -> None:
        # a paused container is no instance: it is not probed, so never marked unhealthy
        # a replicated one is probed replica by replica (orun/runtime/swarmtracker.py)
        running = [rt for rt in self._runtime.runtimes() if rt.instance is not None
                   and rt.instance.replicas is None
                   and (rt.operation is None or rt.operation.done())]
        results = await asyncio.gather(*(
            self._runtime.prober.probe(rt.instance.host, rt.instance.host_port,
                                       rt.instance.health_path, timeout)
            for rt in running if rt.instance is not None))
        for rt, problem in zip(running, results, strict=True):
            if problem is None:
                rt.health_failures = 0
                if rt.crashes and rt.instance is not None \
                        and time.time() - rt.instance.started > FORGIVE_AFTER_SECS:
                    rt.crashes.clear()  # healthy for a while: forgive earlier crashes
                continue
            rt.health_failures += 1
            log.warning("health_check_failed", app=rt.label, problem=problem,
                        failures=rt.health_failures)
            if rt.instance is not None:
                self._runtime.publish(HealthCheckFailed(rt.app_id, rt.instance.container_id,
                                                        problem, rt.health_failures))
            if rt.health_failures >= failures and rt.instance is not None:
                inst = rt.instance
                rt.error = f"taken out of service: {problem} ({failures} checks in a row)"
                self._runtime.publish(ContainerUnhealthy(rt.app_id, inst.container_id, problem))
                await self._runtime.stop_app(rt, "unhealthy", state="unhealthy", timeout=1)

