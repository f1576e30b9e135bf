"""The idle pause tier: freeze an idle app's container, thaw it on the next request.

After `app_defaults.idle_pause_secs` without traffic (per app `--conf
container.idle_pause_secs`) the housekeeper pauses the container through the engine
(the cgroup freezer: no CPU, memory and sockets kept); after `idle_shutdown_secs` it is
stopped as before. Pausing moves the container from `AppRuntime.instance` to
`AppRuntime.paused`, so the proxy's hot path sees "not running" and its cold path asks
`Runtime.ensure`, which thaws it: one unpause call and one health probe, tens of
milliseconds where starting a stopped container costs hundreds. A websocket that stayed
open across the pause wakes the app through `Activity.wake` when a frame arrives.

The periodic health check never probes a paused container (it could not answer), a
paused container of the current version is adopted as paused after a restart of orun,
and `app list` shows the state `paused`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import structlog

from orun.errors import EngineError
from orun.runtime.app import AppRuntime, Instance, Paused
from orun.runtime.hosts import PauseHost
from orun.state.model import App

log = structlog.get_logger("orun.runtime")


class ThawError(Exception):
    """The paused container cannot simply serve again (the message says why): the
    caller stops it and starts the app as from stopped."""


class PauseTier:
    """Pauses and thaws the containers of idle apps; owns the engine's pause calls."""

    def __init__(self, host: PauseHost) -> None:
        self._host = host
        self._tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """orun is stopping: a pause call in flight is abandoned (the container is then
        either paused or running, and adopted as it is by the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def pause(self, rt: AppRuntime, reason: str) -> None:
        """Take the app's container out of service and freeze it. Requests that come in
        meanwhile take the cold path, whose thaw waits for this pause call first."""
        inst = rt.instance
        if inst is None:
            return
        paused = self.hold(rt, inst, self._host.dev_generation(rt.app_id))
        task = asyncio.ensure_future(self._freeze(inst.container_id))
        task.set_name(f"orun.pause.{rt.app_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        paused.task = task
        try:
            await asyncio.shield(task)
        except EngineError as exc:
            log.warning("app_pause_failed", app=rt.label, container=inst.name,
                        error=exc.message)
            rt.pause_refused = rt.activity.last
            busy = rt.operation is not None and not rt.operation.done()
            if rt.paused is paused and not busy:  # a thaw in flight sorts it out itself
                # serving again as it was: its idle time goes on (the stop still comes)
                self.release(rt)
                rt.instance, rt.state = inst, "running"
            return
        log.info("app_paused", app=rt.label, container=inst.name, reason=reason)

    async def _freeze(self, container_id: str) -> None:
        engine = await self._host.engine()
        await engine.pause(container_id)

    def hold(self, rt: AppRuntime, inst: Instance, generation: int) -> Paused:
        """Record `inst` as the app's paused container (the engine call is the caller's):
        requests now take the cold path, a websocket frame calls `wake`."""
        paused = Paused(inst, generation)
        rt.instance = None
        rt.paused = paused
        rt.state = "paused"
        rt.activity.wake = functools.partial(self._wake, rt)
        return paused

    def release(self, rt: AppRuntime) -> Paused | None:
        """Detach the paused container from the app (it serves again, is stopped, or
        was lost); returns it."""
        paused, rt.paused = rt.paused, None
        rt.activity.wake = None
        return paused

    def adopt(self, app: App, rt: AppRuntime, inst: Instance) -> None:
        """A paused container of the app's current version, found after a restart of
        orun: it stays paused and the next request thaws it. Its idle time counts from
        now. A dev app's source may have changed while orun was not watching, so its
        first wake restarts it instead."""
        generation = -1 if app.kind == "dev" else self._host.dev_generation(app.id)
        self.hold(rt, inst, generation)
        rt.activity.touch()
        log.info("app_adopted_paused", app=rt.label, container=inst.name)

    def _wake(self, rt: AppRuntime) -> asyncio.Future[Any]:
        """`Activity.wake`: the app's single-flight thaw (or the operation already in
        flight); done at once when there is nothing to wake."""
        app = self._host.app(rt.app_id)
        if app is None:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self._host.ensure(app)

    async def thaw(self, app: App, rt: AppRuntime, paused: Paused) -> Instance:
        """Serve the paused container again: unpause, one health probe, back in
        service. Raises `ThawError` (the container stays attached as paused) when it
        cannot: a dev app's source changed since it was paused, the container is gone
        or stopped, or it does not answer its health check."""
        inst = paused.instance
        began = time.monotonic()
        if paused.task is not None:
            await asyncio.wait([paused.task])  # a failed pause: the unpause says so
        if paused.generation != self._host.dev_generation(app.id):
            raise ThawError("the source changed while it was paused")
        engine = await self._host.engine()
        try:
            thawed = await engine.unpause(inst.container_id)
        except EngineError as exc:
            raise ThawError(exc.message) from None
        if not thawed:  # someone else thawed it, or it stopped while paused
            info = await engine.inspect(inst.container_id)
            if info is None or not info.running:
                raise ThawError(f"container {inst.name} is "
                                f"{info.status if info is not None else 'gone'}")
        timeout = self._host.config().app_defaults.health_timeout_secs
        problem = await self._host.prober.probe(inst.host, inst.host_port, inst.health_path,
                                                timeout)
        if problem is not None:
            raise ThawError(problem)
        if rt.paused is paused:
            self.release(rt)
        self._host.resume(rt, inst)
        log.info("app_thawed", app=rt.label, container=inst.name,
                 ms=round((time.monotonic() - began) * 1000, 1))
        return inst


__all__ = ["PauseTier", "ThawError"]
