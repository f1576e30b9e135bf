"""The console as an aiohttp application under `PREFIX`: the guard, sign-in, pages.

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
import time
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import structlog
from aiohttp import web

from orun.console.actions import action
from orun.console.context import (
    CONSOLE_KEY,
    COOKIE_KEY,
    FLASH,
    USER_KEY,
    Console,
    Handler,
    app_rows,
    console_of,
    cookie_args,
    flash_of,
    origin_ok,
    post_problem,
    remote_of,
    session_valid,
)
from orun.console.gate import COOKIE, PREFIX, console_host, host_name, is_loopback
from orun.console.streams import events
from orun.console.views import app_row, masked_params, version_rows
from orun.errors import OrunError
from orun.state.model import App
from orun.state.tokens import token_hash

log = structlog.get_logger("orun.console")
#: pages anyone may fetch (the sign-in form and what it needs)
PUBLIC = frozenset({"login", "login.form", "static"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


# -- the checks every request passes ---------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    con = console_of(request)
    cfg = con.config()
    if not console_host(request.headers.get("Host", ""), cfg.system.default_domain,
                        cfg.console.domain):
        return con.page_error(request, 404, "the console is served on "
                              f"{cfg.console.domain or cfg.system.default_domain}, "
                              "not on this name")
    if not request.secure and not is_loopback(remote_of(request)):
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
    if user is not None and not await session_valid(con, user):
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


# -- signing in and out --------------------------------------------------------------


def _next_url(value: str) -> str:
    """Where to go after signing in: a console page, never another site."""
    if value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


async def login_form(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
    if request.get(USER_KEY) is not None:
        raise web.HTTPSeeOther(_next_url(request.query.get("next", "")))
    return con.render("login.html", request, next=_next_url(request.query.get("next", "")),
                      error="", secure=request.secure)


async def login(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
    remote = remote_of(request)
    if not origin_ok(request):
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
            cookie = con.gate.issue("password", "admin", "", ttl,
                                    password=await con.system.fingerprint())
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
    response.set_cookie(COOKIE, cookie, **cookie_args(request, int(ttl)))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
    problem = post_problem(request, await request.post())
    if problem:
        return con.page_error(request, 403, problem)
    user = request[USER_KEY]
    con.audit.record(user.actor, remote_of(request), "console.signout", PREFIX, "", "ok")
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


# -- pages ---------------------------------------------------------------------------------


async def apps_page(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
    return con.render("apps.html", request, rows=app_rows(con), flash=flash_of(request),
                      shared=shared_origin(con))


def shared_origin(con: Console) -> list[str]:
    """The apps served on the console's own origin (their pages' scripts could use a
    signed-in admin's console: the page says so, and how to avoid it)."""
    cfg = con.config()
    own = cfg.console.domain
    return sorted(str(a.path) for a in con.apps.all()
                  if (a.path.domain or cfg.system.default_domain) ==
                  (own or cfg.system.default_domain))


def _find(con: Console, path: str) -> App:
    app = con.apps.at(path) if path else None
    if app is None:
        raise OrunError(f"no app at {path or '(none given)'}", status=404)
    return app


async def app_page(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
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
    history = con.live.recent(app.id)
    response = con.render(
        "app.html", request, app=app, row=row, linked=linked, versions=versions,
        params=masked_params(settings.params), settings=settings, container=kind ==
        "container", history=history, flash=flash_of(request),
        urls=described.get("urls", {}), error=str((described.get("runtime") or {})
                                                   .get("error", "")))
    if request.cookies.get(FLASH):
        response.del_cookie(FLASH, path=PREFIX)
    return response


async def confirm_page(request: web.Request) -> web.StreamResponse:
    """The confirmation step before a delete: the user types the app's path."""
    con = console_of(request)
    try:
        app = _find(con, request.query.get("app", ""))
    except OrunError as exc:
        return con.page_error(request, exc.status, exc.message)
    return con.render("confirm.html", request, app=app,
                      linked=con.apps.get(app.linked_id or ""))


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
        return console_of(request).page_error(request, exc.status, exc.message)
    except Exception as exc:
        log.exception("console_request_failed", path=request.path)
        return console_of(request).page_error(request, 500, f"internal error: "
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
