"""The swarm layer of the engine (orun/engine/swarm.py, Engine.tag/push/swarm_info)
against a real three-node swarm with a registry (tests/netnodes.py): an image built on the
manager is pushed and run by digest as a service with a dynamic host-mode port on every
node; orun reaches each replica at `node address:published port`; scaling, logs and
removal work; setup mistakes (a worker's engine, an unreachable or untrusted registry)
come back as one line that says what to do.

One swarm serves the whole module (bringing it up and pushing the image is most of the
time); each test names its own service and removes it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio

from orun.engine.docker import Engine
from orun.engine.swarm import Swarm, TaskInfo
from orun.errors import EngineError
from tests.netnodes import Cluster, netnodes

BASE = "orun-test/python:3.11"
LOCAL_TAG = "orun-swarm-test/web:1"
REPO = "orun-swarm-test/web"
LABELS = {"orun.test": "swarm-engine"}
# The container's hostname is its id's first 12 characters: serving it tells which task
# answered. tini (Init) forwards SIGTERM so a scale-down stops at once.
DOCKERFILE = f"""FROM {BASE}
WORKDIR /srv
CMD ["sh", "-c", "hostname > /srv/hostname && exec python -m http.server 8000"]
"""

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

T = TypeVar("T")


@dataclass
class Setup:
    cluster: Cluster
    engine: Engine
    swarm: Swarm
    #: the pushed image by digest (registry/repo@sha256:...)
    image: str
    digest: str
    push_lines: list[str]


def _context_tar(folder: Path) -> Path:
    path = folder / "context.tar"
    data = DOCKERFILE.encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    """The swarm, orun's engine (the manager, node1) and the test image pushed to the
    registry. The base image is copied into the manager only: the workers pull."""
    folder = tmp_path_factory.mktemp("swarm")
    async with netnodes(folder, 3, images=(), registry=True, swarm=True) as cluster:
        assert cluster.registry is not None
        manager = cluster.nodes[0]
        await cluster.load_images([BASE], [manager])
        engine = await Engine.connect(manager.docker_url)
        try:
            context = await asyncio.to_thread(_context_tar, folder)
            await engine.build(context, tag=LOCAL_TAG, dockerfile="Dockerfile",
                               build_args={}, labels=LABELS, on_line=lambda _: None)
            await engine.tag(LOCAL_TAG, f"{cluster.registry}/{REPO}", "1")
            lines: list[str] = []
            digest = await engine.push(f"{cluster.registry}/{REPO}:1", lines.append)
            yield Setup(cluster, engine, Swarm(engine), f"{cluster.registry}/{REPO}@{digest}",
                        digest, lines)
        finally:
            await engine.close()


def service_spec(image: str, replicas: int) -> dict[str, Any]:
    """What the runtime will build: host-mode published port picked by each node,
    dnsrr (no VIP: this kernel has no IPVS), at most one replica per node."""
    return {
        "Labels": LABELS,
        "TaskTemplate": {
            "ContainerSpec": {"Image": image, "Init": True, "Env": ["PYTHONUNBUFFERED=1"],
                              "StopGracePeriod": 2_000_000_000},
            "Placement": {"MaxReplicas": 1},
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Mode": "dnsrr",
                         "Ports": [{"Protocol": "tcp", "TargetPort": 8000,
                                    "PublishMode": "host"}]},
    }


async def until(what: str, probe: Callable[[], Awaitable[T | None]],
                timeout: float = 90.0) -> T:
    """Poll `probe` until it returns something (not None); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last is not None:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.3)


async def running_tasks(swarm: Swarm, service_id: str, count: int) -> list[TaskInfo] | None:
    """The running tasks once exactly `count` run (each with a published port)."""
    tasks = await swarm.tasks(service_id)
    running = [t for t in tasks if t.running]
    if len(running) == count and all(t.published_port and t.node_address for t in running):
        return running
    return None


async def http_text(session: aiohttp.ClientSession, url: str) -> str:
    async def probe() -> str | None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with session.get(url) as response:
                if response.status == 200:
                    return await response.text()
        return None
    return await until(f"GET {url}", probe, timeout=20)


async def scale_losing_a_race(engine: Engine, swarm: Swarm, service_id: str,
                             replicas: int) -> list[int]:
    """`swarm.scale(service_id, replicas)` while another client scales the service to 1
    just before scale's first update reaches the engine; the replica counts of the
    updates made, in the order they were made."""
    real_api = engine.api
    sent: list[int] = []

    async def api(method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith("/update"):
            sent.append(kwargs["body"]["Mode"]["Replicated"]["Replicas"])
            if len(sent) == 1:
                await Swarm(engine).scale(service_id, 1)
        return await real_api(method, path, **kwargs)

    engine.api = api  # type: ignore[method-assign]
    try:
        await swarm.scale(service_id, replicas)
    finally:
        del engine.api
    return sent


async def test_push_returns_the_digest_the_registry_serves(setup: Setup) -> None:
    assert setup.cluster.registry is not None
    url = f"http://{setup.cluster.registry}/v2/{REPO}/manifests/1"
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    async with aiohttp.ClientSession() as session, \
            session.get(url, headers={"Accept": accept}) as response:
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == setup.digest
    assert setup.digest.startswith("sha256:") and len(setup.digest) == 71
    assert any("digest: " + setup.digest in line for line in setup.push_lines)


async def test_a_service_runs_one_replica_per_node_and_each_is_reachable(setup: Setup) -> None:
    swarm, name = setup.swarm, "orun-swarm-test-web"
    service_id = await swarm.create_service(name, service_spec(setup.image, 3))
    try:
        info = await swarm.inspect_service(name)
        assert info is not None
        assert (info.id, info.name, info.replicas, info.image) == (service_id, name, 3,
                                                                   setup.image)
        assert dict(info.labels) == LABELS and info.version_index > 0 and info.updated_at > 0
        assert [s.id for s in await swarm.list_services(LABELS)] == [service_id]
        assert await swarm.list_services({"orun.test": "none"}) == []
        with pytest.raises(EngineError, match=f"^a swarm service named {name} already exists$"):
            await swarm.create_service(name, service_spec(setup.image, 1))

        tasks = await until("3 running tasks",
                            lambda: running_tasks(swarm, service_id, 3), timeout=120)
        nodes = {n.id: n for n in await swarm.nodes()}
        assert {t.node_id for t in tasks} == set(nodes)  # one on each node
        for task in tasks:
            assert task.node_address == nodes[task.node_id].address
            assert task.service_id == service_id and task.container_id
        hostnames = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            for task in tasks:
                text = await http_text(
                    session, f"http://{task.node_address}:{task.published_port}/hostname")
                assert text.strip() == task.container_id[:12]  # this very task answered
                hostnames.add(text.strip())
        assert len(hostnames) == 3
        listed = await swarm.list_services(LABELS)
        assert [(s.running_tasks, s.desired_tasks) for s in listed] == [(3, 3)]

        # the output of all three, stdout (unbuffered) and stderr (the access lines)
        async def all_logged() -> list[str] | None:
            lines = [line async for line in swarm.service_logs(service_id)]
            serving = [line for line in lines if line.startswith("Serving HTTP on")]
            gets = [line for line in lines if '"GET /hostname HTTP/1.1" 200' in line]
            return lines if len(serving) == 3 and len(gets) == 3 else None
        await until("the service logs", all_logged, timeout=30)
        later = time.time() + 3600
        assert [line async for line in swarm.service_logs(service_id, since=later)] == []

        # following: a new request's line arrives while the stream is open
        task = tasks[0]
        follower = swarm.service_logs(service_id, follow=True, since=time.time())
        try:
            async with aiohttp.ClientSession() as session:
                await http_text(session,
                                f"http://{task.node_address}:{task.published_port}/hostname?followed")

            async def next_matching() -> str:
                async for line in follower:
                    if "GET /hostname?followed" in line:
                        return line
                raise AssertionError("the log stream ended")
            assert " 200 " in await asyncio.wait_for(next_matching(), 20)
        finally:
            await follower.aclose()  # type: ignore[attr-defined]

        await swarm.scale(service_id, 0)
        await until("no running task", lambda: running_tasks(swarm, service_id, 0), timeout=30)
        assert (await swarm.inspect_service(service_id)).replicas == 0  # type: ignore[union-attr]
        # another change lands between scale's read and its update: it reads again
        updates = await scale_losing_a_race(setup.engine, swarm, service_id, 2)
        # scale's first attempt (held back while the other update lands, so its version
        # is stale), the other update, scale's retry from a fresh read
        assert updates == [2, 1, 2]
        two = await until("2 running tasks", lambda: running_tasks(swarm, service_id, 2))
        assert len({t.node_id for t in two}) == 2
        assert (await swarm.inspect_service(service_id)).replicas == 2  # type: ignore[union-attr]
    finally:
        removed = await swarm.remove_service(service_id)
    assert removed
    assert await swarm.inspect_service(service_id) is None
    assert await swarm.tasks(service_id) == []
    assert await swarm.remove_service(service_id) is False
    assert [line async for line in swarm.service_logs(service_id)] == []


async def test_nodes_and_the_managers_swarm_info(setup: Setup) -> None:
    nodes = sorted(await setup.swarm.nodes(), key=lambda n: n.hostname)
    expected = [(n.name, n.address) for n in setup.cluster.nodes]
    assert [(n.hostname, n.address) for n in nodes] == expected
    assert [(n.role, n.leader) for n in nodes] == [("manager", True), ("worker", False),
                                                    ("worker", False)]
    assert all(n.usable for n in nodes)
    info = await setup.swarm.check()
    assert info.manager and info.active and (info.nodes, info.managers) == (3, 1)
    assert info.node_id == nodes[0].id and info.node_address == nodes[0].address


async def test_missing_services_and_bad_input(setup: Setup) -> None:
    swarm = setup.swarm
    assert await swarm.inspect_service("orun-swarm-test-none") is None
    assert await swarm.tasks("orun-swarm-test-none") == []
    assert await swarm.remove_service("orun-swarm-test-none") is False
    with pytest.raises(EngineError, match="orun-swarm-test-none: it does not exist"):
        await swarm.scale("orun-swarm-test-none", 1)
    with pytest.raises(EngineError, match="replicas must be 0 or more"):
        await swarm.scale("orun-swarm-test-none", -1)
    with pytest.raises(EngineError, match=r"^cannot create swarm service orun-swarm-test-bad: "):
        await swarm.create_service("orun-swarm-test-bad", {"TaskTemplate": {}})


async def test_a_workers_engine_is_not_a_manager(setup: Setup) -> None:
    worker = setup.cluster.nodes[1]
    engine = await Engine.connect(worker.docker_url)
    try:
        info = await engine.swarm_info()
        assert info.active and not info.manager and info.node_address == worker.address
        swarm = Swarm(engine)
        expected = (rf"^the engine at {re.escape(worker.docker_url)} is not a swarm manager "
                    r"\(run `docker swarm init` there, or point system.container_engine "
                    r"at a manager\)$")
        for call in (swarm.check(), swarm.list_services(LABELS), swarm.nodes(),
                     swarm.tasks("x"), swarm.create_service("x", service_spec("y", 1))):
            with pytest.raises(EngineError, match=expected):
                await call
    finally:
        await engine.close()


async def test_push_errors_say_what_to_do(setup: Setup) -> None:
    engine = setup.engine
    nobody = "10.200.0.2:5999"  # the registry's address, a port nothing listens on
    await engine.tag(LOCAL_TAG, f"{nobody}/{REPO}", "1")
    with pytest.raises(EngineError, match=rf"^cannot reach the registry {re.escape(nobody)} "
                       rf"from the engine at {re.escape(engine.url)} \(.*connection refused"
                       r"\); every swarm node and the manager orun uses must reach it$"):
        await engine.push(f"{nobody}/{REPO}:1", lambda _: None)
    # (the engine asks the registry first: a missing image is only noticed at one it reaches)
    missing = f"{setup.cluster.registry}/{REPO}:2"
    with pytest.raises(EngineError, match=rf"^no image {re.escape(missing)} on the engine at "):
        await engine.push(missing, lambda _: None)
    with pytest.raises(EngineError, match=r"^no image orun-swarm-test/none:1 on the engine "):
        await engine.tag("orun-swarm-test/none:1", "x", "1")
    with pytest.raises(EngineError, match="not an image reference to push"):
        await engine.push(setup.image, lambda _: None)


async def test_an_untrusted_plain_http_registry_is_named(setup: Setup) -> None:
    """The host's engine was not told the fixture's registry is insecure (it trusts only
    127.0.0.0/8): its push must say how to fix that. The tag is removed afterwards."""
    registry = setup.cluster.registry
    assert registry is not None
    ref = f"{registry}/orun-swarm-test/untrusted"
    host = await Engine.connect("docker")
    try:
        await host.tag(BASE, ref, "1")
        try:
            with pytest.raises(EngineError, match=(
                    rf"^the registry {re.escape(registry)} speaks plain HTTP and the engine "
                    rf"at {re.escape(host.url)} does not trust it: add "
                    rf'"{re.escape(registry)}" to insecure-registries')):
                await host.push(f"{ref}:1", lambda _: None)
        finally:
            assert await host.remove_image(f"{ref}:1")
    finally:
        await host.close()
