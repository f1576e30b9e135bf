"""What every fault scenario shares: clients that loop requests and hold websockets while
something breaks, and the end-state checks (apps in the store, containers by label, the
store's integrity, snapshots on disk).

A request fails when it gets no answer within `timeout` (a hang), the connection breaks,
or its status is not one the scenario allows at that moment; the load keeps the counts
per phase, so a scenario can tell the outage from the steady state around it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from orun.sources.snapshot import stored_digest
from tests.conftest import Orun, containers, docker


@dataclass
class Result:
    """One row of the fault table."""

    scenario: str
    sent: int = 0
    failed: int = 0
    apps_lost: int = 0
    duplicates: int = 0
    recover_secs: float = 0.0
    #: what else the scenario measured or noticed (shown under the table)
    notes: list[str] = field(default_factory=list)
    #: the failed requests may be the fault itself (the app was down on purpose)
    down_on_purpose: bool = False

    @property
    def ok(self) -> bool:
        return self.apps_lost == 0 and self.duplicates == 0 and (
            self.down_on_purpose or self.failed == 0)


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    slowest: float = 0.0

    def add(self, outcome: str, ok: bool, secs: float) -> None:
        self.sent += 1
        self.statuses[outcome] += 1
        if not ok:
            self.failed += 1
        self.slowest = max(self.slowest, secs)


class Load:
    """`clients` tasks looping GETs over `urls` and one websocket per entry of
    `websockets` echoing a message every 0.2 s, until stopped. `allowed(url, status)`
    says which answers count as success (200 by default)."""

    def __init__(self, urls: Iterable[str], *, clients: int = 6, timeout: float = 15.0,
                 websockets: Iterable[str] = (),
                 allowed: Callable[[str, int], bool] | None = None) -> None:
        self.urls = list(urls)
        self.clients = clients
        self.timeout = timeout
        self.ws_urls = list(websockets)
        self.allowed = allowed or (lambda _url, status: status == 200)
        self.phases: dict[str, Tally] = {}
        self.phase = "steady"
        self.ws_failures = 0
        self.ws_echoes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()

    def tally(self) -> Tally:
        return self.phases.setdefault(self.phase, Tally())

    def total(self) -> Tally:
        out = Tally()
        for t in self.phases.values():
            out.sent += t.sent
            out.failed += t.failed
            out.statuses.update(t.statuses)
            out.slowest = max(out.slowest, t.slowest)
        return out

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=0, force_close=False))
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]
        self._tasks += [asyncio.create_task(self._websocket(u)) for u in self.ws_urls]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    async def _client(self, n: int) -> None:
        assert self._session is not None
        i = n
        while not self._stop.is_set():
            url = self.urls[i % len(self.urls)]
            i += 1
            t0 = time.monotonic()
            try:
                async with self._session.get(url) as resp:
                    await resp.read()
                    outcome, ok = str(resp.status), self.allowed(url, resp.status)
            except TimeoutError:
                outcome, ok = "hang", False
            except aiohttp.ClientError as exc:
                outcome, ok = type(exc).__name__, False
            self.tally().add(outcome, ok, time.monotonic() - t0)
            if not ok:
                await asyncio.sleep(0.05)  # a failing app is not hammered in a busy loop

    async def _websocket(self, url: str) -> None:
        assert self._session is not None
        while not self._stop.is_set():
            try:
                async with self._session.ws_connect(url, heartbeat=None) as ws:
                    n = 0
                    while not self._stop.is_set():
                        n += 1
                        await ws.send_str(f"echo {n}")
                        msg = await asyncio.wait_for(ws.receive(), 5)
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            raise ConnectionError(f"websocket ended: {msg.type}")
                        self.ws_echoes += 1
                        await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._stop.is_set():
                    self.ws_failures += 1
                    await asyncio.sleep(0.2)


async def app_ids(server: Orun) -> dict[str, str]:
    """App path -> id of every app in the store (stage apps included)."""
    listed = json.loads((await server.cli("app", "list", "-i", "-f", "json")).ok().out)
    return {a["path"] if not a.get("domain") else f'{a["domain"]}:{a["path"]}': a["id"]
            for a in listed}


def running_by_app(home: Path) -> dict[str, list[str]]:
    """App id -> ids of its running containers (orun's labels, this home only)."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for cid in containers(home):
        app = docker("inspect", "--format", '{{index .Config.Labels "orun.app.id"}}',
                     cid).strip()
        out[app].append(cid)
    return dict(out)


def store_integrity(home: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{home / 'metadata' / 'orun.db'}?mode=ro",
                                            uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def broken_snapshots(home: Path) -> list[str]:
    """Stored snapshots (digest-named folders) whose content no longer hashes to their
    name: a half-written snapshot that was renamed into place."""
    bad = []
    for root in (home / "snapshots", home / "specs"):
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if len(entry.name) == 64 and entry.is_dir() and stored_digest(entry) != entry.name:
                bad.append(str(entry))
    return bad


async def end_state(server: Orun, expected: dict[str, str], result: Result) -> None:
    """Apps lost from the store, duplicate and orphan containers, store and snapshot
    integrity: counted into `result` (problems also go to its notes)."""
    ids = await app_ids(server)
    lost = [path for path in expected if path not in ids]
    result.apps_lost += len(lost)
    if lost:
        result.notes.append(f"apps lost: {lost}")
    running = running_by_app(server.home)
    known = set(ids.values())
    for app_id, cids in running.items():
        if app_id not in known:
            result.duplicates += len(cids)
            result.notes.append(f"orphan containers of unknown app {app_id}: {len(cids)}")
        elif len(cids) > 1:
            result.duplicates += len(cids) - 1
            result.notes.append(f"app {app_id} has {len(cids)} running containers")
    integrity = store_integrity(server.home)
    if integrity != "ok":
        result.apps_lost += 1
        result.notes.append(f"store integrity_check: {integrity}")
    bad = broken_snapshots(server.home)
    if bad:
        result.apps_lost += len(bad)
        result.notes.append(f"half-written snapshots: {bad}")


async def wait_serving(urls: Iterable[str], timeout: float = 120.0) -> float:
    """Seconds until every URL answers 200 (raises after `timeout`)."""
    t0 = time.monotonic()
    pending = list(urls)
    per_request = aiohttp.ClientTimeout(total=min(timeout, 30))
    async with aiohttp.ClientSession(timeout=per_request) as http:
        while pending:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"not serving after {timeout:g}s: {pending}")
            url = pending[0]
            try:
                async with http.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        pending.pop(0)
                        continue
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return time.monotonic() - t0


def log_events(server: Orun, event: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in server.log_events() if e.get("event") == event
            and all(e.get(k) == v for k, v in match.items())]
