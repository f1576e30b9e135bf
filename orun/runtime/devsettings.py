"""Dev mode (`app create --dev`): the settings of a dev app and what an edit leads to.

Pure logic, shared by the planner (what goes into the image, where the source is
mounted) and the watcher (orun/runtime/dev.py: what to do about a change). A dev app's
settings come from its spec's `dev:` section (orun/spec/model.py `DevSpec`), overridden
per app with `--conf dev.reload=...`, `--conf dev.dir=/path` and `--conf dev.ignore=a,b`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchfiles import Change, DefaultFilter

from orun.errors import ContainerConfigError
from orun.sources.ref import parse_source
from orun.spec import Spec
from orun.state.model import App

Reload = Literal["none", "restart", "recreate", "rebuild"]
RELOAD_MODES: tuple[Reload, ...] = ("none", "restart", "recreate", "rebuild")
#: what a batch of changes leads to: a reload mode, or "later" (the app is not running:
#: its next start uses the edited source anyway)
Action = Literal["none", "restart", "recreate", "rebuild", "later"]

#: source files that define the image whatever the spec lists: an edit rebuilds it
BUILD_FILES = ("Containerfile", "Dockerfile", ".dockerignore")
#: folders the watcher never looks into (on top of watchfiles' defaults: .git,
#: __pycache__, .venv, node_modules, .mypy_cache, .pytest_cache, .tox, .idea, ...)
IGNORE_DIRS = (*DefaultFilter.ignore_dirs, "venv", ".ruff_cache", ".nox", ".direnv",
               ".eggs", ".cache", ".web")
#: names the watcher skips: editor droppings (watchfiles' defaults: *.pyc, *.swp, *~,
#: .#*) and data an app writes into its own folder (a database, a log), which must not
#: restart the app that wrote it
IGNORE_PATTERNS = ("*.log", "*.db", "*.db-journal", "*.db-wal", "*.db-shm", "*.sqlite",
                   "*.sqlite3", "*.sqlite-journal", "*.sqlite3-journal", "*.tmp", "*.egg-info",
                   ".sesskey")


@dataclass(frozen=True, slots=True)
class DevSettings:
    """How one dev app follows its source folder."""

    #: the live source folder (never a snapshot)
    source: Path
    reload: Reload
    #: source paths built into the image (a change rebuilds it); relative, "/"-separated
    dependency_files: tuple[str, ...]
    #: where the source is mounted; "" means the final stage's WORKDIR
    dir: str
    #: extra glob patterns (names or relative paths) the watcher skips
    ignore: tuple[str, ...]
    #: the spec's container file name when it sets one (it defines the image too)
    containerfile: str = ""

    @property
    def mounted(self) -> bool:
        """False for `rebuild`: the image is built from the whole source, as in prod."""
        return self.reload != "rebuild"

    @property
    def image_files(self) -> tuple[str, ...]:
        """The source paths the image is built from (when the source is mounted)."""
        extra = (self.containerfile,) if self.containerfile else ()
        return tuple(dict.fromkeys((*self.dependency_files, *BUILD_FILES, *extra)))


def live_source(app: App) -> Path:
    """The dev app's source folder as the user named it (an absolute local path)."""
    ref = parse_source(app.source)
    if ref.kind != "local":
        raise ContainerConfigError(f"dev app {app.path}: source {app.source} is not a local "
                                   "folder")
    return Path(ref.location)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def dev_settings(app: App, spec: Spec) -> DevSettings:
    """The dev settings of `app`: its spec's `dev:` section and its `--conf dev.*`."""
    conf = app.current.settings.app_config
    reload = conf.get("dev.reload", spec.dev.reload)
    if reload not in RELOAD_MODES:
        raise ContainerConfigError(f"--conf dev.reload={reload}: must be one of "
                                   + ", ".join(RELOAD_MODES))
    mount_dir = conf.get("dev.dir", spec.dev.dir)
    if mount_dir and not mount_dir.startswith("/"):
        raise ContainerConfigError(f"--conf dev.dir={mount_dir}: must be an absolute path")
    return DevSettings(
        source=live_source(app), reload=reload,
        dependency_files=tuple(spec.dev.dependency_files), dir=mount_dir,
        ignore=(*spec.dev.ignore, *_csv(conf.get("dev.ignore", ""))),
        containerfile=spec.container.dockerfile)


# -- deciding ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What a batch of changed files leads to, and why (for the build log)."""

    action: Action
    #: the changed files, relative to the source folder, sorted
    files: tuple[str, ...]
    #: the changed files that are built into the image (they force a rebuild)
    image_files: tuple[str, ...] = ()

    def describe(self) -> str:
        """`app.py → restart`, `requirements.txt → rebuild`, `a.py, b.py (+3 more) → ...`"""
        shown = list(self.image_files or self.files)[:3]
        more = len(self.files) - len(shown)
        names = ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")
        what = {"none": "nothing to do (the app reloads by itself)",
                "restart": "restart", "recreate": "recreate", "rebuild": "rebuild",
                "later": "picked up at the next start (the app is not running)"}[self.action]
        return f"{names or 'the source'} → {what}"


def is_image_file(rel: str, settings: DevSettings) -> bool:
    return rel in settings.image_files


def decide(changed: Iterable[str], settings: DevSettings, *, running: bool) -> Decision:
    """What to do about `changed` (paths relative to the source folder).

    A changed dependency or container file rebuilds the image; otherwise the reload
    mode says (`rebuild` mode rebuilds on anything). An app that is not running does
    nothing now: its next start plans from the live source anyway.
    """
    files = tuple(sorted(set(changed)))
    deps = tuple(f for f in files if is_image_file(f, settings))
    action: Action = "rebuild" if deps else settings.reload
    if not running:
        action = "later"
    return Decision(action, files, deps)


# -- watching ---------------------------------------------------------------------------


class WatchFilter(DefaultFilter):
    """watchfiles' default filter plus orun's ignore lists and the app's own patterns."""

    def __init__(self, root: Path, patterns: Iterable[str] = ()) -> None:
        super().__init__(ignore_dirs=IGNORE_DIRS)
        self._root = str(root)
        self._patterns = (*IGNORE_PATTERNS, *patterns)

    def __call__(self, change: Change, path: str) -> bool:
        rel = relative(self._root, path)
        # the default filter looks at every part of the path it gets: give it only the
        # part inside the source folder (a source under ~/.cache/... is still watched)
        if rel is None or not super().__call__(change, rel.replace("/", os.sep)):
            return False
        parts = rel.split("/")
        return not any(fnmatch.fnmatchcase(rel, p) or rel.startswith(p.rstrip("/") + "/")
                       or any(fnmatch.fnmatchcase(part, p) for part in parts)
                       for p in self._patterns)


def relative(root: str, path: str) -> str | None:
    """`path` relative to `root`, "/"-separated; None when outside it or the root itself."""
    rel = os.path.relpath(path, root)
    if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
        return None
    return rel.replace(os.sep, "/")


__all__ = ["BUILD_FILES", "Decision", "DevSettings", "WatchFilter", "decide", "dev_settings",
           "live_source"]
