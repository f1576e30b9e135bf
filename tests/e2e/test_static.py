"""`static` and `static_single` apps end to end through the CLI and the proxy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from yarl import URL


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "assets").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "assets" / "app.css").write_text("body { color: red }")
    (root / "docs" / "page.html").write_text("<p>page</p>")
    (root / "report.html").write_text("<p>report</p>")
    (root / "big.bin").write_bytes(bytes(range(256)) * 100)
    return root


async def test_static_site_at_a_path(orun, http, site):
    result = (await orun.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
    assert f"HTTP Url: http://localhost:{orun.port}/site" in result.out
    async with http.get(orun.url("/site/")) as resp:
        assert resp.status == 200
        assert await resp.text() == "<h1>home</h1>"
        assert resp.headers["Content-Type"].startswith("text/html")
    async with http.get(orun.url("/site"), allow_redirects=False) as resp:
        assert resp.status == 307
        assert resp.headers["Location"] == "/site/"
    async with http.get(orun.url("/site/assets/app.css")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/css")
    async with http.get(orun.url("/site/docs")) as resp:
        assert resp.status == 403
    async with http.get(orun.url("/site/missing.txt")) as resp:
        assert resp.status == 404
        assert (await resp.text()).strip() == "404 page not found"
    async with http.post(orun.url("/site/index.html")) as resp:
        assert resp.status == 405


async def test_static_traversal_stays_inside(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
    for raw in ("/site/../../../etc/passwd", "/site/%2e%2e/%2e%2e/etc/passwd",
                "/site/assets/..%2f..%2f..%2fetc/passwd"):
        async with http.get(URL(orun.url(raw), encoded=True)) as resp:
            assert resp.status == 404, raw
            assert "root:" not in await resp.text()


async def test_conditional_and_range_requests(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
    async with http.get(orun.url("/site/big.bin")) as resp:
        etag = resp.headers["ETag"]
        modified = resp.headers["Last-Modified"]
        assert len(await resp.read()) == 25600
    async with http.get(orun.url("/site/big.bin"), headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get(orun.url("/site/big.bin"),
                        headers={"If-Modified-Since": modified}) as resp:
        assert resp.status == 304
    async with http.get(orun.url("/site/big.bin"), headers={"Range": "bytes=256-511"}) as resp:
        assert resp.status == 206
        assert await resp.read() == bytes(range(256))
        assert resp.headers["Content-Range"] == "bytes 256-511/25600"


async def test_index_param_and_single_file(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", "-param", "index=report.html",
                    str(site), "/r")).ok()
    async with http.get(orun.url("/r/")) as resp:
        assert await resp.text() == "<p>report</p>"
    async with http.get(orun.url("/r/index.html")) as resp:
        assert resp.status == 200  # not single-file: other files are served too
    (await orun.cli("app", "create", "--spec", "static_single", "--param",
                    "index=report.html", str(site), "/one")).ok()
    async with http.get(orun.url("/one/")) as resp:
        assert await resp.text() == "<p>report</p>"
    async with http.get(orun.url("/one/report.html")) as resp:
        assert resp.status == 200
    async with http.get(orun.url("/one/index.html")) as resp:
        assert resp.status == 404


async def test_static_single_requires_index(orun, site):
    result = await orun.cli("app", "create", "--spec", "static_single", str(site), "/x")
    assert result.code == 1
    assert result.err.strip() == (
        "error: param index is a required param, a value has to be provided"
    )
    result = await orun.cli("app", "create", "--spec", "static_single", "--param",
                            "index=nope.html", str(site), "/x")
    assert result.code == 1
    assert "index file 'nope.html' not found in the source" in result.err


async def test_static_app_at_a_domain(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "docs.:")).ok()
    headers = {"Host": f"docs.localhost:{orun.port}"}
    async with http.get(orun.url("/assets/app.css"), headers=headers) as resp:
        assert resp.status == 200
    async with http.get(orun.url("/"), headers=headers) as resp:
        assert await resp.text() == "<h1>home</h1>"
    async with http.get(orun.url("/assets/app.css")) as resp:
        assert resp.status == 404  # the default domain has no app


async def test_snapshot_is_immutable_after_create(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
    (site / "index.html").write_text("<h1>changed on disk</h1>")
    async with http.get(orun.url("/site/")) as resp:
        assert await resp.text() == "<h1>home</h1>"


async def test_static_from_git_subdir(orun, http, tmp_path):
    repo = tmp_path / "repo"
    (repo / "web").mkdir(parents=True)
    (repo / "web" / "index.html").write_text("<h1>from git</h1>")
    (repo / "README").write_text("readme")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "first"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    result = (await orun.cli("app", "create", "--spec", "static",
                             f"file://{repo}#web", "/g")).ok()
    assert "Commit:" in result.out and "first" in result.out
    async with http.get(orun.url("/g/")) as resp:
        assert await resp.text() == "<h1>from git</h1>"
    async with http.get(orun.url("/g/README")) as resp:
        assert resp.status == 404
    missing = await orun.cli("app", "create", "--spec", "static", "--branch", "nope",
                             f"file://{repo}", "/g2")
    assert missing.code == 1
    assert 'branch "nope" not found' in missing.err
