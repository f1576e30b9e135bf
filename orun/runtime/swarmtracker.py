"""Swarm mode: keep each serving service's replica pool equal to its healthy tasks.

Swarm reports task changes on the manager's API only when asked (the containers live on
the nodes, so their events never reach orun), so the tracker asks: every
`POLL_SECS` it lists the running tasks of every service that serves, health-checks the
ones it has not seen (one probe, short timeout) and puts them in the pool, and takes out
at once the ones that stopped running. Every `PROBE_SECS` it also probes the members
themselves: a node whose engine died still shows its tasks as running for 10 to 40
seconds until Swarm marks the node down, but its containers no longer answer, and that
must not cost requests for so long. A member that fails a probe leaves the pool; it is
taken back when it answers again.

A service with no healthy task left is lost, as a crashed container is: requests then
go through the cold path, which waits for a healthy task (Swarm reschedules them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import structlog

from orun.engine.swarmengine import Endpoint, SwarmEngine
from orun.errors import EngineError
from orun.runtime.app import AppRuntime, Instance
from orun.runtime.hosts import ReplicaHost
from orun.runtime.replicas import ReplicaPool

log = structlog.get_logger("orun.runtime.replicas")

#: how often the running tasks of every serving service are listed
POLL_SECS = 0.5
#: how often each member is health-probed (a dead node's replica fails requests until
#: then; a probe on the LAN costs about a millisecond)
PROBE_SECS = 0.5
#: a probe's time limit (a node on the LAN answers in milliseconds)
PROBE_TIMEOUT = 1.0


def pooled(inst: Instance) -> Instance:
    """`inst` (a service's first healthy task) with a pool whose first member it is."""
    pool: ReplicaPool[Instance] = ReplicaPool()
    primary = replace(inst, replicas=pool)
    pool.fallback = primary
    pool.set_members((replace(inst, replicas=None),))
    return primary


class ReplicaTracker:
    def __init__(self, runtime: ReplicaHost) -> None:
        self._runtime = runtime
        #: task id -> when it was last probed healthy, per service
        self._probed: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECS)
            engine = self._runtime.connected_engine()
            if not isinstance(engine, SwarmEngine):
                continue
            serving = [rt for rt in self._runtime.runtimes() if rt.instance is not None
                       and rt.instance.replicas is not None]
            await asyncio.gather(*(self._track(engine, rt) for rt in serving))

    async def _track(self, engine: SwarmEngine, rt: AppRuntime) -> None:
        primary = rt.instance
        if primary is None or primary.replicas is None:
            return
        pool = primary.replicas
        try:
            endpoints = {e.task_id: e for e in await engine.endpoints(primary.container_id)}
        except EngineError as exc:
            log.warning("replicas_unknown", app=rt.label, error=exc.message)
            return
        now = time.monotonic()
        members = {m.container_id: m for m in pool.members if m.container_id in endpoints}
        # the first member stands for the first task until the tasks are known by id
        first = next((m for m in pool.members if m.container_id == primary.container_id),
                     None)
        due = [e for tid, e in endpoints.items()
               if tid not in members or now - self._probed.get(tid, 0) >= PROBE_SECS]
        results = await asyncio.gather(*(self._healthy(primary, e) for e in due))
        for endpoint, healthy in zip(due, results, strict=True):
            if healthy:
                self._probed[endpoint.task_id] = now
                if endpoint.task_id not in members:
                    members[endpoint.task_id] = self._member(primary, endpoint, first)
                    log.info("replica_added", app=rt.label, task=endpoint.task_id[:12],
                             node=endpoint.host, port=endpoint.port)
            elif endpoint.task_id in members:
                del members[endpoint.task_id]
                self._probed.pop(endpoint.task_id, None)
                log.warning("replica_unhealthy", app=rt.label, task=endpoint.task_id[:12],
                            node=endpoint.host)
        gone = {m.container_id for m in pool.members} - set(members) - {primary.container_id}
        for task_id in gone:
            self._probed.pop(task_id, None)
            log.info("replica_removed", app=rt.label, task=task_id[:12])
        pool.set_members(tuple(members[tid] for tid in sorted(members)))
        if not pool.members and rt.instance is primary:
            self._runtime.lost(rt, "no healthy replica", None)

    @staticmethod
    def _member(primary: Instance, endpoint: Endpoint, first: Instance | None) -> Instance:
        """The task as a pool member; the stand-in's open requests carry over when it is
        the same task (same address)."""
        member = replace(primary, container_id=endpoint.task_id, host=endpoint.host,
                         host_port=endpoint.port, replicas=None,
                         name=f"{primary.name}.{endpoint.task_id[:12]}")
        if first is not None and (first.host, first.host_port) == (endpoint.host,
                                                                    endpoint.port):
            member = replace(member, load=first.load)
        return member

    async def _healthy(self, primary: Instance, endpoint: Endpoint) -> bool:
        with contextlib.suppress(EngineError):
            problem = await self._runtime.prober.probe(
                endpoint.host, endpoint.port, primary.health_path, PROBE_TIMEOUT)
            return problem is None
        return False


__all__ = ["ReplicaTracker", "pooled"]
