"""The console's pages, streams and actions: an aiohttp application under `PREFIX`.

The proxy handler passes it every request under `/_orun/console` (the server keeps
the prefix for it while `console.enabled`). Every request goes through three checks
first (`guard`): the Host is the default domain (or localhost or an address), a plain
HTTP request from another machine goes to HTTPS, and everything but the sign-in page
and the stylesheet needs a session. Actions need an admin session, a POST, the
session's CSRF token and the console's own Origin; each calls the same services as
the admin API and leaves the same kind of audit row (actor `console:<user>`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import structlog
from aiohttp import web

from orun.api.admin import ServerControl
from orun.bus import EventBus
from orun.console.gate import (
    COOKIE,
    PREFIX,
    ConsoleUser,
    Gate,
    console_host,
    host_name,
    is_loopback,
    same_origin,
)
from orun.console.live import EventStream, LiveFeed, file_mtime, file_size, read_from
from orun.console.views import RateMeter, app_row, masked_params, version_rows
from orun.control.apps import AppService
from orun.control.changes import ChangeService
from orun.errors import OrunError
from orun.proxy.auth.basic import SystemAuth
from orun.runtime.logs import AppLogs, read_tail
from orun.state.audit import AuditTrail
from orun.state.config import Config
from orun.state.model import App
from orun.state.store import Store
from orun.state.tokens import token_hash

log = structlog.get_logger("orun.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FLASH = "orun_console_flash"
#: how often the live list is sent even when no event came (requests/min, resources)
TICK_SECS = 5.0
LOG_POLL_SECS = 0.5
LOG_TAIL = 200
#: pages anyone may fetch (the sign-in form and what it needs)
PUBLIC = frozenset({"login", "login.form", "static"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
USER_KEY: web.RequestKey[ConsoleUser] = web.RequestKey("console_user")
COOKIE_KEY: web.RequestKey[str] = web.RequestKey("console_cookie")


@dataclass(slots=True)
class Console:
    """What the pages stand on (the server builds it)."""

    apps: AppService
    changes: ChangeService
    server: ServerControl
    store: Store
    audit: AuditTrail
    system: SystemAuth
    config: Callable[[], Config]
    gate: Gate
    live: LiveFeed
    meter: RateMeter
    templates: jinja2.Environment

    @classmethod
    def build(cls, apps: AppService, changes: ChangeService, server: ServerControl,
              store: Store, audit: AuditTrail, system: SystemAuth,
              config: Callable[[], Config], key: bytes, bus: EventBus) -> Console:
        live = LiveFeed()
        live.start(bus)
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("orun.console", "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined)
        env.globals["base"] = PREFIX
        return cls(apps, changes, server, store, audit, system, config, Gate(key), live,
                   RateMeter(), env)

    async def close(self) -> None:
        await self.live.close()

    def render(self, name: str, request: web.Request, status: int = 200,
               **values: Any) -> web.Response:
        user = request.get(USER_KEY)
        cookie = request.get(COOKIE_KEY, "")
        html = self.templates.get_template(name).render(
            user=user, csrf=self.gate.csrf(cookie) if cookie else "", **values)
        return web.Response(text=html, status=status, content_type="text/html",
                            charset="utf-8")

    def page_error(self, request: web.Request, status: int, message: str) -> web.Response:
        return self.render("message.html", request, status, title=f"Error {status}",
                           message=message)


CONSOLE_KEY: web.AppKey[Console] = web.AppKey("console")


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def _remote(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return request.remote or ""


# -- the checks every request passes ---------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    con = _console(request)
    cfg = con.config()
    if not console_host(request.headers.get("Host", ""), cfg.system.default_domain):
        return con.page_error(request, 404, "the console is served on "
                              f"{cfg.system.default_domain}, not on this name")
    if not request.secure and not is_loopback(_remote(request)):
        port = con.server.info().get("https_port")
        if not port:
            return con.page_error(request, 403, "the console asks for a password, which "
                                  "must not cross plain HTTP: turn the HTTPS listener on")
        host = host_name(request.headers.get("Host", ""))
        host = f"[{host}]" if ":" in host else host
        target = f"https://{host}{'' if port == 443 else f':{port}'}{request.raw_path}"
        return web.Response(status=308, headers={"Location": target})
    route = request.match_info.route.name or ""
    cookie = request.cookies.get(COOKIE, "")
    user = con.gate.read(cookie) if cookie else None
    if user is not None and user.method == "token" and not await _token_alive(con, user):
        user = None
    if user is not None:
        request[USER_KEY] = user
        request[COOKIE_KEY] = cookie
    elif route not in PUBLIC:
        if request.method == "GET" and route != "events":
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs, safe='')}")
        return web.json_response({"message": "sign in to the console first", "code": 401},
                                 status=401)
    response = await handler(request)
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


async def _token_alive(con: Console, user: ConsoleUser) -> bool:
    """A token session lasts only as long as its token (revoked or expired: out)."""
    now = time.time()
    for token in await con.store.tokens():
        if token.name == user.token:
            return token.expires is None or token.expires > now
    return False


def _cookie_args(request: web.Request, max_age: int) -> dict[str, Any]:
    return {"path": PREFIX, "httponly": True, "samesite": "Strict",
            "secure": request.secure, "max_age": max_age}


# -- signing in and out --------------------------------------------------------------


def _next_url(value: str) -> str:
    """Where to go after signing in: a console page, never another site."""
    if value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


async def login_form(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    if request.get(USER_KEY) is not None:
        raise web.HTTPSeeOther(_next_url(request.query.get("next", "")))
    return con.render("login.html", request, next=_next_url(request.query.get("next", "")),
                      error="", secure=request.secure)


async def login(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    remote = _remote(request)
    if not _origin_ok(request):
        return con.page_error(request, 403, "sign-in refused: the form did not come "
                              "from this console")
    form = await request.post()
    password = str(form.get("password", ""))
    token_text = str(form.get("token", "")).strip()
    next_url = _next_url(str(form.get("next", "")))
    ttl = con.config().console.session_hours * 3600
    cookie = ""
    who, reason, retry = "admin", "", 0
    if token_text:
        who = "-"
        retry = con.system.limiter.blocked_for(remote)
        if not retry:
            token = await con.store.use_token(token_hash(token_text), time.time())
            if token is None or (token.expires is not None and token.expires <= time.time()):
                con.system.limiter.fail(remote)
                reason = "invalid, expired or revoked token"
            else:
                who = token.name
                cookie = con.gate.issue("token", token.scope, token.name, ttl)
    elif password:
        header = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
        result = await con.system.check(header, remote)
        retry = result.retry_after
        if result.user is not None:
            cookie = con.gate.issue("password", "admin", "", ttl)
        else:
            reason = result.reason
    else:
        reason = "no password or token given"
    if retry:
        reason = "too many failed attempts"
    if not cookie:
        con.audit.record(f"console:{who}", remote, "console.signin", PREFIX, "",
                         f"refused: {reason}", coalesce=True)
        status = 429 if retry else 401
        response = con.render("login.html", request, status, next=next_url,
                              secure=request.secure,
                              error="Too many failed attempts: try again in a minute."
                              if retry else "Wrong password or token.")
        if retry:
            response.headers["Retry-After"] = str(retry)
        return response
    user = con.gate.read(cookie)
    assert user is not None
    con.audit.record(user.actor, remote, "console.signin", PREFIX, "", "ok")
    response = web.HTTPSeeOther(next_url)
    response.set_cookie(COOKIE, cookie, **_cookie_args(request, int(ttl)))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    problem = _post_problem(request, await request.post())
    if problem:
        return con.page_error(request, 403, problem)
    user = request[USER_KEY]
    con.audit.record(user.actor, _remote(request), "console.signout", PREFIX, "", "ok")
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


def _origin_ok(request: web.Request) -> bool:
    scheme = "https" if request.secure else "http"
    return same_origin(request.headers.get("Origin", ""), request.headers.get("Referer", ""),
                       scheme, request.headers.get("Host", ""))


def _post_problem(request: web.Request, form: Any) -> str:
    """Why a POST is refused (CSRF token or origin), or ""."""
    con = _console(request)
    if not _origin_ok(request):
        return "refused: the request did not come from this console (Origin)"
    if not con.gate.csrf_ok(request.get(COOKIE_KEY, ""), str(form.get("csrf", ""))):
        return "refused: the form's CSRF token is missing or stale; reload the page"
    return ""


# -- pages ---------------------------------------------------------------------------------


def _rows(con: Console) -> list[Any]:
    rows = []
    mains = [a for a in con.apps.all() if a.kind != "stage"]
    for app in sorted(mains, key=lambda a: str(a.path)):
        stage = con.apps.get(app.linked_id or "")
        rows.append(app_row(app, con.server.describe(app), stage, con.meter))
    con.meter.forget(a.id for a in mains)
    return rows


async def apps_page(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    return con.render("apps.html", request, rows=_rows(con), flash=_flash(request))


def _find(con: Console, path: str) -> App:
    app = con.apps.at(path) if path else None
    if app is None:
        raise OrunError(f"no app at {path or '(none given)'}", status=404)
    return app


def _flash(request: web.Request) -> str:
    value = request.cookies.get(FLASH, "")
    try:
        return base64.urlsafe_b64decode(value.encode()).decode("utf-8")[:500] if value else ""
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def app_page(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    try:
        app = _find(con, request.query.get("app", ""))
    except OrunError as exc:
        return con.page_error(request, exc.status, exc.message)
    linked = con.apps.get(app.linked_id or "")
    described = con.server.describe(app)
    versions = version_rows(await con.changes.versions(app), app.current.version)
    settings = app.current.settings
    kind = await con.server.spec_kind(app)
    row = app_row(app, described, linked if app.kind != "stage" else None, con.meter)
    history = list(reversed(con.live.history.get(app.id, ())))
    response = con.render(
        "app.html", request, app=app, row=row, linked=linked, versions=versions,
        params=masked_params(settings.params), settings=settings, container=kind ==
        "container", history=history, flash=_flash(request),
        urls=described.get("urls", {}), error=str((described.get("runtime") or {})
                                                   .get("error", "")))
    if request.cookies.get(FLASH):
        response.del_cookie(FLASH, path=PREFIX)
    return response


async def confirm_page(request: web.Request) -> web.StreamResponse:
    """The confirmation step before a delete: the user types the app's path."""
    con = _console(request)
    try:
        app = _find(con, request.query.get("app", ""))
    except OrunError as exc:
        return con.page_error(request, exc.status, exc.message)
    return con.render("confirm.html", request, app=app,
                      linked=con.apps.get(app.linked_id or ""))


# -- live streams -------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """One stream per page (a browser opens only six connections to a host, so a page
    must not hold more than one): the app list, or one app's status line with its build
    log and container output. Fragments are HTML rendered here, sent again when the bus
    says something changed and every few seconds for the counters; log lines as they
    are written."""
    con = _console(request)
    one = request.query.get("app", "")
    app = con.apps.at(one) if one else None
    if one and app is None:
        return web.json_response({"message": f"no app at {one}", "code": 404}, status=404)
    followers: list[LogFollower] = []
    if app is not None and await con.server.spec_kind(app) == "container":
        root = con.server.home / "logs" / "apps"
        # prod and stage share builds: a reload builds for the stage app first
        ids = [app.id] + ([app.linked_id] if app.linked_id else [])
        followers = [LogFollower(con, "build", ids,
                                 [AppLogs(root, i).build.path for i in ids]),
                     LogFollower(con, "container", [app.id],
                                 [AppLogs(root, app.id).container.path])]
    fragment = con.templates.get_template("_status.html" if one else "_rows.html")
    async with con.live.stream(request) as out:
        sent, seen, rendered = "", -1, 0.0
        while True:
            if con.live.version != seen or time.monotonic() - rendered >= TICK_SECS:
                seen, rendered = con.live.version, time.monotonic()
                html = _fragment(con, fragment, one)
                if html is None:
                    await out.send("gone", one)
                    break
                if html != sent:
                    await out.send("status" if one else "rows", html)
                    sent = html
            for follower in followers:
                await follower.poll(out)
            await out.heartbeat()
            if not await con.live.wait(seen, LOG_POLL_SECS if followers else TICK_SECS):
                break
    return out.response


def _fragment(con: Console, template: jinja2.Template, one: str) -> str | None:
    if not one:
        return template.render(rows=_rows(con))
    app = con.apps.at(one)
    if app is None:
        return None
    linked = con.apps.get(app.linked_id or "") if app.kind != "stage" else None
    return template.render(row=app_row(app, con.server.describe(app), linked, con.meter))


class LogFollower:
    """Sends what is appended to a log file as `<name>-lines` events. With several
    files (the build logs of an app and its linked app) it follows the one written
    last, and starts again (`<name>-reset`, then its tail) when another moves on."""

    def __init__(self, con: Console, name: str, app_ids: list[str],
                 paths: list[Path]) -> None:
        self.con = con
        self.name = name
        self.app_ids = app_ids
        self.paths = paths
        self.current: Path | None = None
        self.offset = 0
        self.pending = b""

    async def _newest(self) -> Path:
        newest, when = self.paths[0], await file_mtime(self.paths[0])
        for path in self.paths[1:]:
            mtime = await file_mtime(path)
            if mtime > when:
                newest, when = path, mtime
        return newest

    async def poll(self, out: EventStream) -> None:
        for app_id in self.app_ids:
            await self.con.server.flush_logs(app_id)
        newest = await self._newest()
        size = await file_size(newest)
        if newest != self.current or size < self.offset:
            if self.current is not None:
                await out.send(f"{self.name}-reset", "")
            self.current, self.pending, self.offset = newest, b"", size
            tail = await asyncio.to_thread(read_tail, newest, LOG_TAIL)
            if tail:
                await out.send(f"{self.name}-lines", "\n".join(tail))
        elif size > self.offset:
            chunk = self.pending + await read_from(newest, self.offset, size)
            self.offset += len(chunk) - len(self.pending)
            text, sep, rest = chunk.rpartition(b"\n")
            self.pending = rest if sep else chunk
            if sep:
                await out.send(f"{self.name}-lines", text.decode("utf-8", "replace"))


# -- actions -------------------------------------------------------------------------------

#: console action -> the admin API operation it is (the audit trail's action name)
ACTIONS = {"reload": "app.reload", "promote": "app.promote", "switch": "version.switch",
           "revert": "version.switch", "stop": "app.stop", "restart": "app.restart",
           "delete": "app.delete"}


async def action(request: web.Request) -> web.StreamResponse:
    con = _console(request)
    name = request.match_info["name"]
    form = await request.post()
    user = request[USER_KEY]
    remote = _remote(request)
    target = request.query.get("app", "")
    operation = ACTIONS.get(name)
    if operation is None:
        return con.page_error(request, 404, f"no action {name!r}")
    problem = _post_problem(request, form)
    if not problem and not user.may_act:
        problem = f"refused: 403 {user.actor} has the read scope; {name} needs an admin"
    if problem:
        con.audit.record(user.actor, remote, operation, target, "", problem, coalesce=True)
        return con.page_error(request, 403, problem)
    app = con.apps.at(target)
    outcome = "error: the request failed"
    try:
        if app is None:
            raise OrunError(f"no app at {target or '(none given)'}", status=404)
        message, back = await _perform(con, name, app, form)
        outcome = "ok"
    except OrunError as exc:
        outcome = f"error {exc.status}: {exc.message}"
        message = f"{name} failed: {exc.message}"
        back = f"{PREFIX}/app?app={quote(target, safe='')}" if app is not None else PREFIX
    finally:
        con.audit.record(user.actor, remote, operation, target, app.id if app else "",
                         outcome)
    response = web.HTTPSeeOther(back)
    response.set_cookie(FLASH, base64.urlsafe_b64encode(message.encode()).decode(),
                        **_cookie_args(request, 60))
    raise response


async def _perform(con: Console, name: str, app: App, form: Any) -> tuple[str, str]:
    """Run one action through the services; (what to tell the user, where to go)."""
    path = str(app.path)
    here = f"{PREFIX}/app?app={quote(path, safe='')}"
    if name == "reload":
        outcome = await con.changes.reload(path, promote=False, verify=False, force=True,
                                           branch="", commit="", dry_run=False)
        await con.server.sync_routes()
        return _summary("reloaded", outcome.to_json()), here
    if name == "promote":
        outcome = await con.changes.promote(path, dry_run=False)
        await con.server.sync_routes()
        return _summary("promoted", outcome.to_json()), here
    if name in ("switch", "revert"):
        target = "revert" if name == "revert" else str(form.get("version", "")).strip()
        if not target:
            raise OrunError("choose a version to switch to")
        before, _outcome = await con.changes.switch(app, target, dry_run=False)
        await con.server.sync_routes()
        now = con.apps.get(app.id)
        return (f"{path}: version {before} -> "
                f"{now.current.version if now else '?'}"), here
    if name == "stop":
        stopped = await con.server.stop_app(app)
        return (f"{path} stopped" if stopped else f"{path} was not running"), here
    if name == "restart":
        await con.server.restart_app(app)
        return f"{path} restarted", here
    if str(form.get("confirm", "")).strip() != path:
        raise OrunError(f"type the app's path ({path}) to confirm the delete")
    deleted = await con.apps.delete(path, dry_run=False)
    await con.server.sync_routes()
    return f"deleted {', '.join(str(a.path) for a in deleted)}", PREFIX


def _summary(verb: str, outcome: dict[str, Any]) -> str:
    text = ", ".join(f"{k}: {v}" for k, v in outcome.items()
                     if isinstance(v, (int, str)) and k != "dry_run")
    return f"{verb}" + (f" ({text})" if text else "")


# -- static files --------------------------------------------------------------------------

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound()
    files = resources.files("orun.console").joinpath("static", name)
    try:
        data = await asyncio.to_thread(files.read_bytes)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type=STATIC_TYPES[suffix], charset="utf-8",
                        headers={"Cache-Control": "max-age=300"})


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except OrunError as exc:
        return _console(request).page_error(request, exc.status, exc.message)
    except Exception as exc:
        log.exception("console_request_failed", path=request.path)
        return _console(request).page_error(request, 500, f"internal error: "
                                            f"{exc.__class__.__name__}")


def make_console_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[errors, guard])
    app[CONSOLE_KEY] = console
    routes: tuple[tuple[str, str, Handler, str], ...] = (
        ("GET", "", apps_page, "apps"),
        ("GET", "/", apps_page, "apps.slash"),
        ("GET", "/login", login_form, "login.form"),
        ("POST", "/login", login, "login"),
        ("POST", "/logout", logout, "logout"),
        ("GET", "/app", app_page, "app"),
        ("GET", "/confirm", confirm_page, "confirm"),
        ("GET", "/events", events, "events"),
        ("POST", "/action/{name}", action, "action"),
        ("GET", "/static/{name}", static, "static"),
    )
    for method, path, handler, name in routes:
        app.router.add_route(method, PREFIX + path, handler, name=name)
    return app
