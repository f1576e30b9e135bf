"""The fault scenarios: each runs a real orun under load while one thing breaks, then
checks the end state, and returns one `Result` row. `scale` is 1.0 for the full run
(`scripts/faults`) and smaller in the suite (tests/faults/test_faults.py), which
shortens loops, never skips a check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.conftest import BASE_IMAGES, Orun, containers, remove_containers, serve_app
from tests.faults.harness import (
    Load,
    Result,
    app_ids,
    end_state,
    log_events,
    running_by_app,
    wait_serving,
)
from tests.upstream import make_upstream

APPS = Path(__file__).resolve().parent.parent / "apps"
Scenario = Callable[[Path, float], Awaitable[Result]]


def _config(extra: str = "") -> str:
    args = ", ".join(f"{k}: {v}" for k, v in BASE_IMAGES.items())
    return ("http: {host: 127.0.0.1, port: 0}\n"
            f"builder: {{build_args: {{{args}}}}}\n" + extra)


@contextlib.asynccontextmanager
async def running(home: Path, config: str = "") -> AsyncIterator[Orun]:
    server = Orun(home, config or _config())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        remove_containers(server.home)


def _fault_app(tmp: Path, name: str = "fault_app") -> Path:
    dest = tmp / name
    if not dest.exists():
        shutil.copytree(APPS / "fault_app", dest)
    return dest


def _site(tmp: Path) -> Path:
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text("<h1>site</h1>")
    return site


# -- SIGHUP storm ----------------------------------------------------------------------


async def sighup_storm(tmp: Path, scale: float) -> Result:
    """SIGHUP many times under load, with valid, invalid and half-written config files
    (written in place, not atomically, the way an editor or `>` does): zero failures."""
    result = Result("SIGHUP x{n} (valid, invalid, half-written config)")
    rounds = max(10, int(100 * scale))
    result.scenario = result.scenario.format(n=rounds)
    site = _site(tmp)
    async with serve_app(make_upstream()) as upstream:
        base = "http: {host: 127.0.0.1, port: 0}\n"
        declared = f"apps:\n  - {{path: /decl, source: {site}, spec: static}}\n"
        valid = [base + "proxy: {read_timeout_secs: 30}\n" + declared,
                 base + "proxy: {read_timeout_secs: 40}\nlog: {access_log: false}\n"
                 + declared]
        invalid = base + "proxy: {read_timeout_secs: -1}\n" + declared
        async with running(tmp / "home-sighup", valid[0]) as server:
            (await server.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
            (await server.cli("app", "create", "--spec", "proxy", "--param",
                              f"url={upstream}", "-", "/up")).ok()
            expected = await app_ids(server)
            urls = [server.url(p) for p in ("/site/", "/up/echo", "/decl/")]
            ws = server.url("/up/ws").replace("http://", "ws://")
            path = server.home / "orun.yaml"
            async with Load(urls, websockets=[ws, ws]) as load:
                await asyncio.sleep(0.5)
                for i in range(rounds):
                    kind = i % 4
                    text = valid[i % 2] if kind < 2 else invalid
                    if kind == 3:  # half-written: the SIGHUP lands mid-write
                        text = valid[0][: len(valid[0]) // 2]
                    with path.open("w") as f:
                        f.write(text)
                    server.signal(signal.SIGHUP)
                    await asyncio.sleep(0.05)
                path.write_text(valid[1])
                server.signal(signal.SIGHUP)
                await asyncio.sleep(1.0)
            total = load.total()
            result.sent, result.failed = total.sent, total.failed
            result.failed += load.ws_failures
            reloaded = log_events(server, "config_reloaded")
            refused = log_events(server, "config_reload_failed")
            result.notes.append(f"{len(reloaded)} reloads applied, {len(refused)} refused; "
                                f"{load.ws_echoes} websocket echoes, {load.ws_failures} "
                                f"websocket failures; slowest request "
                                f"{total.slowest * 1000:.0f} ms")
            if not refused:
                result.failed += 1
                result.notes.append("no invalid config was refused")
            await end_state(server, expected, result)
    return result


# -- cold storms -----------------------------------------------------------------------


async def cold_storm(tmp: Path, scale: float) -> Result:
    """Many concurrent first requests to each of several stopped apps: one build and
    one container per app, every request answered."""
    apps = max(2, int(10 * scale))
    per_app = max(20, int(100 * scale))
    result = Result(f"{per_app} cold requests to each of {apps} stopped apps")
    async with running(tmp / "home-cold") as server:
        for i in range(apps):
            src = _fault_app(tmp, f"cold{i}")
            # a distinct build per app (else the first build serves them all)
            (src / "marker.txt").write_text(str(i))
            (src / "Dockerfile").write_text((src / "Dockerfile").read_text().replace(
                "COPY server.py .", "COPY server.py marker.txt ./"))
            (await server.cli("app", "create", "--spec", "container", str(src),
                              f"/cold{i}")).ok()
        expected = await app_ids(server)
        t0 = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=0)) as http:
            async def one(url: str) -> int:
                try:
                    async with http.get(url, headers={"Accept": "application/json"}) as r:
                        await r.read()
                        return r.status
                except aiohttp.ClientError:
                    return -1

            statuses = await asyncio.gather(*(one(server.url(f"/cold{i}/"))
                                              for i in range(apps) for _ in range(per_app)))
        result.recover_secs = time.monotonic() - t0
        result.sent = len(statuses)
        result.failed = sum(1 for s in statuses if s != 200)
        builds = log_events(server, "image_built")
        running_now = running_by_app(server.home)
        result.duplicates += max(0, len(builds) - apps)
        result.duplicates += sum(len(c) - 1 for c in running_now.values() if len(c) > 1)
        if len(running_now) != apps:
            result.apps_lost += apps - len(running_now)
        result.notes.append(f"{len(builds)} builds, {sum(map(len, running_now.values()))} "
                            f"containers for {apps} apps; all served in "
                            f"{result.recover_secs:.1f}s")
        await end_state(server, expected, result)
    return result


# -- broken containers -------------------------------------------------------------------


async def broken_containers(tmp: Path, scale: float) -> Result:
    """Containers that crash on start, crash under load, hang, answer slowly, or eat
    memory until their limit kills them: each ends in a clear error page and a log line
    naming the cause, while a healthy app beside them never fails a request."""
    result = Result("broken containers (crash, hang, slow, out of memory)",
                    down_on_purpose=True)
    config = _config("proxy: {read_timeout_secs: 3}\n"
                     "app_defaults: {startup_timeout_secs: 8}\n")
    async with running(tmp / "home-broken", config) as server:
        src = _fault_app(tmp)
        for path, extra in (("/healthy", []), ("/crashstart", ["--param", "MODE=crash_on_start"]),
                            ("/hangstart", ["--param", "MODE=hang"]),
                            ("/faulty", ["--copt", "memory=64m"])):
            (await server.cli("app", "create", "--spec", "container", *extra, str(src),
                              path)).ok()
        expected = await app_ids(server)
        await wait_serving([server.url("/healthy/"), server.url("/faulty/")])
        checks: list[tuple[str, bool]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async def get(path: str) -> tuple[int, str]:
                t0 = time.monotonic()
                try:
                    async with http.get(server.url(path),
                                        headers={"Accept": "application/json"}) as resp:
                        return resp.status, await resp.text()
                except TimeoutError:
                    result.notes.append(f"FAILED: no answer to {path} within "
                                        f"{time.monotonic() - t0:.0f}s")
                    return -1, ""

            async with Load([server.url("/healthy/")], clients=4) as load:
                status, text = await get("/crashstart/")
                checks.append(("crash on start: error page names the exit",
                               status in (500, 503) and "exit" in text.lower()))
                status, text = await get("/hangstart/")
                checks.append(("hang on start: error page names the health check",
                               status in (500, 503) and "health" in text.lower()))
                status, text = await get("/faulty/hang")
                checks.append(("hang under load: 504 naming the app",
                               status == 504 and "/faulty" in text))
                status, text = await get("/faulty/slow?s=1")
                checks.append(("slow answer within the timeout: served", status == 200))
                status, text = await get("/faulty/slow?s=5")
                checks.append(("slow answer past the timeout: 504", status == 504))
                with contextlib.suppress(aiohttp.ClientError):
                    await get("/faulty/crash")
                recovered = await wait_serving([server.url("/faulty/")], 60)
                checks.append(("crash under load: served again", True))
                result.recover_secs = max(result.recover_secs, recovered)
                with contextlib.suppress(aiohttp.ClientError):
                    status, text = await get("/faulty/eat")
                checks.append(("out of memory: the request fails with an error",
                               status >= 500))
                recovered = await wait_serving([server.url("/faulty/")], 60)
                result.recover_secs = max(result.recover_secs, recovered)
            healthy = load.total()
        crashed = " | ".join(str(e.get("reason")) for e in log_events(server,
                                                                      "container_crashed"))
        failed = " | ".join(str(e.get("error")) for e in log_events(server, "app_start_failed"))
        checks.append(("a log line names the out-of-memory kill", "out of memory" in crashed))
        checks.append(("a log line names the crash exit code", "exited with code 4" in crashed))
        checks.append(("a log line names the exit on start",
                       "exited with code 3 before answering its health check" in failed))
        checks.append(("a log line names the hang on start", "/hangstart" in {
            e.get("app") for e in log_events(server, "app_start_failed")}))
        result.sent, result.failed = healthy.sent, healthy.failed
        for name, good in checks:
            if not good:
                result.notes.append(f"FAILED: {name}")
                result.failed += 1
        result.notes.append(f"healthy app beside them: {healthy.sent} requests, "
                            f"{healthy.failed} failed; {sum(g for _, g in checks)}/"
                            f"{len(checks)} fault checks passed")
        await end_state(server, expected, result)
        if healthy.failed:
            result.down_on_purpose = False
    return result


SCENARIOS: dict[str, Scenario] = {
    "sighup": sighup_storm,
    "cold": cold_storm,
    "broken": broken_containers,
}

__all__ = ["SCENARIOS", "Scenario"]

del os, random, subprocess, containers
