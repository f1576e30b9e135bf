"""`orun serve`: the composition root. Wires the parts, owns listeners and signals.

Start order: config -> store -> bus -> forwarder -> routes -> listeners; stop runs the
reverse. Signal handlers only schedule work: SIGHUP a config reload, SIGTERM/SIGINT a
graceful stop (a second one exits at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import time
from pathlib import Path
from time import time as wall_time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from orun import __version__
from orun.api.access import local_identity, token_identity
from orun.api.admin import REMOTE_PREFIX, StartProgress, make_admin_app
from orun.api.gitpush import PushServer
from orun.bus import EventBus
from orun.certs.manager import AcmeManager
from orun.console.context import Console
from orun.console.gate import PREFIX as CONSOLE_PREFIX
from orun.console.pages import make_console_app
from orun.control.apps import AppService
from orun.control.changes import ChangeService
from orun.control.declared import ReconcilePlan, Reconciler
from orun.errors import ConfigError, OrunError
from orun.events import ConfigReloaded, ConfigReloadFinished
from orun.limits import raise_open_files_limit
from orun.log import AccessLog, configure_logging, flush_logging
from orun.metrics.collector import Gauges, MetricsSource
from orun.metrics.endpoint import MetricsEndpoint, listen_problem
from orun.metrics.tally import EventTally
from orun.proxy.auth.oidc import loggable_path
from orun.proxy.auth.service import AuthService
from orun.proxy.challenges import Challenges
from orun.proxy.fast import LINGER_SECS, FastFront
from orun.proxy.forward import Forwarder
from orun.proxy.handler import METRICS_PATH, ProxyHandler
from orun.proxy.listener import Listener
from orun.proxy.request import ProxyRequest, record
from orun.proxy.stats import ProxyStats
from orun.proxy.tls import Certificates
from orun.routing.manager import RouteManager
from orun.routing.targets import TargetFactory
from orun.runtime.app import Instance
from orun.runtime.runtime import Runtime
from orun.sources import SnapshotStore
from orun.spec import SpecCatalog
from orun.state.audit import AuditTrail
from orun.state.config import Config, ConfigFile, read_config_file
from orun.state.home import prepare_home
from orun.state.model import App
from orun.state.secrets import auth_key
from orun.state.store import Store
from orun.state.unixpath import usable_socket_path

log = structlog.get_logger("orun.server")
#: what `app list` shows for a param's value
HIDDEN_VALUE = "(hidden: orun param list)"


def access_logger_class(access: AccessLog | None) -> type[AbstractAccessLogger]:
    """aiohttp's end-of-request hook: counts the request for the metrics
    (orun/proxy/request.py) and, when the access log is on, feeds `access` one tuple
    (the log thread formats and writes it)."""

    class RequestLog(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse,
                time: float) -> None:
            record(request, response)
            if access is not None:
                access.add((wall_time(), request.method, loggable_path(request.raw_path),
                            request.headers.get("Host", ""), response.status,
                            response.body_length, round(time * 1000, 2), request.remote))

    return RequestLog


class Server:
    """The one orun process: proxy listener, admin API, and the parts behind them."""

    def __init__(self, home: Path, config_path: Path | None = None) -> None:
        self.home = home
        self.config_path = config_path or home / "orun.yaml"
        self._config_required = config_path is not None
        self._config_file = ConfigFile(self.config_path, required=self._config_required)
        self.config = Config()
        self.run_dir = home / "run"
        self.socket_path = self.run_dir / "orun.sock"
        self.bus = EventBus()
        self.store = Store(home / "metadata" / "orun.db")
        self.audit = AuditTrail(self.store, lambda: self.config.security.audit_max_rows,
                                self._app_path)
        self.snapshots = SnapshotStore(home / "snapshots")
        self.catalog = SpecCatalog(home / "specs")
        self.apps = AppService(self.store, self.snapshots, self.catalog, self.bus,
                               lambda: self.config, home)
        self.changes = ChangeService(self.apps, lambda: self if self.runtime else None)
        self.declared = Reconciler(self.apps, self.changes, self.config_path.parent)
        self.forwarder: Forwarder | None = None
        #: access records, written by their own thread (started when the log is on)
        self.access = AccessLog()
        #: every app's traffic counters (the proxy bumps them, the metrics read them)
        self.stats = ProxyStats()
        self.tally = EventTally(self.bus, self._app_path)
        self.metrics = MetricsEndpoint(MetricsSource(self.stats, self.tally, self._gauges),
                                       lambda: self.config.metrics,
                                       lambda: self.config.system.default_domain)
        self.routes: RouteManager | None = None
        self.runtime: Runtime | None = None
        self.targets: TargetFactory | None = None
        self.handler: ProxyHandler | None = None
        self.auth: AuthService | None = None
        self._proxy_runner: web.ServerRunner | None = None
        self.front: FastFront | None = None
        self._open_files = 1024
        self.tls_front: FastFront | None = None
        self._http: Listener | None = None
        self._https: Listener | None = None
        self.certs = Certificates(home / "certs")
        #: ACME answers the listeners give while a CA validates a name
        self.challenges = Challenges()
        self.acme = AcmeManager(home, self.certs, self.challenges, self.bus,
                                lambda: self.config, self.apps.all)
        self._admin_runner: web.AppRunner | None = None
        #: the admin API of the HTTPS listener (`security.admin_over_tcp`), never bound
        #: to a socket: the proxy handler passes it the requests under its prefix
        self._remote_admin: web.AppRunner | None = None
        #: the web console (`console.enabled`), served like the remote admin API: the
        #: proxy handler passes it the requests under its prefix
        self.console: Console | None = None
        self._console_runner: web.AppRunner | None = None
        #: orun's SSH server for `git push` deploys (`ssh.port`; off by default)
        self.pushes = PushServer(home, self.apps, self.changes, self, self.store, self.audit,
                                 self.bus, lambda: self.config.ssh)
        self._stop = asyncio.Event()
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._owns_socket = False
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        # before anything reads the home (the config) or writes to it
        tightened = await asyncio.to_thread(prepare_home, self.home, self.run_dir)
        self.config = await asyncio.to_thread(self._config_file.read)
        configure_logging(self.config.log.level, self.config.log.format)
        self._open_files = await asyncio.to_thread(raise_open_files_limit)
        if tightened:
            log.info("home_permissions_tightened", home=str(self.home), paths=tightened,
                     reason="made owner-only (0700 folders, 0600 files)")
        await asyncio.to_thread(self._prepare_dirs)
        await self._claim_socket()
        await self.store.open()
        self.audit.start(self.bus)
        self.tally.start()
        await self.apps.load()
        cfg = self.config
        missing = self.apps.auth_problems(cfg)
        if missing:  # they refuse every request (500) until the config has them again
            log.error("auth_providers_missing", problems=missing)
        self.forwarder = Forwarder(cfg.proxy, cfg.security.trusted_proxies, cfg.limits)
        await self.forwarder.start()
        factory = TargetFactory(self.snapshots, self.forwarder)
        self.runtime = Runtime(
            self.home, self.bus, lambda: self.config, self.apps.all, self.apps.get,
            factory.load_spec, self._source_dir, self._spec_dir, self._app_url)
        factory.runtime = self.runtime
        self.targets = factory
        key = await asyncio.to_thread(auth_key, self.home)
        self.auth = AuthService(self.home, lambda: self.config, self.bus, key)
        self.routes = RouteManager(self.bus, factory, self.apps.all,
                                   lambda: self.config.system.default_domain, self.auth,
                                   self.stats)
        await self.routes.start()
        self.handler = ProxyHandler(self.routes, self.challenges)
        self.handler.none_stats = self.stats.none
        if cfg.log.access_log:
            self.access.start()
        loop = asyncio.get_running_loop()

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any,
                         task: Any) -> web.Request:
            # a web.Request (not the bare BaseRequest): the remote admin API is an
            # aiohttp application and needs one; the proxy reads only the base part and
            # the metrics' attributes of the subclass
            return ProxyRequest(message, payload, protocol, writer, task, loop)

        proxy_server = web.Server(
            self.handler, access_log_class=access_logger_class(
                self.access if cfg.log.access_log else None),
            # always set: the hook also counts requests for the metrics
            access_log=logging.getLogger("orun.access"),
            handler_cancellation=True, request_factory=make_request,
            # the heads of later requests on a connection aiohttp took (the first head
            # of every connection is framed and bounded by FastFront)
            keepalive_timeout=cfg.limits.keepalive_timeout_secs,
            max_line_size=cfg.limits.max_request_line_bytes,
            max_field_size=cfg.limits.max_header_line_bytes,
            max_headers=cfg.limits.max_header_count,
            # a refused request's unread body is read and dropped this long, as on the
            # fast path (aiohttp's 10 s would hold a 413 to a client that asked for
            # `100 Continue`, and so never sends its body, as long)
            lingering_time=LINGER_SECS,
        )
        self._proxy_runner = web.ServerRunner(proxy_server, handle_signals=False,
                                              shutdown_timeout=1.0)
        await self._proxy_runner.setup()
        access = self.access.add if cfg.log.access_log else None
        self.front = FastFront(self.routes, self.forwarder, proxy_server, access=access,
                               limits=cfg.limits, open_files=self._open_files,
                               enabled=cfg.proxy.fast_path)
        self.tls_front = FastFront(self.routes, self.forwarder, proxy_server, scheme="https",
                                   limits=cfg.limits, open_files=self._open_files,
                                   access=access, enabled=cfg.proxy.fast_path)
        for front in (self.front, self.tls_front):
            front.none_stats = self.stats.none
            front.start()
        self.certs.default_domain = cfg.system.default_domain
        await asyncio.to_thread(self.certs.load)
        tls = await asyncio.to_thread(self.certs.listener_context)  # reads the default's files
        self._http = Listener(self.front)
        self._https = Listener(self.tls_front, tls)
        await self.runtime.start()
        await self._http.bind(cfg.http.host, cfg.http.port)
        await self._https.bind(cfg.https.host, cfg.https.port)
        self._apply_redirect(cfg)
        self.acme.start()
        await self._start_admin()
        await self._start_remote_admin()
        await self._start_console(key)
        self._apply_reserved(cfg)
        try:
            await self.metrics.apply(cfg.metrics)
        except OSError as exc:
            raise OrunError(listen_problem(cfg.metrics.listen, exc)) from None
        try:
            await self.pushes.apply(cfg.ssh)
        except OSError as exc:
            raise OrunError(f"ssh: cannot listen on {cfg.ssh.host}:{cfg.ssh.port}: "
                            f"{exc.strerror or exc}") from None
        await asyncio.to_thread(self._write_info)
        self._install_signals()
        async with self._reload_lock:
            plan = await self.declared.plan(self.config.apps)
            if plan.problems:
                # serve what exists; the next reload with a fixed file reconciles
                log.error("apps_reconcile_failed", config=str(self.config_path),
                          problems=plan.problems)
            else:
                await self._apply_declared(plan)
        log.info("orun_started", version=__version__, http=self.http_address,
                 https=self.https_address, home=str(self.home), apps=len(self.apps.all()),
                 config=str(self.config_path))

    def _prepare_dirs(self) -> None:
        for d in (self.home, self.run_dir, self.home / "logs", self.home / "specs"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def _claim_socket(self) -> None:
        """Refuse to start twice on one home; remove a stale socket from a killed orun."""
        path = usable_socket_path(self.socket_path)
        if not await asyncio.to_thread(os.path.exists, path):
            return
        try:
            _reader, writer = await asyncio.open_unix_connection(path)
        except OSError:
            await asyncio.to_thread(os.unlink, path)
            return
        writer.close()
        raise OrunError(f"orun is already running with home {self.home} "
                        f"(socket {self.socket_path} answers)")

    def _apply_redirect(self, cfg: Config) -> None:
        """`http.redirect_to_https`: the HTTP listener answers every request with a 308
        to the HTTPS one (through aiohttp: the fast path is off there)."""
        https_port = self._https.port if self._https is not None else None
        redirect = cfg.http.redirect_to_https and https_port is not None
        if self.handler is not None:
            self.handler.https_redirect = https_port if redirect else None
        if self.front is not None:
            self.front.enabled = cfg.proxy.fast_path and not redirect
        if self.tls_front is not None:
            self.tls_front.enabled = cfg.proxy.fast_path

    async def _start_remote_admin(self) -> None:
        app = make_admin_app(self.apps, self.changes, self, self.store, self.audit,
                             identity=token_identity(self.store, self.audit),
                             prefix=REMOTE_PREFIX)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._remote_admin = runner

    async def _remote_admin_call(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._remote_admin is not None and self._remote_admin.server is not None
        assert isinstance(request, web.Request)
        if not request.secure:  # a token must never cross plain HTTP
            return web.json_response({"message": "the admin API is served over HTTPS only",
                                      "code": 403}, status=403)
        response: web.StreamResponse = \
            await self._remote_admin.server.request_handler(request)
        return response

    async def _start_console(self, key: bytes) -> None:
        assert self.auth is not None
        self.console = Console.build(self.apps, self.changes, self, self.store, self.audit,
                                     self.auth.system, lambda: self.config, key, self.bus)
        runner = web.AppRunner(make_console_app(self.console), handle_signals=False,
                               access_log=None)
        await runner.setup()
        self._console_runner = runner

    async def _console_call(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._console_runner is not None and self._console_runner.server is not None
        assert isinstance(request, web.Request)
        response: web.StreamResponse = \
            await self._console_runner.server.request_handler(request)
        return response

    def _apply_reserved(self, cfg: Config) -> None:
        """The prefixes orun keeps for itself: the admin API (`security.admin_over_tcp`),
        the console (`console.enabled`) and the metrics' path while they are served on
        these listeners (`metrics.enabled` without `metrics.listen`). The proxy serves
        them (the fast path hands them to aiohttp); when off, they are ordinary paths of
        the apps."""
        reserved: list[tuple[str, Any]] = []
        metrics = cfg.metrics.enabled and not cfg.metrics.listen
        if cfg.security.admin_over_tcp:
            reserved.append((REMOTE_PREFIX, self._remote_admin_call))
        if cfg.console.enabled and self._console_runner is not None:
            reserved.append((CONSOLE_PREFIX, self._console_call))
        if self.handler is not None:
            self.handler.reserved = tuple(reserved)
            self.handler.metrics = self.metrics.serve_main if metrics else None
        for front in (self.front, self.tls_front):
            if front is not None:
                front.reserve(*(prefix for prefix, _serve in reserved),
                              METRICS_PATH if metrics else "")

    def _app_path(self, app_id: str) -> str:
        app = self.apps.get(app_id)
        return str(app.path) if app is not None else ""

    async def _start_admin(self) -> None:
        runner = web.AppRunner(make_admin_app(self.apps, self.changes, self, self.store,
                                              self.audit, identity=local_identity()),
                               handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        path = usable_socket_path(self.socket_path)
        old_umask = os.umask(0o077)
        try:
            site = web.UnixSite(runner, path)
            await site.start()
        finally:
            os.umask(old_umask)
        self._owns_socket = True
        await asyncio.to_thread(os.chmod, path, stat.S_IRUSR | stat.S_IWUSR)
        self._admin_runner = runner

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, name: str) -> None:
        if self._stopping:
            log.warning("forced_exit", signal=name)
            flush_logging()
            os._exit(1)
        log.info("shutdown_requested", signal=name)
        self._stopping = True
        self._stop.set()

    def _on_hup(self) -> None:
        self.spawn(self.reload_config(), name="orun.config.reload")

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """Start a task owned by the server (kept referenced, cancelled at stop)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve_forever(self) -> None:
        await self._stop.wait()

    def _in_flight(self) -> int:
        """Requests being answered on either path."""
        return (self.handler.in_flight if self.handler is not None else 0) \
            + sum(front.in_flight for front in (self.front, self.tls_front) if front)

    def request_stop(self) -> None:
        self._stopping = True
        self._stop.set()

    async def stop(self) -> None:
        """Graceful stop: no new connections, let in-flight work finish, then close."""
        timeout = self.config.system.shutdown_timeout_secs
        if self.console is not None:  # its live streams never finish by themselves
            await self.console.close()
        await self.pushes.close()
        for listener in (self._http, self._https):
            if listener is not None:
                listener.close()
        for front in (self.front, self.tls_front):
            if front is not None:
                front.shutdown()
        if self._proxy_runner is not None and self._proxy_runner.server is not None:
            self._proxy_runner.server.pre_shutdown()
        deadline = time.monotonic() + timeout
        while self._in_flight() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._in_flight():
            log.warning("shutdown_timeout", in_flight=self._in_flight())
        for front in (self.front, self.tls_front):
            if front is not None:
                await front.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.auth is not None:
            await self.auth.close()
        if self._proxy_runner is not None:
            await self._proxy_runner.cleanup()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._remote_admin is not None:
            await self._remote_admin.cleanup()
        if self._console_runner is not None:
            await self._console_runner.cleanup()
        await self.metrics.close()
        self.tally.stop()
        await self.acme.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.stop()
        if self.routes is not None:
            await self.routes.stop()
        await self.audit.close()
        await self.bus.close()
        await self.store.close()
        await asyncio.to_thread(self.access.stop)
        if self._owns_socket:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, usable_socket_path(self.socket_path))
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, self.run_dir / "server.json")
        log.info("orun_stopped")

    # -- config reload ---------------------------------------------------------------

    async def reload_config(self) -> dict[str, Any]:
        """Parse -> validate (the `apps:` list included) -> diff -> apply; on any
        problem keep the old config and the old apps."""
        async with self._reload_lock:
            # certificates are files of their own: they swap on every reload (new
            # handshakes only; a broken file keeps what was loaded for its name)
            await asyncio.to_thread(self.certs.load)
            self.acme.poke()  # a new file may serve a name ACME was getting
            try:
                new = await asyncio.to_thread(self._config_file.read)
            except ConfigError as exc:
                log.error("config_reload_failed", config=str(self.config_path),
                          problems=exc.problems)
                return self._reload_rejected(exc.problems)
            old = self.config
            changed = _changed_sections(old, new)
            with self.apps.validating_with(new):
                plan = await self.declared.plan(new.apps)
            problems = self.apps.auth_problems(new) + plan.problems
            if problems:
                log.error("config_reload_failed", config=str(self.config_path),
                          problems=problems)
                return self._reload_rejected(problems)
            if not changed:
                log.info("config_unchanged", config=str(self.config_path))
                self.bus.publish(ConfigReloadFinished(True))
                apps = await self._apply_declared(plan)
                return {"applied": True, "changed": [], "apps": apps}
            for name, listener, listen in (("http", self._http, new.http),
                                           ("https", self._https, new.https)):
                before = old.http if name == "http" else old.https
                if listener is None or (listen.host, listen.port) == (before.host, before.port):
                    continue
                try:
                    await listener.bind(listen.host, listen.port)
                except OSError as exc:
                    problem = f"{name}: cannot listen on {listen.host}:{listen.port}: " \
                              f"{exc.strerror}"
                    log.error("config_reload_failed", problems=[problem])
                    return self._reload_rejected([problem])
            if "metrics" in changed:
                try:
                    await self.metrics.apply(new.metrics)
                except OSError as exc:
                    problem = listen_problem(new.metrics.listen, exc)
                    log.error("config_reload_failed", problems=[problem])
                    return self._reload_rejected([problem])
            if "ssh" in changed:
                try:
                    await self.pushes.apply(new.ssh)
                except OSError as exc:
                    problem = (f"ssh: cannot listen on {new.ssh.host}:{new.ssh.port}: "
                               f"{exc.strerror or exc}")
                    log.error("config_reload_failed", problems=[problem])
                    return self._reload_rejected([problem])
            self.config = new
            if "log" in changed:
                configure_logging(new.log.level, new.log.format)
            if self.forwarder is not None and (
                    "proxy" in changed or "security" in changed or "limits" in changed):
                self.forwarder.reconfigure(new.proxy, new.security.trusted_proxies,
                                           new.limits)
            if "limits" in changed:
                for front in (self.front, self.tls_front):
                    if front is not None:
                        front.configure(new.limits, self._open_files)
            self._apply_redirect(new)
            self._apply_reserved(new)
            await asyncio.to_thread(self._write_info)
            log.info("config_reloaded", changed=list(changed))
            self.bus.publish(ConfigReloaded(new, changed))
            self.bus.publish(ConfigReloadFinished(True, changed))
            # the parts have taken the new config when the reload command returns
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bus.drain(), 5.0)
            apps = await self._apply_declared(plan)
            return {"applied": True, "changed": list(changed), "apps": apps}

    def _reload_rejected(self, problems: list[str]) -> dict[str, Any]:
        self.bus.publish(ConfigReloadFinished(False, problems=tuple(problems)))
        return {"applied": False, "problems": problems}

    async def check_config(self, path: Path) -> dict[str, Any]:
        """What reloading from `path` would change (`orun config check`): nothing is
        applied."""
        try:
            new = await asyncio.to_thread(read_config_file, path, required=True)
        except ConfigError as exc:
            return {"valid": False, "problems": exc.problems}
        changed = [name for name in _changed_sections(self.config, new) if name != "apps"]
        with self.apps.validating_with(new):
            plan = await self.declared.plan(new.apps)
        problems = self.apps.auth_problems(new) + plan.problems
        return {"valid": not problems, "problems": problems, "changed": changed,
                "apps": plan.to_json()}

    async def _apply_declared(self, plan: ReconcilePlan) -> dict[str, Any]:
        if plan.empty:
            return {}
        done = await self.declared.apply(plan)
        await self.sync_routes()
        return done

    # -- what the runtime asks about an app --------------------------------------------

    async def sync_routes(self) -> None:
        """Rebuild the routing table now, so a change is live when the API call returns
        (the bus would do it a moment later)."""
        if self.routes is not None:
            await self.routes.rebuild()

    async def spec_kind(self, app: App) -> str:
        assert self.targets is not None
        return (await self.targets.load_spec(app)).kind

    # -- the runtime side of staged changes (orun.control.changes.Rollout) -------------

    async def prepare(self, app: App) -> object | None:
        """Start a new version of a container app beside the serving one."""
        if self.runtime is None or await self.spec_kind(app) != "container":
            return None
        return await self.runtime.prepare(app)

    def activate(self, app: App, handle: object) -> None:
        assert self.runtime is not None and isinstance(handle, Instance)
        self.runtime.activate(app, handle)

    async def discard(self, app: App, handle: object) -> None:
        assert self.runtime is not None and isinstance(handle, Instance)
        await self.runtime.discard(app, handle)

    def running(self, app_id: str) -> bool:
        return self.runtime is not None and self.runtime.running(app_id)

    def _source_dir(self, app: App) -> Path | None:
        snap = self.snapshots.get(app.current.source_digest)
        return snap.path if snap is not None else None

    def _spec_dir(self, app: App) -> Path:
        snap = self.snapshots.get(app.current.spec_digest)
        if snap is None:
            raise OrunError(f"spec snapshot {app.current.spec_digest[:12]} of app {app.path} "
                            "is missing")
        return snap.path

    def _app_url(self, app: App) -> str:
        """`CL_APP_URL`: the HTTPS URL when that listener is on (as OpenRun does)."""
        urls = self.app_urls(app.path.domain, app.path.path)
        return urls.get("https") or urls.get("http", "")

    # -- views -------------------------------------------------------------------

    @property
    def _http_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def _https_port(self) -> int | None:
        return self._https.port if self._https is not None else None

    @property
    def http_address(self) -> str | None:
        if self._http_port is None:
            return None
        return f"{self.config.http.host}:{self._http_port}"

    @property
    def https_address(self) -> str | None:
        if self._https_port is None:
            return None
        return f"{self.config.https.host}:{self._https_port}"

    def app_urls(self, domain: str, path: str) -> dict[str, str]:
        urls: dict[str, str] = {}
        host = domain or self.config.system.default_domain
        if self._http_port is not None:
            urls["http"] = f"http://{host}:{self._http_port}{path}"
        if self._https_port is not None:
            port = "" if self._https_port == 443 else f":{self._https_port}"
            urls["https"] = f"https://{host}{port}{path}"
        return urls

    def describe(self, app: App) -> dict[str, Any]:
        """An app as `app list` shows it. Param values are hidden (their names stay):
        params carry passwords and tokens, and a listing is pasted into tickets and
        scripts; `orun param list APP` is the one command that prints them."""
        data = app.to_json()
        settings = data["current"]["settings"]
        settings["params"] = dict.fromkeys(settings["params"], HIDDEN_VALUE)
        data["urls"] = self.app_urls(app.path.domain, app.path.path)
        data["staged_changes"] = False
        data["resources"] = None
        if self.runtime is not None and self.targets is not None \
                and self.targets.kind_of(app) == "container":
            data["runtime"] = self.runtime.status(app.id)
            sample = self.runtime.sampler.get(app.id)
            data["resources"] = sample.to_json() if sample is not None else None
        linked = self.apps.get(app.linked_id or "")
        if app.kind == "prod" and linked is not None:
            data["staged_changes"] = linked.current.version != app.current.version
        return data

    async def cert_list(self) -> list[dict[str, Any]]:
        return await self.acme.listing()

    async def cert_revoke(self, domain: str) -> dict[str, Any]:
        return await self.acme.revoke(domain)

    def start_app(self, app: App) -> tuple[asyncio.Future[Any], StartProgress] | None:
        """Bring a container app up now (the admin API's `app create --wait`)."""
        if self.runtime is None:
            return None
        return self.runtime.ensure(app), self.runtime.runtime_for(app).progress

    async def stop_app(self, app: App) -> bool:
        if self.runtime is None:
            return False
        return await self.runtime.halt(app.id, "stopped by an admin")

    async def restart_app(self, app: App) -> None:
        if self.runtime is None or await self.spec_kind(app) != "container":
            raise OrunError(f"app {app.path} does not run a container; nothing to restart")
        await self.runtime.halt(app.id, "restarted by an admin")
        await self.runtime.ensure(app)

    async def flush_logs(self, app_id: str) -> None:
        rt = self.runtime.get(app_id) if self.runtime is not None else None
        if rt is not None:
            await rt.logs.flush()

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__, "pid": os.getpid(), "home": str(self.home),
            "config": str(self.config_path), "http": self.http_address,
            "http_port": self._http_port, "https": self.https_address,
            "https_port": self._https_port, "default_domain": self.config.system.default_domain,
            "started_at": self.started_at,
            "routes": len(self.routes.current) if self.routes else 0,
            "metrics": self.metrics.address,
            "ssh_port": self.pushes.port,
            "ssh_host_key": self.pushes.host_key_fingerprint,
            "engine": self.runtime.engine_status() if self.runtime is not None else None,
        }

    def _gauges(self) -> Gauges:
        """The live figures a scrape shows beside the counters."""
        connections = {}
        for name, front, listener in (("http", self.front, self._http),
                                      ("https", self.tls_front, self._https)):
            if front is not None and listener is not None and listener.port is not None:
                connections[name] = front.open_connections()
        running = paused = 0
        resources: dict[str, tuple[float, int, int]] = {}
        if self.runtime is not None:
            for rt in self.runtime.runtimes():
                running += rt.instance is not None
                paused += rt.paused is not None
                sample = self.runtime.sampler.get(rt.app_id)
                if sample is not None:
                    resources[self._app_path(rt.app_id)] = (
                        sample.stats.cpu_percent, sample.stats.memory_bytes,
                        sample.stats.memory_limit_bytes)
        return Gauges(connections, self._in_flight(), running, paused,
                      len(self.routes.current) if self.routes else 0, self.started_at,
                      resources)

    def _write_info(self) -> None:
        tmp = self.run_dir / "server.json.tmp"
        tmp.write_text(json.dumps(self.info()))
        tmp.replace(self.run_dir / "server.json")


def _changed_sections(old: Config, new: Config) -> tuple[str, ...]:
    return tuple(name for name in Config.__dataclass_fields__
                 if getattr(old, name) != getattr(new, name))


async def run_server(home: Path, config_path: Path | None) -> int:
    server = Server(home, config_path)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    try:
        await server.serve_forever()
    finally:
        await server.stop()
        flush_logging()
    return 0
