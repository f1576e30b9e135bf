"""Immutable, content-addressed snapshots of app sources.

`SnapshotStore.take` turns a `SourceRef` into a directory ``<root>/<digest>`` whose
name is the sha256 of its content. Everything downstream (spec overlay, image build
hashes, version history, rollback) works from snapshots, never from the user's folder
or a live checkout, so a build always sees one consistent tree and an unchanged source
gives the same digest, which lets the builder skip work.

Contract for the rest of orun: **a snapshot directory is read-only.** Its name is a
promise about its content and other apps may share it; copy it (e.g. into a build
context) before changing anything. Containers only ever get it through read-only bind
mounts. Files are stored with normalised modes: 0644, or 0755 when any exec bit was
set; a local file that its owner kept from group and others (no group/other read bit,
say a 0600 `secret.env`) stays owner-only (0600, or 0700). The digest covers both bits,
so it is all that matters. Folders are 0755 (a container's user must be able to read
a bound folder); the store's root is owner-only, so no other host user reaches them.

How a snapshot is made: copy (or clone) into a temp dir inside the root, hash while
copying, then rename the temp dir to its digest in one atomic step. If that digest
already exists, the stored copy is checked against it (every file hashed again, no
symlinks, no other modes) before it is reused; one that no longer matches (tampered
with) is replaced by the fresh copy. So concurrent takes of the same content are safe,
a half-written snapshot is never visible under a digest name, and a changed one is
never handed out again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from orun.errors import SourceError
from orun.sources.git import DEFAULT_GIT_TIMEOUT, Checkout, Git
from orun.sources.ref import SourceRef

log = structlog.get_logger("orun.sources")

EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()
"""Digest of the empty snapshot, used for apps without a source (``-``)."""

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
_DIR_MODE = 0o755
#: digest record kind -> stored mode: file, executable, and their owner-only forms
_KIND_MODES = {"f": 0o644, "x": 0o755, "p": 0o600, "q": 0o700}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One stored snapshot. The git fields are only known right after `take`."""

    digest: str
    path: Path
    git_commit: str | None
    git_message: str | None
    git_branch: str | None


class SnapshotStore:
    """Creates, finds and prunes snapshots under `root` (``$ORUN_HOME/snapshots``).

    All disk work runs in threads and git in subprocesses, so no method blocks the
    event loop (except `get`, which is a single stat). `root` is created on first use.
    """

    def __init__(self, root: Path, *, git_timeout: float = DEFAULT_GIT_TIMEOUT) -> None:
        self.root = root
        self.git_timeout = git_timeout
        # Serialises publishing and pruning, so a prune never removes a digest that a
        # concurrent take is about to hand out as "already there".
        self._lock = asyncio.Lock()

    async def take(self, ref: SourceRef) -> Snapshot:
        """Snapshot the source `ref` names and return it (new or already stored).

        ``none`` gives the empty snapshot (a real, empty directory). A local folder is
        copied except for ``.git``; a git source is cloned shallowly first. Raises
        `SourceError` for anything the user can fix; temp files never outlive the call.
        """
        await asyncio.to_thread(self._ensure_root)
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=_TMP_PREFIX, dir=self.root))
        try:
            checkout: Checkout | None = None
            source: Path | None = None
            if ref.kind == "local":
                source = await asyncio.to_thread(local_folder, ref)
            # A clone's modes come from git (644/755) and orun's umask, not from an
            # owner's choice, so only local files keep their owner-only bit.
            elif ref.kind == "git":
                repo = tmp / "repo"
                checkout = await Git(ref, tmp, timeout=self.git_timeout).checkout(repo)
                source = await asyncio.to_thread(_repo_folder, ref, repo)
            content = tmp / "content"
            digest = await asyncio.to_thread(_materialize, source, content, self.root,
                                             ref.kind == "local")
            path = await self._publish(content, digest)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
        if checkout is None:
            return Snapshot(digest, path, None, None, None)
        return Snapshot(digest, path, checkout.commit, checkout.message, checkout.branch)

    def get(self, digest: str) -> Snapshot | None:
        """The stored snapshot `digest`, or None. Git details are not kept on disk."""
        if not _DIGEST_RE.match(digest):
            return None
        path = self.root / digest
        return Snapshot(digest, path, None, None, None) if path.is_dir() else None

    async def remote_commit(self, ref: SourceRef) -> str:
        """The commit `ref` resolves to on its remote right now, without cloning.

        For `ref.branch` (or the remote's HEAD when None) this is ``git ls-remote``;
        a pinned `ref.commit` is returned as given. Compare it with
        `Snapshot.git_commit` to skip reloading an unchanged repository.
        """
        if ref.kind != "git":
            raise SourceError(f"source {ref.original} is not a git repository URL")
        await asyncio.to_thread(self._ensure_root)
        return await Git(ref, self.root, timeout=self.git_timeout).remote_commit()

    async def prune(self, keep: set[str], *, grace_seconds: float = 0.0) -> int:
        """Delete every snapshot whose digest is not in `keep`; return how many.

        `grace_seconds` spares snapshots created or reused more recently than that, for
        callers that collect `keep` while takes may be in flight. Temp dirs left behind
        by a crash are removed too once they are clearly stale (not counted).
        """
        stale_tmp = max(3600.0, 4 * self.git_timeout)
        async with self._lock:
            return await asyncio.to_thread(
                _prune, self.root, frozenset(keep), grace_seconds, stale_tmp
            )

    async def _publish(self, content: Path, digest: str) -> Path:
        """Move `content` to its digest name, or keep the existing copy if it is intact."""
        final = self.root / digest
        async with self._lock:
            replaced = await asyncio.to_thread(_rename_or_reuse, content, final, digest)
        if replaced:
            log.warning("snapshot_replaced", digest=digest, path=str(final),
                        reason="its content no longer matched its digest (changed on disk)")
        return final

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SourceError(f"cannot create snapshot store {self.root}: {exc.strerror}") from None


# --- locating the folder to copy ---------------------------------------------------------


def local_folder(ref: SourceRef) -> Path:
    """The local folder to copy, after checking it exists and is a directory."""
    base = Path(ref.location)
    if not base.is_absolute():
        raise SourceError(f"source path must be absolute: {ref.location}")
    if not base.exists():
        raise SourceError(f"path does not exist {base}")
    if not base.is_dir():
        raise SourceError(f"source path is not a directory: {base}")
    if not ref.subdir:
        return base
    return _inner_folder(base, ref.subdir, f'folder "{ref.subdir}" not found in {base}')


def _repo_folder(ref: SourceRef, repo: Path) -> Path:
    """The folder of the checkout to snapshot: the root, or `ref.subdir` inside it."""
    if not ref.subdir:
        return repo
    return _inner_folder(repo, ref.subdir, f'folder "{ref.subdir}" not found in {ref.display}')


def _inner_folder(base: Path, subdir: str, missing: str) -> Path:
    """`base/subdir` if it is a directory that (after symlinks) stays inside `base`."""
    folder = base / subdir
    real_base = base.resolve()
    real = folder.resolve()
    inside = real == real_base or real_base in real.parents
    if not inside or ".git" in real.relative_to(real_base).parts or not real.is_dir():
        raise SourceError(missing)
    return folder


# --- copying and hashing -----------------------------------------------------------------


def _materialize(source: Path | None, dest: Path, store_root: Path,
                 keep_private: bool = False) -> str:
    """Copy `source` (None: nothing) into the new directory `dest`; return its digest."""
    dest.mkdir(mode=_DIR_MODE)
    dest.chmod(_DIR_MODE)  # not subject to the umask
    if source is None:
        return _digest([])
    copier = _TreeCopier(source, dest, skip=store_root, keep_private=keep_private)
    copier.copy()
    return _digest(copier.entries)


def _digest(entries: list[tuple[str, str, str]]) -> str:
    """sha256 over the sorted (path, kind, content sha) records.

    kind is "d" (directory), "f" (file), "x" (executable file), or "p"/"q" for their
    owner-only forms; directories count so that two trees with the same digest are
    identical, empty folders included. NUL
    cannot occur in a path, so the encoding is unambiguous.
    """
    records = sorted((os.fsencode(rel), kind, sha) for rel, kind, sha in entries)
    hasher = hashlib.sha256()
    for rel, kind, sha in records:
        hasher.update(rel + b"\0" + kind.encode() + b"\0" + sha.encode() + b"\n")
    return hasher.hexdigest()


#: Never part of a deployable source: git metadata, and host-local Python environments and
#: bytecode caches (a `.venv` links to the host's interpreter, outside the tree, and is
#: useless in a container; specs build their own environment).
NEVER_COPIED = frozenset({".git", ".venv", "__pycache__"})


class _TreeCopier:
    """Copies a tree, following in-tree symlinks and refusing ones that leave it.

    A symlink is replaced by what it points at (file or folder), so a snapshot holds no
    links at all and cannot reach outside itself once copied elsewhere. Links that
    escape the source, dangle, lead into ``.git`` or form a loop are errors. ``.git``
    (folder or gitlink file) is skipped at every level; sockets, FIFOs and devices are
    skipped because they have no content to copy.
    """

    def __init__(self, source: Path, dest: Path, *, skip: Path | None = None,
                 keep_private: bool = False) -> None:
        self.root = source.resolve()
        self.keep_private = keep_private
        self.dest = dest
        # The snapshot store itself, when the source encloses it (say, ORUN_HOME or /):
        # copying it would copy the snapshot being written into itself.
        self.skip = skip.resolve() if skip is not None else None
        self.entries: list[tuple[str, str, str]] = []

    def copy(self) -> None:
        pending: list[tuple[Path, str, tuple[Path, ...]]] = [(self.root, "", (self.root,))]
        while pending:
            folder, rel_folder, ancestors = pending.pop()
            for name, path, is_link in self._list(folder, rel_folder):
                rel = f"{rel_folder}/{name}" if rel_folder else name
                try:
                    subfolder = self._copy_entry(path, rel, is_link=is_link, ancestors=ancestors)
                except FileNotFoundError:
                    continue  # deleted while we were copying: as if it never existed
                except OSError as exc:
                    raise SourceError(
                        f"cannot copy {rel} from the source: {exc.strerror}"
                    ) from None
                if subfolder is not None:
                    pending.append((subfolder, rel, (*ancestors, subfolder)))

    def _copy_entry(
        self, path: Path, rel: str, *, is_link: bool, ancestors: tuple[Path, ...]
    ) -> Path | None:
        """Copy one file, or create one folder and return the real path to descend into."""
        target = self._follow(path, rel) if is_link else path
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            if target in ancestors:
                raise SourceError(f"symlink loop in the source: {rel}")
            if target == self.skip:
                return None
            (self.dest / rel).mkdir(mode=_DIR_MODE)
            (self.dest / rel).chmod(_DIR_MODE)
            self.entries.append((rel, "d", ""))
            return target
        if stat.S_ISREG(mode):
            self._copy_file(target, rel, mode)
        return None

    def _list(self, folder: Path, rel_folder: str) -> Iterator[tuple[str, Path, bool]]:
        """(name, path, is_symlink) of each entry of `folder`, except `NEVER_COPIED`."""
        try:
            with os.scandir(folder) as entries:
                listed = [(e.name, Path(e.path), e.is_symlink()) for e in entries]
        except OSError as exc:
            raise SourceError(
                f"cannot read {rel_folder or '.'} in the source: {exc.strerror}"
            ) from None
        return (item for item in listed if item[0] not in NEVER_COPIED)

    def _follow(self, link: Path, rel: str) -> Path:
        """Where an in-tree symlink leads, or a `SourceError` if it is not allowed."""
        try:
            real = link.resolve()
        except RuntimeError:  # Python < 3.13 reports a link cycle (a -> b -> a) this way
            raise SourceError(f"symlink loop in the source: {rel}") from None
        if real != self.root and self.root not in real.parents:
            raise SourceError(f"symlinks outside the source are not allowed: {rel}")
        if ".git" in real.relative_to(self.root).parts:
            raise SourceError(f"symlinks into .git are not allowed: {rel}")
        if not real.exists():
            raise SourceError(f"broken symlink in the source: {rel}")
        return real

    def _copy_file(self, source: Path, rel: str, mode: int) -> None:
        """Copy one file with a normalised mode, hashing it on the way."""
        private = self.keep_private and not mode & 0o044
        kind = ("q" if private else "x") if mode & 0o111 else ("p" if private else "f")
        file_mode = _KIND_MODES[kind]
        hasher = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            with open(source, "rb") as src:
                fd = os.open(self.dest / rel, flags, file_mode)
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), file_mode)  # not subject to the umask
                    while chunk := src.read(_CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
        except OSError as exc:
            raise SourceError(f"cannot copy {rel} from the source: {exc.strerror}") from None
        self.entries.append((rel, kind, hasher.hexdigest()))


# --- publishing and pruning --------------------------------------------------------------


def _rename_or_reuse(content: Path, final: Path, digest: str) -> bool:
    """Atomically publish `content` as `final`; if `final` exists intact, keep it instead.

    Renaming onto an existing non-empty directory fails, which is how we learn the
    content is already stored (the caller then deletes the temp dir). The stored copy
    is reused only if it still hashes to `digest`; otherwise it is moved aside and
    `content` takes its place (True is returned). A reused snapshot gets a fresh mtime,
    which `prune(grace_seconds=...)` respects.
    """
    try:
        content.rename(final)
        return False
    except OSError:
        if not final.is_dir() or final.is_symlink():
            raise
    if stored_digest(final) == digest:
        os.utime(final)
        return False
    aside = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + "replaced-", dir=final.parent))
    final.rename(aside / "old")
    content.rename(final)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def stored_digest(folder: Path) -> str | None:
    """The digest of a stored snapshot as it is on disk now, or None if it cannot be one.

    A snapshot holds only folders (0755) and regular files in the modes `_KIND_MODES`
    names; a symlink, a device, a FIFO or any other mode means it was changed after it
    was written. Blocking: hashes every file.
    """
    entries: list[tuple[str, str, str]] = []
    pending: list[tuple[Path, str]] = [(folder, "")]
    kinds = {mode: kind for kind, mode in _KIND_MODES.items()}
    try:
        if stat.S_IMODE(folder.lstat().st_mode) != _DIR_MODE:
            return None
        while pending:
            path, rel_folder = pending.pop()
            with os.scandir(path) as listing:
                items = [(e.name, e.path, e.stat(follow_symlinks=False)) for e in listing]
            for name, entry_path, info in items:
                rel = f"{rel_folder}/{name}" if rel_folder else name
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISDIR(info.st_mode) and mode == _DIR_MODE:
                    entries.append((rel, "d", ""))
                    pending.append((Path(entry_path), rel))
                elif stat.S_ISREG(info.st_mode) and mode in kinds:
                    entries.append((rel, kinds[mode], _hash_file(entry_path)))
                else:
                    return None
    except OSError:
        return None
    return _digest(entries)


def _hash_file(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _prune(root: Path, keep: frozenset[str], grace: float, stale_tmp: float) -> int:
    """Remove unkept snapshots (and stale temp dirs) under `root`; count the snapshots."""
    if not root.is_dir():
        return 0
    now = time.time()
    removed = 0
    for entry in root.iterdir():
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if _DIGEST_RE.match(entry.name) and entry.name not in keep and age >= grace:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        elif entry.name.startswith(_TMP_PREFIX) and age >= stale_tmp:
            shutil.rmtree(entry, ignore_errors=True)
    return removed
