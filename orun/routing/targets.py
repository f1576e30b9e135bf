"""Turning an app version into the `Target` that serves it, off the hot path.

Targets are cached per (app id, version, snapshots): building one may scan a snapshot or
load a spec, which happens in a thread, once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from orun.errors import OrunError, SpecError
from orun.proxy.container import ContainerTarget
from orun.proxy.errors import error_response
from orun.proxy.external import ExternalProxyTarget
from orun.proxy.forward import Forwarder, mb_to_bytes
from orun.proxy.static import DiskStaticTarget, FileIndex, StaticTarget, pick_index
from orun.proxy.target import Route, Target
from orun.sources import SnapshotStore, parse_source
from orun.sources.snapshot import local_folder
from orun.spec import Spec, load_spec_dir, resolve_params
from orun.spec.model import SPEC_FILE
from orun.state.model import App

if TYPE_CHECKING:
    from orun.runtime.runtime import Runtime

log = structlog.get_logger("orun.routing")
#: the per-app request body limit (`--conf limits.max_body_mb=N`)
MAX_BODY_KEY = "limits.max_body_mb"

_CacheKey = tuple[str, int, str, str]
#: (spec name, spec snapshot digest)
_SpecKey = tuple[str, str]


def app_max_body(app: App) -> int | None:
    """The app's request body limit in bytes from `--conf limits.max_body_mb=N` (0: no
    limit), or None to use the server's `limits.max_body_mb`."""
    raw = app.current.settings.app_config.get(MAX_BODY_KEY)
    if raw is None:
        return None
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        log.warning("app_setting_ignored", app=app.id, key=MAX_BODY_KEY, value=raw,
                    reason="not a number of MiB (0 or more); the server's limit applies")
        return None
    return mb_to_bytes(mb)


class UnavailableTarget:
    """An app that cannot serve (broken snapshot, unloadable spec)."""

    kind = "unavailable"

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message

    def fast(self, route: Route, rest: str, query: str) -> None:
        return None

    async def serve(self, request: web.BaseRequest, route: Route,
                    rest: str) -> web.StreamResponse:
        return error_response(request, self.status, f"app {route.label}: {self.message}")


class TargetFactory:
    def __init__(self, snapshots: SnapshotStore, forwarder: Forwarder,
                 runtime: Runtime | None = None) -> None:
        self.snapshots = snapshots
        self.forwarder = forwarder
        self.runtime = runtime
        self._cache: dict[_CacheKey, Target] = {}
        #: loaded specs by snapshot: a spec snapshot is immutable (content-addressed),
        #: and a thousand apps share a handful of them
        self._specs: dict[_SpecKey, Spec] = {}

    def _key(self, app: App) -> _CacheKey:
        v = app.current
        return (app.id, v.version, v.source_digest, v.spec_digest)

    async def target_for(self, app: App) -> Target:
        key = self._key(app)
        target = self._cache.get(key)
        if target is None:
            try:
                target = await self._build(app)
            except OrunError as exc:
                target = UnavailableTarget(500, exc.message)
            self._cache[key] = target
        return target

    def kind_of(self, app: App) -> str | None:
        """The kind of the app's current target (static, proxy, container...), if built."""
        target = self._cache.get(self._key(app))
        return target.kind if target is not None else None

    def retain(self, apps: list[App]) -> None:
        """Forget targets (and loaded specs) of versions no longer routed."""
        keep = {self._key(a) for a in apps}
        for key in [k for k in self._cache if k not in keep]:
            del self._cache[key]
        specs = {(a.spec, a.current.spec_digest) for a in apps}
        for spec_key in [k for k in self._specs if k not in specs]:
            del self._specs[spec_key]

    async def load_spec(self, app: App) -> Spec:
        digest = app.current.spec_digest
        snap = self.snapshots.get(digest)
        if snap is None:
            raise SpecError(f"spec snapshot {digest[:12]} is missing")
        spec = self._specs.get((app.spec, digest))
        if spec is None:
            spec = await asyncio.to_thread(load_spec_dir, app.spec, snap.path)
            self._specs[(app.spec, digest)] = spec
        return spec

    async def _build(self, app: App) -> Target:
        spec = await self.load_spec(app)
        params = resolve_params(spec.params, app.current.settings.params)
        if spec.kind == "static" and spec.routing.static_from_disk:
            ref = parse_source(app.source, branch=app.current.settings.branch,
                               commit=app.current.settings.commit)
            if ref.kind != "local":
                raise OrunError(f"spec {spec.name} serves a local folder live; this app's "
                                f"source is {app.source}")
            root = await asyncio.to_thread(local_folder, ref)
            return DiskStaticTarget(root, str(params.get("index", "")),
                                    bool(params.get("single_file", False)),
                                    bool(params.get("dotfiles", False)),
                                    spec.routing.redirect_bare_path)
        if spec.kind == "static":
            source = self.snapshots.get(app.current.source_digest)
            spec_snap = self.snapshots.get(app.current.spec_digest)
            if source is None or spec_snap is None:
                raise OrunError("source snapshot is missing; run app reload")
            # dotfiles and symlinks are left out here, so a request stays one dict lookup
            index = await asyncio.to_thread(FileIndex.scan, source.path, spec_snap.path,
                                            frozenset({SPEC_FILE}),
                                            dotfiles=bool(params.get("dotfiles", False)))
            return StaticTarget(index, pick_index(index, str(params.get("index", ""))),
                                bool(params.get("single_file", False)),
                                spec.routing.redirect_bare_path)
        if spec.kind == "proxy":
            headers = params.get("response_headers") or {}
            return ExternalProxyTarget.create(
                self.forwarder, str(params["url"]), bool(params.get("preserve_host", False)),
                {str(k): str(v) for k, v in headers.items()},
                strip_app=spec.routing.strip_app, max_body=app_max_body(app),
            )
        if self.runtime is None:
            return UnavailableTarget(503, f"spec {app.spec} runs a container and this server "
                                     "has no container runtime")
        backend = self.runtime.backend(app)
        return ContainerTarget(
            self.forwarder, backend, backend.live,
            strip_app=spec.routing.strip_app,
            preserve_host=bool(params.get("preserve_host", False)),
            redirect_bare_path=spec.routing.redirect_bare_path,
            max_body=app_max_body(app),
        )

