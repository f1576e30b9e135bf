"""The app service: create, list and delete apps; the registry the routes are built from.

Changes are validated completely (path, overlap, spec, params, source) before anything is
written, then stored in one transaction, then announced on the bus. The in-memory
registry is only replaced after the store has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from orun.bus import EventBus
from orun.errors import AppPathError, OrunError, SpecError
from orun.events import AppsChanged
from orun.proxy.external import parse_upstream_url
from orun.sources import Snapshot, SnapshotStore, SourceRef, parse_source
from orun.spec import Spec, SpecCatalog, resolve_params
from orun.spec.detect import AUTO_SPEC, Detection, detect_spec
from orun.state.authtype import canonical, check_known, parse_auth_type
from orun.state.config import Config
from orun.state.model import App, AppKind, AppSettings, AppVersion, app_id, new_app_key
from orun.state.options import parse_container_options
from orun.state.paths import (
    RESERVED,
    AppPath,
    PathGlob,
    parse_app_path,
    paths_overlap,
    validate_for_create,
)
from orun.state.store import Store
from orun.state.volumes import allowed_mounts, app_run_dir, parse_volumes

log = structlog.get_logger("orun.apps")

STAGE_SUFFIX = "_cl_stage"
_PENDING_CONFIG: ContextVar[Config | None] = ContextVar("orun_pending_config", default=None)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    path: str
    source: str
    spec: str = ""
    params: dict[str, str] = field(default_factory=dict)
    container_args: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    container_volumes: list[str] = field(default_factory=list)
    app_config: dict[str, str] = field(default_factory=dict)
    branch: str | None = None
    commit: str | None = None
    dev: bool = False
    stage_at: str = ""
    approve: bool = False
    dry_run: bool = False
    #: "" (the server default), none, system, oidc:<name> or forward:<name>
    auth: str = ""
    #: "config" for apps from the config file's `apps:` list (see orun.control.declared)
    origin: str = "cli"


def _check_source_kind(spec: Spec, ref: SourceRef) -> None:
    """A spec that serves its source live from disk needs a local folder."""
    if spec.routing.static_from_disk and ref.kind != "local":
        raise SpecError(f"spec {spec.name} serves a folder live from this machine's disk: "
                        f"its source must be a local folder, not {ref.original}")


def _internal(path: str) -> bool:
    return RESERVED in path.rsplit("/", 1)[-1]


def paths_clash(a: str, b: str) -> bool:
    """Path overlap, except that a root app does not swallow internal `_cl_` paths."""
    if (a == "/" and _internal(b)) or (b == "/" and _internal(a)):
        return False
    return paths_overlap(a, b)


class AppService:
    def __init__(self, store: Store, snapshots: SnapshotStore, catalog: SpecCatalog,
                 bus: EventBus, config: Callable[[], Config], home: Path) -> None:
        self._home = home
        self.store = store
        self.snapshots = snapshots
        self._catalog = catalog
        self.bus = bus
        self._config = config
        self._apps: dict[str, App] = {}
        self.lock = asyncio.Lock()

    def config(self) -> Config:
        """The config in force, or the one being validated (see `validating_with`)."""
        return _PENDING_CONFIG.get() or self._config()

    @staticmethod
    @contextlib.contextmanager
    def validating_with(config: Config) -> Iterator[None]:
        """Check changes against a config that is not in force yet (a reload or `config
        check`); task-local, so requests served meanwhile still see the old one."""
        token = _PENDING_CONFIG.set(config)
        try:
            yield
        finally:
            _PENDING_CONFIG.reset(token)

    async def load(self) -> None:
        self._apps = {a.id: a for a in await self.store.load_apps()}

    def all(self) -> list[App]:
        return list(self._apps.values())

    def get(self, app_id_: str) -> App | None:
        return self._apps.get(app_id_)

    def replace(self, apps: list[App]) -> None:
        """Swap in new versions of apps (after the store committed them)."""
        for app in apps:
            self._apps[app.id] = app

    # -- queries -----------------------------------------------------------------

    def match(self, glob: str, *, internal: bool = False) -> list[App]:
        """Main apps matching `glob`, newest first; with `internal`, each followed by its
        linked stage app."""
        pattern = PathGlob.parse(glob, self.config().system.default_domain)
        mains = sorted((a for a in self._apps.values() if a.is_main and pattern.matches(a.path)),
                       key=lambda a: a.created, reverse=True)
        if not internal:
            return mains
        out: list[App] = []
        for app in mains:
            out.append(app)
            linked = self._apps.get(app.linked_id or "")
            if linked is not None:
                out.append(linked)
        return out

    def at(self, text: str) -> App | None:
        """The app (prod, stage or dev) at exactly this `[domain:]path`, if any."""
        default = self.config().system.default_domain
        try:
            path = parse_app_path(text, default)
        except AppPathError:
            return None
        domain = path.effective_domain(default)
        for app in self._apps.values():
            if app.path.path == path.path and app.path.effective_domain(default) == domain:
                return app
        return None

    # -- create ------------------------------------------------------------------

    def _stage_path(self, path: AppPath, stage_at: str) -> AppPath:
        system = self.config().system
        if stage_at == "path":
            # /x -> /x_cl_stage; a root app / -> /_cl_stage (as OpenRun)
            return AppPath(path.domain, (path.path.rstrip("/") or "/") + STAGE_SUFFIX)
        if stage_at == "domain":
            prefix = system.default_stage_domain
            base = path.effective_domain(system.default_domain)
            domain = prefix + base if prefix.endswith(".") else f"{prefix}.{base}"
            return AppPath(domain, path.path)
        if ":" in stage_at or "/" in stage_at:
            raise AppPathError(f'invalid --stage-at {stage_at!r}: use "path", "domain" '
                               "or a domain name")
        return parse_app_path(f"{stage_at}:{path.path}", system.default_domain)

    def _check_free(self, path: AppPath, *, what: str = "App", ignore: set[str]) -> None:
        default = self.config().system.default_domain
        domain = path.effective_domain(default)
        for other in self._apps.values():
            if other.id in ignore or other.path.effective_domain(default) != domain:
                continue
            if paths_clash(other.path.path, path.path):
                if what == "App":
                    raise AppPathError(f"App already exists at {other.path}")
                raise AppPathError(f"{what} overlaps with existing app at {other.path}")

    def _validate_kind(self, spec: Spec, params: dict[str, Any], path: AppPath) -> None:
        if not spec.routing.path_routing and path.path != "/":
            raise AppPathError(
                f"spec {spec.name} apps must be at a domain root, not under a path: "
                f"use a domain such as {path.path.strip('/').replace('/', '-')}.:"
            )
        if spec.kind == "proxy":
            parse_upstream_url(str(params.get("url", "")))

    async def check_settings(self, path: AppPath, settings: AppSettings,
                             source_dir: Path, source_label: str) -> Spec:
        """Everything about an app's settings that can be checked without building it:
        the spec exists and fits the path, params resolve, and container options and
        volumes are allowed by the server's security settings (OpenRun only finds the
        last two at the first request). Returns the spec."""
        self.check_auth(settings.auth)
        spec = await asyncio.to_thread(self._catalog.get, settings.spec)
        params = resolve_params(spec.params, settings.params)
        self._validate_kind(spec, params, path)
        _check_source_kind(spec, parse_source(source_label, branch=settings.branch,
                                              commit=settings.commit))
        if spec.kind == "static" and params.get("single_file") and \
                not (source_dir / str(params.get("index", ""))).is_file():
            raise SpecError(f"index file {params.get('index')!r} not found in the source")
        if spec.kind == "container":
            config = self.config()
            hint = "app_prd_" + "0" * 27
            parse_container_options(settings.container_options,
                                    config.security.allowed_container_args)
            parse_volumes(settings.container_volumes, app_id=hint,
                          allowed_mounts=allowed_mounts(config, self._home),
                          source_dir=source_dir, app_run_dir=app_run_dir(self._home, hint))
            missing = [f for f in spec.container.required_files
                       if not (source_dir / f).exists()]
            if missing:
                raise SpecError(f"spec {spec.name} needs {', '.join(missing)} in the app "
                                f"source ({source_label}); none found")
        return spec

    def check_auth(self, auth: str) -> None:
        """An app's auth setting must name a provider the config has."""
        parsed = parse_auth_type(auth)
        if parsed is None:
            return
        auth_config = self.config().auth
        problem = check_known(parsed, auth_config.oidc, auth_config.forward)
        if problem is not None:
            raise OrunError(f"invalid auth {auth!r}: {problem}")

    def auth_problems(self, config: Config) -> list[str]:
        """Apps whose auth names a provider `config` does not have (a reload must not
        take away a provider that apps use: they would refuse every request)."""
        problems = []
        for app in sorted(self._apps.values(), key=lambda a: str(a.path)):
            try:
                parsed = parse_auth_type(app.current.settings.auth)
            except OrunError as exc:
                problems.append(f"app {app.path}: {exc.message}")
                continue
            if parsed is None:
                continue
            problem = check_known(parsed, config.auth.oidc, config.auth.forward)
            if problem is not None:
                problems.append(f"app {app.path} uses {parsed}: {problem}")
        return problems

    def _detected_spec(self, detection: Detection) -> Spec:
        """The detected spec from the catalogue (blocking: call in a thread)."""
        try:
            return self._catalog.get(detection.spec)
        except SpecError:
            raise SpecError(f"detected spec {detection.spec} ({detection.reason}), but no "
                            f"spec of that name is installed: pass --spec NAME "
                            "(see 'orun spec list')") from None

    async def spec_snapshot(self, name: str) -> str:
        """Snapshot the spec's folder (so a version keeps the spec it was made with)."""
        spec = await asyncio.to_thread(self._catalog.get, name)
        return (await self.snapshots.take(parse_source(str(spec.path)))).digest

    async def create(self, req: CreateRequest, *,
                     ignore: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """Create an app (and its stage app); `ignore` names apps a replacement may
        overlap (they are deleted in the same reconcile)."""
        config = self.config()
        path = parse_app_path(req.path, config.system.default_domain)
        validate_for_create(path)
        if req.dev and req.source.strip() == "-":
            raise OrunError("cannot create dev mode app with no source url")
        ref = parse_source(req.source, branch=req.branch, commit=req.commit)
        detection: Detection | None = None
        source: Snapshot | None = None
        params = dict(req.params)
        if req.spec in ("", AUTO_SPEC):
            if req.source.strip() in ("", "-"):
                raise SpecError("no app spec given and no source to detect one from: pass "
                                "--spec NAME (see 'orun spec list')")
            self._check_free(path, ignore=set(ignore))  # before a slow fetch
            source = await self.snapshots.take(ref)
            detection = await asyncio.to_thread(detect_spec, source.path)
            spec = await asyncio.to_thread(self._detected_spec, detection)
            if detection.app_file and "app_file" in spec.params and "app_file" not in params \
                    and spec.params["app_file"].default != detection.app_file:
                params["app_file"] = detection.app_file
        else:
            spec = await asyncio.to_thread(self._catalog.get, req.spec)
        _check_source_kind(spec, ref)  # before a slow fetch
        stage_at = req.stage_at or config.system.stage_at
        if stage_at == "path" and not spec.routing.path_routing:
            if req.stage_at:
                raise AppPathError(f"spec {spec.name} apps only work at a domain root, so "
                                   "their stage app does too: use --stage-at domain")
            stage_at = "domain"  # the server default cannot apply to this spec
        stage_path = None if req.dev else self._stage_path(path, stage_at)
        self._check_free(path, ignore=set(ignore))
        if stage_path is not None:
            self._check_free(stage_path, what="stage app", ignore=set(ignore))
        if req.dev and ref.kind != "local":
            raise OrunError("dev mode apps need a local source directory")
        settings = AppSettings(
            spec=spec.name, params=params, container_args=dict(req.container_args),
            container_options=dict(req.container_options),
            container_volumes=list(req.container_volumes), app_config=dict(req.app_config),
            branch=req.branch, commit=req.commit, auth=canonical(req.auth),
        )
        self.check_auth(settings.auth)  # before a slow fetch
        resolve_params(spec.params, params)  # before a slow fetch
        if source is None:
            source = await self.snapshots.take(ref)
        await self.check_settings(path, settings, source.path, req.source)
        spec_digest = await self.spec_snapshot(spec.name)
        now = time.time()
        version = AppVersion(
            version=0 if req.dev else 1, source_digest=source.digest,
            spec_digest=spec_digest, settings=settings, git_commit=source.git_commit,
            git_message=source.git_message, git_branch=source.git_branch, created=now,
        )
        key = new_app_key()
        kind: AppKind = "dev" if req.dev else "prod"
        main = App(id=app_id(kind, key), path=path, kind=kind, source=req.source,
                   stage_at=stage_at, linked_id=None, current=version, created=now, updated=now,
                   origin=req.origin)
        apps = [main]
        if stage_path is not None:
            stage = App(id=app_id("stage", key), path=stage_path, kind="stage",
                        source=req.source, stage_at=stage_at, linked_id=main.id,
                        current=version, created=now, updated=now, origin=req.origin)
            main = replace(main, linked_id=stage.id)
            apps = [main, stage]
        result = {"app": main.to_json(), "stage": apps[1].to_json() if len(apps) > 1 else None,
                  "dry_run": req.dry_run,
                  "detected": detection.to_json() if detection is not None else None}
        if req.dry_run:
            return result
        async with self.lock:
            # Re-check: another create may have taken the path while we fetched.
            self._check_free(path, ignore=set(ignore))
            if stage_path is not None:
                self._check_free(stage_path, what="stage app", ignore=set(ignore))
            await self.store.save(apps, new_versions=True)
            for app in apps:
                self._apps[app.id] = app
        log.info("app_created", app=str(path), id=main.id, spec=spec.name)
        self.bus.publish(AppsChanged(tuple(a.id for a in apps), "create"))
        return result

    # -- delete ------------------------------------------------------------------

    async def delete(self, glob: str, *, dry_run: bool) -> list[App]:
        mains = self.match(glob)
        if not mains:
            raise OrunError(f"no apps matched {glob}", status=404)
        doomed = [a for m in mains for a in (m, self._apps.get(m.linked_id or "")) if a]
        if dry_run:
            return mains
        async with self.lock:
            await self.store.delete(a.id for a in doomed)
            for app in doomed:
                self._apps.pop(app.id, None)
        log.info("apps_deleted", apps=[str(a.path) for a in mains])
        self.bus.publish(AppsChanged(tuple(a.id for a in doomed), "delete"))
        return mains

