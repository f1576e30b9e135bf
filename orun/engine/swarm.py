"""Docker Swarm services, tasks and nodes, through the manager engine orun talks to.

In swarm mode each app version is a service; the runtime builds the service spec (the
Engine API's ServiceSpec document), and this class creates, scales, reads and removes
services with it and tells where their tasks run. The runtime polls `tasks()` to see a
change converge: swarm has no "wait until running" call.

It speaks the API through `Engine.api` and `Engine.api_frames`, so `engine/docker.py`
stays the one module that knows the client library. Every failure is an `EngineError`
whose message says what to do; an engine that is not a swarm manager says so, because
that is a setup mistake, not a passing fault.

Facts of the API this relies on (Docker 20.10, API 1.41):
- Every swarm endpoint answers 503 "This node is not a swarm manager..." on a worker and
  on an engine in no swarm.
- An update names the service version it was computed from; a concurrent change makes
  it fail with 500 "update out of sequence", and reading the service again and
  re-applying is the way out.
- `GET /tasks?filters={"service":[x]}` resolves x (a name or id) first and answers 404
  when the service is gone; tasks keep a few old attempts per replica (the swarm's task
  history), so callers look at `state` and `desired_state`, not at the count.
- Scaling down gives the tasks removed `desired_state` "remove", not "shutdown".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from orun.engine.docker import Engine, EngineAPIError
from orun.engine.swarminfo import (
    NodeInfo,
    ServiceInfo,
    SwarmInfo,
    TaskInfo,
    parse_node,
    parse_service,
    parse_task,
)
from orun.errors import EngineError

__all__ = ["NodeInfo", "ServiceInfo", "Swarm", "SwarmInfo", "TaskInfo"]

log = structlog.get_logger("orun.engine")

#: how long the node list (for task addresses) is trusted before it is read again
NODE_CACHE_SECS = 10.0
#: attempts of an update that loses a race with another change of the same service
UPDATE_ATTEMPTS = 5


def not_manager_message(url: str) -> str:
    return (f"the engine at {url} is not a swarm manager (run `docker swarm init` there, "
            "or point system.container_engine at a manager)")


class Swarm:
    """The swarm that `engine` (a manager) manages."""

    def __init__(self, engine: Engine, *, node_cache_secs: float = NODE_CACHE_SECS) -> None:
        self.engine = engine
        self._node_cache_secs = node_cache_secs
        self._nodes: dict[str, NodeInfo] = {}
        self._nodes_read_at = -1e9
        self._nodes_lock = asyncio.Lock()

    def _error(self, exc: EngineAPIError, doing: str) -> EngineError:
        """The user's message for a failed call made while `doing` something."""
        if exc.code == 503 and "not a swarm manager" in exc.reason.lower():
            return EngineError(not_manager_message(self.engine.url))
        return EngineError(f"cannot {doing}: {exc.reason}")

    async def _call(self, doing: str, method: str, path: str, *,
                    params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        try:
            return await self.engine.api(method, path, params=params, body=body)
        except EngineAPIError as exc:
            raise self._error(exc, doing) from None

    async def check(self) -> SwarmInfo:
        """This engine's swarm state; an `EngineError` unless it is an active manager."""
        info = await self.engine.swarm_info()
        if not info.manager:
            raise EngineError(not_manager_message(self.engine.url))
        return info

    # -- services --------------------------------------------------------------

    async def create_service(self, name: str, spec: Mapping[str, Any]) -> str:
        """Create service `name` from `spec` (a ServiceSpec; its Name is set to `name`);
        the new service's id."""
        body = {**spec, "Name": name}
        try:
            answer = await self.engine.api("POST", "services/create", body=body)
        except EngineAPIError as exc:
            if exc.code == 409:
                raise EngineError(f"a swarm service named {name} already exists") from None
            raise self._error(exc, f"create swarm service {name}") from None
        for warning in (answer or {}).get("Warnings") or ():
            log.warning("swarm_service_warning", service=name, warning=str(warning))
        service_id = str((answer or {}).get("ID") or "")
        if not service_id:
            raise EngineError(f"the engine created swarm service {name} but returned no id")
        return service_id

    async def _inspect_raw(self, name_or_id: str) -> Mapping[str, Any] | None:
        try:
            data = await self.engine.api("GET", f"services/{name_or_id}")
        except EngineAPIError as exc:
            if exc.code == 404:
                return None
            raise self._error(exc, f"inspect swarm service {name_or_id}") from None
        return data if isinstance(data, Mapping) else None

    async def inspect_service(self, name_or_id: str) -> ServiceInfo | None:
        """The service, or None when there is none by that name or id."""
        data = await self._inspect_raw(name_or_id)
        return parse_service(data) if data is not None else None

    async def list_services(self, labels: Mapping[str, str]) -> list[ServiceInfo]:
        """Every service carrying all of `labels`, with its running/desired task counts."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        items = await self._call("list swarm services", "GET", "services",
                                 params={"filters": filters, "status": "true"})
        return [parse_service(item) for item in items or () if isinstance(item, Mapping)]

    async def scale(self, service_id: str, replicas: int,
                    labels: Mapping[str, str] | None = None) -> None:
        """Set a replicated service's replica count (the rest of its spec is kept, its
        labels updated with `labels`)."""
        if replicas < 0:
            raise EngineError(f"replicas must be 0 or more, not {replicas}")
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            data = await self._inspect_raw(service_id)
            if data is None:
                raise EngineError(f"cannot scale swarm service {service_id}: it does not exist")
            spec = dict(data.get("Spec") or {})
            mode = dict(spec.get("Mode") or {})
            if "Replicated" not in mode:
                raise EngineError(f"swarm service {service_id} is not replicated: "
                                  "it cannot be scaled")
            mode["Replicated"] = {**(mode.get("Replicated") or {}), "Replicas": replicas}
            spec["Mode"] = mode
            if labels:
                spec["Labels"] = {**(spec.get("Labels") or {}), **labels}
            version = str((data.get("Version") or {}).get("Index", ""))
            try:
                answer = await self.engine.api("POST", f"services/{service_id}/update",
                                               params={"version": version}, body=spec)
            except EngineAPIError as exc:
                if "out of sequence" in exc.reason and attempt < UPDATE_ATTEMPTS:
                    continue  # someone else changed it meanwhile: read it again
                raise self._error(exc, f"scale swarm service {service_id}") from None
            for warning in (answer or {}).get("Warnings") or ():
                log.warning("swarm_service_warning", service=service_id, warning=str(warning))
            return

    async def remove_service(self, service_id: str) -> bool:
        """Remove the service (its tasks stop); False when it was already gone."""
        try:
            await self.engine.api("DELETE", f"services/{service_id}")
        except EngineAPIError as exc:
            if exc.code == 404:
                return False
            raise self._error(exc, f"remove swarm service {service_id}") from None
        return True

    # -- tasks and nodes -----------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """Every node of the swarm (also refreshes the addresses `tasks` uses)."""
        items = await self._call("list swarm nodes", "GET", "nodes")
        nodes = [parse_node(item) for item in items or () if isinstance(item, Mapping)]
        self._nodes = {node.id: node for node in nodes}
        self._nodes_read_at = time.monotonic()
        return nodes

    async def _addresses(self, node_ids: set[str]) -> dict[str, str]:
        """Node id -> address, from a node list at most `node_cache_secs` old, read again
        at once when a task is on a node the list does not know (one that just joined)."""
        async with self._nodes_lock:
            stale = time.monotonic() - self._nodes_read_at > self._node_cache_secs
            if stale or not node_ids <= self._nodes.keys():
                await self.nodes()
            return {node_id: node.address for node_id, node in self._nodes.items()}

    async def tasks(self, service_id: str) -> list[TaskInfo]:
        """The service's tasks, current and recent (by replica, newest first), each with
        the address of its node; [] when the service is gone."""
        filters = json.dumps({"service": [service_id]})
        try:
            items = await self.engine.api("GET", "tasks", params={"filters": filters})
        except EngineAPIError as exc:
            if exc.code == 404:
                return []
            raise self._error(exc, f"list the tasks of swarm service {service_id}") from None
        items = [item for item in items or () if isinstance(item, Mapping)]
        addresses = await self._addresses({str(item.get("NodeID") or "") for item in items}
                                          - {""})
        tasks = [parse_task(item, addresses) for item in items]
        tasks.sort(key=lambda t: (t.slot if t.slot is not None else -1, -t.created))
        return tasks

    # -- logs ------------------------------------------------------------------

    async def service_logs(self, service_id: str, *, since: float = 0,
                           follow: bool = False) -> AsyncIterator[str]:
        """The output (stdout and stderr) of every task of the service, line by line,
        from `since` (seconds since the epoch; 0 for all); with `follow`, until the
        service goes or the caller stops. A TTY service's output is not supported (its
        stream is not framed). Nothing when the service is gone."""
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0"}
        if since > 0:
            params["since"] = f"{since:.6f}"
        lines = FrameLines()
        try:
            async for stream, payload in self.engine.api_frames(
                    f"services/{service_id}/logs", params=params):
                for line in lines.feed(stream, payload):
                    yield line
        except EngineAPIError as exc:
            if exc.code == 404:
                return
            raise self._error(exc, f"read the logs of swarm service {service_id}") from None
        for line in lines.rest():
            yield line


class FrameLines:
    """Lines out of output frames: a frame may end mid-line (long lines, or output the
    task wrote in pieces), and stdout and stderr are split apart so a half line of one is
    never joined to the other's."""

    def __init__(self) -> None:
        self._partial: dict[int, bytes] = {}

    def feed(self, stream: int, payload: bytes) -> list[str]:
        """The lines this frame completes."""
        parts = (self._partial.pop(stream, b"") + payload).split(b"\n")
        if parts[-1]:
            self._partial[stream] = parts[-1]
        return [part.decode(errors="replace") for part in parts[:-1]]

    def rest(self) -> list[str]:
        """The unfinished last lines, at the end of the stream."""
        rest = [part.decode(errors="replace") for part in self._partial.values()]
        self._partial.clear()
        return rest
