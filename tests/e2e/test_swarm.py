"""Swarm mode end to end: orun in front of a real 3-node Docker Swarm (tests/netnodes.py:
three dockerds in network namespaces, node1 the manager, a registry on the nodes'
network), with the same CLI and app definitions as on one engine.

The nodes have no route out: builds that install from PyPI (the flask app) go through
an HTTP CONNECT proxy on the host (tests/connect_proxy.py), given as the standard
HTTPS_PROXY build arg. tests/apps/container_app and flask_app answer their container's
HOSTNAME at /env, so each replica is told apart; tests/apps/versioned_app tells versions
apart.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import BASE_IMAGES, Orun, remove_containers
from tests.connect_proxy import connect_proxy
from tests.e2e.test_containers import APPS
from tests.load import Load
from tests.netnodes import Cluster, Node, netnodes

pytestmark = [pytest.mark.timeout(900), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    folder = tmp_path_factory.mktemp("swarm")
    async with netnodes(folder / "nodes", count=3, images=("orun-test/python:3.11",),
                        registry=True, swarm=True, sshd=True) as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(cluster: Cluster) -> AsyncIterator[str]:
    """The way out for builds on the manager (PyPI), on the host's address there."""
    async with connect_proxy(cluster.host_address) as url:
        yield url


def swarm_config(cluster: Cluster, proxy: str, extra: str = "") -> str:
    manager = cluster.nodes[0]
    args = ", ".join(f"{k}: {v}" for k, v in {**BASE_IMAGES, "HTTPS_PROXY": proxy}.items())
    return ("http: {host: 127.0.0.1, port: 0}\n"
            f"system: {{container_engine: 'swarm+{manager.docker_url}'}}\n"
            f"builder: {{registry: '{cluster.registry}', build_args: {{{args}}}}}\n" + extra)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sorun(cluster: Cluster, proxy: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Orun]:
    server = Orun(tmp_path_factory.mktemp("sorun") / "home", swarm_config(cluster, proxy))
    await server.start()
    yield server
    await server.stop()
    for app in json.loads((await server.cli("app", "list", "-f", "json")).out or "[]"):
        await server.cli("app", "delete", app["app_path"])
    remove_containers(server.home)


async def tasks_by_node(cluster: Cluster, label: str) -> dict[str, int]:
    """Running containers with `label` on each node."""
    counts: dict[str, int] = {}
    for node in cluster.nodes:
        out = await node.docker("ps", "-q", "--filter", f"label={label}", check=False)
        counts[node.name] = len(out.split())
    return counts


async def hostnames(url: str, count: int) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            async with http.get(url) as resp:
                assert resp.status == 200, await resp.text()
                seen[(await resp.json())["HOSTNAME"]] += 1
    return seen


async def app_id(orun: Orun, path: str) -> str:
    apps = json.loads((await orun.cli("app", "list", "-f", "json")).ok().out)
    return str(next(a["id"] for a in apps if a["app_path"] == path))


async def test_replicas_spread_over_the_nodes_and_share_the_requests(
        cluster: Cluster, sorun: Orun) -> None:
    (await sorun.cli("app", "create", "--spec", "container", "--conf",
                     "container.replicas=3", str(APPS / "container_app"), "/r")).ok()
    async with aiohttp.ClientSession() as http, http.get(sorun.url("/r/")) as resp:
        assert resp.status == 200, await resp.text()
    label = f"orun.app.id={await app_id(sorun, '/r')}"
    deadline = time.monotonic() + 60
    while (spread := await tasks_by_node(cluster, label)) != {"node1": 1, "node2": 1,
                                                               "node3": 1}:
        assert time.monotonic() < deadline, spread
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # the tracker has probed every task
    seen = await hostnames(sorun.url("/r/env"), 30)
    assert len(seen) == 3 and min(seen.values()) >= 8, seen
    info = json.loads((await sorun.cli("app", "list", "-f", "json")).ok().out)
    assert next(a for a in info if a["app_path"] == "/r")["runtime"]["state"] == "running"


async def test_a_flask_app_with_three_replicas_on_three_nodes(
        cluster: Cluster, sorun: Orun) -> None:
    """The python-flask spec as on one engine: built on the manager (uv from PyPI through
    the proxy), pushed, run by digest on every node."""
    (await sorun.cli("app", "create", "--spec", "python-flask", "--conf",
                     "container.replicas=3", str(APPS / "flask_app"), "/f")).ok()
    async with aiohttp.ClientSession() as http, http.get(sorun.url("/f/")) as resp:
        assert resp.status == 200 and await resp.text() == "flask app ok\n"
    deadline = time.monotonic() + 60
    while True:
        apps = json.loads((await sorun.cli("app", "list", "-f", "json")).ok().out)
        replicas = next(a for a in apps if a["app_path"] == "/f")["runtime"]["replicas"]
        if len({r.rsplit(":", 1)[0] for r in replicas}) == 3:
            break
        assert time.monotonic() < deadline, replicas
        await asyncio.sleep(0.5)
    seen = await hostnames(sorun.url("/f/env"), 15)
    assert len(seen) == 3, seen
    services = (await cluster.nodes[0].docker(
        "service", "ls", "--format", "{{.Image}}", "--filter",
        f"label=orun.app.id={await app_id(sorun, '/f')}")).split()
    assert len(services) == 1 and services[0].startswith(f"{cluster.registry}/") \
        and "@sha256:" in services[0], services


async def test_a_killed_replica_leaves_the_pool_within_two_seconds(
        cluster: Cluster, sorun: Orun) -> None:
    label = f"orun.app.id={await app_id(sorun, '/r')}"
    node2: Node = cluster.nodes[1]
    (victim,) = (await node2.docker("ps", "-q", "--filter", f"label={label}")).split()
    async with Load(sorun.url("/r/")) as load:
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        await node2.docker("kill", victim)
        await asyncio.sleep(5.0)
    late = load.statuses(after=killed + 2.0)
    assert len(late) > 50 and all(s == 200 for s in late), [
        round(t - killed, 2) for t in load.failures()]


async def test_scale_to_zero_when_idle_and_wake(cluster: Cluster, sorun: Orun) -> None:
    (await sorun.cli("app", "create", "--spec", "container", "--conf",
                     "container.replicas=2", "--conf", "container.idle_shutdown_secs=2",
                     str(APPS / "container_app"), "/z")).ok()
    async with aiohttp.ClientSession() as http:
        async with http.get(sorun.url("/z/")) as resp:
            assert resp.status == 200
        label = f"orun.app.id={await app_id(sorun, '/z')}"
        deadline = time.monotonic() + 40
        while sum((await tasks_by_node(cluster, label)).values()) > 0:
            assert time.monotonic() < deadline, "the idle service was not scaled to 0"
            await asyncio.sleep(0.5)
        began = time.monotonic()
        async with http.get(sorun.url("/z/")) as resp:
            assert resp.status == 200
        wake = time.monotonic() - began
    print(f"wake from zero: {wake:.2f}s")
    assert wake < 30


async def test_promote_under_load_loses_no_request(
        cluster: Cluster, sorun: Orun, tmp_path: Path) -> None:
    import shutil
    src = tmp_path / "versioned"
    shutil.copytree(APPS / "versioned_app", src)
    (await sorun.cli("app", "create", "--spec", "container", "--stage-at", "path",
                     "--conf", "container.replicas=2", str(src), "/p")).ok()
    async with aiohttp.ClientSession() as http, http.get(sorun.url("/p/")) as resp:
        assert (await resp.text()).strip() == "version 1 message="
    (src / "VERSION").write_text("2\n")
    (await sorun.cli("app", "reload", "/p")).ok()
    seen: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                try:
                    async with http.get(sorun.url("/p/")) as resp:
                        text = (await resp.text()).strip()
                        if resp.status == 200:
                            seen[text] += 1
                        else:
                            failures.append(f"{resp.status} {text[:100]}")
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    workers = [asyncio.ensure_future(client()) for _ in range(3)]
    async with aiohttp.ClientSession() as wsclient:
        # a websocket opened before the switch stays on its replica of version 1
        ws = await wsclient.ws_connect(sorun.url("/p/ws"))
        await ws.send_str("before")
        assert (await ws.receive(timeout=5)).data == "v1 before"
        await asyncio.sleep(1.0)
        out = (await sorun.cli("app", "promote", "/p")).ok().out
        assert "1 app(s) promoted." in out
        await asyncio.sleep(2.0)
        await ws.send_str("during")
        assert (await ws.receive(timeout=5)).data == "v1 during"
        await ws.close()
        fresh = await wsclient.ws_connect(sorun.url("/p/ws"))
        await fresh.send_str("after")
        assert (await fresh.receive(timeout=5)).data == "v2 after"
        await fresh.close()
    stop.set()
    await asyncio.gather(*workers)
    assert failures == [], failures[:5]
    assert seen["version 1 message="] > 0 and seen["version 2 message="] > 0, seen


async def test_node_drained_then_engine_killed_keeps_serving(
        cluster: Cluster, sorun: Orun) -> None:
    manager, node3 = cluster.nodes[0], cluster.nodes[2]
    label = f"orun.app.id={await app_id(sorun, '/r')}"
    await manager.docker("node", "update", "--availability", "drain", node3.name)
    try:
        deadline = time.monotonic() + 60
        while (spread := await tasks_by_node(cluster, label))["node3"] != 0 \
                or sum(spread.values()) != 3:  # rescheduled on node1 and node2
            assert time.monotonic() < deadline, f"drain did not move the task: {spread}"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        seen = await hostnames(sorun.url("/r/env"), 12)
        assert sum(seen.values()) == 12
    finally:
        await manager.docker("node", "update", "--availability", "active", node3.name)


async def test_a_node_engine_killed_under_load(cluster: Cluster, sorun: Orun) -> None:
    """node2's dockerd stops (its containers with it, after their 5 s stop grace): Swarm
    needs 10+ s to call the node down, orun's probes take the dead replica out within
    half a second, and the others keep answering; Swarm then reschedules the task. Only
    requests in flight on the dead replica, or sent to it before the next probe, fail."""
    node2 = cluster.nodes[1]
    try:
        async with Load(sorun.url("/r/")) as load:
            await asyncio.sleep(1.0)
            killed = time.monotonic()
            await node2.stop_engine()
            await asyncio.sleep(9.0)
    finally:
        await node2.start_engine()
    failed = [round(t - killed, 2) for t in load.failures()]
    if failed:
        assert failed[-1] - failed[0] < 1.0, failed
    after = load.statuses(after=killed + (failed[-1] if failed else 0) + 0.1)
    assert len(after) > 50 and all(s == 200 for s in after)
    print(f"{len(failed)} failed request(s) of {len(load.results)}, "
          f"{failed[0] if failed else '-'}..{failed[-1] if failed else '-'} s after the kill")


async def test_a_killed_orun_adopts_its_services(cluster: Cluster, sorun: Orun) -> None:
    """kill -9 and start again: the serving service is adopted (no new service, no
    restart of its tasks) and its replicas serve at once."""
    manager = cluster.nodes[0]
    label = f"label=orun.app.id={await app_id(sorun, '/r')}"
    before = (await manager.docker("service", "ls", "-q", "--filter", label)).split()
    tasks_before = await manager.docker("service", "ps", "-q", "--filter",
                                        "desired-state=running", before[0])
    sorun.kill9()
    await sorun.start()
    seen = await hostnames(sorun.url("/r/env"), 12)
    assert sum(seen.values()) == 12
    assert (await manager.docker("service", "ls", "-q", "--filter", label)).split() == before
    assert await manager.docker("service", "ps", "-q", "--filter", "desired-state=running",
                                before[0]) == tasks_before
    adopted = [e for e in sorun.log_events() if e.get("event") == "containers_adopted"]
    assert adopted, "orun did not adopt the running service"


async def test_a_manager_reached_over_ssh(cluster: Cluster, proxy: str, tmp_path: Path) -> None:
    """`swarm+ssh://root@node1`: the manager's API through the SSH link, the tasks on
    their nodes' addresses; and a declarative app of orun.yaml, as on one engine."""
    manager = cluster.nodes[0]
    assert manager.ssh is not None
    home = manager.ssh.client_home(tmp_path / "client")
    text = swarm_config(cluster, proxy).replace(
        f"swarm+{manager.docker_url}", f"swarm+ssh://root@{manager.address}")
    text += (f"apps:\n  - {{path: /decl, source: '{APPS / 'container_app'}', spec: container,"
             " conf: {container.replicas: '2'}}\n")
    server = Orun(tmp_path / "home", text)
    server.extra_env.update({"HOME": str(home), "SSH_AUTH_SOCK": "", "DOCKER_HOST": ""})
    await server.start()
    try:
        (await server.cli("app", "create", "--spec", "container", "--conf",
                          "container.replicas=2", str(APPS / "container_app"), "/ssh")).ok()
        seen = await hostnames(server.url("/ssh/env"), 12)
        deadline = time.monotonic() + 30
        while len(seen) < 2:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.5)
            seen = await hostnames(server.url("/ssh/env"), 12)
        sock = server.home / "run" / "orun.sock"
        async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(sock))) as s, \
                s.get("http://orun/_orun/server") as resp:
            engine = (await resp.json())["engine"]
        assert engine["mode"] == "swarm" and engine["remote"] is True
        assert engine["url"] == f"ssh://root@{manager.address}"
        declared: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + 60
        while len(declared) < 2:
            assert time.monotonic() < deadline, declared
            declared = await hostnames(server.url("/decl/env"), 8)
    finally:
        for app in json.loads((await server.cli("app", "list", "-f", "json")).out or "[]"):
            await server.cli("app", "delete", app["app_path"])
        await server.stop()
