"""The app model: what the store keeps and the rest of orun reads. All immutable."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from orun.state.paths import AppPath

AppKind = Literal["prod", "stage", "dev"]
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_app_key() -> str:
    """A random 27-character lowercase key, shared by an app's prod and stage ids."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(27))


def app_id(kind: AppKind, key: str) -> str:
    return {"prod": "app_prd_", "stage": "app_stg_", "dev": "app_dev_"}[kind] + key


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What the user chose for an app; every change makes a new version."""

    spec: str
    params: dict[str, str] = field(default_factory=dict)
    container_args: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    container_volumes: list[str] = field(default_factory=list)
    app_config: dict[str, str] = field(default_factory=dict)
    branch: str | None = None
    commit: str | None = None


@dataclass(frozen=True, slots=True)
class AppVersion:
    """One immutable version: source snapshot + spec snapshot + settings."""

    version: int
    source_digest: str
    spec_digest: str
    settings: AppSettings
    git_commit: str | None = None
    git_message: str | None = None
    git_branch: str | None = None
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class App:
    id: str
    path: AppPath
    kind: AppKind
    source: str
    stage_at: str
    linked_id: str | None
    current: AppVersion
    created: float
    updated: float
    #: the version this app ran before its last change (what `version revert` returns to)
    previous_version: int | None = None
    #: "config" when the app comes from the config file's `apps:` list (reconciled on
    #: SIGHUP, deleted when its entry goes), "cli" when a user created it
    origin: str = "cli"

    @property
    def spec(self) -> str:
        return self.current.settings.spec

    @property
    def is_main(self) -> bool:
        return self.kind != "stage"

    def with_version(self, version: AppVersion, now: float) -> App:
        """This app moved to `version` (remembering the one it leaves, for revert)."""
        previous = self.current.version if version.version != self.current.version \
            else self.previous_version
        return replace(self, current=version, updated=now, previous_version=previous)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = self.path.path
        data["domain"] = self.path.domain
        data["app_path"] = str(self.path)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> App:
        return cls(
            id=data["id"], path=AppPath(data["domain"], data["path"]), kind=data["kind"],
            source=data["source"], stage_at=data["stage_at"], linked_id=data["linked_id"],
            current=version_from_json(data["current"]), created=data["created"],
            updated=data["updated"], previous_version=data.get("previous_version"),
            origin=data.get("origin", "cli"),
        )


def version_from_json(data: dict[str, Any]) -> AppVersion:
    fields = dict(data)
    fields["settings"] = AppSettings(**fields["settings"])
    return AppVersion(**fields)
