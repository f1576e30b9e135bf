"""The admin API, served on the unix socket `$ORUN_HOME/run/orun.sock` (mode 0600).

JSON in, JSON out. Errors are `{"message": ..., "code": N}` with status N, as OpenRun's
API does, so the CLI can print the message as it is.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from orun.control.apps import CreateRequest
from orun.errors import OrunError

if TYPE_CHECKING:
    from orun.server import Server

log = structlog.get_logger("orun.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER_KEY: web.AppKey[Server] = web.AppKey("server")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "code": status}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OrunError as exc:
        return _error(exc.status, exc.message)
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
    known = {f.name for f in fields(CreateRequest)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise OrunError(f"unknown fields in create request: {', '.join(unknown)}")
    try:
        req = CreateRequest(**body)
    except TypeError as exc:
        raise OrunError(f"bad create request: {exc}") from None
    result = await server.apps.create(req)
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
    return web.json_response({"deleted": [server.describe(a) for a in deleted],
                              "dry_run": _flag(request, "dryRun")})


async def reload_config(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    result = await server.reload_config()
    return web.json_response(result)


def make_admin_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    app[SERVER_KEY] = server
    app.router.add_get("/_orun/health", health)
    app.router.add_get("/_orun/server", server_info)
    app.router.add_get("/_orun/apps", list_apps)
    app.router.add_post("/_orun/app", create_app)
    app.router.add_delete("/_orun/apps", delete_apps)
    app.router.add_post("/_orun/config/reload", reload_config)
    return app
