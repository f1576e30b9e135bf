"""`static_disk`: a local folder served live. An edit, a new file and a deletion show at
the next request (no reload); the dot-name and symlink rules of static apps hold (a link
to a file outside the folder is never followed); the app works at a path and at a domain;
a git or empty source is refused at create."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from tests.conftest import Orun


async def fetch(http: aiohttp.ClientSession, url: str, method: str = "GET",
                **kw: Any) -> tuple[int, str]:
    """One request, its path sent exactly as written (no client-side `..` folding)."""
    async with http.request(method, URL(url, encoded=True), allow_redirects=False,
                            **kw) as resp:
        return resp.status, await resp.text()


async def test_folder_is_served_live(orun: Orun, http: aiohttp.ClientSession,
                                     tmp_path: Path) -> None:
    folder = tmp_path / "live"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.html").write_text("v1")
    (folder / "sub" / "page.txt").write_text("page")
    (await orun.cli("app", "create", "--spec", "static_disk", str(folder), "/live")).ok()
    (await orun.cli("app", "create", "--spec", "static_disk", str(folder), "disk.:")).ok()

    assert await fetch(http, orun.url("/live/")) == (200, "v1")
    status, _ = await fetch(http, orun.url("/live"))
    assert status == 307
    host = {"Host": f"disk.localhost:{orun.port}"}
    assert await fetch(http, orun.url("/sub/page.txt"), headers=host) == (200, "page")

    # edits show at once: changed, added, deleted
    (folder / "index.html").write_text("version two")
    (folder / "new.txt").write_text("new")
    assert await fetch(http, orun.url("/live/")) == (200, "version two")
    assert await fetch(http, orun.url("/live/new.txt")) == (200, "new")
    (folder / "new.txt").unlink()
    assert (await fetch(http, orun.url("/live/new.txt")))[0] == 404

    # folders are 403, dot names and symlinks 404 (even to a file that exists outside)
    assert (await fetch(http, orun.url("/live/sub")))[0] == 403
    (folder / ".env").write_text("SECRET=1")
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    (folder / "link.txt").symlink_to(outside)
    (folder / "linkdir").symlink_to(tmp_path)
    for path in ("/live/.env", "/live/%2eenv", "/live/link.txt", "/live/linkdir/outside.txt",
                 "/live/../outside.txt", "/live/sub/..%2f..%2foutside.txt",
                 "/live/sub/page.txt/x", "/live/nul%00.txt"):
        status, text = await fetch(http, orun.url(path))
        assert status == 404 and "host file" not in text and "SECRET" not in text, path
    (folder / ".well-known").mkdir()
    (folder / ".well-known" / "security.txt").write_text("contact")
    assert await fetch(http, orun.url("/live/.well-known/security.txt")) == (200, "contact")
    (folder / "index.html").unlink()
    assert (await fetch(http, orun.url("/live/")))[0] == 404
    assert (await fetch(http, orun.url("/live/sub/page.txt"), "POST"))[0] == 405


async def test_only_a_local_folder_can_be_served(orun: Orun, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "index.html").write_text("x")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for source in (repo.as_uri(), "-"):
        result = await orun.cli("app", "create", "--spec", "static_disk", source, "/d")
        assert result.code == 1
        assert result.err.strip() == (
            "error: spec static_disk serves a folder live from this machine's disk: its "
            f"source must be a local folder, not {source}")
