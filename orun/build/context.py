"""The build context: the app source overlaid on its spec's files, filtered by
.dockerignore, hashed for image reuse and written as the tar the daemon builds from.

Overlay (OpenRun's rule): every source file, plus every spec file the source lacks —
the source always wins, per path, for the container file too. Unlike OpenRun, spec
subfolders are part of the overlay, and the files are never copied to a temporary
folder: the tar is written straight from both trees.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from orun.build.dockerfile import ContainerfileInfo, parse_containerfile
from orun.build.dockerignore import IgnoreRules
from orun.errors import BuildError

CONTAINERFILE_NAMES = ("Containerfile", "Dockerfile")
DOCKERIGNORE = ".dockerignore"
_SKIP_NAMES = frozenset({".git"})
_CHUNK = 1 << 20


def _is_executable(path: Path) -> bool:
    return bool(path.lstat().st_mode & 0o111)


def _link_target(path: Path) -> str:
    """The link's text exactly as stored (`Path.readlink` would normalise it)."""
    return os.readlink(path)  # noqa: PTH115


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class BuildContext:
    """The files sent to the daemon: `(arcname, absolute path)` sorted by arcname."""

    files: tuple[tuple[str, Path], ...]
    containerfile: str
    containerfile_text: str
    info: ContainerfileInfo

    def digest(self, build_args: Mapping[str, str]) -> str:
        """A hash of everything that decides the image: names, modes, contents, args and
        the container file's name. Modification times do not count, so an unchanged
        context reuses its image after a fresh checkout."""
        h = hashlib.sha256()
        for arcname, path in self.files:
            h.update(b"F\0" + arcname.encode() + b"\0")
            if path.is_symlink():
                h.update(b"L\0" + _link_target(path).encode() + b"\0")
            else:
                mode = b"x" if _is_executable(path) else b"-"
                h.update(mode + b"\0" + _file_sha256(path).encode() + b"\0")
        h.update(b"A\0")
        for key in sorted(build_args):
            h.update(key.encode() + b"\0" + build_args[key].encode() + b"\0")
        h.update(b"C\0" + self.containerfile.encode() + b"\0")
        return h.hexdigest()

    def _directories(self) -> list[str]:
        dirs: set[str] = set()
        for arcname, _ in self.files:
            parent = posixpath.dirname(arcname)
            while parent and parent not in dirs:
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        return sorted(dirs)

    def write_tar(self, dest: Path) -> None:
        """Write an uncompressed, byte-for-byte reproducible tar of the context."""
        entries: list[tuple[str, Path | None]] = [(d, None) for d in self._directories()]
        entries.extend(self.files)
        entries.sort(key=lambda e: e[0])
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
            for arcname, path in entries:
                info = tarfile.TarInfo(arcname)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if path is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                elif path.is_symlink():
                    info.type = tarfile.SYMTYPE
                    info.linkname = _link_target(path)
                    info.mode = 0o777
                    tar.addfile(info)
                else:
                    info.mode = 0o755 if _is_executable(path) else 0o644
                    with path.open("rb") as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)


# -- composing --------------------------------------------------------------------------


def _entry_at(root: Path | None, arcname: str) -> Path | None:
    """The file (or symlink) at `arcname` under `root`, if every parent is a real folder."""
    if root is None:
        return None
    path = root
    parts = arcname.split("/")
    for part in parts[:-1]:
        path = path / part
        if part in _SKIP_NAMES or path.is_symlink() or not path.is_dir():
            return None
    path = path / parts[-1]
    if parts[-1] in _SKIP_NAMES:
        return None
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    return path if stat.S_ISREG(mode) or stat.S_ISLNK(mode) else None


def _named(root: Path, names: Iterable[str], rules: IgnoreRules,
           always: frozenset[str]) -> Iterator[tuple[str, Path]]:
    """The named files of `root` that exist (a dev app's dependency files), in order;
    names outside the root and ignored ones are skipped."""
    for arc in sorted({posixpath.normpath(n) for n in names}):
        if arc.startswith(("/", "../")) or arc in (".", ".."):
            continue
        path = _entry_at(root, arc)
        if path is not None and (arc in always or not rules.ignored(arc)):
            yield arc, path


def _walk(root: Path, rules: IgnoreRules, always: frozenset[str]) -> Iterator[tuple[str, Path]]:
    """Files and symlinks under `root` that survive the rules, by arcname.

    Ignored folders are skipped whole unless an exception could re-include something
    below them; symlinks to folders are kept as symlinks, never followed.
    """
    def fail(error: OSError) -> None:
        raise BuildError(f"cannot read {error.filename}: {error.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        base = Path(dirpath)
        rel = base.relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        keep: list[str] = []
        for name in sorted(dirnames):
            path = base / name
            arc = prefix + name
            if name in _SKIP_NAMES:
                continue
            if path.is_symlink():
                filenames.append(name)
            elif rules.may_contain_included(arc):
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            arc = prefix + name
            if name in _SKIP_NAMES or (rules.ignored(arc) and arc not in always):
                continue
            path = base / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                yield arc, path


def _checked_name(containerfile: str) -> str:
    name = posixpath.normpath(containerfile.replace("\\", "/"))
    if name.startswith(("/", "../")) or name in (".", ".."):
        raise BuildError(f"container file {containerfile} must be a path inside the source")
    return name


def _conflicts(arcname: str, taken: Mapping[str, Path], source_dirs: set[str]) -> bool:
    """A spec file whose path is a folder in the source, or lies under a source file."""
    if arcname in source_dirs:
        return True
    parent = posixpath.dirname(arcname)
    while parent:
        if parent in taken:
            return True
        parent = posixpath.dirname(parent)
    return False


def compose(
    source: Path | None,
    spec_dir: Path,
    *,
    containerfile: str = "",
    exclude_spec: Iterable[str] = ("spec.yaml",),
    source_only: Iterable[str] | None = None,
) -> BuildContext:
    """Merge source and spec into a build context (blocking: walks both trees).

    The container file is `containerfile` if given, else the first of `Containerfile`
    and `Dockerfile` in the source, then in the spec. The `.dockerignore` is the
    source's, else the spec's, and applies to the merged set; the chosen container file
    and `.dockerignore` itself are always sent, as Docker does. `.git` is never sent.

    `source_only` (dev mode) takes only those paths from the source (its dependency
    files; the rest of it is mounted into the container instead), plus its container
    file and `.dockerignore` as always: source edits then leave the context unchanged.
    """
    if source is not None and not source.is_dir():
        raise BuildError(f"source folder {source} does not exist")
    excluded = {posixpath.normpath(n) for n in exclude_spec}
    spec_root: Path | None = spec_dir if spec_dir.is_dir() else None
    source_root = source

    def lookup(arcname: str) -> Path | None:
        found = _entry_at(source_root, arcname)
        if found is None and arcname not in excluded:
            found = _entry_at(spec_root, arcname)
        return found

    if containerfile:
        chosen = _checked_name(containerfile)
        chosen_path = lookup(chosen)
        if chosen_path is None:
            raise BuildError(f"container file {containerfile} not found in the source or the "
                             "spec")
    else:
        candidates = [(name, _entry_at(source_root, name)) for name in CONTAINERFILE_NAMES]
        candidates += [(name, None if name in excluded else _entry_at(spec_root, name))
                       for name in CONTAINERFILE_NAMES]
        found = [(name, path) for name, path in candidates if path is not None]
        if not found:
            raise BuildError("no container file found: add a Containerfile or Dockerfile to "
                             "the source, or use a spec that provides one")
        chosen, chosen_path = found[0]
    try:
        text = chosen_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BuildError(f"cannot read container file {chosen}: {e}") from None

    ignore_path = lookup(DOCKERIGNORE)
    rules = IgnoreRules.parse("")
    if ignore_path is not None:
        try:
            rules = IgnoreRules.parse(ignore_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise BuildError(f"cannot read {DOCKERIGNORE}: {e}") from None
    always = frozenset({chosen, DOCKERIGNORE})

    merged: dict[str, Path] = {}
    source_dirs: set[str] = set()
    if source_root is not None:
        entries = _walk(source_root, rules, always) if source_only is None \
            else _named(source_root, source_only, rules, always)
        for arc, path in entries:
            merged[arc] = path
            parent = posixpath.dirname(arc)
            while parent and parent not in source_dirs:
                source_dirs.add(parent)
                parent = posixpath.dirname(parent)
    if spec_root is not None:
        for arc, path in _walk(spec_root, rules, always):
            if arc in merged or arc in excluded or _conflicts(arc, merged, source_dirs):
                continue
            merged[arc] = path
    # Always sent even inside an ignored (and so unwalked) folder.
    merged[chosen] = chosen_path
    if ignore_path is not None:
        merged[DOCKERIGNORE] = ignore_path

    files = tuple(sorted(merged.items()))
    return BuildContext(files, chosen, text, parse_containerfile(text))


__all__ = ["CONTAINERFILE_NAMES", "DOCKERIGNORE", "BuildContext", "compose"]
