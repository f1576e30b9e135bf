"""A container engine reached over SSH (`system.container_engine: ssh://...`), against a
real OpenSSH server on loopback whose machine runs the real Docker engine.

Loopback makes "the remote machine" this one, which is enough to prove the transport:
the engine's API goes through a bridged unix socket, builds, starts, logs and events work
through it, requests reach the container through a port carried over the SSH connection
(never the published port itself), and a cut connection is re-established by itself.
tests/e2e/test_remote_engine_netns.py runs the same against a second Docker engine in
its own network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest
from aiohttp import web

from orun.engine.forward import PortForward
from orun.engine.sshlink import SshLink, parse_ssh_url
from orun.errors import EngineError
from tests.conftest import Orun, container_config, containers, docker, serve_app
from tests.e2e.test_containers import copy_app
from tests.load import Load
from tests.sshd import Sshd, run_sshd

pytestmark = pytest.mark.timeout(600)


@contextlib.asynccontextmanager
async def ssh_home(tmp_path: Path) -> AsyncIterator[tuple[Sshd, Path]]:
    """A real sshd on loopback and a HOME whose ~/.ssh signs in to it."""
    async with run_sshd(tmp_path / "sshd") as sshd:
        yield sshd, sshd.client_home(tmp_path / "client")


def ssh_orun(make_orun: Any, sshd: Sshd, home: Path, extra: str = "") -> Orun:
    server: Orun = make_orun(container_config(
        f"system: {{container_engine: 'ssh://root@127.0.0.1:{sshd.port}', "
        f"ssh_keepalive_secs: 1{extra}}}\n"))
    server.extra_env.update({"HOME": str(home), "SSH_AUTH_SOCK": "", "DOCKER_HOST": ""})
    return server


async def server_info(orun: Orun, http: aiohttp.ClientSession) -> dict[str, Any]:
    out = (await orun.cli("app", "list", "-f", "json")).ok().out  # the server answers
    assert out is not None
    sock = orun.home / "run" / "orun.sock"
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s, \
            s.get("http://orun/_orun/server") as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
    return data


async def runtime_status(orun: Orun, index: int = 0) -> dict[str, Any]:
    """The `runtime` part of `app list -f json` for the app at `index`."""
    apps = json.loads((await orun.cli("app", "list", "-f", "json")).ok().out)
    status: dict[str, Any] = apps[index]["runtime"]
    return status


def session_pids(sshd: Sshd) -> list[int]:
    """The per-connection sshd processes (children of the listener)."""
    listener = int((sshd.folder / "sshd.pid").read_text())
    children = Path(f"/proc/{listener}/task/{listener}/children").read_text().split()
    return [int(pid) for pid in children]


@contextlib.asynccontextmanager
async def served_over_ssh(make_orun: Any, tmp_path: Path, app_path: str,
                          extra: str = "") -> AsyncIterator[tuple[Sshd, Orun]]:
    """orun with the engine over a loopback sshd and the container sample app at
    `app_path`; its containers are removed afterwards."""
    async with ssh_home(tmp_path) as (sshd, home):
        orun = ssh_orun(make_orun, sshd, home, extra)
        await orun.start()
        try:
            src = copy_app("container_app", tmp_path)
            (await orun.cli("app", "create", "--spec", "container", str(src), app_path)).ok()
            yield sshd, orun
        finally:
            await orun.stop()
            for cid in containers(orun.home, all_=True):
                docker("rm", "-f", cid, check=False)


async def test_app_built_and_served_on_an_engine_over_ssh(
        make_orun: Any, tmp_path: Path, http: aiohttp.ClientSession, engine: None) -> None:
    async with served_over_ssh(make_orun, tmp_path, "/r") as (sshd, orun):
        async with http.get(orun.url("/r/hello")) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["path"] == "/hello"
        eng = (await server_info(orun, http))["engine"]
        assert eng["remote"] is True and eng["connected"] is True
        assert eng["url"] == f"ssh://root@127.0.0.1:{sshd.port}"
        assert eng["requests_via"] == "ssh" and eng["port_forwards"] == 1

        # the container publishes on the (remote) loopback; orun's upstream is its own
        # loopback port carried over SSH, not the published one
        (cid,) = containers(orun.home)
        published = json.loads(docker("inspect", cid))[0]["NetworkSettings"]["Ports"]
        (binding,) = published["8080/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        upstream = (await runtime_status(orun))["upstream"]
        assert upstream.startswith("http://127.0.0.1:")
        assert not upstream.endswith(f":{binding['HostPort']}")

        # logs come through the bridged API socket
        logs = (await orun.cli("app", "logs", "/r")).ok().out
        assert "container app listening on" in logs and "GET /hello" in logs

        # engine events: a container killed behind orun's back is noticed, and the next
        # request starts it again
        docker("kill", cid)
        deadline = time.monotonic() + 20
        while (await runtime_status(orun))["state"] == "running":
            assert time.monotonic() < deadline, "orun did not notice the killed container"
            await asyncio.sleep(0.2)
        async with http.get(orun.url("/r/again")) as resp:
            assert resp.status == 200


async def test_requests_direct_to_remote_publish_host(
        make_orun: Any, tmp_path: Path, http: aiohttp.ClientSession, engine: None) -> None:
    async with served_over_ssh(make_orun, tmp_path, "/d",
                               ", remote_publish_host: 127.0.0.1") as (_sshd, orun):
        async with http.get(orun.url("/d/x")) as resp:
            assert resp.status == 200
        eng = (await server_info(orun, http))["engine"]
        assert eng["requests_via"] == "127.0.0.1" and eng["port_forwards"] == 0
        (cid,) = containers(orun.home)
        port = json.loads(docker("inspect", cid))[0]["NetworkSettings"]["Ports"][
            "8080/tcp"][0]["HostPort"]
        assert (await runtime_status(orun))["upstream"] == f"http://127.0.0.1:{port}"


async def test_cut_connection_recovers_under_load(
        make_orun: Any, tmp_path: Path, http: aiohttp.ClientSession, engine: None) -> None:
    async with served_over_ssh(make_orun, tmp_path, "/l") as (sshd, orun):
        async with http.get(orun.url("/l/")) as resp:
            assert resp.status == 200
        (cid,) = containers(orun.home)
        async with Load(orun.url("/l/load"), clients=8) as load:
            await asyncio.sleep(1.0)
            cut = time.monotonic()
            for pid in session_pids(sshd):  # the connection dies, sshd itself stays
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(4.0)
        before, after = load.statuses(before=cut), load.statuses(after=cut + 2.0)
        failed = [round(t - cut, 2) for t in load.failures()]
        assert before and all(s == 200 for s in before)
        assert len(after) > 50 and all(s == 200 for s in after), failed
        # only requests in flight at the cut (and any started before the reconnection)
        # may fail; the link is back well within the 2 s
        assert all(t < 2.0 for t in failed), failed
        assert containers(orun.home) == [cid]  # the same container: no restart
        eng = (await server_info(orun, http))["engine"]
        assert eng["connected"] is True and eng["reconnects"] >= 1
        assert any(e.get("event") == "engine_ssh_reconnected" for e in orun.log_events())


async def test_unknown_host_key_is_refused(
        make_orun: Any, tmp_path: Path, http: aiohttp.ClientSession, engine: None) -> None:
    async with ssh_home(tmp_path) as (sshd, home):
        wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {wrong}")
        orun = ssh_orun(make_orun, sshd, home)
        await orun.start()
        try:
            src = copy_app("container_app", tmp_path)
            (await orun.cli("app", "create", "--spec", "container", str(src), "/k")).ok()
            expected = (f"the SSH host key of 127.0.0.1:{sshd.port} is not known or has "
                        "changed")
            async with http.get(orun.url("/k/"), headers={"Accept": "text/html"}) as resp:
                assert resp.status == 503
                page = await resp.text()
                # anonymous visitors see it without the engine's address
                assert ("the SSH host key of (hidden) is not known or has changed" in page
                        and "add it to ~/.ssh/known_hosts" in page), page
            eng = (await server_info(orun, http))["engine"]
            assert eng["connected"] is False and expected in eng["error"]
            assert containers(orun.home, all_=True) == []  # nothing ran anywhere

            # trusted now: the next request connects (orun retries the engine by itself)
            (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())
            await asyncio.sleep(1.1)
            async with http.get(orun.url("/k/")) as resp:
                assert resp.status == 200
        finally:
            await orun.stop()
            for cid in containers(orun.home, all_=True):
                docker("rm", "-f", cid, check=False)


async def test_port_forward_carries_big_bodies_both_ways_and_half_close(
        tmp_path: Path) -> None:
    """The bridge under the proxy: 8 MiB up and down through one forwarded port (flow
    control both ways), a client that half-closes still gets its answer, and a forward
    whose remote port is closed refuses at once."""
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body[::-1])

    app = web.Application(client_max_size=16 << 20)
    app.router.add_post("/echo", echo)
    async with ssh_home(tmp_path) as (sshd, home), serve_app(app) as url:
        old = os.environ.get("HOME")
        os.environ["HOME"] = str(home)
        link = SshLink(parse_ssh_url(f"ssh://root@127.0.0.1:{sshd.port}", what="test"))
        try:
            await link.connect()
            port = int(url.rsplit(":", 1)[1].rstrip("/"))
            forward = PortForward(link, "127.0.0.1", port)
            await forward.start()
            payload = os.urandom(8 << 20)
            async with aiohttp.ClientSession() as s, s.post(
                    f"http://127.0.0.1:{forward.local_port}/echo", data=payload) as resp:
                assert resp.status == 200
                assert await resp.read() == payload[::-1]

            # a client that shuts its write side still gets the answer (a server that
            # reads to EOF, then writes: aiohttp's own server would close at EOF)
            async def reverse(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
                writer.write((await reader.read())[::-1])
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(reverse, "127.0.0.1", 0)
            half = PortForward(link, "127.0.0.1", server.sockets[0].getsockname()[1])
            await half.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", half.local_port)
            writer.write(b"abc")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b"cba"
            writer.close()
            await half.close()
            server.close()

            closed = PortForward(link, "127.0.0.1", 1)  # nothing listens on port 1
            await closed.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", closed.local_port)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            assert closed.failures == 1 and "cannot open 127.0.0.1:1" in closed.last_error
            writer.close()
            await closed.close()
            await forward.close()
        finally:
            await link.close()
            if old is not None:
                os.environ["HOME"] = old
        with pytest.raises(EngineError, match="is closed"):
            await link.connection(0.1)


async def test_host_folders_are_not_mounted_on_a_remote_engine(
        make_orun: Any, tmp_path: Path, http: aiohttp.ClientSession, engine: None) -> None:
    """A bind mount names a folder of orun's machine; on another machine's engine it would
    mount whatever is at that path there. Refused at start, with the reason."""
    async with served_over_ssh(make_orun, tmp_path, "/ok") as (_sshd, orun):
        src = copy_app("container_app", tmp_path / "second")
        (await orun.cli("app", "create", "--spec", "container", "--cvol",
                        "./server.py:/mnt/server.py", str(src), "/b")).ok()
        async with http.get(orun.url("/b/")) as resp:
            text = await resp.text()
            assert resp.status == 500, text
            assert "folders of this machine cannot be mounted" in text
            assert "use named volumes, or a local engine" in text
        assert containers(orun.home, all_=True) == []  # none was created for /b
