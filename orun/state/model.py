"""The app model: what the store keeps and the rest of orun reads. All immutable."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
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
    #: who may use the app: "" (the server's `security.app_default_auth_type`), `none`,
    #: `system`, `oidc:<provider>` or `forward:<provider>` (orun/state/authtype.py)
    auth: str = ""


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
        """What `dataclasses.asdict` gives (same keys, same order, fresh containers),
        written out: asdict's generic deep copy made `app list` and every store write
        cost tens of µs per app, which a thousand apps turn into a slow listing."""
        return {
            "id": self.id, "path": self.path.path, "kind": self.kind, "source": self.source,
            "stage_at": self.stage_at, "linked_id": self.linked_id,
            "current": version_to_json(self.current), "created": self.created,
            "updated": self.updated, "previous_version": self.previous_version,
            "origin": self.origin, "domain": self.path.domain, "app_path": str(self.path),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> App:
        return cls(
            id=data["id"], path=AppPath(data["domain"], data["path"]), kind=data["kind"],
            source=data["source"], stage_at=data["stage_at"], linked_id=data["linked_id"],
            current=version_from_json(data["current"]), created=data["created"],
            updated=data["updated"], previous_version=data.get("previous_version"),
            origin=data.get("origin", "cli"),
        )


def version_to_json(v: AppVersion) -> dict[str, Any]:
    """`dataclasses.asdict(v)`, written out (see `App.to_json`)."""
    st = v.settings
    return {
        "version": v.version, "source_digest": v.source_digest, "spec_digest": v.spec_digest,
        "settings": {
            "spec": st.spec, "params": dict(st.params),
            "container_args": dict(st.container_args),
            "container_options": dict(st.container_options),
            "container_volumes": list(st.container_volumes),
            "app_config": dict(st.app_config), "branch": st.branch, "commit": st.commit,
            "auth": st.auth,
        },
        "git_commit": v.git_commit, "git_message": v.git_message, "git_branch": v.git_branch,
        "created": v.created,
    }


def version_from_json(data: dict[str, Any]) -> AppVersion:
    fields = dict(data)
    fields["settings"] = AppSettings(**fields["settings"])
    return AppVersion(**fields)
