"""The console's live stream: one server-sent event stream per page."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jinja2
from aiohttp import web

from orun.console.context import USER_KEY, Console, app_rows, console_of, session_valid
from orun.console.live import EventStream, file_mtime, file_size, read_from
from orun.console.views import app_row
from orun.runtime.logs import AppLogs, read_tail

#: how often the live list is sent even when no event came (requests/min, resources)
TICK_SECS = 5.0
LOG_POLL_SECS = 0.5
LOG_TAIL = 200


async def events(request: web.Request) -> web.StreamResponse:
    """One stream per page (a browser opens only six connections to a host, so a page
    must not hold more than one): the app list, or one app's status line with its build
    log and container output. Fragments are HTML rendered here, sent again when the bus
    says something changed and every few seconds for the counters; log lines as they
    are written."""
    con = console_of(request)
    user = request[USER_KEY]
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
    history = con.templates.get_template("_history.html")
    async with con.live.stream(request) as out:
        sent, sent_history, seen, rendered = "", "", -1, 0.0
        while True:
            if con.live.version != seen or time.monotonic() - rendered >= TICK_SECS:
                seen, rendered = con.live.version, time.monotonic()
                if not await session_valid(con, user):  # signed out meanwhile
                    await out.send("signed-out", "")
                    break
                html = _fragment(con, fragment, one)
                if html is None:
                    await out.send("gone", one)
                    break
                if html != sent:
                    await out.send("status" if one else "rows", html)
                    sent = html
                if app is not None and followers:
                    html = history.render(history=con.live.recent(app.id))
                    if html != sent_history:
                        await out.send("history", html)
                        sent_history = html
            for follower in followers:
                await follower.poll(out)
            await out.heartbeat()
            if not await con.live.wait(seen, LOG_POLL_SECS if followers else TICK_SECS):
                break
    return out.response


def _fragment(con: Console, template: jinja2.Template, one: str) -> str | None:
    if not one:
        return template.render(rows=app_rows(con))
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
