"""Static apps: serve an immutable source snapshot (plus spec files) from disk, or, for
`static_disk` apps, a local folder as it is at each request (`DiskStaticTarget`).

The snapshot never changes, so its file list is indexed once, off the loop, when the
route is built; a request then costs a dict lookup before aiohttp's `FileResponse`
(which does ETag, Last-Modified, conditional requests and Range, and stats in a thread).

What is never served is decided at that scan, so a request needs no extra check: files
and folders whose name starts with a dot (`.env`, `.htpasswd`, `.git/`, `sub/.secret`)
are left out of the index unless the app opts in (the `dotfiles` param), except the
top-level `.well-known/` folder; and symlinks are never indexed (a snapshot holds none,
so one there was put there behind orun's back). Such paths answer 404, whatever their
spelling (`/%2eenv` is unquoted before the lookup).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from orun.proxy.errors import error_response
from orun.proxy.target import Route

_READ_METHODS = ("GET", "HEAD")
#: the one dot-named folder served without the `dotfiles` param (RFC 8615), at the top
WELL_KNOWN = ".well-known"


@dataclass(frozen=True, slots=True)
class FileIndex:
    """Relative path -> file on disk, and the set of directories (for 403s)."""

    files: dict[str, Path]
    dirs: frozenset[str]

    @classmethod
    def scan(cls, source: Path, overlay: Path | None = None,
             overlay_skip: frozenset[str] = frozenset(), *,
             dotfiles: bool = False) -> FileIndex:
        """Index `source`, then `overlay` where the source lacks a path (source wins).

        `overlay_skip` names overlay paths never served (the spec's own spec.yaml).
        Only regular files and real folders are indexed: symlinks (to files or folders)
        are skipped and never followed. Unless `dotfiles`, entries whose name starts
        with a dot are skipped too (with everything under them), except `.well-known`
        at the top. The overlay comes from a trusted spec folder, but both roots are
        snapshots and get the same rules (they decide what a URL may reach).
        Blocking: call through `asyncio.to_thread`.
        """
        files: dict[str, Path] = {}
        dirs: set[str] = set()
        for root, skip in ((source, frozenset[str]()), (overlay, overlay_skip)):
            if root is None or not root.is_dir():
                continue
            pending: list[tuple[str, str]] = [(str(root), "")]
            while pending:
                folder, rel_dir = pending.pop()
                try:
                    with os.scandir(folder) as it:
                        entries = list(it)
                except OSError:
                    continue  # unreadable: nothing under it is served (as os.walk did)
                for entry in entries:
                    name = entry.name
                    if entry.is_symlink() or (
                            not dotfiles and name.startswith(".")
                            and not (name == WELL_KNOWN and not rel_dir)):
                        continue
                    rel = f"{rel_dir}/{name}" if rel_dir else name
                    if entry.is_dir(follow_symlinks=False):
                        dirs.add(rel)
                        pending.append((entry.path, rel))
                    elif entry.is_file(follow_symlinks=False) and rel not in skip:
                        files.setdefault(rel, Path(entry.path))
        return cls(files, frozenset(dirs))


def pick_index(index: FileIndex, wanted: str) -> str | None:
    """The `index` param if set, else index.html, else index.htm (OpenRun's order)."""
    if wanted:
        return wanted.strip("/")
    for name in ("index.html", "index.htm"):
        if name in index.files:
            return name
    return None


@dataclass(frozen=True, slots=True)
class StaticTarget:
    index: FileIndex
    index_name: str | None
    single_file: bool
    redirect_bare_path: bool
    kind: str = "static"

    def fast(self, route: Route, rest: str, query: str) -> None:
        """Files are served by aiohttp (sendfile, ranges, conditional requests)."""
        return

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        if request.method not in _READ_METHODS:
            return error_response(request, 405, "405 method not allowed",
                                  headers={"Allow": "GET, HEAD"})
        if rest == "" and route.prefix and self.redirect_bare_path:
            query = request.raw_path.partition("?")[2]
            location = route.prefix + "/" + (f"?{query}" if query else "")
            raise web.HTTPTemporaryRedirect(location)
        rel = posixpath.normpath("/" + unquote(rest)).lstrip("/")
        if rel in ("", "."):
            rel = self.index_name or ""
            if not rel:
                return error_response(request, 404, "404 page not found")
        elif self.single_file and rel != self.index_name:
            return error_response(request, 404, "404 page not found")
        path = self.index.files.get(rel)
        if path is None:
            if rel in self.index.dirs:
                return error_response(request, 403, "403 Forbidden")
            return error_response(request, 404, "404 page not found")
        return web.FileResponse(path)


@dataclass(frozen=True, slots=True)
class DiskStaticTarget:
    """A `static_disk` app: files served live from a local folder, as they are now.

    Nothing is indexed: each request walks its path one name at a time with `lstat` (in
    a thread), so an edited, added or deleted file shows at the next request. The rules
    match the snapshot's: names starting with a dot answer 404 unless `dotfiles` (except
    `/.well-known/`), and a symlink anywhere on the path answers 404 (never followed, so
    a link in the folder cannot reach files outside it). The folder belongs to the
    admin who created the app; a request can only name paths inside it.
    """

    root: Path
    index_param: str
    single_file: bool
    dotfiles: bool
    redirect_bare_path: bool
    kind: str = "static"

    def fast(self, route: Route, rest: str, query: str) -> None:
        return

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        if request.method not in _READ_METHODS:
            return error_response(request, 405, "405 method not allowed",
                                  headers={"Allow": "GET, HEAD"})
        if rest == "" and route.prefix and self.redirect_bare_path:
            query = request.raw_path.partition("?")[2]
            raise web.HTTPTemporaryRedirect(route.prefix + "/" + (f"?{query}" if query else ""))
        rel = posixpath.normpath("/" + unquote(rest)).lstrip("/")
        found, path = await asyncio.to_thread(self.locate, "" if rel == "." else rel)
        if path is not None:
            return web.FileResponse(path)
        if found == "dir":
            return error_response(request, 403, "403 Forbidden")
        return error_response(request, 404, "404 page not found")

    def locate(self, rel: str) -> tuple[str, Path | None]:
        """("file", path), ("dir", None) or ("missing", None) for `rel` (blocking)."""
        if not rel:
            index = self._index()
            return ("file", index) if index is not None else ("missing", None)
        if self.single_file:
            index = self._index()
            wanted = self.index_param.strip("/") or (index.name if index else "")
            return ("file", index) if index is not None and rel == wanted else ("missing", None)
        kind = self._walk(rel)
        if kind == "file":
            return "file", self.root / rel
        return kind, None

    def _index(self) -> Path | None:
        names = [self.index_param.strip("/")] if self.index_param else ["index.html",
                                                                        "index.htm"]
        for name in names:
            if self._walk(name) == "file":
                return self.root / name
        return None

    def _walk(self, rel: str) -> str:
        parts = rel.split("/")
        current = self.root
        for i, part in enumerate(parts):
            if not part or (part.startswith(".") and not self.dotfiles
                            and not (i == 0 and part == WELL_KNOWN)):
                return "missing"
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except (OSError, ValueError):  # gone, not a folder, a NUL in the name
                return "missing"
            if stat.S_ISLNK(mode):
                return "missing"
            if i < len(parts) - 1 and not stat.S_ISDIR(mode):
                return "missing"
        if stat.S_ISDIR(mode):
            return "dir"
        return "file" if stat.S_ISREG(mode) else "missing"
