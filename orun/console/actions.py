"""The console's actions: each one POST, checked (session scope, CSRF token, origin),
run through the same services as the admin API, and recorded in the audit trail under
the admin API's operation name with actor `console:<user>`."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from aiohttp import web

from orun.console.context import (
    FLASH,
    USER_KEY,
    Console,
    console_of,
    cookie_args,
    post_problem,
    remote_of,
)
from orun.console.gate import PREFIX
from orun.control.changes import Outcome
from orun.errors import OrunError
from orun.state.model import App

#: console action -> the admin API operation it is (the audit trail's action name)
ACTIONS = {"reload": "app.reload", "promote": "app.promote", "switch": "version.switch",
           "revert": "version.switch", "stop": "app.stop", "restart": "app.restart",
           "delete": "app.delete"}


async def action(request: web.Request) -> web.StreamResponse:
    con = console_of(request)
    name = request.match_info["name"]
    form = await request.post()
    user = request[USER_KEY]
    remote = remote_of(request)
    target = request.query.get("app", "")
    operation = ACTIONS.get(name)
    if operation is None:
        return con.page_error(request, 404, f"no action {name!r}")
    problem = post_problem(request, form)
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
                        **cookie_args(request, 60))
    raise response


async def _perform(con: Console, name: str, app: App, form: Any) -> tuple[str, str]:
    """Run one action through the services; (what to tell the user, where to go)."""
    path = str(app.path)
    here = f"{PREFIX}/app?app={quote(path, safe='')}"
    # reload and promote take the main app's path (a stage app changes through it)
    main = con.apps.get(app.linked_id or "") if app.kind == "stage" else app
    main_path = str(main.path) if main is not None else path
    if name == "reload":
        outcome = await con.changes.reload(main_path, promote=False, verify=False, force=True,
                                           branch="", commit="", dry_run=False)
        await con.server.sync_routes()
        return _summary("reloaded", outcome), here
    if name == "promote":
        outcome = await con.changes.promote(main_path, dry_run=False)
        await con.server.sync_routes()
        return _summary("promoted", outcome), here
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
    if app.kind == "stage":
        raise OrunError(f"{path} is a stage app: delete its prod app "
                        f"{main_path} (the stage app goes with it)")
    if str(form.get("confirm", "")).strip() != path:
        raise OrunError(f"type the app's path ({path}) to confirm the delete")
    deleted = await con.apps.delete(path, dry_run=False)
    await con.server.sync_routes()
    return f"deleted {', '.join(str(a.path) for a in deleted)}", PREFIX


def _summary(verb: str, outcome: Outcome) -> str:
    """What a reload or promote did, in a line; a failure is an error (its message in
    the flash and the audit row), as the CLI's exit code says."""
    if outcome.failed:
        raise OrunError("; ".join(f"{app.path}: {exc.message}" for app, exc in outcome.failed),
                        status=outcome.failed[0][1].status)
    done = [f"{app.path} v{app.current.version}" for app in outcome.committed]
    if not done:
        return f"nothing to do: {verb} found no change"
    return f"{verb}: " + ", ".join(done)
