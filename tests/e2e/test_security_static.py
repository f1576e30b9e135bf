"""Issue 10, defects 8 and 9, attacked end to end against a real `orun serve`.

8: a static app must not serve dotfiles (`.env`, `.htpasswd`, `sub/.secret`, however the
path is spelled) unless its `dotfiles` param opts in, nor anything through a symlink put
into its snapshot. 9: a container app's public `/_orun_app/status` must not tell an
anonymous client the container's name, image or upstream address.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.conftest import Orun, containers, docker

APPS = Path(__file__).resolve().parent.parent / "apps"
SECRET = "s3cr3t-do-not-serve"


@pytest.fixture
def dotsite(tmp_path: Path) -> Path:
    """A site whose folder holds the kind of dotfiles people forget about."""
    root = tmp_path / "dotsite"
    for folder in ("sub", ".hidden", ".well-known/acme-challenge"):
        (root / folder).mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / ".env").write_text(f"DB_PASSWORD={SECRET}\n")
    (root / ".htpasswd").write_text(f"admin:{SECRET}\n")
    (root / "sub" / ".secret").write_text(SECRET)
    (root / "sub" / "ok.txt").write_text("ok")
    (root / ".hidden" / "inner.txt").write_text(SECRET)
    (root / ".well-known" / "security.txt").write_text("Contact: mailto:sec@example.com\n")
    (root / ".well-known" / "acme-challenge" / "tok").write_text("challenge")
    (root / ".well-known" / ".private").write_text(SECRET)
    return root


async def fetch(http: aiohttp.ClientSession, orun: Orun, raw: str,
                method: str = "GET") -> tuple[int, str]:
    """`raw` is sent exactly as written (percent-encodings and dot segments kept)."""
    async with http.request(method, URL(orun.url(raw), encoded=True),
                            allow_redirects=False) as resp:
        return resp.status, await resp.text()


DOTFILE_PATHS = (
    "/s/.env", "/s/.htpasswd", "/s/sub/.secret", "/s/.hidden/inner.txt",
    "/s/.hidden", "/s/.hidden/", "/s/.well-known/.private",
    # other spellings of the same files
    "/s/%2eenv", "/s/%2Eenv", "/s/%2e%65%6e%76", "/s/sub/%2esecret", "/s/sub/../.env",
    "/s/sub/..%2f.env", "/s/./.env", "/s//.env", "/s/%2fsub%2f.secret",
    "/s/%2ehidden/inner.txt", "/s/.env?x=1",
)


async def test_dotfiles_answer_404_by_default(orun: Orun, http: aiohttp.ClientSession,
                                              dotsite: Path) -> None:
    (await orun.cli("app", "create", "--spec", "static", str(dotsite), "/s")).ok()
    for raw in DOTFILE_PATHS:
        for method in ("GET", "HEAD"):
            status, body = await fetch(http, orun, raw, method)
            assert status == 404, f"{method} {raw}: {status} {body[:200]}"
            assert SECRET not in body, raw
    # the rest of the site, and /.well-known/ (RFC 8615: ACME, security.txt), still work
    assert await fetch(http, orun, "/s/") == (200, "<h1>home</h1>")
    assert await fetch(http, orun, "/s/sub/ok.txt") == (200, "ok")
    assert (await fetch(http, orun, "/s/.well-known/security.txt"))[0] == 200
    assert await fetch(http, orun, "/s/%2ewell-known/acme-challenge/tok") == (200, "challenge")
    assert (await fetch(http, orun, "/s/.well-known"))[0] == 403  # a folder, as before
    assert (await fetch(http, orun, "/s/sub"))[0] == 403


async def test_dotfiles_param_opts_in(orun: Orun, http: aiohttp.ClientSession,
                                      dotsite: Path) -> None:
    (await orun.cli("app", "create", "--spec", "static", "--param", "dotfiles=true",
                    str(dotsite), "/s")).ok()
    assert await fetch(http, orun, "/s/%2eenv") == (200, f"DB_PASSWORD={SECRET}\n")
    assert await fetch(http, orun, "/s/sub/.secret") == (200, SECRET)
    assert await fetch(http, orun, "/s/.hidden/inner.txt") == (200, SECRET)
    # and back off again: a param change is a new version with its own file index
    (await orun.cli("param", "update", "dotfiles", "false", "/s", "--promote")).ok()
    assert (await fetch(http, orun, "/s/.env"))[0] == 404


async def test_static_single_dot_index(orun: Orun, http: aiohttp.ClientSession,
                                       dotsite: Path) -> None:
    (await orun.cli("app", "create", "--spec", "static_single", "--param", "index=.env",
                    str(dotsite), "/one")).ok()
    status, body = await fetch(http, orun, "/one/")
    assert status == 404 and SECRET not in body


async def test_symlinks_in_a_snapshot_are_never_served(orun: Orun, http: aiohttp.ClientSession,
                                                       site: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "dir" / "x.txt").write_text(SECRET)
    (site / "sub").mkdir()
    (site / "sub" / "ok.txt").write_text("ok")
    (await orun.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    apps = json.loads((await orun.cli("app", "list", "-f", "json")).ok().out)
    (digest,) = {a["current"]["source_digest"] for a in apps if a["app_path"] == "/s"}
    snapshot = orun.home / "snapshots" / digest
    assert (snapshot / "index.html").is_file()
    # a snapshot never holds symlinks (sources are copied through them): any is tampering
    (snapshot / "leak.txt").symlink_to(outside / "secret.txt")
    (snapshot / "linked").symlink_to(outside / "dir")
    (snapshot / "sub" / "leak.txt").symlink_to(outside / "secret.txt")
    (snapshot / "sub" / "inner-link.html").symlink_to("../index.html")  # even inside it
    await orun.stop()  # a fresh server indexes the snapshot again
    await orun.start()
    for raw in ("/s/leak.txt", "/s/linked", "/s/linked/", "/s/linked/x.txt",
                "/s/sub/leak.txt", "/s/sub/inner-link.html"):
        status, body = await fetch(http, orun, raw)
        assert status == 404, f"{raw}: {status} {body[:200]}"
        assert SECRET not in body
    assert await fetch(http, orun, "/s/sub/ok.txt") == (200, "ok")
    assert (await fetch(http, orun, "/s/"))[0] == 200


# -- defect 9: the container app's public status --------------------------------------------


def _private_names(cid: str) -> list[str]:
    """What the engine knows about the container that no anonymous client may learn."""
    info = json.loads(docker("inspect", cid))[0]
    (binding,) = info["NetworkSettings"]["Ports"]["8080/tcp"][:1]
    return [info["Name"].lstrip("/"), cid[:12], info["Config"]["Image"],
            f"127.0.0.1:{binding['HostPort']}", f":{binding['HostPort']}"]


@pytest.mark.timeout(300)
async def test_status_endpoint_tells_only_state_and_error(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = tmp_path / "container_app"
    shutil.copytree(APPS / "container_app", src)
    (await corun.cli("app", "create", "--spec", "container", str(src), "/c")).ok()
    async with http.get(corun.url("/c/")) as resp:
        assert resp.status == 200
    apps = json.loads((await corun.cli("app", "list", "-f", "json")).ok().out)
    (prod,) = [a["id"] for a in apps if a["app_path"] == "/c"]
    (cid,) = containers(corun.home, app_id=prod)
    private = _private_names(cid)

    async def status() -> tuple[dict[str, object], str]:
        async with http.get(corun.url("/c/_orun_app/status")) as resp:
            assert resp.status == 200
            text = await resp.text()
        return json.loads(text), text

    data, text = await status()
    assert data == {"app": "/c", "state": "running", "error": ""}
    for name in private:
        assert name not in text, name
    # the operator still sees everything through the admin socket
    listed = json.loads((await corun.cli("app", "list", "-i", "-f", "json")).ok().out)
    (mine,) = [a for a in listed if a["id"] == prod]
    assert mine["runtime"]["container"] == private[0]

    # a crash puts the container's name into the error text: the public copy hides it
    docker("kill", cid)
    deadline = time.monotonic() + 10
    while (await status())[0]["state"] != "crashed":
        assert time.monotonic() < deadline, "the crash was not noticed"
        await asyncio.sleep(0.2)
    data, text = await status()
    assert set(data) == {"app", "state", "error"}
    assert "stopped unexpectedly" in str(data["error"])
    for name in [*private, cid]:
        assert name not in text, name


def test_public_error_text_hides_names_ids_and_addresses() -> None:
    """The error strings the runtime records, as the status endpoint shows them."""
    from orun.runtime.app import HIDDEN, AppRuntime, Instance

    rt = AppRuntime("app_prd_abc", "/c", logs=None)  # type: ignore[arg-type]
    rt.instance = Instance("f" * 64, "orun-app_prd_abc-0123456789ab", 41234, "i" * 64, 1,
                           "orun-abc:0123456789abcdef", 8080, "/", 0.0)
    cases = {
        "container orun-app_prd_abc-0123456789ab stopped unexpectedly: exited (1).":
            f"container {HIDDEN} stopped unexpectedly: exited (1).",
        "error waiting for health: not healthy after 5s: health check /: cannot connect "
        "(Connect call failed ('127.0.0.1', 41234))":
            "error waiting for health: not healthy after 5s: health check /: cannot connect "
            f"(Connect call failed {HIDDEN})",
        "health check / failed: ClientOSError: Cannot connect to host 127.0.0.1:41234 "
        "ssl:default": f"health check / failed: ClientOSError: Cannot connect to host {HIDDEN} "
        "ssl:default",
        "upstream http://127.0.0.1:41234/ and [::1]:80 and localhost:3000":
            f"upstream {HIDDEN}/ and {HIDDEN} and {HIDDEN}",
        "cannot start container ffffffffffff: gone": f"cannot start container {HIDDEN}: gone",
        "error pulling image orun-abc:0123456789abcdef: denied":
            f"error pulling image {HIDDEN}: denied",
        "health check /healthz returned status 500": "health check /healthz returned status 500",
        # a build log's own words stay: only this app's names are orun's
        "Step 4/9 : RUN echo orun-browser-0123456789ab ---> 3f2a1b0c9d8e":
            "Step 4/9 : RUN echo orun-browser-0123456789ab ---> 3f2a1b0c9d8e",
        "Successfully tagged orun-abc:0123456789abcdef": f"Successfully tagged {HIDDEN}",
        "volume orun-app_stg_abc-00ff00ff00ff00ff": f"volume {HIDDEN}",
    }
    for raw, public in cases.items():
        assert rt.public_text(raw) == public, raw


@pytest.mark.timeout(300)
async def test_starting_page_and_progress_hide_internals(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The build log the starting page streams to anonymous browsers names no container,
    image tag or upstream address (they are in `orun app logs --build` for the admin)."""
    src = tmp_path / "container_app"
    shutil.copytree(APPS / "container_app", src)
    (src / "Dockerfile").write_text((src / "Dockerfile").read_text().replace(
        "COPY server.py .", f"COPY server.py .\nRUN echo {time.time_ns()} && sleep 3"))
    (await corun.cli("app", "create", "--spec", "container", str(src), "/slow")).ok()
    async with http.get(corun.url("/slow/"), headers={"Accept": "text/html"}) as resp:
        assert resp.status == 503
        page = await resp.text()
    assert "Starting /slow" in page
    events = ""
    async with http.get(corun.url("/slow/_orun_app/progress")) as resp:
        async for raw in resp.content:
            events += raw.decode()
            if events.rstrip().endswith("data: /slow") and "event: ready" in events:
                break
    assert "event: ready" in events, events
    apps = json.loads((await corun.cli("app", "list", "-f", "json")).ok().out)
    (prod,) = [a["id"] for a in apps if a["app_path"] == "/slow"]
    (cid,) = containers(corun.home, app_id=prod)
    private = _private_names(cid)
    build_log = (await corun.cli("app", "logs", "--build", "/slow")).ok().out
    assert private[2].split(":")[0] in build_log  # the admin's log has the image tag
    assert "(hidden)" in events
    for text in (page, events):
        for name in private:
            assert name not in text, name
