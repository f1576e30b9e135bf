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
    """A build ended; `error` is empty on success. `built` is False when the image was
    already there (no build ran); `seconds` is how long it took, slot wait included."""

    app_id: str
    tag: str
    error: str = ""
    seconds: float = 0.0
    built: bool = True


@dataclass(frozen=True, slots=True)
class ColdStart(Event):
    """An app with no serving container was brought up for requests (or `app create
    --wait`): `kind` is "start" (built if needed, created, started, health-checked) or
    "thaw" (unpaused by the idle pause tier); `error` is empty when it serves now.
    Rollouts of a new version beside a serving container are not cold starts."""

    app_id: str
    kind: str
    seconds: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class HealthCheckFailed(Event):
    """One periodic health check of a serving container failed (`failures` in a row;
    at the configured count `ContainerUnhealthy` follows)."""

    app_id: str
    container_id: str
    problem: str
    failures: int


@dataclass(frozen=True, slots=True)
class AppIdled(Event):
    """The housekeeper acted on an idle app: `action` is "stop" or "pause"."""

    app_id: str
    action: str
    idle_secs: float


@dataclass(frozen=True, slots=True)
class ConfigReloadFinished(Event):
    """A config reload ended (SIGHUP or `orun config reload`): `applied` with the
    sections that changed (none: the file was unchanged), or rejected with its problems
    (the old config keeps serving)."""

    applied: bool
    changed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


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
