"""Dev mode: one watcher per dev app follows its source folder and applies each edit.

A dev app (`orun app create --dev SOURCE PATH`) runs from its live source folder: the
image holds the spec's files and the source's dependency files only, and the folder is
bind-mounted on the final stage's WORKDIR (orun/runtime/plan.py; the settings and the
decisions are in orun/runtime/devsettings.py). Each dev app gets a watcher (watchfiles,
so inotify on Linux) while the app exists; edits are debounced for 300 ms and then:

- a dependency file or the source's container file changed: the image is rebuilt and a
  new container replaces the old one once healthy (the old one serves until then, and
  keeps serving when the build or the health check fails);
- otherwise the spec's reload mode applies: `none` (the framework reloads by itself),
  `restart` (the same container restarts once the requests it is serving are done, at
  most a second; new requests wait for it to be healthy again),
  `recreate` (a fresh container from the same image), `rebuild` (no mount: every edit
  rebuilds, for compiled apps);
- an app that is not running does nothing now: its next start uses the edited source.

Every outcome is written to the app's build log (`orun app logs --build APP`), e.g.
`change detected: app.py → restart`. The work runs as the app's runtime operation, so a
request that finds the app out of service during a restart waits for it (the same
single-flight operation a cold start uses), and a later edit waits for it to end.

The watchers are owned by the `Runtime`: started for existing dev apps when it starts,
for new ones on `AppsChanged`, and stopped (their threads too) on delete and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from watchfiles import Change, awatch

from orun.engine.docker import Engine
from orun.errors import OrunError
from orun.events import BuildProgress, ContainerExited
from orun.runtime.app import AppRuntime, Instance, StartError, version_key
from orun.runtime.devsettings import (
    Decision,
    DevSettings,
    WatchFilter,
    decide,
    dev_settings,
    live_source,
    relative,
)
from orun.runtime.health import HealthError
from orun.runtime.hosts import DevHost
from orun.runtime.logs import stamp
from orun.spec import Spec
from orun.state.model import App

log = structlog.get_logger("orun.dev")

#: quiet time that ends a burst of changes (an editor's save, a `git checkout`)
DEBOUNCE_MS = 300
#: a burst that never goes quiet is still handled after this long
MAX_BATCH_MS = 3000
#: retry a watch that failed (source folder gone, watch limit reached) after this long
RETRY_SECS = 5.0
#: container log lines shown when a restarted container is not healthy
FAILURE_LOG_LINES = 40
#: requests already sent to a container get this long to finish before it restarts (a
#: websocket is cut then: its page reconnects)
DRAIN_SECS = 1.0

Say = Callable[[str], None]


@dataclass(slots=True)
class _Watcher:
    app_id: str
    version: object
    source: Path
    #: set to stop the watch thread within one poll step (before the task is cancelled)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class DevMode:
    """The watchers of all dev apps; owned by the runtime."""

    def __init__(self, runtime: DevHost, apps: Callable[[], list[App]],
                 load_spec: Callable[[App], Awaitable[Spec]]) -> None:
        self._runtime = runtime
        self._apps = apps
        self._load_spec = load_spec
        self._watchers: dict[str, _Watcher] = {}
        #: tasks being stopped, and operations started here (cancelled at shutdown)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: bumped on every applied change: part of the runtime's plan cache key
        self._generations: dict[str, int] = {}
        # watchfiles logs every batch at INFO: orun's build log says what matters
        logging.getLogger("watchfiles").setLevel(logging.WARNING)

    # -- ownership --------------------------------------------------------------------

    def generation(self, app_id: str) -> int:
        """Changes seen for the app so far (a new value invalidates its cached plan)."""
        return self._generations.get(app_id, 0)

    def watching(self) -> list[str]:
        """Ids of the dev apps being watched."""
        return sorted(self._watchers)

    def sync(self, *, reconcile: bool = False) -> None:
        """Watch every dev app, and only those: start missing watchers, stop the ones
        whose app is gone (or changed: they start again with its new settings).

        `reconcile` (at server start): an app already serving from an adopted container
        gets its edits made while orun was not watching applied.
        """
        apps = {a.id: a for a in self._apps() if a.kind == "dev"}
        for app_id, w in list(self._watchers.items()):
            app = apps.get(app_id)
            if app is None or w.version != version_key(app) or w.source != _source(app):
                self._stop(self._watchers.pop(app_id))
            if app is None:
                self._generations.pop(app_id, None)
        for app_id, app in apps.items():
            if app_id not in self._watchers:
                w = _Watcher(app_id, version_key(app), _source(app))
                w.task = asyncio.get_running_loop().create_task(
                    self._run(w, reconcile), name=f"orun.dev.watch.{app_id}")
                w.task.add_done_callback(self._done)
                self._watchers[app_id] = w

    def _stop(self, w: _Watcher) -> None:
        w.stop_event.set()  # the watch thread returns within a poll step
        if w.task is not None:
            w.task.cancel()
            self._tasks.add(w.task)
            w.task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop every watcher and operation started here; wait until they are gone."""
        for w in list(self._watchers.values()):
            self._stop(w)
        self._watchers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("dev_watch_failed", task=task.get_name(), error=repr(task.exception()))

    # -- watching ---------------------------------------------------------------------

    async def _run(self, w: _Watcher, reconcile: bool) -> None:
        app = self._runtime.app(w.app_id)
        if app is None:
            return
        try:
            spec = await self._load_spec(app)
            if spec.kind != "container" or spec.container.image_param:
                return  # nothing is built from the source: nothing to follow
            settings = dev_settings(app, spec)
        except OrunError as exc:
            log.warning("dev_watch_not_started", app=str(app.path), error=exc.message)
            return
        log.info("dev_watch_started", app=str(app.path), app_id=app.id,
                 source=str(settings.source), reload=settings.reload)
        pending: dict[str, set[Change]] = {}
        ready = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch(w, settings, pending, ready))
                rt = self._runtime.get(w.app_id)
                startup = reconcile and rt is not None and rt.instance is not None
                while True:
                    if startup:  # serving from an adopted container: check it first
                        batch: set[str] = set()
                    else:
                        await ready.wait()
                        ready.clear()
                        taken = dict(pending)
                        pending.clear()
                        batch = await asyncio.to_thread(_lasting, settings.source, taken)
                        if not batch:
                            continue
                    try:
                        await self._apply(w.app_id, batch, startup=startup)
                    except (OrunError, HealthError) as exc:  # the watcher goes on
                        log.warning("dev_change_failed", app_id=w.app_id, error=str(exc))
                    startup = False
        finally:
            log.info("dev_watch_stopped", app=str(app.path), app_id=app.id)

    async def _watch(self, w: _Watcher, settings: DevSettings,
                     pending: dict[str, set[Change]], ready: asyncio.Event) -> None:
        """Collect changed paths (relative to the source) into `pending`; never raises."""
        root = str(settings.source)
        watch_filter = WatchFilter(settings.source, settings.ignore)
        polling = False
        while not w.stop_event.is_set():
            try:
                async for changes in awatch(
                        settings.source, watch_filter=watch_filter, debounce=MAX_BATCH_MS,
                        step=DEBOUNCE_MS, stop_event=w.stop_event,
                        force_polling=True if polling else None,
                        ignore_permission_denied=True):
                    for change, path in changes:
                        rel = relative(root, path)
                        if rel is not None:
                            pending.setdefault(rel, set()).add(change)
                    ready.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the folder is gone, or the watch limit is reached
                log.warning("dev_watch_error", app_id=w.app_id, source=root, error=str(exc),
                            polling=polling)
                if not polling and "limit" in str(exc).lower():
                    polling = True  # inotify watches exhausted: poll instead
                    continue
                await asyncio.sleep(RETRY_SECS)

    # -- applying ---------------------------------------------------------------------

    def _sayer(self, app_id: str, rt: AppRuntime) -> Say:
        def say(line: str) -> None:
            rt.progress.add(line)
            rt.logs.build.write(line)
            self._runtime.publish(BuildProgress(app_id, line))
        return say

    async def _apply(self, app_id: str, files: set[str], *, startup: bool = False) -> None:
        """Act on one batch of changes; every outcome goes to the build log."""
        app = self._runtime.app(app_id)
        if app is None:
            return
        try:
            settings = dev_settings(app, await self._load_spec(app))
        except OrunError as exc:
            log.warning("dev_change_ignored", app=str(app.path), error=exc.message)
            return
        rt = self._runtime.runtime_for(app)
        busy = rt.operation
        if busy is not None and not busy.done():
            # a start (or the previous change) is in flight: act on what it leaves
            await asyncio.wait([busy])
        running = rt.instance is not None
        if startup:
            decision = Decision(settings.reload if settings.reload in ("restart", "recreate")
                                else "rebuild", ())
        else:
            decision = decide(files, settings, running=running)
        self._generations[app_id] = self.generation(app_id) + 1
        # the source changed: an earlier failure says nothing about it any more
        rt.failed_version = None
        rt.failed_count = 0
        rt.crashes.clear()
        say = self._sayer(app_id, rt)
        what = "orun started: picking up edits made while it was not watching" if startup \
            else "change detected: " + decision.describe()
        if decision.action in ("none", "later"):
            rt.logs.build.write(f"{stamp()} {what}")
            log.info("dev_change", app=rt.label, files=list(decision.files)[:20],
                     action=decision.action)
            return
        rt.progress.reset()
        say(f"{stamp()} {what}")
        log.info("dev_change", app=rt.label, files=list(decision.files)[:20],
                 action=decision.action)
        op: asyncio.Task[Instance] = asyncio.get_running_loop().create_task(
            self._operation(app, rt, decision, settings, say), name=f"orun.dev.{app_id}")
        self._tasks.add(op)
        op.add_done_callback(self._forget)
        rt.operation = op
        await asyncio.wait([op])

    def _forget(self, task: asyncio.Task[Instance]) -> None:
        """An operation ended: its outcome is in the app's state and build log."""
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody else may await it

    async def _operation(self, app: App, rt: AppRuntime, decision: Decision,
                         settings: DevSettings, say: Say) -> Instance:
        began = time.monotonic()
        try:
            engine = await self._runtime.engine()
            inst = rt.instance
            plan = await self._runtime.plan(app, engine)
            if inst is None:
                result = await self._runtime.start_instance(app, rt, say)
            elif plan.identity != inst.identity:
                # the image inputs changed: build, start, health-check, then swap
                result = await self._runtime.start_instance(app, rt, say)
            else:
                action = decision.action
                if action == "rebuild":
                    say(f"image {plan.image} is unchanged: nothing to rebuild")
                    action = settings.reload if settings.reload in ("restart", "recreate") \
                        else "none"
                if action == "restart":
                    result = await self._restart(engine, app, rt, inst, say)
                elif action == "recreate":
                    result = await self._recreate(engine, app, rt, inst, say)
                else:
                    result = inst
            say(f"{stamp()} dev change applied in {time.monotonic() - began:.2f}s")
            return result
        except (OrunError, HealthError) as exc:
            raise self._runtime.record_failure(app, rt, exc, say) from None
        finally:
            rt.progress.finish()

    def _out_of_service(self, app: App, rt: AppRuntime, inst: Instance, why: str) -> None:
        """Take the container out of service: requests now wait for this operation."""
        rt.instance = None
        rt.state = "starting"
        rt.expected_exits.add(inst.container_id)
        self._runtime.publish(ContainerExited(app.id, inst.container_id, why, expected=True))

    async def _drain(self, inst: Instance) -> None:
        """Let the requests already sent to `inst` finish (new ones wait for us)."""
        deadline = time.monotonic() + DRAIN_SECS
        while inst.load.open > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _restart(self, engine: Engine, app: App, rt: AppRuntime, inst: Instance,
                       say: Say) -> Instance:
        """Restart the same container (the source is mounted: it runs the edited code)."""
        say(f"restarting container {inst.name}")
        self._out_of_service(app, rt, inst, "dev mode restart")
        began = time.monotonic()
        await self._drain(inst)
        wall = time.time()
        await engine.restart(inst.container_id, timeout=0)
        self._runtime.follow_logs(engine, rt, inst.container_id, wall)
        info = await engine.inspect(inst.container_id)
        if info is None or not info.running or info.host_port is None:
            raise StartError(f"container {inst.name} did not come back after the restart "
                             f"({info.status if info else 'gone'})",
                             await self._runtime.container_tail(engine, inst.container_id))
        host, port = await engine.reach(info)
        say(f"waiting for {inst.health_path} on {host}:{port} to answer 200")
        await self._runtime.wait_healthy(engine, app, rt, inst.container_id, inst.name,
                                         host, port, inst.health_path)
        new = replace(inst, host=host, host_port=port, started=time.time())
        # the restart's own exit events may still be on their way: they are no crash
        asyncio.get_running_loop().call_later(2.0, rt.expected_exits.discard, inst.container_id)
        self._runtime.serve(rt, new)
        say(f"restarted in {time.monotonic() - began:.2f}s: serving {rt.label} from "
            f"{inst.name}")
        return new

    async def _recreate(self, engine: Engine, app: App, rt: AppRuntime, inst: Instance,
                        say: Say) -> Instance:
        """Replace the container by a fresh one from the same image (same name)."""
        say(f"recreating container {inst.name}")
        self._out_of_service(app, rt, inst, "dev mode recreate")
        await self._drain(inst)
        await engine.remove(inst.container_id)
        return await self._runtime.start_instance(app, rt, say)

def _lasting(root: Path, changes: dict[str, set[Change]]) -> set[str]:
    """The changed paths, less the ones that came and went within the batch (an editor's
    or `sed -i`'s temporary file); blocking: it looks at the disk."""
    return {rel for rel, kinds in changes.items()
            if not (Change.added in kinds and Change.deleted in kinds)
            or (root / rel).exists()}


def _source(app: App) -> Path:
    try:
        return live_source(app)
    except OrunError:
        return Path()


__all__ = ["DevMode"]
