"""The admin API, served on the unix socket `$ORUN_HOME/run/orun.sock` (mode 0600).

JSON in, JSON out. Errors are `{"message": ..., "code": N}` with status N, as OpenRun's
API does, so the CLI can print the message as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from orun.control.apps import CreateRequest
from orun.control.changes import Outcome
from orun.errors import OrunError
from orun.runtime.logs import AppLogs, read_tail
from orun.state.model import App

if TYPE_CHECKING:
    from orun.server import Server

log = structlog.get_logger("orun.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER_KEY: web.AppKey[Server] = web.AppKey("server")


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
    return web.json_response(request.app[SERVER_KEY].info())


async def list_apps(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    apps = server.apps.match(request.query.get("glob", "all"), internal=_flag(request, "internal"))
    return web.json_response({"apps": [server.describe(a) for a in apps]})


async def create_app(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    body = await _json_body(request)
    known = {f.name for f in dataclasses.fields(CreateRequest)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise OrunError(f"unknown fields in create request: {', '.join(unknown)}")
    try:
        req = CreateRequest(**body)
    except TypeError as exc:
        raise OrunError(f"bad create request: {exc}") from None
    result = await server.apps.create(req)
    await server.sync_routes()  # the app answers as soon as the CLI returns
    result["urls"] = server.app_urls(result["app"]["domain"], result["app"]["path"])
    if result["stage"]:
        st = result["stage"]
        result["stage"]["urls"] = server.app_urls(st["domain"], st["path"])
    return web.json_response(result)


async def delete_apps(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    glob = request.query.get("glob", "")
    if not glob:
        raise OrunError("requires one argument: <appPathGlob>")
    deleted = await server.apps.delete(glob, dry_run=_flag(request, "dryRun"))
    await server.sync_routes()
    return web.json_response({"deleted": [server.describe(a) for a in deleted],
                              "dry_run": _flag(request, "dryRun")})


async def reload_config(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    result = await server.reload_config()
    return web.json_response(result)


async def check_config(request: web.Request) -> web.Response:
    body = await _json_body(request)
    path = body.get("path")
    server = request.app[SERVER_KEY]
    return web.json_response(await server.check_config(
        Path(path) if isinstance(path, str) and path else server.config_path))


def _one_app(server: Server, glob: str) -> App:
    if not glob:
        raise OrunError("requires one argument: <appPath>")
    found = server.apps.at(glob)
    if found is not None:
        return found
    apps = server.apps.match(glob, internal=True)
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


async def _changed(server: Server, outcome: Outcome, **extra: Any) -> web.Response:
    """The answer to a change: routes rebuilt first, so it is live when the CLI returns."""
    await server.sync_routes()
    return web.json_response({**outcome.to_json(), **extra})


async def reload_apps(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    outcome = await server.changes.reload(
        _glob(request), promote=_flag(request, "promote"), verify=_flag(request, "verify"),
        force=_flag(request, "force"), branch=request.query.get("branch", ""),
        commit=request.query.get("commit", ""), dry_run=_flag(request, "dryRun"))
    return await _changed(server, outcome)


async def promote_apps(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    outcome = await server.changes.promote(_glob(request), dry_run=_flag(request, "dryRun"))
    return await _changed(server, outcome)


async def update_apps(request: web.Request) -> web.Response:
    """`app update KIND VALUES... GLOB` and `param update NAME VALUE GLOB`."""
    server = request.app[SERVER_KEY]
    body = await _json_body(request)
    values = body.get("values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise OrunError("values must be a list of strings")
    glob = str(body.get("glob") or "")
    if not glob:
        raise OrunError("requires an <appPathGlob>")
    outcome = await server.changes.update(
        str(body.get("kind", "")), values, glob, promote=bool(body.get("promote")),
        dry_run=bool(body.get("dry_run")))
    return await _changed(server, outcome)


async def list_params(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    app = _one_app(server, request.query.get("app", ""))
    return web.json_response({"app": app.to_json(), "params": app.current.settings.params})


async def list_versions(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    app = _one_app(server, request.query.get("app", ""))
    versions = await server.changes.versions(app)
    return web.json_response({"app": app.to_json(),
                              "versions": [dataclasses.asdict(v) for v in versions]})


async def switch_version(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    app = _one_app(server, request.query.get("app", ""))
    target = request.query.get("target", "")
    if not target:
        raise OrunError("requires two arguments: <previous|next|N> <appPath>")
    before, outcome = await server.changes.switch(app, target,
                                                  dry_run=_flag(request, "dryRun"))
    return await _changed(server, outcome, from_version=before)


async def start_app(request: web.Request) -> web.StreamResponse:
    """Build and start an app now, streaming its progress; the last line says how it went:
    `@@ready <url>` or `@@failed <message>`."""
    server = request.app[SERVER_KEY]
    app = _one_app(server, request.query.get("glob", ""))
    if await server.spec_kind(app) != "container" or server.runtime is None:
        raise OrunError(f"app {app.path} does not run a container; nothing to start")
    runtime = server.runtime
    operation = runtime.ensure(app)
    rt = runtime.runtime_for(app)
    queue = rt.progress.subscribe()
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
        rt.progress.unsubscribe(queue)
    exc = operation.exception() if not operation.cancelled() else None
    if exc is None and not operation.cancelled():
        url = server.app_urls(app.path.domain, app.path.path).get("http", "")
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


async def app_logs(request: web.Request) -> web.StreamResponse:
    """An app's build log (`build=1`) or container output, then new lines (`follow=1`)."""
    server = request.app[SERVER_KEY]
    app = _one_app(server, request.query.get("glob", ""))
    kind = await server.spec_kind(app)
    if kind != "container":
        raise OrunError(f"app {app.path} is a {kind} app (spec {app.spec}): it runs no "
                        "container, so it has no build or container logs")
    logs = AppLogs(server.home / "logs" / "apps", app.id)
    rt = server.runtime.get(app.id) if server.runtime else None
    if rt is not None:
        await rt.logs.flush()
    path = logs.build.path if _flag(request, "build") else logs.container.path
    note = ""
    linked = server.apps.get(app.linked_id or "")
    if _flag(request, "build") and linked is not None:
        # prod and stage share builds: a reload builds the stage app first
        other = AppLogs(server.home / "logs" / "apps", linked.id).build.path
        if await asyncio.to_thread(_mtime, other) > await asyncio.to_thread(_mtime, path):
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
        offset = await asyncio.to_thread(_size, path)
        while True:
            await asyncio.sleep(0.25)
            if rt is None and server.runtime is not None:
                rt = server.runtime.get(app.id)
            if rt is not None:
                await rt.logs.flush()
            size = await asyncio.to_thread(_size, path)
            if size < offset:  # rotated or restarted
                offset = 0
            if size > offset:
                chunk = await asyncio.to_thread(_read_from, path, offset)
                offset += len(chunk)
                await resp.write(chunk)
    await resp.write_eof()
    return resp


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(1024 * 1024)


def make_admin_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    app[SERVER_KEY] = server
    app.router.add_get("/_orun/health", health)
    app.router.add_get("/_orun/server", server_info)
    app.router.add_get("/_orun/apps", list_apps)
    app.router.add_post("/_orun/app", create_app)
    app.router.add_delete("/_orun/apps", delete_apps)
    app.router.add_post("/_orun/config/reload", reload_config)
    app.router.add_post("/_orun/config/check", check_config)
    app.router.add_post("/_orun/apps/reload", reload_apps)
    app.router.add_post("/_orun/apps/promote", promote_apps)
    app.router.add_post("/_orun/apps/update", update_apps)
    app.router.add_get("/_orun/params", list_params)
    app.router.add_get("/_orun/versions", list_versions)
    app.router.add_post("/_orun/versions/switch", switch_version)
    app.router.add_post("/_orun/apps/start", start_app)
    app.router.add_get("/_orun/apps/logs", app_logs)
    return app
