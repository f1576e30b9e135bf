"""`$ORUN_HOME` is owner-only, and orun refuses a home another user could change.

The home holds what an attacker on the same machine wants: app params (credentials in
URLs, tokens) in the SQLite store and its WAL, rendered secrets, logs, source snapshots
(a `secret.env` among them), and the admin socket the CLI sends those params to. So:

- orun runs with umask 077: every file and folder it creates is owner-only (0600/0700),
  the store's WAL and logs included, whatever the umask it was started with;
- at start, the home and `run/` are created 0700, and an existing home left readable
  by an older orun is tightened (store, logs, snapshot and run folders);
- orun refuses to start when the home or `run/` belongs to another user, is writable by
  group or others (someone could swap `run/` and capture the CLI's requests on a socket
  of their own), or when `run/` is a symlink. The CLI checks the peer of the socket too.

The only files readable by others are those a container's user must read through a bind
mount (snapshot content, rendered secret files); they sit below owner-only folders, so
no other host user can reach them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orun.errors import OrunError

#: the umask of the server process
UMASK = 0o077
_DIR = 0o700
_FILE = 0o600
#: folders under the home whose files orun tightens at start (created by older versions)
_TIGHTEN_TREES = ("metadata", "logs")
_TIGHTEN_DIRS = ("snapshots", "specs", "mounts", "run", "run/app", "tmp")


def default_home() -> Path:
    """`$ORUN_HOME`, else `~/.orun`. Here, not in `orun.state.config`, so the CLI finds
    the home without importing the YAML parser (part of every command's start-up)."""
    env = os.environ.get("ORUN_HOME")
    return Path(env).expanduser().resolve() if env else Path.home() / ".orun"


def _refuse_unsafe(path: Path, what: str, *, follow: bool) -> None:
    info = path.stat() if follow else path.lstat()
    me = os.geteuid()
    if not follow and stat.S_ISLNK(info.st_mode):
        raise OrunError(f"{what} {path} is a symlink; orun needs a real folder there that "
                        f"only its own user can change (fix: rm {path}; orun recreates it)")
    if not stat.S_ISDIR(info.st_mode):
        raise OrunError(f"{what} {path} is not a folder")
    if info.st_uid != me:
        raise OrunError(
            f"{what} {path} is owned by uid {info.st_uid}, not by uid {me} that orun runs "
            f"as: that user could read or replace orun's files (fix: chown -R {me} {path}, "
            "or set ORUN_HOME to a folder of your own)")
    if info.st_mode & 0o022:
        mode = stat.S_IMODE(info.st_mode)
        raise OrunError(
            f"{what} {path} is writable by group or others (mode {mode:o}): another user "
            f"could replace its files or the admin socket (fix: chmod 700 {path})")


def _tighten(path: Path, mode: int) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(info.st_mode) & ~mode:
        path.chmod(stat.S_IMODE(info.st_mode) & mode)
        return True
    return False


def prepare_home(home: Path, run_dir: Path) -> int:
    """Check and create the home and `run/`; tighten older files. Returns how many
    paths were tightened. Raises `OrunError` (with the fix) for an unsafe home.

    Sets the process umask: call it first thing in the server. Blocking.
    """
    os.umask(UMASK)
    if home.exists():
        _refuse_unsafe(home, "ORUN_HOME", follow=True)
    else:
        home.mkdir(parents=True, mode=_DIR)
    if run_dir.exists() or run_dir.is_symlink():
        _refuse_unsafe(run_dir, "the run folder", follow=False)
    else:
        run_dir.mkdir(mode=_DIR)
    changed = int(_tighten(home, _DIR))
    for name in _TIGHTEN_DIRS:
        changed += _tighten(home / name, _DIR)
    for name in _TIGHTEN_TREES:
        for root, dirs, files in os.walk(home / name):
            changed += _tighten(Path(root), _DIR)
            for f in files:
                changed += _tighten(Path(root) / f, _FILE)
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    for f in ("orun.yaml", "run/server.json"):
        changed += _tighten(home / f, _FILE)
    return changed


__all__ = ["UMASK", "prepare_home"]
