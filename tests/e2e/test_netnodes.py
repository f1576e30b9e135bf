"""The multi-engine fixture (tests/netnodes.py) does what the remote-engine and swarm
tests rely on: nodes whose engines serve published ports on their own addresses, reach
each other and can be cut off; sshd in a node that leads to that node's engine (also
across an engine restart) and whose sessions can be cut; a swarm that pulls from the
registry; and a teardown that leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import aiodocker
import aiohttp
import asyncssh
import pytest

from tests.netnodes import (
    NODE_DOCKER_SOCKET,
    PREFIX,
    Cluster,
    Node,
    cgroup_pids,
    fixture_cgroups,
    netnodes,
    netns_pids,
)

IMAGE = "orun-test/python:3.11"
LABEL = {"orun.test": "netnodes"}
pytestmark = pytest.mark.timeout(600)


async def http_get(url: str, timeout: float = 30.0) -> str:
    """GET until the server answers 200 (a fresh container needs a moment)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.text()
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout:.0f} s")
            await asyncio.sleep(0.2)


async def fetch_from(node: Node, url: str) -> str:
    """GET url from inside a node (stdlib Python, 2 s timeout): its status or the error."""
    code = ("import sys, urllib.request\n"
            "try:\n"
            "    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__)\n")
    return (await node.run(sys.executable, "-c", code, url)).strip()


async def host_view() -> dict[str, str]:
    """What the fixture may leave on the host, as text: namespaces, links, cgroups, mounts
    and host firewall rules that name it or its addresses."""
    async def run(*argv: str) -> str:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        return (await proc.communicate())[0].decode()

    netns, links, rules = await asyncio.gather(run("ip", "netns", "list"),
                                               run("ip", "-br", "link"), run("iptables-save"))
    mounts = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
    return {
        "netns": "\n".join(line for line in netns.splitlines() if PREFIX in line),
        "links": "\n".join(line for line in links.splitlines() if PREFIX in line),
        "cgroups": " ".join(map(str, await asyncio.to_thread(fixture_cgroups))),
        "mounts": "\n".join(line for line in mounts.splitlines()
                            if PREFIX in line or "/run/netns" in line),
        "rules": "\n".join(line for line in rules.splitlines()
                           if "10.200." in line or "10.201." in line or PREFIX in line),
        "run": " ".join(p for p in ("/run/netns", f"/run/{PREFIX}.json") if Path(p).exists()),
    }


async def fixture_pids(cluster: Cluster) -> set[int]:
    """Every process of the fixture now: in its namespaces or its engines' cgroups."""
    pids: set[int] = set()
    for node in cluster.nodes:
        pids.update(await netns_pids(node.netns))
    pids.update(await netns_pids(f"{PREFIX}-fab"))
    pids.update(await asyncio.to_thread(cgroup_pids, await asyncio.to_thread(fixture_cgroups)))
    return pids


async def test_nodes_serve_reach_each_other_and_partition(tmp_path: Path) -> None:
    before = await host_view()
    async with netnodes(tmp_path, 2, images=()) as cluster:
        node1, node2 = cluster.nodes
        await cluster.load_images([IMAGE], [node2])
        async with aiodocker.Docker(url=node2.docker_url) as engine:
            assert (await engine.system.info())["Name"] == "node2"
            container = await engine.containers.run({
                "Image": IMAGE, "Cmd": ["python", "-m", "http.server", "8000"],
                "Labels": LABEL, "ExposedPorts": {"8000/tcp": {}},
                "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": node2.address}]}}})
            info = await container.show()
            port = info["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        url = f"http://{node2.address}:{port}/"
        assert "Directory listing" in await http_get(url)  # from the host
        assert await fetch_from(node1, url) == "200"  # node to node
        await node2.partition()
        assert await fetch_from(node1, url) in {"URLError", "TimeoutError"}
        await node2.heal()
        assert await fetch_from(node1, url) == "200"
        # the node's own view: its hostname, its engine at the usual socket
        assert (await node2.run("docker", "ps", "-q")).strip() == info["Id"][:12]
        assert (await node2.run("hostname")).strip() == "node2"
        pids = await fixture_pids(cluster)
    assert len(pids) >= 6  # 2 holders, 2 dockerds, their containerds, the container...
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    assert await host_view() == before
    assert not (tmp_path / "n2" / "root").exists()


async def test_sshd_in_a_node_leads_to_its_engine(tmp_path: Path) -> None:
    async with netnodes(tmp_path, 1, images=(), sshd=True) as cluster:
        node = cluster.nodes[0]
        assert node.ssh is not None and node.ssh.host == node.address
        known = asyncssh.import_known_hosts(node.ssh.known_hosts_line())
        conn = await asyncssh.connect(node.address, 22, username="root", known_hosts=known,
                                      client_keys=[str(node.ssh.client_key)])
        async with conn:
            result = await conn.run("docker info --format '{{.Name}}'", check=True)
            assert str(result.stdout).strip() == "node1"
            local = tmp_path / "fwd.sock"
            listener = await conn.forward_local_path(str(local), NODE_DOCKER_SOCKET)
            async with aiodocker.Docker(url=f"unix://{local}") as engine:
                assert (await engine.system.info())["Name"] == "node1"
                # the engine stops and starts under the same sshd
                await node.stop_engine()
                with pytest.raises(aiodocker.DockerError):
                    await engine.version()
                await node.start_engine()
                assert "ApiVersion" in await engine.version()
            listener.close()
            killed = await node.kill_ssh_sessions()
            assert killed >= 1
            await asyncio.wait_for(conn.wait_closed(), 10)
        # the listener lives on: a new connection works
        async with asyncssh.connect(node.address, 22, username="root", known_hosts=known,
                                    client_keys=[str(node.ssh.client_key)]) as again:
            assert (await again.run("hostname", check=True)).stdout == "node1\n"


async def test_swarm_pulls_from_the_registry(tmp_path: Path) -> None:
    async with netnodes(tmp_path, 3, images=(), registry=True, swarm=True) as cluster:
        assert cluster.registry is not None
        manager = cluster.nodes[0]
        pushed = f"{cluster.registry}/netnodes/python:3.11"
        await cluster.load_images([IMAGE], [manager])  # nodes 2 and 3 pull it
        await manager.docker("tag", IMAGE, pushed)
        await manager.docker("push", "-q", pushed)
        await manager.docker(
            "service", "create", "--detach", "--name", "web", "--replicas", "3",
            "--replicas-max-per-node", "1", "--endpoint-mode", "dnsrr",
            "--publish", "mode=host,target=8000", "--label", "orun.test=netnodes",
            pushed, "python", "-m", "http.server", "8000")
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 180
        while len(ports) < 3:
            for node in cluster.nodes:
                async with aiodocker.Docker(url=node.docker_url) as engine:
                    for c in await engine.containers.list(
                            filters={"label": ["com.docker.swarm.service.name=web"]}):
                        public = [p["PublicPort"] for p in c["Ports"] if "PublicPort" in p]
                        if c["State"] == "running" and public:
                            ports[node.address] = public[0]
            assert time.monotonic() < deadline, f"tasks running only on {sorted(ports)}"
            await asyncio.sleep(0.5)
        for address, port in ports.items():
            assert "Directory listing" in await http_get(f"http://{address}:{port}/")
