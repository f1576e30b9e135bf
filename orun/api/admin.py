"""The admin API, served on the unix socket `$ORUN_HOME/run/orun.sock` (mode 0600) and,
with `security.admin_over_tcp`, on the HTTPS listener under `/_orun/api/` to API tokens
(who may call, and the audit row each call leaves: `orun/api/access.py`).

JSON in, JSON out. Errors are `{"message": ..., "code": N}` with status N, as OpenRun's
API does, so the CLI can print the message as it is.

It stands on the services (`AppService`, `ChangeService`) and on `ServerControl`, the
few things only the composition root can do (config reloads, route syncs, starting a
container app); the server passes itself in as that. Nothing here imports the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiofiles
import aiofiles.os
import structlog
from aiohttp import web

from orun.api.access import audit_calls
from orun.control.apps import AppService, CreateRequest
from orun.control.changes import ChangeService, Outcome
from orun.errors import OrunError
from orun.runtime.logs import AppLogs, read_tail
from orun.state.audit import AuditTrail
from orun.state.model import App
from orun.state.records import SshKeyRecord, TokenRecord
from orun.state.sshkeys import ADMIN_SCOPE, parse_public_key, scope_problem
from orun.state.sshkeys import name_problem as ssh_name_problem
from orun.state.store import Store
from orun.state.tokens import name_problem, new_token

log = structlog.get_logger("orun.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StartProgress(Protocol):
    """The live lines of an app's start (None: wake up and look again)."""

    def subscribe(self) -> asyncio.Queue[str | None]: ...

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None: ...


class ServerControl(Protocol):
    """What the API needs beyond the services: operations that span the services,
    routing and the runtime, which only the composition root wires together."""

    @property
    def config_path(self) -> Path: ...

    @property
    def home(self) -> Path: ...

    def info(self) -> dict[str, Any]: ...

    def describe(self, app: App) -> dict[str, Any]: ...

    def app_urls(self, domain: str, path: str) -> dict[str, str]: ...

    async def sync_routes(self) -> None: ...

    async def reload_config(self) -> dict[str, Any]: ...

    async def check_config(self, path: Path) -> dict[str, Any]: ...

    async def spec_kind(self, app: App) -> str: ...

    def start_app(self, app: App) -> tuple[asyncio.Future[Any], StartProgress] | None:
        """Bring a container app up (single-flight) and follow it; None without a
        container runtime."""
        ...

    async def stop_app(self, app: App) -> bool:
        """Stop the app's container now (the next request starts it again); False when
        none was running."""
        ...

    async def restart_app(self, app: App) -> None:
        """Stop the app's container and start it again, waiting until it is healthy."""
        ...

    async def flush_logs(self, app_id: str) -> None:
        """Write out the app's buffered log lines, so a read sees them."""
        ...

    async def cert_list(self) -> list[dict[str, Any]]:
        """Every certificate the HTTPS listener serves (files, ACME, the default)."""
        ...

    async def cert_revoke(self, domain: str) -> dict[str, Any]:
        """Revoke a name's ACME certificate at the CA and serve a new one."""
        ...


@dataclass(frozen=True, slots=True)
class AdminContext:
    apps: AppService
    changes: ChangeService
    server: ServerControl
    store: Store
    audit: AuditTrail


CONTEXT_KEY: web.AppKey[AdminContext] = web.AppKey("orun")


def _error(status: int, message: str, detail: str = "") -> web.Response:
    body: dict[str, Any] = {"message": message, "code": status}
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OrunError as exc:
        return _error(exc.status, exc.message, exc.detail)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("admin_request_failed", path=request.path)
        return _error(500, f"internal error: {exc.__class__.__name__}: {exc}")


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise OrunError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise OrunError("request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def server_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTEXT_KEY].server.info())


async def list_apps(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    apps = ctx.apps.match(request.query.get("glob", "all"), internal=_flag(request, "internal"))
    return web.json_response({"apps": [ctx.server.describe(a) for a in apps]})


async def create_app(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    body = await _json_body(request)
    known = {f.name for f in dataclasses.fields(CreateRequest)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise OrunError(f"unknown fields in create request: {', '.join(unknown)}")
    try:
        req = CreateRequest(**body)
    except TypeError as exc:
        raise OrunError(f"bad create request: {exc}") from None
    result = await ctx.apps.create(req)
    await ctx.server.sync_routes()  # the app answers as soon as the CLI returns
    result["urls"] = ctx.server.app_urls(result["app"]["domain"], result["app"]["path"])
    if result["stage"]:
        st = result["stage"]
        result["stage"]["urls"] = ctx.server.app_urls(st["domain"], st["path"])
    return web.json_response(result)


async def delete_apps(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    glob = request.query.get("glob", "")
    if not glob:
        raise OrunError("requires one argument: <appPathGlob>")
    deleted = await ctx.apps.delete(glob, dry_run=_flag(request, "dryRun"))
    await ctx.server.sync_routes()
    return web.json_response({"deleted": [ctx.server.describe(a) for a in deleted],
                              "dry_run": _flag(request, "dryRun")})


async def reload_config(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    result = await ctx.server.reload_config()
    return web.json_response(result)


async def check_config(request: web.Request) -> web.Response:
    body = await _json_body(request)
    path = body.get("path")
    ctx = request.app[CONTEXT_KEY]
    return web.json_response(await ctx.server.check_config(
        Path(path) if isinstance(path, str) and path else ctx.server.config_path))


async def list_certs(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    return web.json_response({"certificates": await ctx.server.cert_list()})


async def revoke_cert(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    domain = request.query.get("domain", "")
    if not domain:
        raise OrunError("requires one argument: <domain>")
    return web.json_response(await ctx.server.cert_revoke(domain))


def _one_app(ctx: AdminContext, glob: str) -> App:
    if not glob:
        raise OrunError("requires one argument: <appPath>")
    found = ctx.apps.at(glob)
    if found is not None:
        return found
    apps = ctx.apps.match(glob, internal=True)
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise OrunError(f"no app found at {glob}", status=404)
    raise OrunError(f"{glob} matches {len(apps)} apps; name one: "
                    + ", ".join(str(a.path) for a in apps[:5]))


def _glob(request: web.Request) -> str:
    glob = request.query.get("glob", "")
    if not glob:
        raise OrunError("requires one argument: <appPathGlob>")
    return glob


async def _changed(ctx: AdminContext, outcome: Outcome, **extra: Any) -> web.Response:
    """The answer to a change: routes rebuilt first, so it is live when the CLI returns."""
    await ctx.server.sync_routes()
    return web.json_response({**outcome.to_json(), **extra})


async def reload_apps(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    outcome = await ctx.changes.reload(
        _glob(request), promote=_flag(request, "promote"), verify=_flag(request, "verify"),
        force=_flag(request, "force"), branch=request.query.get("branch", ""),
        commit=request.query.get("commit", ""), dry_run=_flag(request, "dryRun"))
    return await _changed(ctx, outcome)


async def promote_apps(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    outcome = await ctx.changes.promote(_glob(request), dry_run=_flag(request, "dryRun"))
    return await _changed(ctx, outcome)


async def update_apps(request: web.Request) -> web.Response:
    """`app update KIND VALUES... GLOB` and `param update NAME VALUE GLOB`."""
    ctx = request.app[CONTEXT_KEY]
    body = await _json_body(request)
    values = body.get("values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise OrunError("values must be a list of strings")
    glob = str(body.get("glob") or "")
    if not glob:
        raise OrunError("requires an <appPathGlob>")
    outcome = await ctx.changes.update(
        str(body.get("kind", "")), values, glob, promote=bool(body.get("promote")),
        dry_run=bool(body.get("dry_run")))
    return await _changed(ctx, outcome)


async def list_params(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("app", ""))
    return web.json_response({"app": app.to_json(), "params": app.current.settings.params})


async def list_versions(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("app", ""))
    versions = await ctx.changes.versions(app)
    return web.json_response({"app": app.to_json(),
                              "versions": [dataclasses.asdict(v) for v in versions]})


async def switch_version(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("app", ""))
    target = request.query.get("target", "")
    if not target:
        raise OrunError("requires two arguments: <previous|next|N> <appPath>")
    before, outcome = await ctx.changes.switch(app, target,
                                                  dry_run=_flag(request, "dryRun"))
    return await _changed(ctx, outcome, from_version=before)


async def start_app(request: web.Request) -> web.StreamResponse:
    """Build and start an app now, streaming its progress; the last line says how it went:
    `@@ready <url>` or `@@failed <message>`."""
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("glob", ""))
    started = ctx.server.start_app(app) if await ctx.server.spec_kind(app) == "container" \
        else None
    if started is None:
        raise OrunError(f"app {app.path} does not run a container; nothing to start")
    operation, progress = started
    queue = progress.subscribe()
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    try:
        while not operation.done() or not queue.empty():
            getter: asyncio.Future[str | None] = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, operation}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                line = getter.result()
                if line is not None:
                    await resp.write(line.encode() + b"\n")
            else:
                getter.cancel()
    finally:
        progress.unsubscribe(queue)
    exc = operation.exception() if not operation.cancelled() else None
    if exc is None and not operation.cancelled():
        url = ctx.server.app_urls(app.path.domain, app.path.path).get("http", "")
        await resp.write(f"@@ready {url}\n".encode())
    else:
        detail = getattr(exc, "detail", "")
        message = getattr(exc, "message", str(exc) or "start cancelled")
        if detail:
            await resp.write(b"@@detail " + detail.replace("\n", "\n@@detail ").encode()
                             + b"\n")
        await resp.write(f"@@failed {message}\n".encode())
    await resp.write_eof()
    return resp


async def stop_app(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("glob", ""))
    stopped = await ctx.server.stop_app(app)
    return web.json_response({"app": str(app.path), "stopped": stopped})


async def restart_app(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("glob", ""))
    await ctx.server.restart_app(app)
    return web.json_response({"app": str(app.path), "restarted": True})


async def app_logs(request: web.Request) -> web.StreamResponse:
    """An app's build log (`build=1`) or container output, then new lines (`follow=1`)."""
    ctx = request.app[CONTEXT_KEY]
    app = _one_app(ctx, request.query.get("glob", ""))
    kind = await ctx.server.spec_kind(app)
    if kind != "container":
        raise OrunError(f"app {app.path} is a {kind} app (spec {app.spec}): it runs no "
                        "container, so it has no build or container logs")
    logs = AppLogs(ctx.server.home / "logs" / "apps", app.id)
    await ctx.server.flush_logs(app.id)
    path = logs.build.path if _flag(request, "build") else logs.container.path
    note = ""
    linked = ctx.apps.get(app.linked_id or "")
    if _flag(request, "build") and linked is not None:
        # prod and stage share builds: a reload builds the stage app first
        other = AppLogs(ctx.server.home / "logs" / "apps", linked.id).build.path
        if await _mtime(other) > await _mtime(path):
            path = other
            note = f"(the latest build of {app.path} ran for its linked app {linked.path})\n"
    try:
        lines = int(request.query.get("lines", "200"))
    except ValueError:
        raise OrunError("lines must be a number") from None
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    tail = await asyncio.to_thread(read_tail, path, lines)
    if note:
        await resp.write(note.encode())
    if tail:
        await resp.write(("\n".join(tail) + "\n").encode())
    elif not _flag(request, "follow"):
        what = "build log" if _flag(request, "build") else "container output"
        await resp.write(f"(no {what} yet for {app.path}: it has not been started)\n".encode())
    if _flag(request, "follow"):
        await _follow(ctx, app.id, path, resp)
    await resp.write_eof()
    return resp


async def _follow(ctx: AdminContext, app_id: str, path: Path,
                  resp: web.StreamResponse) -> None:
    """Copy what is appended to `path` to the client until it goes away; a file that
    shrank (rotated, or a build log started again) is read from its start."""
    offset = await _size(path)
    while True:
        await asyncio.sleep(0.25)
        await ctx.server.flush_logs(app_id)
        size = await _size(path)
        if size < offset:
            offset = 0
        if size > offset:
            async with aiofiles.open(path, "rb") as f:
                await f.seek(offset)
                chunk = await f.read(min(size - offset, 1 << 20))
            offset += len(chunk)
            await resp.write(chunk)


async def _mtime(path: Path) -> float:
    try:
        return (await aiofiles.os.stat(path)).st_mtime
    except FileNotFoundError:
        return 0.0


async def _size(path: Path) -> int:
    try:
        return (await aiofiles.os.stat(path)).st_size
    except FileNotFoundError:
        return 0


# -- API tokens and the audit trail ------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    """Make a token; the answer is the only place its text ever appears."""
    ctx = request.app[CONTEXT_KEY]
    body = await _json_body(request)
    name = str(body.get("name") or "")
    problem = name_problem(name)
    if problem:
        raise OrunError(problem)
    scope = str(body.get("scope") or "admin")
    if scope not in ("read", "admin"):
        raise OrunError(f"invalid scope {scope!r}: use read or admin")
    days = body.get("expires_days")
    if days is not None and (not isinstance(days, (int, float)) or isinstance(days, bool)
                             or days <= 0):
        raise OrunError("expires must be a positive number of days")
    now = time.time()
    text, digest = new_token()
    record = TokenRecord(name, digest, scope, now, None,
                         now + float(days) * 86400 if days is not None else None)
    if not await ctx.store.add_token(record):
        raise OrunError(f"a token named {name!r} exists already (revoke it first)",
                        status=409)
    return web.json_response({"token": text, **record.to_json()})


async def list_tokens(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    return web.json_response({"tokens": [t.to_json() for t in await ctx.store.tokens()]})


async def revoke_token(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    name = request.query.get("name", "")
    if not name:
        raise OrunError("requires one argument: <name>")
    if not await ctx.store.remove_token(name):
        raise OrunError(f"no token named {name!r}", status=404)
    return web.json_response({"revoked": name})


# -- SSH keys for git push ------------------------------------------------------------


async def add_ssh_key(request: web.Request) -> web.Response:
    """Allow a public key to `git push` (to every app: scope `admin`, else to the apps an
    app path glob matches)."""
    ctx = request.app[CONTEXT_KEY]
    body = await _json_body(request)
    name = str(body.get("name") or "")
    problem = ssh_name_problem(name)
    if problem:
        raise OrunError(problem)
    scope = str(body.get("scope") or ADMIN_SCOPE)
    problem = scope_problem(scope, ctx.apps.config().system.default_domain)
    if problem:
        raise OrunError(problem)
    key, fingerprint = parse_public_key(str(body.get("key") or ""))
    record = SshKeyRecord(name, fingerprint, key, scope, time.time())
    clash = await ctx.store.add_ssh_key(record)
    if clash == "name":
        raise OrunError(f"a key named {name!r} exists already (remove it first)", status=409)
    if clash is not None:
        raise OrunError(f"this key is already added as {clash.partition(':')[2]!r}",
                        status=409)
    return web.json_response(record.to_json())


async def list_ssh_keys(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    return web.json_response({"keys": [k.to_json() for k in await ctx.store.ssh_keys()]})


async def remove_ssh_key(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    name = request.query.get("name", "")
    if not name:
        raise OrunError("requires one argument: <name>")
    if not await ctx.store.remove_ssh_key(name):
        raise OrunError(f"no key named {name!r}", status=404)
    return web.json_response({"removed": name})


async def list_audit(request: web.Request) -> web.Response:
    """Audit rows, newest first: `app` (an app path glob), `since` (epoch seconds),
    `limit`."""
    ctx = request.app[CONTEXT_KEY]
    try:
        since = float(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise OrunError("since must be a number of seconds and limit a number") from None
    if limit <= 0:
        raise OrunError("limit must be greater than 0")
    glob = request.query.get("app", "")
    ids: tuple[str, ...] = ()
    if glob:
        with contextlib.suppress(OrunError):
            ids = tuple(a.id for a in ctx.apps.match(glob, internal=True))
    with contextlib.suppress(TimeoutError):  # what was just done is in the answer
        await asyncio.wait_for(ctx.audit.drain(), 2.0)
    rows = await ctx.store.audit(since=since, app_ids=ids, target_glob=glob,
                                 limit=min(limit, 10_000))
    return web.json_response({"rows": [r.to_json() for r in rows]})


ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/health", health, "health"),
    ("GET", "/server", server_info, "server.info"),
    ("GET", "/apps", list_apps, "app.list"),
    ("POST", "/app", create_app, "app.create"),
    ("DELETE", "/apps", delete_apps, "app.delete"),
    ("POST", "/config/reload", reload_config, "config.reload"),
    ("POST", "/config/check", check_config, "config.check"),
    ("GET", "/certs", list_certs, "cert.list"),
    ("POST", "/certs/revoke", revoke_cert, "cert.revoke"),
    ("POST", "/apps/reload", reload_apps, "app.reload"),
    ("POST", "/apps/promote", promote_apps, "app.promote"),
    ("POST", "/apps/update", update_apps, "app.update"),
    ("GET", "/params", list_params, "param.list"),
    ("GET", "/versions", list_versions, "version.list"),
    ("POST", "/versions/switch", switch_version, "version.switch"),
    ("POST", "/apps/start", start_app, "app.start"),
    ("POST", "/apps/stop", stop_app, "app.stop"),
    ("POST", "/apps/restart", restart_app, "app.restart"),
    ("GET", "/apps/logs", app_logs, "app.logs"),
    ("POST", "/tokens", create_token, "token.create"),
    ("GET", "/tokens", list_tokens, "token.list"),
    ("DELETE", "/tokens", revoke_token, "token.revoke"),
    ("POST", "/keys", add_ssh_key, "key.add"),
    ("GET", "/keys", list_ssh_keys, "key.list"),
    ("DELETE", "/keys", remove_ssh_key, "key.remove"),
    ("GET", "/audit", list_audit, "audit.list"),
)

#: where the admin API lives on the unix socket, and on the HTTPS listener
LOCAL_PREFIX = "/_orun"
REMOTE_PREFIX = "/_orun/api"


def make_admin_app(apps: AppService, changes: ChangeService, server: ServerControl,
                   store: Store, audit: AuditTrail, *, identity: Any,
                   prefix: str = LOCAL_PREFIX) -> web.Application:
    """The admin API under `prefix`; `identity` is the middleware that says who calls
    (the socket's peer, or a bearer token) and refuses whoever may not."""

    def app_id_of(target: str) -> str:
        found = apps.at(target) if target.startswith("/") or ":" in target else None
        return found.id if found is not None else ""

    app = web.Application(middlewares=[identity, audit_calls(audit, app_id_of),
                                       errors_middleware])
    app[CONTEXT_KEY] = AdminContext(apps, changes, server, store, audit)
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, prefix + path, handler, name=name)
    return app


