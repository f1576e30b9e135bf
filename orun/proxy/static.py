"""Static apps: serve an immutable source snapshot (plus spec files) from disk.

The snapshot never changes, so its file list is indexed once, off the loop, when the
route is built; a request then costs a dict lookup before aiohttp's `FileResponse`
(which does ETag, Last-Modified, conditional requests and Range, and stats in a thread).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from orun.proxy.errors import error_response
from orun.routing.table import Route

_READ_METHODS = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class FileIndex:
    """Relative path -> file on disk, and the set of directories (for 403s)."""

    files: dict[str, Path]
    dirs: frozenset[str]

    @classmethod
    def scan(cls, source: Path, overlay: Path | None = None,
             overlay_skip: frozenset[str] = frozenset()) -> FileIndex:
        """Index `source`, then `overlay` where the source lacks a path (source wins).

        `overlay_skip` names overlay paths never served (the spec's own spec.yaml).
        Blocking: call through `asyncio.to_thread`.
        """
        files: dict[str, Path] = {}
        dirs: set[str] = set()
        for root, skip in ((source, frozenset[str]()), (overlay, overlay_skip)):
            if root is None or not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                rel_dir = os.path.relpath(dirpath, root)
                rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
                for d in dirnames:
                    dirs.add(f"{rel_dir}/{d}" if rel_dir else d)
                for f in filenames:
                    rel = f"{rel_dir}/{f}" if rel_dir else f
                    if rel not in skip:
                        files.setdefault(rel, Path(dirpath) / f)
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
