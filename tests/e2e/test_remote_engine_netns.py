"""A remote engine that really is elsewhere: a second Docker engine and sshd in their own
network namespace (tests/netnodes.py), reached from orun only over SSH at 10.200.0.11.

The local engine never sees the app: it is built, run and logged on the node. A network
partition longer than the keepalive budget (the link is declared dead) is healed under
load and the link comes back by itself, with the same container serving. With
`system.remote_publish_host` the container publishes on the node's address and orun
connects there directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, container_config, containers
from tests.e2e.test_containers import copy_app
from tests.e2e.test_remote_engine import server_info
from tests.load import Load
from tests.netnodes import Cluster, Node, netnodes

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
async def node(tmp_path: Path, engine: None) -> AsyncIterator[Node]:
    cluster: Cluster
    async with netnodes(tmp_path / "nodes", count=1, images=("orun-test/python:3.11",),
                        sshd=True) as cluster:
        yield cluster.nodes[0]


def node_orun(make_orun: Any, node: Node, tmp_path: Path, extra: str = "") -> Orun:
    assert node.ssh is not None
    home = node.ssh.client_home(tmp_path / "client")
    server: Orun = make_orun(container_config(
        f"system: {{container_engine: 'ssh://root@{node.address}', "
        f"ssh_keepalive_secs: 1{extra}}}\n"))
    server.extra_env.update({"HOME": str(home), "SSH_AUTH_SOCK": "", "DOCKER_HOST": ""})
    return server


async def node_containers(node: Node, orun: Orun) -> list[str]:
    out = await node.docker("ps", "-q", "--no-trunc", "--filter", f"label=orun.home={orun.home}")
    return out.split()


@contextlib.asynccontextmanager
async def node_app(make_orun: Any, node: Node, tmp_path: Path, app_path: str,
                   extra: str = "") -> AsyncIterator[Orun]:
    """orun with the node's engine over SSH and the container sample app at `app_path`."""
    orun = node_orun(make_orun, node, tmp_path, extra)
    await orun.start()
    try:
        src = copy_app("container_app", tmp_path)
        (await orun.cli("app", "create", "--spec", "container", str(src), app_path)).ok()
        yield orun
    finally:
        await orun.stop()


async def test_app_runs_on_the_node_and_survives_a_partition(
        make_orun: Any, node: Node, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with node_app(make_orun, node, tmp_path, "/n") as orun:
        async with http.get(orun.url("/n/where")) as resp:
            assert resp.status == 200, await resp.text()
        (cid,) = await node_containers(node, orun)
        assert containers(orun.home, all_=True) == []  # nothing on the local engine
        ports = json.loads(await node.docker("inspect", cid))[0]["NetworkSettings"]["Ports"]
        assert ports["8080/tcp"][0]["HostIp"] == "127.0.0.1"  # the node's own loopback
        logs = (await orun.cli("app", "logs", "/n")).ok().out
        assert "GET /where" in logs

        async with Load(orun.url("/n/load"), timeout=3) as load:
            await asyncio.sleep(1.0)
            cut = time.monotonic()
            await node.partition()
            # longer than keepalive 1 s x 3: the link is declared dead and dropped
            deadline = time.monotonic() + 15
            while (await server_info(orun, http))["engine"]["connected"]:
                assert time.monotonic() < deadline, "the dead link was not noticed"
                await asyncio.sleep(0.2)
            await node.heal()
            healed = time.monotonic()
            deadline = healed + 30
            while not (await server_info(orun, http))["engine"]["connected"]:
                assert time.monotonic() < deadline, "the link did not come back"
                await asyncio.sleep(0.2)
            back = time.monotonic()
            await asyncio.sleep(3.0)

        before, after = load.statuses(before=cut), load.statuses(after=back + 1.0)
        assert before and all(s == 200 for s in before)
        assert len(after) > 20 and all(s == 200 for s in after)
        assert await node_containers(node, orun) == [cid]  # the same container, no restart
        eng = (await server_info(orun, http))["engine"]
        assert eng["reconnects"] >= 1
        print(f"partition {healed - cut:.1f}s, link back {back - healed:.1f}s after the heal")


async def test_direct_requests_to_the_node_address(
        make_orun: Any, node: Node, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with node_app(make_orun, node, tmp_path, "/d",
                        f", remote_publish_host: {node.address}") as orun:
        async with http.get(orun.url("/d/x")) as resp:
            assert resp.status == 200, await resp.text()
        (cid,) = await node_containers(node, orun)
        binding = json.loads(await node.docker("inspect", cid))[0]["NetworkSettings"][
            "Ports"]["8080/tcp"][0]
        assert binding["HostIp"] == node.address
        status = json.loads((await orun.cli("app", "list", "-f", "json")).ok().out)
        assert status[0]["runtime"]["upstream"] == f"http://{node.address}:{binding['HostPort']}"
        eng = (await server_info(orun, http))["engine"]
        assert eng["requests_via"] == node.address and eng["port_forwards"] == 0
