"""Security promises checked on a running orun (issue 14, item 5): what the attacks in
test_security_host.py do not already cover.

- the admin socket is 0600 and root's, and another local user can neither connect to it
  nor use the CLI against it;
- containers run without capabilities and with `no-new-privileges`, the bundled specs
  as a non-root user, and a root image keeps only what stepping down to its own user
  needs;
- a bind mount outside `security.allowed_mounts` is refused at `app create` however its
  path is spelled (a symlink in an allowed folder, `..`, a relative path, `$ORUN_HOME/..`,
  trailing or doubled slashes);
- a param's value (a password in it) never shows in orun's log, `app list` in any format,
  `version list`, the build log or an error page.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun, containers, docker

APPS = Path(__file__).resolve().parent.parent / "apps"
NOBODY = 65534
pytestmark = pytest.mark.timeout(600)


def as_nobody(*cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder any user can traverse, so that what stops another user is orun's own
    modes, not pytest's root-only tmp folders."""
    path = Path("/tmp") / f"orun-chk-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def app_id(server: Orun, path: str) -> str:
    apps = json.loads((await server.cli("app", "list", "-i", "-f", "json")).ok().out)
    return str(next(a["id"] for a in apps if a["app_path"] == path))


# -- the admin socket ---------------------------------------------------------------------


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__, exc.errno)
else:
    print("connected")
"""


async def test_admin_socket_is_root_only_and_refuses_other_users(open_dir: Path) -> None:
    home = open_dir / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # as left by an older orun: orun tightens it at start
    server = Orun(home)
    await server.start()
    try:
        sock = home / "run" / "orun.sock"
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        # the server's own user (root here: the suite runs as root to act as `nobody`)
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "run").stat().st_mode) == 0o700

        # the socket's own mode refuses another user, even one who could reach it: a
        # hard link in a folder anyone can traverse keeps the socket's owner and mode
        link = open_dir / "orun.sock"
        os.link(sock, link)
        done = subprocess.run(as_nobody(sys.executable, "-c", CONNECT, str(link)),
                              capture_output=True, text=True, timeout=30)
        assert done.stdout.strip() == "PermissionError 13", (done.stdout, done.stderr)
        # root still gets in through the same link
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(link))
        link.unlink()

        # the CLI run as that user: one clear error line, no traceback, nothing changed
        env = {**server.env, "HOME": str(open_dir)}
        for args in (["app", "list"], ["app", "create", "--spec", "static", "-", "/x"]):
            done = subprocess.run(as_nobody(sys.executable, "-m", "orun", *args),
                                  capture_output=True, text=True, env=env, timeout=60,
                                  cwd=open_dir)
            assert done.returncode == 1, (done.stdout, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert lines == [f"error: cannot reach the orun server at {sock}: "
                             "Permission denied"], done.stderr
            assert "Traceback" not in done.stderr and done.stdout == ""
        assert json.loads((await server.cli("app", "list", "-f", "json")).ok().out) == []
    finally:
        await server.stop()


# -- containers -----------------------------------------------------------------------------


def _status_field(cid: str, name: str) -> str:
    """A line of the container's PID 1 /proc status (Uid, CapEff, NoNewPrivs...)."""
    text = docker("exec", cid, "cat", "/proc/1/status")
    (line,) = [x for x in text.splitlines() if x.startswith(name + ":")]
    return line.split(":", 1)[1].strip()


def _capabilities(cap_hex: str) -> set[str]:
    names = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
             "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
             "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE",
             "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT",
             "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
             "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP"]
    value = int(cap_hex, 16)
    return {n for i, n in enumerate(names) if value >> i & 1} | \
        {f"cap{i}" for i in range(len(names), 64) if value >> i & 1}


def _inspect(cid: str) -> dict[str, object]:
    return dict(json.loads(docker("inspect", cid))[0])


async def test_spec_containers_run_non_root_without_capabilities(
        corun: Orun, http: aiohttp.ClientSession) -> None:
    (await corun.cli("app", "create", "--wait", "--spec", "python-flask",
                     str(APPS / "flask_app"), "/f")).ok()
    async with http.get(corun.url("/f/")) as resp:
        assert resp.status == 200
    (cid,) = containers(corun.home, app_id=await app_id(corun, "/f"))
    info = _inspect(cid)
    config, host = info["Config"], info["HostConfig"]
    assert isinstance(config, dict) and isinstance(host, dict)
    assert config["User"] not in ("", "0", "root") and \
        not str(config["User"]).startswith(("0:", "root:"))
    assert docker("exec", cid, "id", "-u").strip() == "999"
    assert _status_field(cid, "Uid").split()[:2] == ["999", "999"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges" in (host["SecurityOpt"] or [])
    assert _status_field(cid, "NoNewPrivs") == "1"
    assert _capabilities(_status_field(cid, "CapEff")) == set()
    assert _capabilities(_status_field(cid, "CapBnd")) == set()


async def test_a_root_image_keeps_only_the_step_down_capabilities(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = tmp_path / "hostile"
    shutil.copytree(APPS / "hostile_app", src)  # its Dockerfile has no USER: root
    (await corun.cli("app", "create", "--wait", "--spec", "container", str(src), "/r")).ok()
    (cid,) = containers(corun.home, app_id=await app_id(corun, "/r"))
    host = _inspect(cid)["HostConfig"]
    assert isinstance(host, dict)
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"]
    allowed = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"}
    assert set(host["CapAdd"]) == allowed
    assert _capabilities(_status_field(cid, "CapBnd")) == allowed
    assert _status_field(cid, "NoNewPrivs") == "1"
    # what Docker grants by default and orun takes away: raw sockets, device nodes
    async with http.get(corun.url("/r/file?path=/etc/hostname")) as resp:
        assert resp.status == 200  # the app serves as root
    raw = docker("exec", cid, "python", "-c",
                 "import socket\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
                 " print('raw ok')\nexcept OSError as e:\n print('refused', e.errno)",
                 check=False)
    assert raw.strip() == "refused 1", raw
    mknod = subprocess.run(["docker", "exec", cid, "mknod", "/tmp/null2", "c", "1", "3"],
                           capture_output=True, text=True)
    assert mknod.returncode != 0 and "not permitted" in mknod.stderr, mknod


# -- bind mounts ------------------------------------------------------------------------------


async def test_bind_mounts_outside_the_allow_list_are_refused_however_spelled(
        corun: Orun, tmp_path: Path) -> None:
    home = corun.home
    mounts = home / "mounts"
    (mounts / "ok").mkdir(parents=True, exist_ok=True)
    (mounts / "out").symlink_to("/etc")
    (mounts / "meta").symlink_to(home / "metadata")
    (mounts / "ok" / "up").symlink_to("../..")
    src = tmp_path / "hostile"
    shutil.copytree(APPS / "hostile_app", src)
    refused = [
        f"{mounts}/out:/d",                 # a symlink in the allowed folder, pointing out
        f"{mounts}/out/:/d",                # ... with a trailing slash
        f"{mounts}/meta:/d",                # ... to orun's own store
        f"{mounts}/ok/up:/d",               # a relative link climbing out
        f"{mounts}/ok/up/metadata:/d",
        f"{mounts}/../metadata:/d",         # `..` spellings
        f"{mounts}/ok/../../metadata/:/d",
        f"{mounts}//..//metadata:/d",
        f"{mounts}/./../run:/d",
        "$ORUN_HOME/../x:/d",               # a variable: never expanded, so refused
        "~/x:/d",
        "$ORUN_HOME/mounts/../metadata:/d",
        "${ORUN_HOME}/metadata:/d",
        f"{home}:/d",                       # the home itself, with and without a slash
        f"{home}/:/d",
        "/etc:/d", "/etc/:/d", "//etc:/d", "/:/d",
        "../x:/d", "./../x:/d", "./../../etc:/d", "././/../x/:/d",  # relative: out of the source
        "mounts/../../x:/d",
    ]
    for entry in refused:
        result = await corun.cli("app", "create", "--spec", "container", "--cvol", entry,
                                 str(src), "/m")
        lines = result.err.strip().splitlines()
        assert result.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), \
            (entry, result)
        assert "Traceback" not in result.err
        if entry.startswith(("$", "~")):
            assert f"{entry[0]} is not expanded in volumes" in lines[0], lines
        elif entry.startswith("/"):
            assert "is not within an allowed mount directory" in lines[0], lines
        else:
            assert "source path is outside the app source" in lines[0], lines
    apps = json.loads((await corun.cli("app", "list", "-i", "-f", "json")).ok().out)
    assert apps == []
    # the allowed folder itself still works, spelled plainly or not
    (await corun.cli("app", "create", "--spec", "container", "--cvol", f"{mounts}/ok/:/d",
                     "--cvol", f"{mounts}/./ok//:/e", str(src), "/m")).ok()


# -- secrets in params ------------------------------------------------------------------------


async def test_param_values_never_leak(corun: Orun, http: aiohttp.ClientSession,
                                       tmp_path: Path) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    src = tmp_path / "hostile"
    shutil.copytree(APPS / "hostile_app", src)
    (await corun.cli("app", "create", "--wait", "--spec", "container", "--param",
                     f"password={secret}", "--param", f"db_url=postgres://u:{secret}@db/x",
                     "--cvol", "cl_secret:./secret.tmpl:/etc/app/secret.conf",
                     "--param", f"token={secret}", str(src), "/s")).ok()
    async with http.get(corun.url("/s/file?path=/etc/app/secret.conf")) as resp:
        assert (resp.status, await resp.text()) == (200, f"token={secret}\n")
    # a second version, and one that fails to start, with the same params
    (await corun.cli("param", "update", "token", secret + "-2", "/s", "--promote")).ok()
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    (broken / "Dockerfile").write_text((broken / "Dockerfile").read_text().replace(
        'CMD ["python", "-u", "server.py"]', 'CMD ["sh", "-c", "echo starting; exit 3"]'))
    (await corun.cli("app", "create", "--spec", "container", "--param", f"password={secret}",
                     str(broken), "/b")).ok()
    pages = []
    for accept in ("text/html", "application/json", "text/plain"):
        async with http.get(corun.url("/b/"), headers={"Accept": accept}) as resp:
            assert resp.status >= 500
            pages.append(await resp.text())
    async with http.get(corun.url("/b/_orun_app/status")) as resp:
        pages.append(await resp.text())
    assert any("exit" in p.lower() or "crash" in p.lower() or "fail" in p.lower()
               for p in pages), pages
    shown = list(pages)
    for fmt in ("basic", "json", "jsonl"):
        for extra in ([], ["-i"]):
            shown.append((await corun.cli("app", "list", "-f", fmt, *extra)).ok().out)
    for app in ("/s", "/b"):
        shown.append((await corun.cli("version", "list", app)).ok().out)
        shown.append((await corun.cli("app", "logs", "--build", app)).out)
    failed = await corun.cli("app", "create", "--spec", "container", "--param",
                             f"password={secret}", "--copt", "docker.privileged=true",
                             str(src), "/c")
    assert failed.code == 1
    shown += [failed.out, failed.err]
    shown.append(corun.log())
    shown.append("\n".join(p.read_text(errors="replace")
                           for p in (corun.home / "logs").rglob("build.log")))
    listed = json.loads((await corun.cli("app", "list", "-f", "json", "/s")).ok().out)
    assert listed[0]["current"]["settings"]["params"] == {
        "password": "(hidden: orun param list)", "db_url": "(hidden: orun param list)",
        "token": "(hidden: orun param list)"}
    # the one place an admin reads them back
    assert f"password: {secret}" in (await corun.cli("param", "list", "/s")).ok().out
    leaks = [text[max(0, text.find(secret) - 300):text.find(secret) + 60]
             for text in shown if secret in text]
    assert leaks == []


async def test_a_container_apps_error_page_never_shows_its_address_on_the_host(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A request whose container dies mid-answer gets a 502 naming the app, on both
    request paths, without the container's 127.0.0.1:<port> (the README's promise)."""
    src = tmp_path / "fault_app"
    shutil.copytree(APPS / "fault_app", src)
    (await corun.cli("app", "create", "--spec", "container", str(src), "/f")).ok()
    for version in ("1.1", "1.0"):  # the fast path, then aiohttp's
        async with http.get(corun.url("/f/")) as resp:  # (re)started and serving
            assert resp.status == 200
        (cid,) = containers(corun.home)
        port = docker("port", cid).split(":")[-1].strip()
        reader, writer = await asyncio.open_connection("127.0.0.1", corun.port)
        writer.write(f"GET /f/crash HTTP/{version}\r\nHost: localhost\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = (await asyncio.wait_for(reader.read(), 30)).decode("latin-1")
        writer.close()
        assert answer.split(" ", 2)[1] == "502", answer
        assert "app /f: upstream failed" in answer, answer
        assert port not in answer and "127.0.0.1" not in answer, answer
        for _ in range(100):  # the crash is seen before the next round restarts it
            if not containers(corun.home):
                break
            await asyncio.sleep(0.1)
