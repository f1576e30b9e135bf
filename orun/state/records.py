"""The rows of the store's `tokens` and `audit` tables, as typed values.

Plain frozen dataclasses, so the store, the audit writer and the admin API share one
shape and nothing secret can ride along: a token is only ever its hash here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Scope = Literal["read", "admin"]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored: `hash` is the sha256 (hex) of the token text."""

    name: str
    hash: str
    scope: str
    created: float
    last_used: float | None
    expires: float | None

    def to_json(self) -> dict[str, Any]:
        """Everything but the hash: what `orun token list` shows."""
        return {"name": self.name, "scope": self.scope, "created": self.created,
                "last_used": self.last_used, "expires": self.expires}


@dataclass(frozen=True, slots=True)
class SshKeyRecord:
    """A key that may `git push`: its canonical `type base64` line, SHA256 fingerprint,
    and scope (`admin` or an app path glob)."""

    name: str
    fingerprint: str
    key: str
    scope: str
    created: float
    last_used: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "scope": self.scope,
                "type": self.key.split(" ", 1)[0], "created": self.created,
                "last_used": self.last_used}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One admin operation, sign-in or refusal. `actor` is a token name, `local:<uid>`
    or a signed-in user; `outcome` is `ok` or the error (never a request body)."""

    time: float
    actor: str
    remote: str
    action: str
    target: str
    app_id: str
    outcome: str
    #: identical refusals close together are written as one row with a count
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
