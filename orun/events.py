"""Typed, immutable events carried by the bus.

Events say what happened, never what to do. They are frozen dataclasses so a handler can
keep one without copying, and subscribers filter by type.
"""

from __future__ import annotations

from dataclasses import dataclass

from orun.control.config import Config


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
