"""What the console's handlers share: the `Console` the server builds, the request
keys the guard fills, and the helpers every part uses (who calls, cookie settings, the
POST checks, the app list's rows, the one-time message after an action)."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web

from orun.api.admin import ServerControl
from orun.bus import EventBus
from orun.console.gate import PREFIX, ConsoleUser, Gate, same_origin
from orun.console.live import LiveFeed
from orun.console.views import AppRow, RateMeter, app_row
from orun.control.apps import AppService
from orun.control.changes import ChangeService
from orun.proxy.auth.basic import SystemAuth
from orun.state.audit import AuditTrail
from orun.state.config import Config
from orun.state.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FLASH = "orun_console_flash"
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


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def remote_of(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return request.remote or ""


def cookie_args(request: web.Request, max_age: int) -> dict[str, Any]:
    return {"path": PREFIX, "httponly": True, "samesite": "Strict",
            "secure": request.secure, "max_age": max_age}


def origin_ok(request: web.Request) -> bool:
    scheme = "https" if request.secure else "http"
    return same_origin(request.headers.get("Origin", ""), request.headers.get("Referer", ""),
                       scheme, request.headers.get("Host", ""))


def post_problem(request: web.Request, form: Any) -> str:
    """Why a POST is refused (CSRF token or origin), or ""."""
    con = console_of(request)
    if not origin_ok(request):
        return "refused: the request did not come from this console (Origin)"
    if not con.gate.csrf_ok(request.get(COOKIE_KEY, ""), str(form.get("csrf", ""))):
        return "refused: the form's CSRF token is missing or stale; reload the page"
    return ""


def app_rows(con: Console) -> list[AppRow]:
    rows = []
    mains = [a for a in con.apps.all() if a.kind != "stage"]
    for app in sorted(mains, key=lambda a: str(a.path)):
        stage = con.apps.get(app.linked_id or "")
        rows.append(app_row(app, con.server.describe(app), stage, con.meter))
    con.meter.forget(a.id for a in mains)
    return rows


def flash_of(request: web.Request) -> str:
    value = request.cookies.get(FLASH, "")
    try:
        return base64.urlsafe_b64decode(value.encode()).decode("utf-8")[:500] if value else ""
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def session_valid(con: Console, user: ConsoleUser) -> bool:
    """Whether a session still holds: not expired, and a password session only as long
    as that password, a token session as long as its token (revoked or expired: out).
    Checked on every request and again by open streams."""
    if user.expires <= time.time():
        return False
    if user.method == "password":
        return bool(user.password) and user.password == await con.system.fingerprint()
    now = time.time()
    for token in await con.store.tokens():
        if token.name == user.token:
            return token.expires is None or token.expires > now
    return False
