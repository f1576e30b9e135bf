"""Following the engine: container events, resynchronisation and adoption.

Docker's event stream tells within a second that a container died (OpenRun polls and
takes about 90 s). The stream can drop (engine restart, socket trouble): the watcher
reconnects with backoff and then resynchronises from a full container list, because
events missed meanwhile are not replayed. Adoption (reusing running containers of the
current app versions after an orun restart) is part of that resync, so it is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from orun.engine.docker import ContainerInfo, Engine
from orun.engine.labels import LABEL_APP_ID, LABEL_HEALTH, LABEL_IDENTITY, LABEL_PORT, LABEL_VERSION
from orun.errors import EngineError
from orun.runtime.app import OOM_REASON, Instance, exit_reason
from orun.runtime.hosts import WatcherHost

log = structlog.get_logger("orun.runtime")


class EngineWatcher:
    def __init__(self, runtime: WatcherHost) -> None:
        self._runtime = runtime

    async def run(self) -> None:
        """Follow the engine's container events; reconnect with backoff, then resync."""
        delay = 0.5
        while True:
            await self._runtime.watching.wait()
            try:
                engine = await self._runtime.engine()
                await self._resync(engine)
                async for ev in engine.events(self._runtime.labels):
                    delay = 0.5
                    self._on_engine_event(ev.action, ev.container_id, ev.labels, ev.exit_code)
                log.warning("engine_events_ended")
            except EngineError as exc:
                log.warning("engine_events_failed", error=exc.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watcher must survive anything the stream does
                log.error("engine_events_error", error=repr(exc))
            try:
                await (await self._runtime.engine()).ping()
            except EngineError:
                await self._runtime.drop_engine()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _on_engine_event(self, action: str, container_id: str, labels: dict[str, str] | Any,
                         exit_code: int | None) -> None:
        if action not in ("die", "stop", "kill", "oom", "destroy"):
            return
        app_id = str(labels.get(LABEL_APP_ID, ""))
        rt = self._runtime.get(app_id)
        if action == "stop" and rt is not None and rt.state == "crashed" \
                and rt.lost_container == container_id:
            # `docker stop` by someone else: a `die` came first, but it is no crash
            rt.state = "stopped"
            if rt.crashes:
                rt.crashes.pop()
            log.info("container_stopped_outside", app=rt.label)
            return
        current = rt.current() if rt is not None else None
        if rt is None or current is None or current.container_id != container_id:
            return
        if action == "kill":
            return  # a `die` follows when the container actually stops
        if action == "oom":
            reason = f"container {OOM_REASON}"
        elif action == "die":
            reason = f"container {exit_reason(exit_code)}"
        else:
            reason = f"container {action}" + (f" ({exit_reason(exit_code)})"
                                              if exit_code is not None else "")
        self._runtime.lost(rt, reason, exit_code)

    async def _resync(self, engine: Engine) -> None:
        """After (re)connecting: any serving (or paused) container that is no longer
        running (or paused) is lost, and running containers nobody serves from are
        adopted."""
        infos = {i.id: i for i in await engine.list_containers(self._runtime.labels)}
        for rt in self._runtime.runtimes():
            inst = rt.current()
            if inst is None:
                continue
            info = infos.get(inst.container_id)
            if info is None or not (info.running or info.paused):
                self._runtime.lost(rt, "container is gone" if info is None else info.status,
                           info.exit_code if info else None)
        await self.adopt(engine)

    async def adopt(self, engine: Engine) -> None:
        """Reuse running containers of the current app versions (a paused one stays
        paused, for the next request to thaw); stop duplicates and remove containers of
        apps that no longer exist.

        Idempotent, so it runs at start and after every reconnect to the engine: apps
        already serving, or in the middle of a start, are left alone.
        """
        try:
            infos = await engine.list_containers(self._runtime.labels)
        except EngineError as exc:
            log.warning("adopt_failed", error=exc.message)
            return
        by_app: dict[str, list[ContainerInfo]] = {}
        for info in infos:
            by_app.setdefault(str(info.labels.get(LABEL_APP_ID, "")), []).append(info)
        adopted = 0
        for app_id, found in by_app.items():
            app = self._runtime.app(app_id)
            if app is None:
                for info in found:
                    await engine.remove(info.id)
                    log.info("container_removed", reason="app deleted", container=info.name)
                continue
            rt = self._runtime.get(app_id)
            if rt is not None and (rt.current() is not None or (
                    rt.operation is not None and not rt.operation.done())):
                continue
            # a running container of the current version first, else a paused one
            current = sorted((c for c in found if (c.running or c.paused) and c.host_port
                              and c.labels.get(LABEL_VERSION) == str(app.current.version)),
                             key=lambda c: c.paused)
            keep = current[0] if current else None
            for info in found:
                if (info.running or info.paused) and info is not keep:
                    if info.paused:  # thawed first: its processes get their SIGTERM
                        with contextlib.suppress(EngineError):
                            await engine.unpause(info.id)
                    await engine.stop(info.id, timeout=5)
                    log.info("container_stopped", reason="superseded", container=info.name)
            if keep is None or keep.host_port is None:
                continue
            rt = self._runtime.runtime_for(app)
            spec_port = int(keep.labels.get(LABEL_PORT, "0") or 0)
            try:
                host, port = await engine.reach(keep)
            except EngineError as exc:
                log.warning("adopt_failed", container=keep.name, error=exc.message)
                continue
            inst = Instance(container_id=keep.id, name=keep.name, host=host, host_port=port,
                            identity=str(keep.labels.get(LABEL_IDENTITY, "")),
                            version=app.current.version, image=keep.image, port=spec_port,
                            health_path=str(keep.labels.get(LABEL_HEALTH, "/")),
                            started=time.time())
            rt.image, rt.port = keep.image, spec_port
            self._runtime.follow_logs(engine, rt, keep.id, time.time(), adopted=True)
            if keep.paused:
                self._runtime.adopt_paused(app, rt, inst)
            else:
                self._runtime.serve(rt, inst)
            adopted += 1
        if adopted:
            log.info("containers_adopted", adopted=adopted, seen=len(infos))

