"""Who may call the admin API, and the audit row each call leaves.

Two doors lead to the same handlers. The unix socket (mode 0600) trusts its peer: the
kernel says which uid connected (SO_PEERCRED) and that becomes the actor `local:<uid>`.
The HTTPS listener (`security.admin_over_tcp`) trusts nothing but a bearer token, looked
up in the store on every request so a revoked token stops working at once; any request
without a valid one gets a bare 401, and a `read` token gets 403 on anything that
changes state. Both doors record one audit row per operation (health checks aside).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orun.state.audit import AuditTrail
from orun.state.store import Store
from orun.state.tokens import token_hash

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IDENTITY = "orun.identity"

#: operations a `read` token may call (every other one changes something)
#: (`config.check` is not one: it reads a file named by the caller)
READ_ONLY = frozenset({"health", "server.info", "app.list", "param.list", "version.list",
                       "app.logs", "audit.list"})
#: operations only an admin token may call, even when they only read
ADMIN_ONLY = frozenset({"token.create", "token.list", "token.revoke", "key.add", "key.list",
                        "key.remove"})


@dataclass(frozen=True, slots=True)
class Identity:
    actor: str
    scope: str
    remote: str


def action_of(request: web.Request) -> str:
    route = request.match_info.route
    return route.name or f"{request.method} {request.path}"


def _json_error(status: int, message: str,
                headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message, "code": status}, status=status,
                             headers=headers)


def peer_uid(request: web.Request) -> int | None:
    """The uid of the process on the other end of a unix socket (None elsewhere)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def local_identity() -> Any:
    """Middleware of the unix socket: the peer's uid is the actor, with admin scope."""

    @web.middleware
    async def local(request: web.Request, handler: Handler) -> web.StreamResponse:
        uid = peer_uid(request)
        request[IDENTITY] = Identity(f"local:{uid if uid is not None else '?'}", "admin",
                                     "unix")
        return await handler(request)

    return local


def token_identity(store: Store, audit: AuditTrail) -> Any:
    """Middleware of the HTTPS door: a valid bearer token or a 401 and nothing else."""

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.remote or ""
        header = request.headers.get("Authorization", "")
        scheme, _, text = header.partition(" ")
        token = None
        if scheme.lower() == "bearer" and text.strip():
            token = await store.use_token(token_hash(text.strip()), time.time())
        now = time.time()
        if token is None or (token.expires is not None and token.expires <= now):
            reason = "no token" if not header else "invalid, expired or revoked token"
            audit.record("-", remote, "api.refused", request.path, "",
                         f"refused: {reason}", coalesce=True)
            return _json_error(401, "unauthorized",
                               {"WWW-Authenticate": 'Bearer realm="orun"'})
        request[IDENTITY] = Identity(token.name, token.scope, remote)
        action = action_of(request)
        allowed = action in READ_ONLY if token.scope == "read" else True
        if action in ADMIN_ONLY and token.scope != "admin":
            allowed = False
        if not allowed:
            audit.record(token.name, remote, action, _query_target(request), "",
                         "refused: 403 read-only token")
            return _json_error(403, f"token {token.name!r} has the read scope; {action} "
                               "needs an admin token")
        return await handler(request)

    return bearer


def _query_target(request: web.Request) -> str:
    for key in ("glob", "app", "name"):
        value = request.query.get(key)
        if value:
            return value
    return ""


async def _target(request: web.Request) -> str:
    """What the operation was about: an app path or glob, or a token name. Read from
    the query, or for a few operations from one named field of the JSON body (the rest
    of the body, where params and secrets live, is never looked at)."""
    found = _query_target(request)
    if found or request.method not in ("POST", "PUT") or not request.body_exists:
        return found
    with contextlib.suppress(Exception):
        body = json.loads(await request.read())
        if isinstance(body, dict):
            for key in ("path", "glob", "name"):
                if isinstance(body.get(key), str):
                    return str(body[key])
    return ""


def _outcome(resp: web.StreamResponse) -> str:
    if resp.status < 400:
        return "ok"
    text = ""
    if isinstance(resp, web.Response) and resp.body is not None:
        with contextlib.suppress(Exception):
            data = json.loads(resp.text or "")
            if isinstance(data, dict):
                text = str(data.get("message", ""))
    return f"error {resp.status}: {text}" if text else f"error {resp.status}"


def audit_calls(audit: AuditTrail, app_id_of: Callable[[str], str]) -> Any:
    """Middleware: one audit row per operation, written when it has finished."""

    @web.middleware
    async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
        action = action_of(request)
        if action == "health":
            return await handler(request)
        outcome = "error: the request failed"
        try:
            resp = await handler(request)
            outcome = _outcome(resp)
            return resp
        except web.HTTPException as exc:
            outcome = f"error {exc.status}"
            raise
        except BaseException as exc:
            outcome = f"error: {exc.__class__.__name__}"
            raise
        finally:
            ident: Identity | None = request.get(IDENTITY)
            target = await _target(request)
            audit.record(ident.actor if ident else "-", ident.remote if ident else "",
                         action, target, app_id_of(target) if target else "", outcome)

    return audited
