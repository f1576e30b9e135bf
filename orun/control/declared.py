"""Declarative apps: make the apps from the config's `apps:` list exist exactly as written.

A reconcile runs at start and on every config reload (SIGHUP, `orun config reload`):

- an entry with no app at its path is created;
- an entry whose app differs gets a new version (staged, or promoted too when the entry
  says `promote: true`); a new branch or commit fetches the source again;
- an app that came from the file (origin "config") and is no longer listed is deleted.
  Apps created from the CLI are never updated or deleted, and an entry may not take
  their path.

Planning validates every entry (paths, overlaps, spec, params, container options and
volumes, the source itself) before anything changes, so an invalid entry rejects the
whole reload and the old state keeps serving. `plan` is also what `orun config check`
reports against a running server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from orun.control.apps import AppService, CreateRequest, paths_clash
from orun.control.changes import ChangeService
from orun.errors import OrunError
from orun.sources.ref import is_git_source
from orun.state.authtype import canonical
from orun.state.config import DeclaredApp
from orun.state.model import App, AppSettings
from orun.state.paths import AppPath, PathIndex, parse_app_path

log = structlog.get_logger("orun.declared")


def _text(value: Any) -> str:
    """A YAML scalar as the string a `--param k=v` would have given."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _texts(values: dict[str, Any]) -> dict[str, str]:
    return {k: _text(v) for k, v in values.items()}


def desired_settings(entry: DeclaredApp) -> AppSettings:
    return AppSettings(
        spec=entry.spec, params=_texts(entry.params), container_args=_texts(entry.cargs),
        container_options=_texts(entry.copts), container_volumes=list(entry.cvols),
        app_config=_texts(entry.conf), branch=entry.branch, commit=entry.commit,
        auth=canonical(entry.auth))


def resolve_source(source: str, base_dir: Path) -> str:
    """A relative local source is relative to the config file's folder."""
    if source == "-" or is_git_source(source):
        return source
    return str((base_dir / Path(source).expanduser()).resolve())


@dataclass(slots=True)
class Update:
    app: App
    entry: DeclaredApp
    settings: AppSettings
    what: list[str]
    refetch: bool
    promote: bool


@dataclass(slots=True)
class ReconcilePlan:
    creates: list[CreateRequest] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[App] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    def to_json(self) -> dict[str, Any]:
        return {
            "create": [c.path for c in self.creates],
            "update": [{"path": str(u.app.path), "changes": u.what, "promote": u.promote}
                       for u in self.updates],
            "delete": [str(a.path) for a in self.deletes],
            "problems": self.problems,
        }


class Reconciler:
    def __init__(self, apps: AppService, changes: ChangeService, base_dir: Path) -> None:
        self._apps = apps
        self._changes = changes
        #: the config file's folder (relative local sources start there)
        self.base_dir = base_dir

    async def plan(self, entries: list[DeclaredApp]) -> ReconcilePlan:
        """What a reconcile to `entries` would do, every entry validated; problems are
        collected (`apps[i] (path): message`) instead of raised."""
        plan = ReconcilePlan()
        default = self._apps.config().system.default_domain
        declared: dict[str, App] = {
            self._key(a.path, default): a for a in self._apps.all()
            if a.origin == "config" and a.is_main}
        # the filesystem work of every entry at once, in a thread (not on the loop)
        sources = await asyncio.to_thread(
            lambda: [resolve_source(e.source, self.base_dir) for e in entries])
        seen: dict[str, int] = {}
        # earlier entries by path: the overlap check below stays linear in the entries
        wanted_paths: PathIndex[tuple[int, AppPath]] = PathIndex()
        for index, (entry, source) in enumerate(zip(entries, sources, strict=True)):
            where = f"apps[{index}] ({entry.path})"
            try:
                path = parse_app_path(entry.path, default)
            except OrunError as exc:
                plan.problems.append(f"{where}: {exc.message}")
                continue
            key = self._key(path, default)
            if key in seen:
                plan.problems.append(f"{where}: the same path as apps[{seen[key]}]")
                continue
            seen[key] = index
            domain = path.effective_domain(default)
            for other_index, other in wanted_paths.overlapping(domain, path.path):
                if _overlap(path, other, default):
                    plan.problems.append(f"{where}: overlaps apps[{other_index}] "
                                         f"({other})")
            wanted_paths.add(domain, path.path, (index, path))
            try:
                current = declared.get(key)
                if current is None:
                    plan.creates.append(await self._check_create(entry, source))
                elif self._identity_changed(current, entry, source):
                    # source, dev or staging place changed: a different app
                    plan.deletes.append(current)
                    plan.creates.append(await self._check_create(entry, source,
                                                                 replacing=current))
                else:
                    update = await self._check_update(current, entry)
                    if update is not None:
                        plan.updates.append(update)
            except OrunError as exc:
                plan.problems.append(f"{where}: {exc.message}")
        for key, app in declared.items():
            if key not in seen:
                plan.deletes.append(app)
        return plan

    async def apply(self, plan: ReconcilePlan) -> dict[str, Any]:
        """Carry out a plan without problems; returns what was done."""
        done: dict[str, list[str]] = {"created": [], "updated": [], "deleted": [],
                                      "failed": []}
        for app in plan.deletes:
            await self._apps.delete(str(app.path), dry_run=False)
            done["deleted"].append(str(app.path))
        for req in plan.creates:
            try:
                await self._apps.create(req)
                done["created"].append(req.path)
            except OrunError as exc:
                log.error("declared_app_failed", path=req.path, error=exc.message)
                done["failed"].append(f"{req.path}: {exc.message}")
        for update in plan.updates:
            glob = str(update.app.path)
            try:
                await self._apply_update(update)
                done["updated"].append(glob)
            except OrunError as exc:
                log.error("declared_app_failed", path=glob, error=exc.message)
                done["failed"].append(f"{glob}: {exc.message}")
        if any(done.values()):
            log.info("apps_reconciled", **done)
        return done

    async def _apply_update(self, update: Update) -> None:
        """One changed entry: its settings as a new version (a new branch or commit is
        fetched too), or only a promote of what is staged."""
        glob = str(update.app.path)
        if update.what == ["promote"]:
            outcome = await self._changes.promote(glob)
        else:
            wanted = update.settings

            async def change(_main: App, _current: AppSettings) -> AppSettings:
                return wanted

            async def spec_digest(new: AppSettings) -> str | None:
                return await self._apps.spec_snapshot(new.spec) if "spec" in update.what \
                    else None

            outcome = await self._changes.update_settings(
                glob, change, promote=update.promote, reason="config",
                spec_digest=spec_digest)
            if update.refetch and not outcome.failed:
                outcome = await self._changes.reload(glob, promote=update.promote,
                                                     force=True)
        if outcome.failed:
            raise outcome.failed[0][1]

    # -- checks ------------------------------------------------------------------------

    @staticmethod
    def _key(path: AppPath, default: str) -> str:
        return f"{path.effective_domain(default)}:{path.path}"

    @staticmethod
    def _identity_changed(app: App, entry: DeclaredApp, source: str) -> bool:
        """`source`: the entry's, resolved (`resolve_source`)."""
        moved_stage = bool(entry.stage_at) and app.kind != "dev" \
            and app.stage_at != entry.stage_at
        return (app.source != source
                or (app.kind == "dev") != entry.dev or moved_stage)

    async def _check_create(self, entry: DeclaredApp, source: str, *,
                            replacing: App | None = None) -> CreateRequest:
        settings = desired_settings(entry)
        req = CreateRequest(
            path=entry.path, source=source,
            spec=entry.spec, params=settings.params,
            container_args=settings.container_args,
            container_options=settings.container_options,
            container_volumes=settings.container_volumes, app_config=settings.app_config,
            branch=entry.branch, commit=entry.commit, dev=entry.dev, stage_at=entry.stage_at,
            auth=settings.auth, origin="config")
        ignore = set() if replacing is None else {replacing.id, replacing.linked_id or ""}
        await self._apps.create(replace(req, dry_run=True), ignore=ignore)
        return req

    async def _check_update(self, app: App, entry: DeclaredApp) -> Update | None:
        stage = self._apps.get(app.linked_id or "")
        target = stage or app
        settings = desired_settings(entry)
        current = target.current.settings
        what = [name for name in ("spec", "params", "container_args", "container_options",
                                  "container_volumes", "app_config", "branch", "commit",
                                  "auth")
                if getattr(current, name) != getattr(settings, name)]
        promote = entry.promote and stage is not None
        if not what:
            if promote and stage is not None and stage.current != app.current:
                return Update(app, entry, settings, ["promote"], False, True)
            return None
        snap = await asyncio.to_thread(self._apps.snapshots.get, target.current.source_digest)
        if snap is None:
            raise OrunError(f"the source snapshot of {app.path} is missing")
        await self._apps.check_settings(app.path, settings, snap.path, app.source)
        refetch = ("branch" in what or "commit" in what) and is_git_source(app.source)
        return Update(app, entry, settings, what, refetch, promote)


def _overlap(a: AppPath, b: AppPath, default: str) -> bool:
    return a.effective_domain(default) == b.effective_domain(default) \
        and paths_clash(a.path, b.path)
