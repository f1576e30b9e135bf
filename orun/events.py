"""Typed, immutable events carried by the bus.

Events say what happened, never what to do. They are frozen dataclasses so a handler can
keep one without copying, and subscribers filter by type.
"""

from __future__ import annotations

from dataclasses import dataclass

from orun.state.config import Config


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class AppsChanged(Event):
    """Apps were created, updated or deleted; `app_ids` names them."""

    app_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ConfigReloaded(Event):
    """A new, valid config is in force."""

    config: Config
    changed_sections: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoutesSwapped(Event):
    """The route manager swapped in routing table `version` with `count` routes."""

    version: int
    count: int


@dataclass(frozen=True, slots=True)
class BuildStarted(Event):
    app_id: str
    tag: str


@dataclass(frozen=True, slots=True)
class BuildProgress(Event):
    """One line of an app's build or start log (what the starting page shows)."""

    app_id: str
    line: str


@dataclass(frozen=True, slots=True)
class BuildFinished(Event):
    """A build ended; `error` is empty on success."""

    app_id: str
    tag: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class ContainerHealthy(Event):
    """The app's container answers its health check at `upstream`: route to it."""

    app_id: str
    container_id: str
    upstream: str
    version: int


@dataclass(frozen=True, slots=True)
class ContainerUnhealthy(Event):
    """A running container failed its health checks and was taken out of service."""

    app_id: str
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ContainerExited(Event):
    """The app's container stopped: crashed, killed, idle-stopped or removed."""

    app_id: str
    container_id: str
    reason: str
    exit_code: int | None = None
    expected: bool = False


@dataclass(frozen=True, slots=True)
class AuthDecision(Event):
    """Someone signed in to an app, or was refused (issue 13: the audit trail keeps one
    row per event). Published on a sign-in (a credential or session seen for the first
    time) and on every refusal, never on each request of a known session. `method` is
    the app's auth type (`system`, `oidc:<name>`, `forward:<name>`); `reason` says why a
    refusal happened and never holds a secret."""

    app_id: str
    user: str
    remote: str
    method: str
    allowed: bool
    reason: str = ""
