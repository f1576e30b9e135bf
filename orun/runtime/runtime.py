"""The runtime: brings container apps up on demand, watches them, stops them when idle.

- `ensure(app)` is single-flight per app: concurrent cold requests share one
  build + create + start + health-wait operation.
- A version change of an app with a running container rolls out in the background:
  the new container must be healthy before it replaces the old one; if it fails, the
  old one keeps serving and the failure is shown.
- The engine's event stream is watched (reconnect with backoff, full resync after):
  a crashed container leaves the routing table within about a second.
- A periodic task health-checks running containers, pauses idle ones (when the pause
  tier is on, orun/runtime/pause.py: the next request thaws them in tens of ms) and
  stops them when idle for longer.
- On start, orun's labelled containers are adopted, so a restart of orun (even after
  `kill -9`) creates no duplicates.

Every outcome is published on the bus; the route manager rebuilds the table from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from orun.build.builder import Builder
from orun.bus import EventBus, Unsubscribe
from orun.engine.docker import ContainerInfo, Engine, resolve_engine_url, swarm_target
from orun.engine.labels import LABEL_APP_ID, LABEL_APP_KEY, LABEL_HOME
from orun.engine.swarmengine import Placement, SwarmEngine
from orun.errors import BuildError, EngineError, OrunError
from orun.events import (
    AppsChanged,
    BuildFinished,
    BuildProgress,
    BuildStarted,
    ColdStart,
    ConfigReloaded,
    ContainerExited,
    ContainerHealthy,
    Event,
)
from orun.runtime.app import (
    CRASH_WINDOW,
    AppRuntime,
    Instance,
    Paused,
    Retirement,
    StartError,
    app_setting,
    config_key,
    exit_reason,
    failed_retry_delay,
    open_requests,
    placement_of,
    version_key,
)
from orun.runtime.backend import AppBackend
from orun.runtime.dev import DevMode
from orun.runtime.health import HealthError, HealthProber
from orun.runtime.housekeeping import Housekeeper
from orun.runtime.logs import AppLogs, read_tail, stamp
from orun.runtime.pause import PauseTier, ThawError
from orun.runtime.plan import ContainerPlan, PlanInputs, plan_container
from orun.runtime.stats import ResourceSampler
from orun.runtime.swarmtracker import ReplicaTracker, pooled
from orun.runtime.watcher import EngineWatcher
from orun.spec import Spec
from orun.state.config import Config
from orun.state.model import App

log = structlog.get_logger("orun.runtime")

#: container log lines appended to a start failure
FAILURE_LOG_LINES = 40


class Runtime:
    def __init__(self, home: Path, bus: EventBus, config: Callable[[], Config],
                 apps: Callable[[], list[App]], get_app: Callable[[str], App | None],
                 load_spec: Callable[[App], Awaitable[Spec]],
                 source_dir: Callable[[App], Path | None], spec_dir: Callable[[App], Path],
                 app_url: Callable[[App], str]) -> None:
        self.home = home
        self._bus = bus
        self._config = config
        self._apps = apps
        self._get_app = get_app
        self._load_spec = load_spec
        self._source_dir = source_dir
        self._spec_dir = spec_dir
        self._app_url = app_url
        cfg = config()
        self.builder = Builder(home, cfg.builder.max_concurrent_builds,
                               cfg.builder.max_build_wait_secs, cfg.builder.build_timeout_secs)
        self.prober = HealthProber()
        self._engine: Engine | None = None
        self._engine_error = ""
        self._engine_checked = 0.0
        self._engine_lock = asyncio.Lock()
        self._runtimes: dict[str, AppRuntime] = {}
        self._plans: dict[str, tuple[Config, tuple[object, ...], ContainerPlan]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Unsubscribe | None = None
        #: set once an engine is connected: the watcher starts following its events
        self.watching = asyncio.Event()
        self.labels = {LABEL_HOME: str(home)}
        self.watcher = EngineWatcher(self)
        self.housekeeper = Housekeeper(self)
        #: the idle pause tier: freezes idle containers, thaws them on the next request
        self.pauses = PauseTier(self)
        #: per-app CPU and memory from the engine, read every few seconds
        self.sampler = ResourceSampler(self)
        #: dev apps' source watchers (orun/runtime/dev.py)
        self.dev = DevMode(self, apps, load_spec)
        #: swarm mode: each serving service's healthy tasks (orun/runtime/swarmtracker.py)
        self.replicas = ReplicaTracker(self)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self.prober.start()
        try:
            engine = await self.engine()
        except EngineError as exc:
            log.warning("container_engine_unavailable", error=exc.message)
        else:
            log.info("container_engine", url=engine.url, kind=engine.kind,
                     version=engine.version)
            await self.watcher.adopt(engine)  # before the listener serves: no start races
        self._spawn(self.watcher.run(), "orun.runtime.events")
        self._spawn(self.housekeeper.run(), "orun.runtime.housekeeping")
        self._spawn(self.sampler.run(), "orun.runtime.stats")
        self._spawn(self.replicas.run(), "orun.runtime.replicas")
        self._unsubscribe = self._bus.subscribe(
            "runtime", (AppsChanged, ConfigReloaded), self._on_event)
        self.dev.sync(reconcile=True)  # watch the dev apps' source folders

    async def stop(self) -> None:
        """Stop watching; containers keep running and are adopted by the next start."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.dev.stop()  # dev apps' source watchers
        await self.pauses.stop()  # pause calls in flight (paused containers stay paused)
        for rt in self._runtimes.values():
            if rt.log_follower is not None:
                rt.log_follower.cancel()
                self._tasks.add(rt.log_follower)
            if rt.operation is not None:
                rt.operation.cancel()
                self._tasks.add(rt.operation)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for rt in self._runtimes.values():
            await rt.logs.flush()
        await self.prober.close()
        if self._engine is not None:
            await self._engine.close()
            self._engine = None

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """Forget a finished task; its failure was reported by whoever awaited it (a start
        that nobody waits for any more must not log "exception was never retrieved")."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, (OrunError, HealthError)):
            log.error("runtime_task_failed", task=task.get_name(), error=repr(exc))

    async def engine(self) -> Engine:
        """The connected engine; (re)connects at most once a second when there is none."""
        if self._engine is not None:
            return self._engine
        async with self._engine_lock:
            connected = self._connected()
            if connected is not None:  # another caller connected while we waited
                return connected
            now = time.monotonic()
            if self._engine_error and now - self._engine_checked < 1.0:
                raise EngineError(self._engine_error)
            self._engine_checked = now
            try:
                cfg = self._config()
                system = cfg.system
                target = swarm_target(system.container_engine)
                if target is not None:
                    self._engine = await SwarmEngine.connect_swarm(
                        target, registry=cfg.builder.registry,
                        ssh_keepalive_secs=system.ssh_keepalive_secs)
                else:
                    self._engine = await Engine.connect(
                        system.container_engine, publish_host=system.remote_publish_host,
                        ssh_keepalive_secs=system.ssh_keepalive_secs)
            except EngineError as exc:
                self._engine_error = exc.message
                raise
            self._engine_error = ""
            self.watching.set()
            return self._engine

    def _connected(self) -> Engine | None:
        return self._engine

    def connected_engine(self) -> Engine | None:
        """The engine if one is connected now (no connection attempt)."""
        return self._engine

    def engine_status(self) -> dict[str, object]:
        """The engine as `GET /_orun/api/server` shows it: where, what, and for a remote
        one the SSH link's state."""
        engine = self._engine
        if engine is None:
            return {"url": self._config().system.container_engine, "connected": False,
                    "error": self._engine_error}
        status: dict[str, object] = {"url": engine.url, "kind": engine.kind,
                                     "version": engine.version, "connected": True}
        if engine.remote is not None:
            remote = engine.remote.describe()
            status.update(remote)
            status["remote"] = True
        if isinstance(engine, SwarmEngine):
            status.update({"mode": "swarm", "registry": engine.registry})
        return status

    def get(self, app_id: str) -> AppRuntime | None:
        return self._runtimes.get(app_id)

    def runtime_for(self, app: App) -> AppRuntime:
        rt = self._runtimes.get(app.id)
        if rt is None:
            rt = AppRuntime(app.id, str(app.path), AppLogs(self.home / "logs" / "apps", app.id))
            self._runtimes[app.id] = rt
        return rt

    # -- bringing an app up ----------------------------------------------------------

    def ensure(self, app: App) -> asyncio.Future[Instance]:
        """The single-flight operation that makes `app` serve; shared by every caller."""
        rt = self.runtime_for(app)
        if rt.operation is not None and not rt.operation.done():
            return rt.operation
        inst = rt.instance
        if inst is not None and inst.version == app.current.version:
            done: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
            done.set_result(inst)
            return done
        paused = rt.paused
        if paused is not None and paused.instance.version == app.current.version:
            # paused by the idle tier: a thaw, not a start (another version starts
            # below, and the paused container then drains like any replaced one)
            rt.operation = self._spawn(self._cold(app, "thaw", self._thaw(app, rt, paused)),
                                       f"orun.thaw.{app.id}")
            return rt.operation
        if rt.state == "failed" and rt.failed_version == version_key(app) \
                and rt.failed_config == config_key(self._config()):
            wait = rt.retry_at - time.monotonic()
            if wait > 0:
                # the same inputs would fail the same way: a client polling a broken app
                # must not rebuild it on every request (only a change, `app reload` or
                # the backoff starts it again)
                again: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
                again.set_exception(StartError(
                    rt.error, rt.error_detail, status=rt.failed_status, retry_after=wait,
                    notice=self._retry_notice(rt, wait)))
                return again
        wait = rt.crash_backoff(time.monotonic())
        if wait > 0:
            err = StartError(
                f"app {rt.label} keeps crashing ({len(rt.crashes)} exits in "
                f"{CRASH_WINDOW / 60:g} minutes); next start in {wait:.0f}s: {rt.error}",
                rt.error_detail, status=503, retry_after=wait)
            failed: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
            failed.set_exception(err)
            return failed
        bring_up = self._bring_up(app, rt)
        if inst is None and paused is None:  # nothing serves: a cold start
            rt.operation = self._spawn(self._cold(app, "start", bring_up),
                                       f"orun.start.{app.id}")
        else:  # a new version rolls out beside the serving one
            rt.operation = self._spawn(bring_up, f"orun.start.{app.id}")
        return rt.operation

    async def _cold(self, app: App, kind: str, operation: Awaitable[Instance]) -> Instance:
        """Run a cold start (or thaw) and publish its outcome and duration."""
        began = time.monotonic()
        try:
            inst = await operation
        except (OrunError, HealthError) as exc:
            message = exc.message if isinstance(exc, OrunError) else str(exc)
            self._bus.publish(ColdStart(app.id, kind, time.monotonic() - began,
                                        message or "failed"))
            raise
        self._bus.publish(ColdStart(app.id, kind, time.monotonic() - began))
        return inst

    async def _thaw(self, app: App, rt: AppRuntime, paused: Paused) -> Instance:
        """Serve the paused container again; one that cannot (see `PauseTier.thaw`) is
        stopped and the app starts as from stopped."""
        try:
            return await self.pauses.thaw(app, rt, paused)
        except ThawError as exc:
            log.info("app_thaw_failed", app=rt.label, container=paused.instance.name,
                     reason=str(exc))
            if rt.paused is paused:
                await self.stop_app(rt, f"cannot thaw: {exc}")
        return await self._bring_up(app, rt)

    async def _bring_up(self, app: App, rt: AppRuntime) -> Instance:
        rt.progress.reset()
        previous_state = rt.state
        await rt.logs.build.restart()

        def say(line: str) -> None:
            rt.progress.add(line)
            rt.logs.build.write(line)
            self._bus.publish(BuildProgress(app.id, line))

        say(f"{stamp()} starting {rt.label} (version {app.current.version})")
        try:
            inst = await self.start_instance(app, rt, say)
        except asyncio.CancelledError:
            rt.state = previous_state if rt.instance or rt.paused else "stopped"
            raise
        except (OrunError, HealthError) as exc:
            rt.progress.finish()
            raise self.record_failure(app, rt, exc, say) from None
        rt.progress.finish()
        rt.failed_version = rt.failed_config = None
        rt.failed_count = 0
        return inst

    def record_failure(self, app: App, rt: AppRuntime, exc: OrunError | HealthError,
                       say: Callable[[str], None]) -> StartError:
        """Remember a failed start (shown to requests, the starting page and `app list`);
        returns it as the StartError to raise."""
        err = StartError.of(exc)
        say(f"error: {err.message}")
        rt.error, rt.error_detail = err.message, err.detail
        rt.state = "running" if rt.instance is not None else "failed"
        rt.failed_status = err.status
        # remember build/start failures (costly to repeat) by their inputs; an absent
        # engine is not
        key, config = version_key(app), config_key(self._config())
        if err.status != 500:
            rt.failed_version = rt.failed_config = None
            rt.failed_count = 0
        else:
            same = rt.failed_version == key and rt.failed_config == config
            rt.failed_count = rt.failed_count + 1 if same else 1
            rt.failed_version, rt.failed_config = key, config
        now = time.monotonic()
        delay = failed_retry_delay(rt.failed_count) if rt.failed_count else 0.0
        rt.retry_at = now + delay
        log.warning("app_start_failed", app=rt.label, error=err.message,
                    failures=rt.failed_count or None, retry_in=round(delay) or None)
        if delay:
            err.notice = self._retry_notice(rt, delay)
        return err

    @staticmethod
    def _retry_notice(rt: AppRuntime, wait: float) -> str:
        """What a client of a failed app is told about the next attempt."""
        at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + wait))
        times = "once" if rt.failed_count == 1 else f"{rt.failed_count} times in a row"
        return (f"these inputs failed to start {times}; requests try again at {at} "
                f"(in {wait:.0f}s), or at once after a change to the app (source, spec, "
                f"params, config) or `orun app reload {rt.label}`")

    async def start_instance(self, app: App, rt: AppRuntime,
                             say: Callable[[str], None]) -> Instance:
        """Bring the app's current version up and serve it (the one that served before
        drains, then stops). Callers run it as the app's single-flight operation."""
        inst = await self._launch(app, rt, say, track=True)
        self.activate(app, inst)
        return inst

    async def _launch(self, app: App, rt: AppRuntime, say: Callable[[str], None], *,
                      track: bool) -> Instance:
        """Build (or pull) the app's current version, start its container and wait until
        it is healthy, without touching the instance that serves now. `track` is for the
        start requests wait on: it shows the state and copies the container's output from
        the first line; a prepared version (`prepare`) does both once activated."""
        engine = await self.engine()
        if rt.stopping is not None and not rt.stopping.done():
            say("waiting for the previous container to stop")
            await asyncio.shield(rt.stopping)
        plan = await self.plan(app, engine)
        if track:
            rt.image, rt.port = plan.image, plan.port
        replicas, constraints = placement_of(app)
        if isinstance(engine, SwarmEngine):  # a new replica count scales the service
            await engine.set_replicas(plan.name, replicas)
        if rt.instance is not None and rt.instance.identity == plan.identity:
            return rt.instance
        reclaimed = await self._reclaim(rt, plan.identity)
        if reclaimed is not None:
            say(f"{reclaimed.name} was still draining: it serves again")
            return reclaimed

        def state(value: str) -> None:
            if track:
                rt.state = value

        async def create() -> str:
            """Build or pull the image if needed and create the container."""
            if plan.build is not None:
                state("building")
                self._bus.publish(BuildStarted(app.id, plan.image))
                began = time.monotonic()
                try:
                    built = await self.builder.ensure_image(engine, plan.build,
                                                            app.id.split("_", 2)[-1], say)
                except BuildError as exc:
                    self._bus.publish(BuildFinished(app.id, plan.image, exc.message,
                                                    time.monotonic() - began))
                    raise
                self._bus.publish(BuildFinished(app.id, plan.image, "",
                                                time.monotonic() - began, built))
            elif not await engine.image_exists(plan.image):
                say(f"image {plan.image} is not present: pulling it")
                try:
                    await engine.pull(plan.image, say)
                except EngineError as exc:
                    raise StartError(
                        f"{exc.message} (image {plan.image} is not present locally; load "
                        "it with `docker load` or make its registry reachable)") from None
            state("starting")
            await self._prepare_mounts(engine, plan, say)
            say(f"creating container {plan.name} (port {plan.port})")
            if isinstance(engine, SwarmEngine):
                engine.place(plan.name, Placement(replicas, constraints))
                say(f"creating service {plan.name}: {replicas} replica(s)"
                    + (f", constraints {', '.join(constraints)}" if constraints else ""))
            elif replicas != 1 or constraints:
                raise StartError(
                    "--conf container.replicas and container.constraints need swarm mode "
                    "(system.container_engine: swarm); this engine runs one container",
                    status=400)
            if engine.remote is not None:
                local = [m.source for m in plan.mounts if m.kind != "volume"]
                if plan.secret_files or local:
                    raise StartError(
                        f"the engine is on another machine ({engine.url}): folders of this "
                        f"machine cannot be mounted ({', '.join(local) or 'cl_secret files'}"
                        "); use named volumes, or a local engine")
            body = plan.create_body(engine.kind, await engine.image_user(plan.image),
                                    engine.publish_ip)
            return await engine.create_container(plan.name, body)

        existing = await engine.inspect(plan.name)
        if existing is None:
            container_id = await create()
        else:
            container_id = existing.id
            state("starting")
            say(f"reusing container {plan.name} ({existing.state})")
        info = existing
        started_at = time.time()
        if existing is not None and existing.paused:
            # the app's paused container is this version's too (a change that kept the
            # container's inputs): thaw it, health-check it below as any start
            await engine.unpause(container_id)
            info = await engine.inspect(container_id)
        elif existing is None or not existing.running:
            try:
                await engine.start(container_id)
            except EngineError as exc:
                if existing is None:
                    raise
                # a stopped container the engine cannot start again (after an engine
                # restart its old task can linger: "task ... already exists"): a new one
                # from the same plan replaces it, instead of failing every request
                say(f"cannot start the existing container ({exc.message}): replacing it")
                log.warning("container_replaced", app=rt.label, container=plan.name,
                            reason=exc.message)
                await engine.remove(container_id)
                container_id = await create()
                await engine.start(container_id)
            if track:
                self.follow_logs(engine, rt, container_id, started_at)
            info = await engine.inspect(container_id)
        if isinstance(engine, SwarmEngine):
            info = await self._first_task(engine, app, container_id, plan.name, say)
        if info is None or info.host_port is None:
            raise StartError(f"container {plan.name} has no published port "
                             f"(state {info.status if info else 'gone'})")
        host, port = await engine.reach(info)
        say(f"waiting for {plan.health_path} on {host}:{port} to answer 200")
        started = time.monotonic()
        await self.wait_healthy(engine, app, rt, container_id, plan.name, host, port,
                                plan.health_path)
        say(f"healthy after {time.monotonic() - started:.2f}s: {plan.name} runs "
            f"{rt.label} version {plan.version}")
        return Instance(container_id=container_id, name=plan.name, host=host, host_port=port,
                        identity=plan.identity, version=plan.version, image=plan.image,
                        port=plan.port, health_path=plan.health_path, started=started_at)

    async def _first_task(self, engine: SwarmEngine, app: App, service_id: str, name: str,
                          say: Callable[[str], None]) -> ContainerInfo | None:
        """Swarm mode: wait (within the app's startup budget) until a task of the service
        runs and publishes its port; the nodes pull the image first."""
        budget = app_setting(app, "container.startup_timeout_secs",
                             self._config().app_defaults.startup_timeout_secs)
        deadline = time.monotonic() + budget
        last = ""
        while True:
            info = await engine.inspect(service_id)
            if info is None:
                raise StartError(f"service {name} was removed while starting")
            if info.running and info.host_port is not None:
                return info
            if info.status != last:
                last = info.status
                say(f"service {name}: {last}")
            if time.monotonic() > deadline:
                raise StartError(f"service {name} has no running task after {budget:g}s "
                                 f"({info.status})")
            await asyncio.sleep(0.25)

    # -- staged changes: prepare beside the serving version, then switch ----------------

    async def prepare(self, app: App) -> Instance:
        """Start `app`'s (uncommitted) version beside the one that serves now and wait
        until it is healthy; `activate` switches to it, `discard` drops it."""
        rt = self.runtime_for(app)
        await rt.logs.build.restart()

        def say(line: str) -> None:
            rt.logs.build.write(line)
            self._bus.publish(BuildProgress(app.id, line))

        say(f"{stamp()} preparing {rt.label} version {app.current.version}")
        try:
            return await self._launch(app, rt, say, track=False)
        except (OrunError, HealthError) as exc:
            err = StartError.of(exc)
            say(f"error: {err.message}")
            raise err from None

    def activate(self, app: App, inst: Instance) -> None:
        """Serve `inst` from now on; the container it replaces drains, then stops."""
        rt = self.runtime_for(app)
        old = rt.instance
        if old is not None and old.container_id == inst.container_id:
            return
        thaw = False
        if old is None and rt.paused is not None:
            paused = self.pauses.release(rt)
            assert paused is not None
            if paused.instance.container_id != inst.container_id:
                old, thaw = paused.instance, True  # drains (thawed) like a serving one
        engine = self._engine
        if engine is not None and rt.log_container != inst.container_id:
            self.follow_logs(engine, rt, inst.container_id, inst.started)
        rt.image, rt.port = inst.image, inst.port
        self.serve(rt, inst)
        if engine is None:
            return
        if old is not None:
            retirement = Retirement(old, thaw=thaw)
            rt.retiring[old.container_id] = retirement
            retirement.task = self._spawn(self._retire(engine, rt, retirement),
                                          f"orun.retire.{old.name}")
        self._spawn(self._cleanup_app(engine, app, keep={inst.container_id}),
                    f"orun.cleanup.{app.id}")

    async def discard(self, app: App, inst: Instance) -> None:
        """Stop and remove a prepared container that will not serve."""
        rt = self.runtime_for(app)
        if rt.instance is not None and rt.instance.container_id == inst.container_id:
            return
        rt.expected_exits.add(inst.container_id)
        with contextlib.suppress(EngineError):
            engine = await self.engine()
            await engine.stop(inst.container_id, timeout=2)
            await engine.remove(inst.container_id)
        log.info("container_discarded", app=rt.label, container=inst.name)

    def running(self, app_id: str) -> bool:
        rt = self._runtimes.get(app_id)
        return rt is not None and rt.instance is not None

    async def plan(self, app: App, engine: Engine) -> ContainerPlan:
        """The app's container plan, computed once per version, config and URL (planning
        reads and hashes the whole build context, which a cold start should not pay)."""
        config, url = self._config(), self._app_url(app)
        key = (app.current.version, app.current.source_digest, app.current.spec_digest,
               url, engine.kind, self.dev.generation(app.id))  # dev: edits of the live source
        cached = self._plans.get(app.id)
        if cached is not None and cached[0] is config and cached[1] == key:
            return cached[2]
        spec = await self._load_spec(app)
        inputs = PlanInputs(app=app, spec=spec, source_dir=self._source_dir(app),
                            spec_dir=self._spec_dir(app), config=config, home=self.home,
                            app_url=url, engine_kind=engine.kind)
        plan = await asyncio.to_thread(plan_container, inputs)
        self._plans[app.id] = (config, key, plan)
        return plan

    def serve(self, rt: AppRuntime, inst: Instance) -> None:
        """Put a container that came up healthy into service and announce it (in swarm
        mode with a replica pool the tracker fills with the service's healthy tasks)."""
        if inst.replicas is None and isinstance(self._engine, SwarmEngine):
            inst = pooled(inst)
        self.resume(rt, inst)
        log.info("app_serving", app=rt.label, container=inst.name, port=inst.host_port)
        self._bus.publish(ContainerHealthy(rt.app_id, inst.container_id, inst.upstream,
                                           inst.version))

    def resume(self, rt: AppRuntime, inst: Instance) -> None:
        """Requests go to `inst` from now on (a thawed container needs no announcement:
        the routing table reads the instance live)."""
        rt.instance = inst
        rt.state = "running"
        rt.error = rt.error_detail = ""
        rt.health_failures = 0
        rt.activity.touch()
        self.housekeeper.wake()

    def dev_generation(self, app_id: str) -> int:
        return self.dev.generation(app_id)

    async def pause_app(self, rt: AppRuntime, reason: str) -> None:
        """Freeze the app's idle container (the idle pause tier; not in swarm mode, where
        an idle app scales to zero instead)."""
        if isinstance(self._engine, SwarmEngine):
            rt.pause_refused = rt.activity.last
            return
        await self.pauses.pause(rt, reason)

    def adopt_paused(self, app: App, rt: AppRuntime, inst: Instance) -> None:
        self.pauses.adopt(app, rt, inst)
        self.housekeeper.wake()

    async def _prepare_mounts(self, engine: Engine, plan: ContainerPlan,
                              say: Callable[[str], None]) -> None:
        labels = {**self.labels, LABEL_APP_ID: plan.app_id}
        for m in plan.mounts:
            if m.kind == "volume" and await engine.ensure_volume(m.source, labels):
                say(f"reusing volume {m.source} for {m.target} (its data is kept)")
        if plan.secret_files:
            await asyncio.to_thread(_write_secret_files, dict(plan.secret_files))

    async def _retire(self, engine: Engine, rt: AppRuntime, retirement: Retirement) -> None:
        """Stop a superseded container once its in-flight requests and websockets have
        finished (at most `app_defaults.drain_timeout_secs`): new requests already go to
        its replacement, so nobody sees the switch."""
        old = retirement.instance
        limit = self._config().app_defaults.drain_timeout_secs
        waited = time.monotonic()
        deadline = waited + limit
        try:
            if retirement.thaw:  # paused when replaced: its websockets may finish now
                retirement.thaw = False
                await self._unpause_quietly(engine, old.container_id)
            while open_requests(old) > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            rt.retiring.pop(old.container_id, None)  # reclaimed, or orun is stopping
            raise
        if open_requests(old) > 0:
            log.warning("drain_timeout", app=rt.label, container=old.name,
                        still_open=open_requests(old), limit=limit)
        retirement.stopping = True
        rt.expected_exits.add(old.container_id)
        try:
            with contextlib.suppress(EngineError):
                await engine.stop(old.container_id, timeout=5)
                await engine.remove(old.container_id)
        finally:
            rt.retiring.pop(old.container_id, None)
        rt.expected_exits.discard(old.container_id)
        log.info("container_retired", app=rt.label, container=old.name,
                 drained_secs=round(time.monotonic() - waited, 2))
        app = self._get_app(rt.app_id)
        if app is not None and rt.instance is not None:
            # its image may be removable only now that no container uses it
            await self._cleanup_app(engine, app, keep={rt.instance.container_id})

    async def _unpause_quietly(self, engine: Engine, container_id: str) -> None:
        """Thaw a container on its way out (a stop then reaches its processes at once,
        and they exit gracefully); the thaw finishes even when the caller is cancelled
        (a reclaimed container must not stay frozen)."""
        async def thaw() -> None:
            with contextlib.suppress(EngineError):
                await engine.unpause(container_id)

        await asyncio.shield(self._spawn(thaw(), f"orun.thaw.{container_id[:12]}"))

    async def _reclaim(self, rt: AppRuntime, identity: str) -> Instance | None:
        """A switch back to a version whose container is still draining takes that
        container back at once; one that is already stopping is waited for first."""
        for retirement in list(rt.retiring.values()):
            if retirement.instance.identity != identity or retirement.task is None:
                continue
            if not retirement.stopping:
                retirement.task.cancel()
                rt.retiring.pop(retirement.instance.container_id, None)
                return retirement.instance
            with contextlib.suppress(Exception):
                await asyncio.shield(retirement.task)
        return None

    async def _cleanup_app(self, engine: Engine, app: App, keep: set[str]) -> None:
        """Remove the app's stopped containers of other identities, and image tags that
        no container or runtime of the app (prod or stage) uses, except the
        `builder.retain_images` newest of those (kept for rollback)."""
        try:
            for info in await engine.list_containers({**self.labels, LABEL_APP_ID: app.id}):
                if info.id not in keep and not info.running and not info.paused:
                    await engine.remove(info.id)
            key = app.id.split("_", 2)[-1]
            in_use = {c.image for c in await engine.list_containers(
                {**self.labels, LABEL_APP_KEY: key})}
            in_use.update(rt.image for rt in self._runtimes.values()
                          if rt.app_id.endswith(key))
            tags = [(image.created, tag)
                    for image in await engine.list_images({**self.labels, LABEL_APP_KEY: key})
                    for tag in image.tags if tag not in in_use]
            tags.sort(reverse=True)
            for _created, tag in tags[self._config().builder.retain_images:]:
                if await engine.remove_image(tag):
                    log.info("image_removed", app=str(app.path), image=tag)
        except EngineError as exc:
            log.warning("cleanup_failed", app=str(app.path), error=exc.message)

    def follow_logs(self, engine: Engine, rt: AppRuntime, container_id: str,
                     since: float, *, adopted: bool = False) -> None:
        if rt.log_follower is not None:
            rt.log_follower.cancel()
        rt.log_container = container_id

        async def follow() -> None:
            what = "adopted (orun restarted)" if adopted else "started"
            rt.logs.container.write(f"{stamp()} ---- container {container_id[:12]} {what}")
            pending = ""
            try:
                async for chunk in engine.logs(container_id, since=since):
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        rt.logs.container.write(line)
            except EngineError as exc:
                rt.logs.container.write(f"(log stream ended: {exc.message})")
            if pending:
                rt.logs.container.write(pending)

        rt.log_follower = self._spawn(follow(), f"orun.logs.{rt.app_id}")

    async def wait_healthy(self, engine: Engine, app: App, rt: AppRuntime, container_id: str,
                           name: str, host: str, host_port: int, health_path: str) -> None:
        """Poll the container's health path until it answers 200 (within the app's
        startup budget); on failure stop it and raise a StartError with its log tail."""

        async def alive() -> str | None:
            now = await engine.inspect(container_id)
            if now is None:
                return f"container {name} was removed"
            if not now.running:
                return (f"container {name} {exit_reason(now.exit_code)} before answering "
                        f"its health check")
            return None

        cfg = self._config().app_defaults
        try:
            await self.prober.wait_healthy(
                host, host_port, health_path, probe_timeout=cfg.health_timeout_secs,
                budget=app_setting(app, "container.startup_timeout_secs",
                                   cfg.startup_timeout_secs), alive=alive)
        except HealthError as exc:
            tail = await self.container_tail(engine, container_id)
            rt.expected_exits.add(container_id)
            with contextlib.suppress(EngineError):
                await engine.stop(container_id, timeout=1)
            raise StartError(f"error waiting for health: {exc}", tail) from None

    async def container_tail(self, engine: Engine, container_id: str) -> str:
        await asyncio.sleep(0.2)
        lines: list[str] = []
        with contextlib.suppress(EngineError):
            text = ""
            async for chunk in engine.logs(container_id, follow=False):
                text += chunk
            lines = text.splitlines()[-FAILURE_LOG_LINES:]
        return "\n".join(lines)

    # -- stopping ------------------------------------------------------------------

    async def stop_app(self, rt: AppRuntime, reason: str, *, state: str = "stopped",
                       timeout: int = 5) -> None:
        """Take the app out of service now and stop its container (a paused one is thawed
        first, so its processes get their SIGTERM); a start that comes in meanwhile
        waits for the stop to finish before it reuses the container."""
        inst = rt.instance
        paused = self.pauses.release(rt) if inst is None else None
        if paused is not None:
            inst = paused.instance
        if inst is None:
            return
        rt.instance = None
        rt.state = state
        rt.expected_exits.add(inst.container_id)
        self._bus.publish(ContainerExited(rt.app_id, inst.container_id, reason, expected=True))
        log.info("app_stopped", app=rt.label, container=inst.name, reason=reason)

        async def stop() -> None:
            try:
                if paused is not None and paused.task is not None:
                    await asyncio.wait([paused.task])  # its pause call first, then the thaw
                engine = await self.engine()
                if paused is not None:
                    await engine.unpause(inst.container_id)
                await engine.stop(inst.container_id, timeout=timeout)
            except EngineError as exc:
                log.warning("app_stop_failed", app=rt.label, error=exc.message)

        rt.stopping = self._spawn(stop(), f"orun.stop.{rt.app_id}")
        await asyncio.shield(rt.stopping)

    async def halt(self, app_id: str, reason: str) -> bool:
        """Stop the app's container now, as an idle stop would (the console's and the
        API's `stop`); the next request starts it again. False: nothing was running."""
        rt = self._runtimes.get(app_id)
        if rt is None or rt.current() is None:
            return False
        await self.stop_app(rt, reason)  # returns when the container has stopped
        return True

    async def teardown(self, app_id: str) -> None:
        """The app was deleted: stop and remove its containers (volumes are kept)."""
        rt = self._runtimes.pop(app_id, None)
        self._plans.pop(app_id, None)
        if rt is not None:
            if rt.operation is not None:
                rt.operation.cancel()
            current = rt.current()
            if current is not None:
                self._bus.publish(ContainerExited(app_id, current.container_id,
                                                  "deleted", expected=True))
                rt.expected_exits.add(current.container_id)
            rt.instance = None
            self.pauses.release(rt)
        try:
            engine = await self.engine()
            for info in await engine.list_containers({**self.labels, LABEL_APP_ID: app_id}):
                await engine.remove(info.id)
                log.info("container_removed", app_id=app_id, container=info.name)
        except EngineError as exc:
            log.warning("teardown_failed", app_id=app_id, error=exc.message)

    # -- events ---------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, ConfigReloaded):
            cfg = event.config
            self.builder.resize(cfg.builder.max_concurrent_builds)
            self.builder.max_wait_secs = cfg.builder.max_build_wait_secs
            self.builder.timeout_secs = cfg.builder.build_timeout_secs
            if isinstance(self._engine, SwarmEngine) \
                    and cfg.builder.registry != self._engine.registry:
                log.info("swarm_registry_changed", new=cfg.builder.registry)
                await self.drop_engine()
            if "system" in event.changed_sections:
                self._engine_error = ""  # try the (maybe new) engine on the next use
                engine = self._engine
                try:
                    url = resolve_engine_url(cfg.system.container_engine)
                except EngineError:
                    url = None
                swarm = swarm_target(cfg.system.container_engine) is not None
                if engine is not None and (url != engine.url or (
                        engine.remote is not None
                        and cfg.system.remote_publish_host != engine.remote.publish_host)
                        or swarm != isinstance(engine, SwarmEngine)):
                    log.info("container_engine_changed", old=engine.url, new=url)
                    await self.drop_engine()
            return
        if not isinstance(event, AppsChanged):
            return
        self.dev.sync()  # start or stop dev apps' source watchers
        for app_id in event.app_ids:
            app = self._get_app(app_id)
            if app is None:
                await self.teardown(app_id)
                continue
            rt = self._runtimes.get(app_id)
            if rt is not None:
                rt.label = str(app.path)
                if rt.instance is not None and rt.instance.version != app.current.version:
                    if not await self._runs_container(app):
                        await self.stop_app(rt, "the app no longer runs a container")
                        continue
                    # Roll out in the background; the old container serves until then.
                    self.ensure(app)

    async def _runs_container(self, app: App) -> bool:
        try:
            return (await self._load_spec(app)).kind == "container"
        except OrunError:
            return True  # a broken spec surfaces as a start error, where it is shown

    def lost(self, rt: AppRuntime, reason: str, exit_code: int | None) -> None:
        """The app's serving (or paused) container stopped (seen in engine events or a
        resync)."""
        inst = rt.instance
        paused = self.pauses.release(rt) if inst is None else None
        if paused is not None:
            inst = paused.instance
        if inst is None:
            return
        expected = inst.container_id in rt.expected_exits
        rt.instance = None
        rt.lost_container = inst.container_id
        if expected:
            rt.expected_exits.discard(inst.container_id)
            rt.state = "stopped"
        else:
            rt.state = "crashed"
            rt.crashes.append(time.monotonic())
            rt.error = f"container {inst.name} stopped unexpectedly: {reason}"
            rt.error_detail = "\n".join(read_tail(rt.logs.container.path, FAILURE_LOG_LINES))
            log.warning("container_crashed", app=rt.label, container=inst.name, reason=reason)
        self._bus.publish(ContainerExited(rt.app_id, inst.container_id, reason, exit_code,
                                          expected))

    async def drop_engine(self) -> None:
        """Forget a connection that stopped answering; the next use reconnects."""
        engine, self._engine = self._engine, None
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.close()

    def publish(self, event: Event) -> None:
        self._bus.publish(event)

    def runtimes(self) -> list[AppRuntime]:
        return list(self._runtimes.values())

    def app(self, app_id: str) -> App | None:
        return self._get_app(app_id)

    def config(self) -> Config:
        return self._config()

    def status(self, app_id: str) -> dict[str, object]:
        rt = self._runtimes.get(app_id)
        if rt is None:
            return {"state": "stopped", "image": "", "port": 0, "upstream": "",
                    "container": "", "version_running": None, "error": "",
                    "requests": 0, "last_request": None}
        data = rt.status()
        data["state"] = _shown_state(rt)
        return data

    def public_status(self, app_id: str) -> dict[str, object]:
        """What anyone may read at the app's `/_orun_app/status`: the state and the last
        error, without container, image or volume names, engine ids or the upstream
        address (`status` has those, for the admin API)."""
        rt = self._runtimes.get(app_id)
        if rt is None:
            return {"state": "stopped", "error": ""}
        return {"state": _shown_state(rt), "error": rt.public_text(rt.error)}

    def request_wait(self) -> float:
        return self._config().app_defaults.request_wait_secs

    def backend(self, app: App) -> AppBackend:
        """`app`'s version as the proxy sees it (the proxy's `Backend` interface)."""
        return AppBackend(self.runtime_for(app), app, ensure=self.ensure,
                          request_wait=self.request_wait, public_status=self.public_status)

    @property
    def engine_error(self) -> str:
        return self._engine_error


def _shown_state(rt: AppRuntime) -> str:
    """The app's state, `updating` while a running app starts its new version."""
    if rt.operation is not None and not rt.operation.done() and rt.state == "running":
        return "updating"
    return rt.state


def _write_secret_files(files: dict[str, str]) -> None:
    """Write rendered secrets for bind mounting.

    The file is readable by all (the container's user is not ours to know), but it lives
    in an owner-only folder under the owner-only home, so no other host user reaches it.
    """
    for path_str, content in files.items():
        path = Path(path_str)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)  # not subject to orun's 077 umask
            f.write(content)
        tmp.replace(path)
