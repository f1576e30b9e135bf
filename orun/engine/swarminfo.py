"""What the Docker Swarm endpoints answer, read into orun's own types.

The runtime decides from these values alone (where a replica runs, on which port, whether
it is up), so reading them is kept apart from talking to the engine: the parsers are pure
functions of the JSON documents of Engine API v1.41, tested against captured answers.

Facts the parsers rely on (Docker 20.10):
- A task's `Status.PortStatus.Ports` lists the ports the engine actually published, so a
  host-mode port with no fixed `PublishedPort` shows the port the node picked. The same
  port can appear more than once (once per address family the node bound).
- A node's `Status.Addr` is the address it advertises (20.10 fills it in for managers
  too); older engines were known to report "0.0.0.0" for a manager, whose
  `ManagerStatus.Addr` ("host:2377") then names it, so that is the fallback.
- Times are RFC 3339 with nanoseconds; the zero time ("0001-01-01T00:00:00Z") means unset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: the task states in which a task has a container that may serve (or will soon)
LIVE_STATES = frozenset({"assigned", "accepted", "preparing", "ready", "starting", "running"})


@dataclass(frozen=True, slots=True)
class SwarmInfo:
    """This engine's place in a swarm (from `GET /info`)."""

    #: inactive, pending, active, error, locked
    local_state: str
    #: True when this engine is a manager of an active swarm (it can run services)
    manager: bool
    node_id: str
    node_address: str
    managers: int
    nodes: int
    error: str = ""

    @property
    def active(self) -> bool:
        return self.local_state == "active"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One swarm member."""

    id: str
    hostname: str
    #: the address other members (and orun) reach it at
    address: str
    #: manager or worker
    role: str
    #: ready, down, unknown, disconnected
    state: str
    #: active, pause, drain
    availability: str
    leader: bool
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Up and accepting new tasks."""
        return self.state == "ready" and self.availability == "active"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """One service: what orun reads back from the spec it created, and its version."""

    id: str
    name: str
    labels: Mapping[str, str]
    #: None for a global service
    replicas: int | None
    image: str
    #: the service's version: an update must name the version it was computed from
    version_index: int
    #: seconds since the epoch (0.0 when unset)
    updated_at: float
    #: tasks running and wanted, when the engine was asked for them (service lists)
    running_tasks: int | None = None
    desired_tasks: int | None = None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One task (one replica's attempt) of a service and where it runs."""

    id: str
    service_id: str
    #: empty until the scheduler has placed it
    node_id: str
    #: the node's address (empty when unplaced or the node is unknown)
    node_address: str
    #: new ... running, complete, shutdown, failed, rejected, orphaned, remove
    state: str
    #: running, shutdown, remove (a replica scaled away), ...
    desired_state: str
    #: the node port its first host-mode published port got (None before it runs)
    published_port: int | None
    container_id: str
    #: the engine's reason for a failed or rejected task (empty when none)
    error: str
    #: the engine's short status ("started", "preparing", ...)
    message: str
    created: float
    updated: float
    #: the replica number (None for a global service's tasks)
    slot: int | None = None
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        """Running and meant to stay so (a task being stopped is not counted)."""
        return self.state == "running" and self.desired_state == "running"

    @property
    def live(self) -> bool:
        """Wanted running and on its way there or already there."""
        return self.desired_state == "running" and self.state in LIVE_STATES


def parse_time(value: Any) -> float:
    """An engine timestamp as seconds since the epoch; 0.0 for the zero time or garbage.
    (Python 3.11's fromisoformat reads "Z" and nanoseconds, keeping microseconds.)"""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


def parse_swarm_info(info: Mapping[str, Any]) -> SwarmInfo:
    """The `Swarm` part of `GET /info`."""
    swarm = _map(info.get("Swarm"))
    state = str(swarm.get("LocalNodeState") or "inactive")
    manager = state == "active" and bool(swarm.get("ControlAvailable"))
    return SwarmInfo(local_state=state, manager=manager,
                     node_id=str(swarm.get("NodeID") or ""),
                     node_address=str(swarm.get("NodeAddr") or ""),
                     managers=_int(swarm.get("Managers")) or 0,
                     nodes=_int(swarm.get("Nodes")) or 0,
                     error=str(swarm.get("Error") or ""))


def parse_node(data: Mapping[str, Any]) -> NodeInfo:
    """One item of `GET /nodes`."""
    spec, status = _map(data.get("Spec")), _map(data.get("Status"))
    manager = _map(data.get("ManagerStatus"))
    address = str(status.get("Addr") or "")
    if address in ("", "0.0.0.0"):
        address = str(manager.get("Addr") or "").rpartition(":")[0] or address
    return NodeInfo(id=str(data.get("ID") or ""),
                    hostname=str(_map(data.get("Description")).get("Hostname") or ""),
                    address=address, role=str(spec.get("Role") or ""),
                    state=str(status.get("State") or ""),
                    availability=str(spec.get("Availability") or ""),
                    leader=bool(manager.get("Leader")), labels=_labels(spec.get("Labels")))


def parse_service(data: Mapping[str, Any]) -> ServiceInfo:
    """One item of `GET /services` (with `status=true` it carries task counts) or
    `GET /services/{id}`."""
    spec = _map(data.get("Spec"))
    replicated = _map(_map(spec.get("Mode")).get("Replicated"))
    container = _map(_map(spec.get("TaskTemplate")).get("ContainerSpec"))
    status = _map(data.get("ServiceStatus"))
    return ServiceInfo(id=str(data.get("ID") or ""), name=str(spec.get("Name") or ""),
                       labels=_labels(spec.get("Labels")),
                       replicas=_int(replicated.get("Replicas")) if replicated else None,
                       image=str(container.get("Image") or ""),
                       version_index=_int(_map(data.get("Version")).get("Index")) or 0,
                       updated_at=parse_time(data.get("UpdatedAt")),
                       running_tasks=_int(status.get("RunningTasks")),
                       desired_tasks=_int(status.get("DesiredTasks")))


def published_port(status: Mapping[str, Any]) -> int | None:
    """The node port of a task's first host-mode published port (a task status)."""
    for port in _map(status.get("PortStatus")).get("Ports") or ():
        port = _map(port)
        number = _int(port.get("PublishedPort"))
        if port.get("PublishMode", "host") == "host" and number:
            return number
    return None


def parse_task(data: Mapping[str, Any], addresses: Mapping[str, str]) -> TaskInfo:
    """One item of `GET /tasks`; `addresses` maps node ids to node addresses."""
    status = _map(data.get("Status"))
    container = _map(status.get("ContainerStatus"))
    node_id = str(data.get("NodeID") or "")
    state = str(status.get("State") or "")
    exit_code = _int(container.get("ExitCode"))
    return TaskInfo(id=str(data.get("ID") or ""), service_id=str(data.get("ServiceID") or ""),
                    node_id=node_id, node_address=addresses.get(node_id, ""),
                    state=state, desired_state=str(data.get("DesiredState") or ""),
                    published_port=published_port(status),
                    container_id=str(container.get("ContainerID") or ""),
                    error=str(status.get("Err") or ""), message=str(status.get("Message") or ""),
                    created=parse_time(data.get("CreatedAt")),
                    updated=parse_time(data.get("UpdatedAt")),
                    slot=_int(data.get("Slot")),
                    exit_code=exit_code if state in ("complete", "failed", "shutdown")
                    else None)
