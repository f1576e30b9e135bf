"""App auth types: what `--auth` and `app update auth` accept, in one canonical spelling.

An app's `auth` setting is one of:

- `""` (or `default` on the command line): the server's `security.app_default_auth_type`,
  read when a request comes, so changing the default re-protects every such app;
- `none`: public;
- `system`: HTTP basic auth as orun's admin user (`orun password` sets it);
- `oidc:<name>`, or a bare `<name>` as OpenRun names its OAuth providers: sign-in with
  the OpenID Connect provider configured under `auth.oidc.<name>`;
- `forward:<name>`: ask the service at `auth.forward.<name>.url` (as Traefik's and
  Caddy's forward auth do).

Pure functions: the config validation and the app services use them alike.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from orun.errors import OrunError

AuthKind = Literal["none", "system", "oidc", "forward"]
#: a provider name: what a YAML key and a cookie-free URL part can both hold
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_RESERVED = frozenset({"none", "system", "default", "builtin"})


@dataclass(frozen=True, slots=True)
class AuthType:
    kind: AuthKind
    #: the provider name for `oidc` and `forward`, else ""
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


NONE = AuthType("none")


def valid_provider_name(name: str) -> str | None:
    """Why `name` cannot name a provider, or None."""
    if not _NAME.match(name):
        return f"{name!r} is not a valid provider name (letters, digits, _ . -; " \
               "starting with a letter or digit)"
    if name in _RESERVED:
        return f"{name!r} is reserved and cannot name a provider"
    return None


def parse_auth_type(text: str) -> AuthType | None:
    """The auth type `text` names; None for the server default (`""`, `default`).
    Raises OrunError for a malformed value (not for an unknown provider)."""
    value = text.strip()
    if value in ("", "default"):
        return None
    if value in ("none", "system"):
        return AuthType(value)  # type: ignore[arg-type]
    kind, sep, name = value.partition(":")
    if not sep:
        kind, name = "oidc", value
    if kind not in ("oidc", "forward"):
        raise OrunError(f"invalid auth type {value!r}: use none, system, default, "
                        "oidc:<provider>, <provider> or forward:<provider>")
    problem = valid_provider_name(name)
    if problem is not None:
        raise OrunError(f"invalid auth type {value!r}: {problem}")
    return AuthType(kind, name)  # type: ignore[arg-type]


def canonical(text: str) -> str:
    """The stored spelling of an auth setting ("" for the server default)."""
    parsed = parse_auth_type(text)
    return "" if parsed is None else str(parsed)


def check_known(auth: AuthType, oidc: Collection[str], forward: Collection[str]) -> str | None:
    """Why `auth` names a provider the config does not have, or None."""
    if auth.kind == "oidc" and auth.name not in oidc:
        known = ", ".join(sorted(oidc)) or "none configured"
        return f"unknown OIDC provider {auth.name!r} (auth.oidc has: {known})"
    if auth.kind == "forward" and auth.name not in forward:
        known = ", ".join(sorted(forward)) or "none configured"
        return f"unknown forward auth provider {auth.name!r} (auth.forward has: {known})"
    return None


def label(text: str) -> str:
    """The `app list` column: NONE, SYSTEM, DEFAULT (the server default), else the name."""
    if text in ("", "default"):
        return "DEFAULT"
    if text in ("none", "system"):
        return text.upper()
    return text
