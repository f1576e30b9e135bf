"""What authentication adds to the upstream request, carried on the aiohttp request.

The auth check runs before the app's target serves the request; the forwarder builds the
upstream headers later (after removing every `X-Orun-*` the client sent). The check
leaves its result in `request[UPSTREAM_KEY]` and the forwarder applies it last, so the
identity headers can only ever come from orun.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from, as the app is told."""

    user: str
    email: str = ""
    groups: tuple[str, ...] = ()

    def headers(self) -> list[tuple[str, str]]:
        out = [("X-Orun-User", _clean(self.user))]
        if self.email:
            out.append(("X-Orun-Email", _clean(self.email)))
        if self.groups:
            out.append(("X-Orun-Groups", _clean(",".join(self.groups))))
        return out


@dataclass(frozen=True, slots=True)
class UpstreamAdditions:
    """Headers to drop from the client's request, then headers to set, upstream."""

    drop: frozenset[str] = frozenset()
    set: tuple[tuple[str, str], ...] = ()


UPSTREAM_KEY = web.RequestKey("orun.auth.upstream", UpstreamAdditions)


def _clean(value: str) -> str:
    """A header value without control characters (no header injection from a claim)."""
    return "".join(c for c in value if c >= " " and c != "\x7f")[:1024]


def attach(request: web.BaseRequest, additions: UpstreamAdditions) -> None:
    request[UPSTREAM_KEY] = additions


def apply(request: web.BaseRequest, headers: CIMultiDict[str]) -> None:
    """Apply what the auth check left on `request` to the upstream `headers`."""
    additions = request.get(UPSTREAM_KEY)
    if additions is None:
        return
    for name in additions.drop:
        headers.popall(name, None)
    for name, value in additions.set:
        headers[name] = value
