"""Many declared apps: a no-op reload does no per-app work, and the `apps:` list's
overlap check (indexed, no longer every pair) reports what it did before."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent.parent
BASE = ("http: {host: 127.0.0.1, port: 0}\n"
        "system: {container_engine: none}\n"  # the container apps are never started
        "log: {format: json}\n")


def declared(entries: list[dict[str, Any]]) -> str:
    return BASE + "apps:\n" + "".join(f"  - {json.dumps(e)}\n" for e in entries)


def many_entries(tmp_path: Path, statics: int, proxies: int,
                 containers: int) -> list[dict[str, Any]]:
    """Static apps (every other one at a domain), proxy apps and container apps."""
    entries: list[dict[str, Any]] = []
    for i in range(statics):
        site = tmp_path / "sites" / f"s{i}"
        site.mkdir(parents=True)
        (site / "index.html").write_text(f"site {i}\n")
        entries.append({"path": f"s{i}.:" if i % 2 else f"/s{i}", "source": str(site),
                        "spec": "static"})
    for i in range(proxies):
        entries.append({"path": f"/p{i}", "source": "-", "spec": "proxy",
                        "params": {"url": "http://127.0.0.1:9"}})
    if containers:
        app = tmp_path / "container_app"
        shutil.copytree(REPO / "tests" / "apps" / "container_app", app)
        entries += [{"path": f"/c{i}", "source": str(app), "spec": "container"}
                    for i in range(containers)]
    return entries


def events(server: Orun, name: str) -> list[dict[str, Any]]:
    return [e for e in server.log_events() if e.get("event") == name]


async def wait_events(server: Orun, name: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(events(server, name)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} {name} events:\n{server.log()[-3000:]}")
        await asyncio.sleep(0.05)


def stored(server: Orun) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of the store's apps and versions tables (read beside the server)."""
    db = sqlite3.connect(f"file:{server.home / 'metadata' / 'orun.db'}?mode=ro", uri=True)
    try:
        apps = db.execute("SELECT * FROM apps ORDER BY id").fetchall()
        versions = db.execute("SELECT * FROM versions ORDER BY app_id, version").fetchall()
    finally:
        db.close()
    return apps, versions


async def test_noop_reload_with_many_declared_apps_writes_and_rebuilds_nothing(
        make_orun: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    entries = many_entries(tmp_path, statics=40, proxies=40, containers=10)
    text = declared(entries)
    server: Orun = make_orun(text)
    await server.start()
    try:
        await wait_events(server, "apps_reconciled", 1)
        (made,) = events(server, "apps_reconciled")
        assert len(made["created"]) == 90 and not made["failed"]
        before = stored(server)
        assert len(before[0]) == 180  # each app and its stage app
        swaps = len(events(server, "routes_swapped"))

        server.signal(signal.SIGHUP)
        await wait_events(server, "config_unchanged", 1)
        out = (await server.cli("config", "reload")).ok().out
        assert out.strip() == "config reloaded: no changes"
        # another text, the same config: parsed again, and still nothing to do
        server.write_config(text.replace("\napps:\n", "\n# the apps\napps:\n"))
        server.signal(signal.SIGHUP)
        await wait_events(server, "config_unchanged", 3)
        out = (await server.cli("config", "reload")).ok().out
        assert out.strip() == "config reloaded: no changes"

        assert stored(server) == before  # no app or version written
        assert len(events(server, "routes_swapped")) == swaps  # no table rebuilt
        assert len(events(server, "apps_reconciled")) == 1
        assert len(events(server, "app_created")) == 90
        async with http.get(server.url("/s38/")) as resp:
            assert (resp.status, await resp.text()) == (200, "site 38\n")
        async with http.get(server.url("/"), headers={"Host": "s39.localhost"}) as resp:
            assert (resp.status, await resp.text()) == (200, "site 39\n")
    finally:
        await server.stop()


async def test_overlapping_entries_are_reported_in_order(make_orun: Any,
                                                         tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi\n")
    server: Orun = make_orun(BASE)
    await server.start()
    try:
        paths = ["/a", "/a/b", "x.:", "/", "/a/b/c", "/ab", "x.:/deep", "/a/b"]
        server.write_config(declared([{"path": p, "source": str(site), "spec": "static"}
                                      for p in paths]))
        check = await server.cli("config", "check")
        assert check.code == 1
        problems = [line.strip() for line in check.err.splitlines()[1:]]
        assert problems == [
            "apps[1] (/a/b): overlaps apps[0] (/a)",
            "apps[3] (/): overlaps apps[0] (/a)",
            "apps[3] (/): overlaps apps[1] (/a/b)",
            "apps[4] (/a/b/c): overlaps apps[0] (/a)",
            "apps[4] (/a/b/c): overlaps apps[1] (/a/b)",
            "apps[4] (/a/b/c): overlaps apps[3] (/)",
            "apps[5] (/ab): overlaps apps[3] (/)",
            "apps[6] (x.:/deep): overlaps apps[2] (x.localhost:/)",
            "apps[7] (/a/b): the same path as apps[1]",
        ]
    finally:
        await server.stop()
