"""Staged changes: reload, promote, param and app updates, version switches.

Every change makes a new *version* of the stage app (the prod app only moves with
`--promote` or `app promote`), so production never sees an untested change. One shape
serves every operation:

1. compute the candidate apps (new versions) for each matched app, validating inputs;
2. bring candidates up *before* anything is committed: a reload always starts the
   stage, a new prod version is always started (prod never moves to a version that did
   not come up healthy), and any other app that is running now starts its new version
   beside the old one, so every switch is verified and has no downtime;
3. commit the candidates in one store transaction, switch the prepared containers into
   service (the old ones drain, then stop) and announce the change on the bus.

A failure in step 2 discards what was started. With `verify`, one failure reverts the
whole operation; without it, each app (stage and prod together) commits or fails alone.
Versions are numbered per app pair: the stage counts up, and prod takes the number of
the stage version it was promoted from, so "PROD*" is simply "numbers differ".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from orun.errors import NotFoundError, OrunError, SpecError
from orun.events import AppsChanged
from orun.sources import parse_source
from orun.sources.ref import is_git_source
from orun.state.authtype import canonical
from orun.state.model import App, AppSettings, AppVersion

if TYPE_CHECKING:
    from orun.control.apps import AppService

log = structlog.get_logger("orun.changes")

SNAPSHOT_GRACE_SECS = 600.0


class Rollout(Protocol):
    """What the change service needs from the runtime side (implemented by the server)."""

    async def prepare(self, app: App) -> object | None:
        """Start `app`'s current version beside whatever serves now; None if there is
        nothing to start (not a container app). Raises OrunError when it cannot."""

    def activate(self, app: App, handle: object) -> None:
        """Put a prepared version into service (the old container drains and stops)."""

    async def discard(self, app: App, handle: object) -> None:
        """Stop a prepared version that will not be committed."""

    def running(self, app_id: str) -> bool:
        """Whether the app serves from a container now."""


@dataclass(slots=True)
class Outcome:
    """What an operation did, per app; the API returns it as JSON."""

    committed: list[App] = field(default_factory=list)
    failed: list[tuple[App, OrunError]] = field(default_factory=list)
    skipped: list[App] = field(default_factory=list)
    dry_run: bool = False
    #: the user-facing (prod or dev) path of each committed app group
    main_paths: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": [a.to_json() for a in self.committed if a.kind == "stage"],
            "main": [a.to_json() for a in self.committed if a.kind != "stage"],
            "skipped": [a.to_json() for a in self.skipped],
            "failed": [{"app_path": str(a.path), "message": e.message, "detail": e.detail}
                       for a, e in self.failed],
            "dry_run": self.dry_run,
            "main_paths": self.main_paths,
        }


def _delete_or_set(current: dict[str, str], updates: dict[str, str]) -> dict[str, str]:
    """Apply `key=value` updates where the value `-` deletes the key."""
    out = dict(current)
    for key, value in updates.items():
        if value == "-":
            out.pop(key, None)
        else:
            out[key] = value
    return out


class ChangeService:
    def __init__(self, apps: AppService, rollout: Callable[[], Rollout | None]) -> None:
        self._apps = apps
        self._rollout = rollout
        self._locks: collections.defaultdict[str, asyncio.Lock] = \
            collections.defaultdict(asyncio.Lock)

    # -- helpers -------------------------------------------------------------------

    def _pair(self, main: App) -> tuple[App, App | None]:
        """(the app that takes new versions, the prod app) for a matched main app: the
        stage and prod of a prod app, or the dev app alone."""
        stage = self._apps.get(main.linked_id or "")
        if stage is None:
            return main, None
        return stage, main

    async def _next_version(self, main: App) -> int:
        """One past every version the app pair has stored or runs now."""
        numbers = [main.current.version]
        for app_id in filter(None, (main.id, main.linked_id)):
            numbers += [v.version for v in await self._apps.store.versions(app_id)]
        return max(numbers) + 1

    async def _new_version(self, main: App, base: AppVersion, now: float,
                           **changes: Any) -> AppVersion:
        number = 0 if main.kind == "dev" else await self._next_version(main)
        return replace(base, version=number, created=now, **changes)

    def _mains(self, glob: str) -> list[App]:
        mains = self._apps.match(glob)
        if not mains:
            raise NotFoundError(f"no apps matched {glob}")
        return mains

    @contextlib.asynccontextmanager
    async def _exclusive(self, mains: list[App]) -> AsyncIterator[None]:
        """One change at a time per app: a second reload of an app waits for the first
        (both would otherwise take the same version number). Locks are taken in id order,
        so operations over overlapping globs cannot deadlock."""
        async with contextlib.AsyncExitStack() as stack:
            for app_id in sorted({m.id for m in mains}):
                await stack.enter_async_context(self._locks[app_id])
            yield

    # -- the public operations (each holds its apps' locks) -------------------------------

    async def reload(self, glob: str, **options: Any) -> Outcome:
        """See `_reload`."""
        async with self._exclusive(self._mains(glob)):
            return await self._reload(glob, **options)

    async def promote(self, glob: str, *, dry_run: bool = False) -> Outcome:
        """See `_promote`."""
        async with self._exclusive(self._mains(glob)):
            return await self._promote(glob, dry_run=dry_run)

    async def update_settings(self, glob: str, change: Callable[..., Awaitable[AppSettings]],
                              **options: Any) -> Outcome:
        """See `_update_settings`."""
        async with self._exclusive(self._mains(glob)):
            return await self._update_settings(glob, change, **options)

    async def switch(self, app: App, target: str, *,
                     dry_run: bool = False) -> tuple[int, Outcome]:
        """See `_switch`."""
        main = self._apps.get(app.linked_id or "") if app.kind == "stage" else app
        async with self._exclusive([main or app]):
            fresh = self._apps.get(app.id)
            if fresh is None:
                raise NotFoundError(f"app {app.path} was deleted")
            return await self._switch(fresh, target, dry_run=dry_run)

    # -- the common commit path ----------------------------------------------------------

    async def apply(self, groups: list[list[App]], *, start: Callable[[App], bool],
                    verify: bool, dry_run: bool, reason: str,
                    describe_error: Callable[[App, OrunError], OrunError]) -> Outcome:
        """Bring up, then commit, each group of candidate apps (see the module doc)."""
        outcome = Outcome(dry_run=dry_run)
        if dry_run:
            outcome.committed = [a for g in groups for a in g]
            outcome.main_paths = [self._main_path(g) for g in groups]
            return outcome
        rollout = self._rollout()
        prepared: list[tuple[App, object]] = []
        committed_groups: list[list[App]] = []
        for group in groups:
            mine: list[tuple[App, object]] = []
            try:
                for candidate in group:
                    if rollout is not None and start(candidate):
                        handle = await rollout.prepare(candidate)
                        if handle is not None:
                            mine.append((candidate, handle))
            except OrunError as exc:
                await self._discard(rollout, mine)
                failed = candidate
                if verify:
                    await self._discard(rollout, prepared)
                    err = OrunError(f"verify failed for app {failed.path}: {exc.message}. "
                                    "All changes have been reverted", status=exc.status)
                    err.detail = exc.detail
                    log.warning("verify_failed", app=str(failed.path), error=exc.message)
                    raise err from exc
                outcome.failed.append((failed, describe_error(failed, exc)))
                continue
            prepared += mine
            committed_groups.append(group)
        async with self._apps.lock:
            # an app deleted while its new version was starting stays deleted
            current = [a for g in committed_groups for a in g if self._apps.get(a.id)]
            if current:
                await self._apps.store.save(current, new_versions=True)
                self._apps.replace(current)
        for app, handle in prepared:
            if self._apps.get(app.id) is not None and rollout is not None:
                rollout.activate(app, handle)
            elif rollout is not None:
                await rollout.discard(app, handle)
        outcome.committed = current
        outcome.main_paths = [self._main_path(g) for g in committed_groups
                              if any(self._apps.get(a.id) for a in g)]
        if current:
            log.info("apps_changed", reason=reason, apps=[str(a.path) for a in current])
            self._apps.bus.publish(AppsChanged(tuple(a.id for a in current), reason))
            await self._retain(current)
        return outcome

    def _main_path(self, group: list[App]) -> str:
        app = group[0]
        main = self._apps.get(app.linked_id or "") if app.kind == "stage" else app
        return str((main or app).path)

    @staticmethod
    async def _discard(rollout: Rollout | None, handles: list[tuple[App, object]]) -> None:
        if rollout is None:
            return
        for app, handle in handles:
            await rollout.discard(app, handle)
        handles.clear()

    async def _retain(self, apps: Iterable[App]) -> None:
        """Forget versions beyond `system.retain_versions` and the snapshots only they
        used (after a grace period, so a create in progress keeps its snapshot)."""
        keep_count = self._apps.config().system.retain_versions + 1
        for app in apps:
            versions = sorted((v.version for v in await self._apps.store.versions(app.id)),
                              reverse=True)
            keep = set(versions[:keep_count]) | {app.current.version}
            if app.previous_version is not None:
                keep.add(app.previous_version)
            await self._apps.store.prune_versions(app.id, keep)
        referenced = await self._apps.store.referenced_digests()
        removed = await self._apps.snapshots.prune(referenced,
                                                   grace_seconds=SNAPSHOT_GRACE_SECS)
        if removed:
            log.info("snapshots_pruned", count=removed)

    # -- reload ----------------------------------------------------------------------------

    async def _reload(self, glob: str, *, promote: bool = False, verify: bool = False,
                      force: bool = False, branch: str = "", commit: str = "",
                      dry_run: bool = False) -> Outcome:
        """Fetch each matching app's source again into a new stage version (and prod with
        `promote`). A git app whose commit did not move is skipped unless `force`."""
        now = time.time()
        groups: list[list[App]] = []
        skipped: list[App] = []
        for main in self._mains(glob):
            target, prod = self._pair(main)
            settings = target.current.settings
            if branch or commit:
                settings = replace(settings, branch=branch or settings.branch,
                                   commit=commit or None)
            ref = parse_source(main.source, branch=settings.branch, commit=settings.commit)
            moved = settings != target.current.settings
            if is_git_source(main.source) and not force and not moved \
                    and target.current.git_commit:
                head = await self._apps.snapshots.remote_commit(ref)
                if head == target.current.git_commit:
                    skipped.append(target)
                    continue
            source = await self._apps.snapshots.take(ref)
            version = await self._new_version(
                main, target.current, now, settings=settings, source_digest=source.digest,
                git_commit=source.git_commit, git_message=source.git_message,
                git_branch=source.git_branch)
            group = [target.with_version(version, now)]
            if promote and prod is not None:
                group.append(prod.with_version(version, now))
            groups.append(group)

        def error(app: App, exc: OrunError) -> OrunError:
            err = OrunError(f"error reloading app {app.path}: {exc.message}", status=exc.status)
            err.detail = exc.detail
            return err

        outcome = await self.apply(groups, start=lambda _a: True, verify=verify,
                                   dry_run=dry_run, reason="reload", describe_error=error)
        outcome.skipped = skipped
        return outcome

    # -- promote ---------------------------------------------------------------------------

    async def _promote(self, glob: str, *, dry_run: bool = False) -> Outcome:
        """Move each matching prod app to its stage version (all staged changes)."""
        now = time.time()
        groups = []
        skipped = []
        for main in self._mains(glob):
            stage, prod = self._pair(main)
            if prod is None:
                continue  # dev apps have no stage
            if stage.current == prod.current:
                skipped.append(prod)
                continue
            groups.append([prod.with_version(stage.current, now)])
        outcome = await self.apply(groups, start=self._must_start, verify=False,
                                   dry_run=dry_run, reason="promote",
                                   describe_error=self._update_error)
        outcome.skipped = skipped
        return outcome

    def _must_start(self, app: App) -> bool:
        """Which candidates are brought up before a commit: a new prod version always
        (production only moves to a version that came up healthy, even when it is scaled
        to zero now: the idle stop puts it back to sleep later), any other app only if
        it is running (it switches without downtime; otherwise its next request starts
        the new version)."""
        if app.kind == "prod":
            return True
        rollout = self._rollout()
        return rollout is not None and rollout.running(app.id)

    @staticmethod
    def _update_error(app: App, exc: OrunError) -> OrunError:
        err = OrunError(f"error updating app {app.path}: {exc.message}", status=exc.status)
        err.detail = exc.detail
        return err

    # -- settings updates (params, spec, container options...) ----------------------------

    async def _update_settings(
            self, glob: str, change: Callable[[App, AppSettings], Awaitable[AppSettings]], *,
            promote: bool = False, dry_run: bool = False, reason: str = "update",
            spec_digest: Callable[[AppSettings], Awaitable[str | None]] | None = None,
    ) -> Outcome:
        """A new stage version of each matching app with `change` applied to its settings
        (prod too with `promote`). `change` validates and raises OrunError."""
        now = time.time()
        groups = []
        for main in self._mains(glob):
            target, prod = self._pair(main)
            settings = await change(main, target.current.settings)
            extra: dict[str, Any] = {}
            if spec_digest is not None:
                digest = await spec_digest(settings)
                if digest:
                    extra["spec_digest"] = digest
            version = await self._new_version(main, target.current, now, settings=settings,
                                              **extra)
            group = [target.with_version(version, now)]
            if promote and prod is not None:
                group.append(prod.with_version(version, now))
            groups.append(group)
        return await self.apply(groups, start=self._must_start, verify=False, dry_run=dry_run,
                                reason=reason, describe_error=self._update_error)

    # -- versions ----------------------------------------------------------------------------

    async def versions(self, app: App) -> list[AppVersion]:
        return await self._apps.store.versions(app.id)

    async def _switch(self, app: App, target: str, *,
                      dry_run: bool = False) -> tuple[int, Outcome]:
        """Move one app (prod, stage or dev) to a stored version: `previous`, `next`, a
        number, or `revert` (the version it ran before its last change)."""
        versions = {v.version: v for v in await self.versions(app)}
        numbers = sorted(versions)
        current = app.current.version
        wanted: int | None
        if target == "previous":
            wanted = max((n for n in numbers if n < current), default=None)
            if wanted is None:
                raise NotFoundError("no previous version found")
        elif target == "next":
            wanted = min((n for n in numbers if n > current), default=None)
            if wanted is None:
                raise NotFoundError("no next version found")
        elif target == "revert":
            wanted = app.previous_version
            if wanted is None:
                raise NotFoundError(f"app {app.path} has no earlier version to revert to")
        else:
            try:
                wanted = int(target)
            except ValueError:
                raise OrunError(f"invalid version {target!r}: use previous, next or a "
                                "version number") from None
        if wanted not in versions:
            kept = ", ".join(str(n) for n in numbers) or "none"
            raise NotFoundError(f"version {wanted} of app {app.path} not found (kept "
                                f"versions: {kept})")
        if wanted == current:
            raise OrunError(f"app {app.path} is already at version {wanted}")
        candidate = app.with_version(versions[wanted], time.time())
        snapshots = self._apps.snapshots
        for digest in (candidate.current.source_digest, candidate.current.spec_digest):
            if await asyncio.to_thread(snapshots.get, digest) is None:
                raise SpecError(f"version {wanted} of app {app.path} cannot be restored: its "
                                f"snapshot {digest[:12]} is gone")
        outcome = await self.apply([[candidate]], start=self._must_start, verify=False,
                                   dry_run=dry_run, reason="version",
                                   describe_error=self._update_error)
        if outcome.failed:
            raise outcome.failed[0][1]
        return current, outcome

    # -- `param update` and `app update KIND ...` ---------------------------------------------

    async def update(self, kind: str, values: list[str], glob: str, *, promote: bool = False,
                     dry_run: bool = False) -> Outcome:
        """One settings change (validated against each app) as a new stage version."""
        edit = settings_edit(kind, values)
        snapshots = self._apps.snapshots

        async def change(main: App, settings: AppSettings) -> AppSettings:
            new = edit(settings)
            snap = await asyncio.to_thread(snapshots.get, main.current.source_digest)
            if snap is None:
                raise OrunError(f"the source snapshot of app {main.path} is missing; "
                                f"run `orun app reload {main.path}` first")
            await self._apps.check_settings(main.path, new, snap.path, main.source)
            return new

        async def spec_digest(settings: AppSettings) -> str | None:
            return await self._apps.spec_snapshot(settings.spec) if kind == "spec" else None

        return await self.update_settings(glob, change, promote=promote, dry_run=dry_run,
                                          reason=f"update {kind}", spec_digest=spec_digest)


UPDATE_KINDS = {
    "param": "param", "spec": "spec",
    "copt": "container_options", "container-option": "container_options",
    "carg": "container_args", "container-arg": "container_args",
    "cvol": "container_volumes", "container-volumes": "container_volumes",
    "conf": "app_config", "app-config": "app_config",
    "auth": "auth",
}


def _key_values(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OrunError(f"invalid {what} {item}, need key=value")
        out[key.strip()] = value
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def settings_edit(kind: str, values: list[str]) -> Callable[[AppSettings], AppSettings]:
    """The settings change `app update KIND VALUES...` (or `param update`) describes;
    `-` as a value deletes a key (`cvol` replaces the whole list)."""
    field_name = UPDATE_KINDS.get(kind)
    if field_name is None:
        raise OrunError(f"unknown update {kind!r}: use one of spec, copt, carg, cvol, conf, "
                        "auth "
                        "(or param update)")
    if field_name == "spec":
        if len(values) != 1 or not values[0].strip() or values[0].strip() == "-":
            raise OrunError("app update spec needs one spec name (see 'orun spec list')")
        name = values[0].strip()
        return lambda s: replace(s, spec=name)
    if field_name == "auth":
        if len(values) != 1:
            raise OrunError("requires two arguments: <auth type> <appPathGlob>")
        auth = canonical(values[0])
        return lambda s: replace(s, auth=auth)
    if field_name == "param":
        if len(values) != 2 or not values[0].strip():
            raise OrunError("requires three arguments: <name> <value|-> <appPathGlob>")
        pname, pvalue = values[0].strip(), _unquote(values[1])
        return lambda s: replace(s, params=_delete_or_set(s.params, {pname: pvalue}))
    if field_name == "container_volumes":
        if any(v.startswith("--") for v in values):
            raise OrunError("container volume values cannot start with --")
        volumes = [v for v in values if v != "-"]
        return lambda s: replace(s, container_volumes=volumes)
    if not values:
        raise OrunError("requires at least two arguments: key=value [key=value ...] "
                        "<appPathGlob>")
    pairs = _key_values(values, field_name)

    def edit(s: AppSettings) -> AppSettings:
        changes: dict[str, Any] = {field_name: _delete_or_set(getattr(s, field_name), pairs)}
        return replace(s, **changes)

    return edit
