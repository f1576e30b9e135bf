"""Swarm mode: the engine interface of a single Docker engine, carried out by Swarm services.

The runtime works in workloads: create one from a container body, start it, stop it,
inspect it, follow its output, remove it. On one engine a workload is a container
(orun/engine/docker.py). Here it is a replicated Swarm service on the cluster whose
manager orun talks to, so the runtime, its lifecycle and the CLI stay the same:

- create: the image (built on the manager, or pulled there) is pushed to
  `builder.registry` and the service runs it by digest, so every node runs the same bytes;
  the container body becomes a ServiceSpec (env, labels, named volumes, capabilities,
  resources; replicas and constraints from `Placement`), published in host mode on a
  port Swarm picks per task, with DNS round robin (this kernel has no IPVS, so neither
  the ingress mesh nor virtual IPs work);
- start / stop: replicas back to the desired count / to 0 (scale to zero);
- inspect: "running" while at least one task runs; the published port and node address
  are those of the first running task (the runtime health-checks it and starts serving);
  `endpoints()` lists every running task for the replica tracker;
- pause, restart and stats are single-engine features: pause is never asked for here
  (the idle tier is off in swarm mode), restart and bind mounts are refused.

What a node-local feature would need and what Kubernetes would map to is in the README.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker

from orun.engine.docker import ContainerInfo, Engine, EngineEvent
from orun.engine.remote import RemoteDocker
from orun.engine.stats import ContainerStats
from orun.engine.swarm import ServiceInfo, Swarm, TaskInfo
from orun.errors import EngineError

#: the service label that keeps the replica count a start scales back up to
LABEL_REPLICAS = "orun.replicas"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and how many: `--conf container.replicas=N` and `container.constraints=...`."""

    replicas: int = 1
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A running task of a service, as the proxy reaches it."""

    task_id: str
    host: str
    port: int
    node_id: str


def registry_ref(registry: str, image: str) -> str:
    """`image` (repo:tag, maybe with a registry already) under `registry`."""
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    repo = repo.split("@", 1)[0]
    if "/" in repo and ("." in repo.split("/", 1)[0] or ":" in repo.split("/", 1)[0]):
        repo = repo.split("/", 1)[1]  # the image's own registry host goes
    return f"{registry}/{repo}:{tag or 'latest'}"


def service_spec(name: str, body: Mapping[str, Any], image: str,
                 placement: Placement) -> dict[str, Any]:
    """A ServiceSpec that runs what the container-create `body` describes, by `image`."""
    host = body.get("HostConfig") or {}
    mounts = []
    for m in host.get("Mounts") or ():
        if m.get("Type") != "volume":
            raise EngineError(f"swarm mode cannot mount {m.get('Source')} into {name}: "
                              "folders of orun's machine are not on the nodes; use named "
                              "volumes")
        mounts.append({"Type": "volume", "Source": m["Source"], "Target": m["Target"],
                       "ReadOnly": bool(m.get("ReadOnly"))})
    container: dict[str, Any] = {
        "Image": image, "Env": list(body.get("Env") or ()),
        "Labels": dict(body.get("Labels") or {}), "Mounts": mounts,
        "StopGracePeriod": 5_000_000_000,
        "CapabilityDrop": list(host.get("CapDrop") or ()),
        "CapabilityAdd": list(host.get("CapAdd") or ()),
    }
    for source, target in (("User", "User"), ("Cmd", "Args"), ("Entrypoint", "Command"),
                           ("WorkingDir", "Dir"), ("Hostname", "Hostname")):
        if body.get(source):
            container[target] = body[source]
    if host.get("ReadonlyRootfs"):
        container["ReadOnly"] = True
    if host.get("Init"):
        container["Init"] = True
    limits: dict[str, int] = {}
    if host.get("NanoCpus"):
        limits["NanoCPUs"] = int(host["NanoCpus"])
    if host.get("Memory"):
        limits["MemoryBytes"] = int(host["Memory"])
    if host.get("PidsLimit"):
        limits["Pids"] = int(host["PidsLimit"])
    ports = [{"Protocol": "tcp", "TargetPort": int(key.split("/")[0]), "PublishMode": "host"}
             for key in body.get("ExposedPorts") or {}]
    labels = {**dict(body.get("Labels") or {}), LABEL_REPLICAS: str(placement.replicas)}
    return {
        "Name": name, "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {"Limits": limits} if limits else {},
            # a task that exits is replaced; orun sees the service, not the containers
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            # as `docker stop -t 5` on one engine: a scale-down or a retired version's
            # tasks get SIGTERM, then SIGKILL 5 s later (the default is 10 s)
            "Placement": {"Constraints": list(placement.constraints)},
        },
        "Mode": {"Replicated": {"Replicas": placement.replicas}},
        "EndpointSpec": {"Mode": "dnsrr", "Ports": ports},
    }


class SwarmEngine(Engine):
    """An `Engine` connected to a Swarm manager whose workloads are services."""

    def __init__(self, client: aiodocker.Docker, url: str, kind: str, version: str,
                 registry: str, remote: RemoteDocker | None = None) -> None:
        # a manager over SSH: its API through the link; the tasks are reached on their
        # nodes' addresses directly (no port forwards to prune)
        super().__init__(client, url, kind, version, remote, prune_forwards=False)
        self.registry = registry
        self.swarm = Swarm(self)
        self._placements: dict[str, Placement] = {}

    @classmethod
    async def connect_swarm(cls, setting: str, *, registry: str,
                            ssh_keepalive_secs: float = 10.0) -> SwarmEngine:
        """Connect to the manager `setting` names (unix://, tcp://, or ssh:// with the
        tasks reached on their nodes' addresses); EngineError when it is none, or when no
        registry is configured (the nodes could not get the images)."""
        if not registry:
            raise EngineError("swarm mode needs builder.registry (host:port of a registry "
                              "that orun's manager can push to and every node can pull "
                              "from)")
        base = await Engine.connect(setting, ssh_keepalive_secs=ssh_keepalive_secs)
        engine = cls(base._client, base.url, base.kind, base.version, registry, base.remote)
        try:
            info = await engine.swarm_info()
        except EngineError:
            await engine.close()
            raise
        if not info.manager:
            await engine.close()
            raise EngineError(f"the engine at {engine.url} is not a swarm manager (run "
                              "`docker swarm init` there, or point system.container_engine "
                              "at a manager)")
        return engine

    @property
    def publish_ip(self) -> str:
        return ""  # host mode: each task publishes on its own node

    def place(self, name: str, placement: Placement) -> None:
        """How many replicas and where, for the service `name` created next."""
        self._placements[name] = placement

    async def reach(self, info: ContainerInfo) -> tuple[str, int]:
        if info.host_port is None or not info.host_ip:
            raise EngineError(f"service {info.name} has no running task with a published "
                              f"port ({info.status})")
        return info.host_ip, info.host_port

    async def endpoints(self, service_id: str) -> list[Endpoint]:
        """The running tasks of a service that publish a port, by task id."""
        return sorted((Endpoint(t.id, t.node_address, t.published_port, t.node_id)
                       for t in await self.swarm.tasks(service_id)
                       if t.running and t.published_port and t.node_address),
                      key=lambda e: e.task_id)

    # -- workloads are services ------------------------------------------------------

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        placement = self._placements.pop(name, Placement())
        image = await self._publish_image(str(body["Image"]))
        return await self.swarm.create_service(name, service_spec(name, body, image, placement))

    async def _publish_image(self, image: str) -> str:
        """Push `image` to the registry; the reference by digest the nodes pull."""
        ref = registry_ref(self.registry, image)
        repo, _, tag = ref.rpartition(":")
        await self.tag(image, repo, tag)
        digest = await self.push(ref, lambda _line: None)
        return f"{repo}@{digest}"

    async def start(self, container_id: str) -> None:
        service = await self.swarm.inspect_service(container_id)
        if service is None:
            raise EngineError(f"service {container_id[:12]} is gone")
        wanted = int(service.labels.get(LABEL_REPLICAS, "1") or 1)
        if service.replicas != wanted:
            await self.swarm.scale(service.id, wanted)

    async def set_replicas(self, name: str, replicas: int) -> bool:
        """The service `name` runs `replicas` from now on (scaled now unless it is scaled to
        zero while idle: then at its next start). False when there is no such service."""
        service = await self.swarm.inspect_service(name)
        if service is None:
            return False
        if service.labels.get(LABEL_REPLICAS) != str(replicas):
            await self.swarm.scale(service.id, replicas if service.replicas else 0,
                                   labels={LABEL_REPLICAS: str(replicas)})
        return True

    async def stop(self, container_id: str, timeout: int = 5) -> None:
        service = await self.swarm.inspect_service(container_id)
        if service is not None and service.replicas:
            await self.swarm.scale(service.id, 0)

    async def remove(self, container_id: str) -> None:
        await self.swarm.remove_service(container_id)

    async def pause(self, container_id: str) -> None:
        raise EngineError("pausing is not available in swarm mode")

    async def unpause(self, container_id: str) -> bool:
        return False

    async def restart(self, container_id: str, timeout: int = 0) -> None:
        raise EngineError("restarting a service in place is not available in swarm mode")

    async def stats(self, container_id: str, timeout: float = 10.0) -> ContainerStats | None:
        return None  # per-task figures live on each node's engine

    async def inspect(self, ref: str) -> ContainerInfo | None:
        service = await self.swarm.inspect_service(ref)
        if service is None:
            return None
        return self._info(service, await self.swarm.tasks(service.id))

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        services = await self.swarm.list_services(labels)
        tasks = await asyncio.gather(*(self.swarm.tasks(s.id) for s in services))
        return [self._info(s, t) for s, t in zip(services, tasks, strict=True)]

    @staticmethod
    def _info(service: ServiceInfo, tasks: list[TaskInfo]) -> ContainerInfo:
        running = sorted((t for t in tasks if t.running and t.published_port),
                         key=lambda t: t.id)
        first = running[0] if running else None
        failed = [t for t in tasks if t.state in ("failed", "rejected")]
        if first is not None:
            state, status = "running", f"running ({len(running)}/{service.replicas})"
        elif service.replicas == 0:
            state, status = "exited", "scaled to 0"
        else:
            state = "created"
            status = (f"starting (0/{service.replicas})" + (
                f": {failed[-1].message}" if failed else ""))
        return ContainerInfo(
            id=service.id, name=service.name, state=state, labels=dict(service.labels),
            image=service.image, host_port=first.published_port if first else None,
            host_ip=first.node_address if first else "", status=status)

    async def logs(self, container_id: str, *, since: float = 0,
                   follow: bool = True) -> AsyncIterator[str]:
        async for line in self.swarm.service_logs(container_id, since=since, follow=follow):
            yield line

    def events(self, labels: Mapping[str, str]) -> AsyncIterator[EngineEvent]:
        """Task changes are not in the manager's event stream (their containers are on
        the nodes): the replica tracker polls tasks instead. This stream stays silent
        until cancelled, so the watcher does not spin reconnecting."""
        return _Silence()


class _Silence:
    """An event stream with no events."""

    def __aiter__(self) -> _Silence:
        return self

    async def __anext__(self) -> EngineEvent:
        await asyncio.Event().wait()
        raise StopAsyncIteration



__all__ = ["Endpoint", "Placement", "SwarmEngine", "registry_ref", "service_spec"]
