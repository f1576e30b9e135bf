"""The engine seam: what the runtime asks of an engine that runs app versions.

The runtime thinks in workloads: one per app version and settings, created from a
container-create body (image, env, labels, mounts, limits, capabilities, the port), started,
health-checked where `inspect` and `reach` say, followed (`logs`, `events`), stopped when
idle and removed when replaced. Two implementations exist and `mypy` holds both to this
interface (see `_implementations`):

- one Docker or Podman engine, local or over SSH (orun/engine/docker.py): a workload is a
  container; `reach` is its published port on loopback (or carried over the SSH link);
- Docker Swarm (orun/engine/swarmengine.py): a workload is a replicated service, `start`
  and `stop` scale it, `inspect` and `reach` name its first running task, and
  `endpoints()` (swarm only) lists every task for the replica pool.

A Kubernetes engine would be a third: a Deployment per workload (replicas, resources,
env, node affinity from the constraints, PVCs for named volumes) with a readiness probe on
the health path, `stop` = `replicas: 0`, `inspect`/`reach`/endpoints from the ready
addresses of a headless Service's EndpointSlices, `logs` from the pods, images from the
same registry the swarm mode pushes to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from orun.engine.docker import ContainerInfo, Engine, EngineEvent
from orun.engine.stats import ContainerStats
from orun.engine.swarmengine import SwarmEngine


class WorkloadEngine(Protocol):
    """An engine the runtime can run app versions on."""

    url: str
    #: "docker" or "podman": which `--copt engine.<flag>` options apply
    kind: str

    @property
    def publish_ip(self) -> str:
        """The address a workload's port is published on ("" = each task's own node)."""
        ...

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str: ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: int = 5) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    async def inspect(self, ref: str) -> ContainerInfo | None: ...

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]: ...

    async def reach(self, info: ContainerInfo) -> tuple[str, int]:
        """Where orun connects to the workload (its first running task)."""
        ...

    def logs(self, container_id: str, *, since: float = 0,
             follow: bool = True) -> AsyncIterator[str]: ...

    def events(self, labels: Mapping[str, str]) -> AsyncIterator[EngineEvent]: ...

    async def pause(self, container_id: str) -> None: ...

    async def unpause(self, container_id: str) -> bool: ...

    async def stats(self, container_id: str,
                    timeout: float = 10.0) -> ContainerStats | None: ...


def _implementations(single: Engine, swarm: SwarmEngine) -> tuple[WorkloadEngine, ...]:
    """Never called: mypy checks here that both engines implement the seam."""
    return single, swarm


__all__ = ["WorkloadEngine"]
