"""`forward:<name>` auth: ask an external service about each request, as Traefik's
ForwardAuth and Caddy's forward_auth do.

orun sends a GET to `auth.forward.<name>.url` with the client's headers (hop-by-hop
ones and its body left out) plus X-Forwarded-Method, -Proto, -Host, -Uri and -For. A 2xx
answer lets the request through, and the response headers named in `copy_headers` are
set on the upstream request (the client's own headers of those names are removed
first, whatever the answer). Any other answer (status, headers and body) goes back to
the client as it is: a 302 to a login page, a 401 with its challenge. A service that
cannot be reached gives 502 naming it. The user the service names in `X-Orun-User` (or
`Remote-User`, as Authelia and Authentik answer), with its `-Email` and `-Groups`,
reaches the app as orun's identity headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from orun.proxy.auth.identity import Identity, UpstreamAdditions
from orun.proxy.errors import error_response
from orun.proxy.headers import HOP_BY_HOP, is_identity
from orun.state.config import ForwardAuthConfig

#: the auth service's answer body is relayed to the client, up to this size
MAX_BODY = 1 << 20
_IDENTITY = frozenset({"X-Orun-User", "X-Orun-Email", "X-Orun-Groups"})
_NOT_RELAYED = frozenset({*HOP_BY_HOP, "content-length", "content-encoding"})


@dataclass(frozen=True, slots=True)
class ForwardResult:
    """Let through with `additions` (and `user` when the service named one), or answer
    the client with `response`."""

    additions: UpstreamAdditions | None
    response: web.StreamResponse | None
    user: str = ""
    reason: str = ""


def _request_headers(request: web.BaseRequest, remote: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in ("host", "content-length", "expect") \
                or lname.startswith("x-forwarded-") or is_identity(lname):
            continue
        headers[name] = value if name not in headers else f"{headers[name]}, {value}"
    headers["X-Forwarded-Method"] = request.method
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Uri"] = request.raw_path
    headers["X-Forwarded-For"] = remote
    return headers


def _identity(headers: Mapping[str, str]) -> Identity | None:
    for prefix in ("X-Orun-", "Remote-"):
        user = headers.get(prefix + "User", "").strip()
        if user:
            groups = headers.get(prefix + "Groups", "")
            return Identity(user, headers.get(prefix + "Email", "").strip(),
                            tuple(g.strip() for g in groups.split(",") if g.strip()))
    return None


async def check_forward(session: aiohttp.ClientSession, name: str, cfg: ForwardAuthConfig,
                        request: web.BaseRequest, remote: str) -> ForwardResult:
    copy = list(cfg.copy_headers)
    drop = frozenset(copy)
    try:
        async with session.get(
                cfg.url, headers=_request_headers(request, remote), allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=cfg.timeout_secs)) as answer:
            if 200 <= answer.status < 300:
                values = [(h, answer.headers[h]) for h in copy if h in answer.headers
                          and not is_identity(h.lower())]
                identity = _identity(answer.headers)
                if identity is not None:
                    values += identity.headers()
                return ForwardResult(UpstreamAdditions(drop | _IDENTITY, tuple(values)),
                                     None, identity.user if identity else "")
            body = await answer.content.read(MAX_BODY)
            response = web.Response(status=answer.status, reason=answer.reason, body=body)
            for h, v in answer.headers.items():
                if h.lower() not in _NOT_RELAYED:
                    response.headers.add(h, v)
            return ForwardResult(None, response,
                                 reason=f"auth service answered {answer.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = str(exc) or exc.__class__.__name__
        text = f"forward auth {name}: the auth service at {cfg.url} cannot be reached: " \
               f"{detail}"
        return ForwardResult(None, error_response(request, 502, text),
                             reason="auth service unreachable")
