"""A deployed repository, or another local user, must never reach the host's files.

Each test performs an attack end to end (real `orun serve`, real CLI, real Docker
engine, real processes of another uid) and checks that it no longer reaches the host,
the secret, or the server's socket: Containerfile VOLUME lines as host mounts, a
container rewriting the shared source snapshot, a symlink in a snapshot read as a
secret template, world-readable files under $ORUN_HOME, and a swapped run folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import CliResult, Orun, container_config, containers, docker, remove_containers

APPS = Path(__file__).resolve().parent.parent / "apps"
NOBODY = 65534
pytestmark = pytest.mark.timeout(600)


def hostile_app(tmp_path: Path, *, dockerfile_extra: str = "") -> Path:
    src = tmp_path / "hostile"
    shutil.copytree(APPS / "hostile_app", src)
    if dockerfile_extra:
        text = (src / "Dockerfile").read_text()
        (src / "Dockerfile").write_text(text.replace('CMD ["python"',
                                                     dockerfile_extra + '\nCMD ["python"'))
    return src


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def app_id(server: Orun, path: str) -> str:
    apps = json.loads((await server.cli("app", "list", "-i", "-f", "json")).ok().out)
    return str(next(a["id"] for a in apps if a["app_path"] == path))


def as_nobody(*cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder any user can traverse (pytest's own tmp folders are root-only, which
    would hide a world-readable file from another user and prove nothing)."""
    path = Path("/tmp") / f"orun-sec-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- 1: VOLUME lines of the repository's own Containerfile ------------------------------


async def test_containerfile_volume_lines_never_mount_host_folders(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    mounts = corun.home / "mounts"
    mounts.mkdir(exist_ok=True)
    (mounts / "host-secret.txt").write_text("host only")
    src = hostile_app(tmp_path, dockerfile_extra=f'VOLUME ["{mounts}:/hostm", "./:/src"]')
    (await corun.cli("app", "create", "--spec", "container", str(src), "/vol")).ok()
    status, text = await get(http, corun.url("/vol/file?path=/hostm/host-secret.txt"))
    assert status == 400, text  # a configuration error of the app, shown to the client
    assert "host only" not in text
    assert f"VOLUME {mounts}:/hostm: a VOLUME declares a path inside the container" in text
    for cid in containers(corun.home, all_=True):
        info = json.loads(docker("inspect", cid))[0]
        assert not [m for m in info["Mounts"] if m["Type"] == "bind"], info["Mounts"]


async def test_containerfile_volume_paths_become_named_volumes(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = hostile_app(tmp_path, dockerfile_extra='VOLUME ["/data"]')
    (await corun.cli("app", "create", "--spec", "container", str(src), "/data")).ok()
    assert await get(http, corun.url("/data/write?path=/data/x&text=kept")) == (200, "written")
    prod = await app_id(corun, "/data")
    (cid,) = containers(corun.home, app_id=prod)
    info = json.loads(docker("inspect", cid))[0]
    (mount,) = [m for m in info["Mounts"] if m["Destination"] == "/data"]
    assert mount["Type"] == "volume" and prod in mount["Name"]
    docker("rm", "-f", cid)
    docker("volume", "rm", "-f", mount["Name"], check=False)


# -- 2: the source snapshot is immutable to containers ----------------------------------


async def test_a_container_cannot_change_the_shared_source_snapshot(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    host_secret = tmp_path / "host-secret.txt"
    host_secret.write_text("host only")
    host_secret.chmod(0o600)
    src = hostile_app(tmp_path)
    # the admin grants the source folder to the app; it must still be read-only
    (await corun.cli("app", "create", "--spec", "container", "--cvol", "./:/src",
                     "--cvol", "cl_secret:./secret.tmpl:/etc/app/secret.conf",
                     "--param", "token=t1", str(src), "/h")).ok()
    assert await get(http, corun.url("/h/file?path=/src/index.html")) == \
        (200, "<h1>original</h1>\n")
    status, text = await get(http, corun.url("/h/write?path=/src/index.html&text=defaced"))
    assert (status, text) == (403, "OSError: Read-only file system"), text
    status, text = await get(
        http, corun.url(f"/h/symlink?path=/src/secret.tmpl&to={host_secret}"))
    assert status == 403 and "Read-only file system" in text, text
    status, text = await get(http, corun.url("/h/write?path=/src/new.js&text=x"))
    assert status == 403, text
    # relative bind mounts are read-only in the engine too, and an explicit rw is refused
    prod = await app_id(corun, "/h")
    (cid,) = containers(corun.home, app_id=prod)
    binds = {m["Destination"]: m for m in json.loads(docker("inspect", cid))[0]["Mounts"]}
    assert binds["/src"]["RW"] is False and binds["/etc/app/secret.conf"]["RW"] is False
    result = await corun.cli("app", "create", "--spec", "container", "--cvol", "./:/src:rw",
                             str(src), "/rw")
    assert result.code == 1 and "a bind mount from the app source is read-only" in result.err

    # a new version renders the template from the untouched snapshot ...
    (await corun.cli("param", "update", "token", "t2", "/h", "--promote")).ok()
    assert await get(http, corun.url("/h/file?path=/etc/app/secret.conf")) == \
        (200, "token=t2\n")
    # ... and a static app made from the same folder serves the original page
    (await corun.cli("app", "create", "--spec", "static", str(src), "/site")).ok()
    assert await get(http, corun.url("/site/index.html")) == (200, "<h1>original</h1>\n")


async def test_a_symlink_planted_in_a_snapshot_is_never_followed(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """As if a snapshot had been changed behind orun's back (by an older orun's
    writable mount, or by hand): templates are read without following links, a
    tampered snapshot is replaced before reuse, static files never come through a link."""
    host_secret = tmp_path / "host-secret.txt"
    host_secret.write_text("host only")
    host_secret.chmod(0o600)
    src = hostile_app(tmp_path)
    (await corun.cli("app", "create", "--spec", "container",
                     "--cvol", "cl_secret:./secret.tmpl:/etc/app/secret.conf",
                     "--param", "token=t1", str(src), "/t")).ok()
    assert await get(http, corun.url("/t/file?path=/etc/app/secret.conf")) == \
        (200, "token=t1\n")
    snapshots = [p for p in (corun.home / "snapshots").iterdir() if len(p.name) == 64
                 and (p / "secret.tmpl").exists()]
    (snap,) = snapshots
    (snap / "secret.tmpl").unlink()
    (snap / "secret.tmpl").symlink_to(host_secret)
    (snap / "index.html").write_text("<h1>defaced</h1>\n")

    # a new version of the same snapshot (no new take): the link is refused, loudly
    result = await corun.cli("param", "update", "token", "t2", "/t", "--promote")
    assert result.code == 1
    assert "cl_secret template secret.tmpl cannot be read safely" in result.err
    status, text = await get(http, corun.url("/t/file?path=/etc/app/secret.conf"))
    assert (status, text) == (200, "token=t1\n")  # the old version keeps serving
    # a new app from the unchanged folder gets a verified snapshot, not the tampered one
    (await corun.cli("app", "create", "--spec", "static", str(src), "/site")).ok()
    assert await get(http, corun.url("/site/index.html")) == (200, "<h1>original</h1>\n")
    assert await get(http, corun.url("/site/secret.tmpl")) == (200, "token={{.params.token}}\n")
    assert not (snap / "secret.tmpl").is_symlink()
    assert "snapshot_replaced" in corun.log()
    assert "host only" not in corun.log()


# -- 6: nothing under $ORUN_HOME is readable by another user ----------------------------


async def test_orun_home_is_owner_only(open_dir: Path, http: aiohttp.ClientSession,
                                       engine: None) -> None:
    home = open_dir / "home"
    server = Orun(home, container_config())
    (home / "mounts").mkdir(mode=0o755)
    log_before = home / "logs" / "old.log"  # left readable by an older orun
    log_before.parent.mkdir(mode=0o755)
    log_before.write_text("old")
    log_before.chmod(0o644)
    home.chmod(0o755)
    src = open_dir / "src"
    shutil.copytree(APPS / "hostile_app", src)
    (src / "secret.env").write_text("TOKEN=from-the-source\n")
    (src / "secret.env").chmod(0o600)
    for path in (src, *src.iterdir()):
        path.chmod(0o755 if path.is_dir() else stat.S_IMODE(path.stat().st_mode))
    await server.start()
    try:
        (await server.cli("app", "create", "--spec", "container", "--param",
                          "db_url=postgres://u:hunter2@db/x", "--cvol",
                          "cl_secret:./secret.tmpl:/etc/app/secret.conf", "--param",
                          "token=hunter2", str(src), "/p")).ok()
        assert await get(http, server.url("/p/file?path=/etc/app/secret.conf")) == \
            (200, "token=hunter2\n")
        # the container's own user can still read its source and rendered secret
        assert (await get(http, server.url("/p/file?path=/srv/server.py")))[0] == 200
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        loose = []
        for root, dirs, files in os.walk(home):
            for name in [*dirs, *files]:
                path = Path(root) / name
                rel = path.relative_to(home)
                mode = stat.S_IMODE(path.lstat().st_mode)
                if rel.parts[0] in ("snapshots", "run") and len(rel.parts) > 1 \
                        and rel.parts[1] not in ("orun.sock", "server.json"):
                    continue  # below an owner-only folder, checked below
                if rel.parts[0] in ("server.log", "orun.yaml"):
                    continue  # written by this test, not by orun
                if mode & 0o077:
                    loose.append(f"{rel} {mode:o}")
        assert loose == []
        for folder in ("snapshots", "run", "run/app", "metadata", "logs"):
            assert stat.S_IMODE((home / folder).stat().st_mode) == 0o700, folder
        (snap,) = [p for p in (home / "snapshots").iterdir() if (p / "secret.env").exists()]
        assert stat.S_IMODE((snap / "secret.env").stat().st_mode) == 0o600
        assert stat.S_IMODE((snap / "server.py").stat().st_mode) == 0o644
        # another user, for real
        for target in (home / "metadata" / "orun.db", snap / "secret.env",
                       home / "logs" / "old.log"):
            done = subprocess.run(as_nobody("cat", str(target)), capture_output=True,
                                  text=True)
            assert done.returncode != 0 and "Permission denied" in done.stderr, target
    finally:
        await server.stop()
        remove_containers(home)


# -- 7: a home or run folder another user controls --------------------------------------


async def test_refuses_a_home_others_can_write(open_dir: Path) -> None:
    home = open_dir / "home"
    server = Orun(home)
    home.chmod(0o777)
    with pytest.raises(AssertionError) as exc:
        await server.start()
    assert (f"error: ORUN_HOME {home} is writable by group or others (mode 777): another "
            f"user could replace its files or the admin socket (fix: chmod 700 {home})"
            in str(exc.value))
    home.chmod(0o700)
    (home / "run").mkdir()
    os.chown(home / "run", NOBODY, NOBODY)
    with pytest.raises(AssertionError) as exc:
        await server.start()
    assert f"the run folder {home / 'run'} is owned by uid {NOBODY}" in str(exc.value)
    os.chown(home / "run", 0, 0)
    (home / "run").rmdir()
    elsewhere = open_dir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / "run").symlink_to(elsewhere)  # a swapped run folder
    with pytest.raises(AssertionError) as exc:
        await server.start()
    assert f"the run folder {home / 'run'} is a symlink" in str(exc.value)
    (home / "run").unlink()
    await server.start()
    (await server.cli("app", "list")).ok()
    await server.stop()


FAKE_SERVER = """
import socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(5)
s.settimeout(30)
print("ready", flush=True)
got = b""
try:
    while True:
        conn, _ = s.accept()
        conn.settimeout(2)
        try:
            while chunk := conn.recv(65536):
                got += chunk
                open(out, "wb").write(got)
        except OSError:
            pass
        conn.close()
except OSError:
    pass
"""


async def test_cli_sends_nothing_to_a_socket_of_another_user(open_dir: Path) -> None:
    """Another user who could swap the run folder serves a fake admin socket: the CLI
    must refuse it before sending the request (and the secret in it)."""
    home = open_dir / "home"
    run = home / "run"
    run.mkdir(parents=True)
    home.chmod(0o755)
    os.chown(run, NOBODY, NOBODY)
    captured = open_dir / "captured"
    captured.mkdir()
    os.chown(captured, NOBODY, NOBODY)
    fake = await asyncio.create_subprocess_exec(
        *as_nobody(sys.executable, "-c", FAKE_SERVER, str(run / "orun.sock"),
                   str(captured / "request")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert fake.stdout is not None
        line = await asyncio.wait_for(fake.stdout.readline(), 10)
        assert line == b"ready\n", (line, await fake.stderr.read() if fake.stderr else b"")
        env = {**os.environ, "ORUN_HOME": str(home)}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orun", "param", "update", "password", "hunter2", "/app",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await cli.communicate()
        result = CliResult(cli.returncode or 0, out.decode(), err.decode())
        assert result.code == 1
        assert result.err.strip().startswith(
            f"error: refusing to talk to the server on {run / 'orun.sock'}: it runs as "
            f"uid {NOBODY}, not as you (uid {os.geteuid()}) or root"), result.err
        await asyncio.sleep(0.5)
        assert not (captured / "request").exists()
    finally:
        fake.kill()
        await fake.wait()
