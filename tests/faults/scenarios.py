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
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.conftest import BASE_IMAGES, Orun, remove_containers, serve_app
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


def _config(extra: str = "", port: int = 0) -> str:
    args = ", ".join(f"{k}: {v}" for k, v in BASE_IMAGES.items())
    return (f"http: {{host: 127.0.0.1, port: {port}}}\n"
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# -- kill -9 at random moments ---------------------------------------------------------


async def kill9_storm(tmp: Path, scale: float) -> Result:
    """`kill -9` orun at random moments while it builds, promotes, reconciles declared
    apps and writes to its store; after each restart every app serves, with no
    duplicate or orphan container, an intact store and whole snapshots."""
    kills = max(3, int(20 * scale))
    result = Result(f"kill -9 orun x{kills} (builds, promotes, reconciles, writes)",
                    down_on_purpose=True)
    site = _site(tmp)
    src = _fault_app(tmp)
    declared = [f"  - {{path: /d1, source: {site}, spec: static}}\n",
                f"  - {{path: /d2, source: {site}, spec: static, params: {{x: '1'}}}}\n"]
    # a fixed port: the clients keep their URLs across restarts
    base = _config("app_defaults: {drain_timeout_secs: 2}\n", port=free_port())

    def config(with_d2: bool) -> str:
        return base + "apps:\n" + declared[0] + (declared[1] if with_d2 else "")

    rng = random.Random(1234)
    async with serve_app(make_upstream()) as upstream, \
            running(tmp / "home-kill9", config(False)) as server:
        (await server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={upstream}",
                          "-", "/p")).ok()
        for path in ("/c1", "/c2"):
            (await server.cli("app", "create", "--spec", "container", str(src), path)).ok()
        stable = ["/s/", "/p/echo", "/c1/", "/c2/", "/d1/"]
        await wait_serving([server.url(p) for p in stable])
        expected = await app_ids(server)
        operations = ["build", "promote", "reconcile", "writes", "create-delete"]
        seen: list[str] = []
        recover = 0.0
        for round_no in range(kills):
            op = operations[round_no % len(operations)] if round_no < len(operations) \
                else rng.choice(operations)
            seen.append(op)
            urls = [server.url(p) for p in stable]
            async with Load(urls, clients=3, timeout=5) as load:
                task = asyncio.create_task(_operation(server, op, src, site, config,
                                                      round_no))
                await asyncio.sleep(rng.uniform(0.05, 2.5))
                server.kill9()
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                load.phase = "restart"
                await server.start()
                t0 = time.monotonic()
                await wait_serving([server.url(p) for p in stable], 180)
                recover = max(recover, time.monotonic() - t0)
                load.phase = "after"
                await asyncio.sleep(0.5)
            total = load.total()
            result.sent += total.sent
            result.failed += total.failed
            after = load.phases.get("after")
            if after is not None and after.failed:
                result.notes.append(f"round {round_no} ({op}): {after.failed} requests "
                                    f"failed after the restart served again")
                result.down_on_purpose = False
            await _settled(server)
            before = (result.apps_lost, result.duplicates)
            await end_state(server, expected, result)
            if (result.apps_lost, result.duplicates) != before:
                result.notes.append(f"round {round_no}: after a kill during {op}")
        result.recover_secs = recover
        result.notes.append(f"kills during: {', '.join(seen)}; slowest recovery "
                            f"{recover:.1f}s")
    return result


async def _operation(server: Orun, op: str, src: Path, site: Path,
                     config: Callable[[bool], str], n: int) -> None:
    """One change in flight when the kill comes."""
    if op == "build":
        (src / "marker.txt").write_text(f"build {n}")
        dockerfile = src / "Dockerfile"
        if "marker.txt" not in dockerfile.read_text():
            dockerfile.write_text(dockerfile.read_text().replace(
                "COPY server.py .", "COPY server.py marker.txt ./"))
        await server.cli("app", "reload", "--promote", "/c1")
    elif op == "promote":
        await server.cli("param", "update", "ROUND", str(n), "/c2")
        await server.cli("app", "promote", "/c2")
    elif op == "reconcile":
        server.write_config(config(n % 2 == 0))
        server.signal(signal.SIGHUP)
        await asyncio.sleep(5)
    elif op == "writes":
        for i in range(50):
            await server.cli("param", "update", "N", str(i), "/s")
    else:
        for i in range(20):
            await server.cli("app", "create", "--spec", "static", str(site), f"/tmp{n}x{i}")
            await server.cli("app", "delete", f"/tmp{n}x{i}")


async def _settled(server: Orun, timeout: float = 15.0) -> None:
    """Wait (bounded) for replaced containers to finish draining: two running for one
    app is only a duplicate if it lasts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(c) <= 1 for c in running_by_app(server.home).values()):
            return
        await asyncio.sleep(0.5)


# -- the engine restarts ------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent.parent


def _stop_engine() -> None:
    """Stop this machine's dockerd (its containers stop with it) and wait for it."""
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode:
            return
        time.sleep(0.2)
    raise AssertionError("dockerd did not stop within 60 s")


def _start_engine() -> None:
    subprocess.run([str(REPO / "scripts" / "docker-engine")], check=True,
                   capture_output=True)


async def engine_restart(tmp: Path, scale: float) -> Result:
    """Restart the Docker engine under load: while it is away, requests to container
    apps get 503 with Retry-After (none hangs) and static/proxy apps never fail; once it
    is back, the container apps serve again with no operator."""
    result = Result("Docker engine restart under load", down_on_purpose=True)
    src = _fault_app(tmp)
    site = _site(tmp)
    async with serve_app(make_upstream()) as upstream, \
            running(tmp / "home-engine") as server:
        (await server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={upstream}",
                          "-", "/p")).ok()
        for path in ("/c1", "/c2"):
            (await server.cli("app", "create", "--spec", "container", str(src), path)).ok()
        expected = await app_ids(server)
        containers_urls = [server.url("/c1/"), server.url("/c2/")]
        others = [server.url("/s/"), server.url("/p/echo")]
        await wait_serving(containers_urls + others)
        retry_after_missing = 0

        def allowed(url: str, status: int) -> bool:
            if url in containers_urls and load.phase == "outage":
                # 502: the few requests in flight on a container as the stopping engine
                # kills it (counted in the note); every later one must get 503
                return status in (200, 502, 503)
            return status == 200

        async with Load(containers_urls + others, clients=4, timeout=20,
                        allowed=allowed) as load:
            await asyncio.sleep(1)
            load.phase = "outage"
            await asyncio.to_thread(_stop_engine)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
                for url in containers_urls:
                    async with http.get(url) as resp:
                        if resp.status == 503 and "Retry-After" not in resp.headers:
                            retry_after_missing += 1
                        result.notes.append(f"during the outage {url[url.index('/c'):]} "
                                            f"answered {resp.status}")
            await asyncio.sleep(2)
            await asyncio.to_thread(_start_engine)
            t0 = time.monotonic()
            load.phase = "recovery"
            await wait_serving(containers_urls, 180)
            result.recover_secs = time.monotonic() - t0
            load.phase = "after"
            await asyncio.sleep(1)
        total = load.total()
        result.sent, result.failed = total.sent, total.failed
        outage = load.phases.get("outage")
        hangs = sum(t.statuses.get("hang", 0) for t in load.phases.values())
        if hangs or retry_after_missing or (outage and outage.failed) \
                or load.phases["after"].failed:
            result.down_on_purpose = False
        result.notes.append(f"outage: {outage.sent if outage else 0} requests, statuses "
                            f"{dict(outage.statuses) if outage else {}}; hung: {hangs}; 503 "
                            f"without Retry-After: {retry_after_missing}; served again "
                            f"{result.recover_secs:.1f}s after the engine was back")
        await _settled(server)
        await end_state(server, expected, result)
    return result


# -- the disk fills up -----------------------------------------------------------------------


async def disk_full(tmp: Path, scale: float) -> Result:
    """`$ORUN_HOME` on a small filesystem that fills up while a container app serves
    (and logs) and while a build is asked for: a clear error, the running app unhurt, an
    intact store, and service as before once space returns."""
    result = Result("disk full under $ORUN_HOME (build, logs)")
    home = tmp / "home-disk"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(home)],
                   check=True)
    filler = home / "filler"
    try:
        src = _fault_app(tmp)
        async with running(home) as server:
            (await server.cli("app", "create", "--spec", "container", str(src), "/c")).ok()
            expected = await app_ids(server)
            await wait_serving([server.url("/c/")])
            async with Load([server.url("/c/")], clients=3) as load:
                await asyncio.sleep(0.5)
                load.phase = "full"
                await asyncio.to_thread(_fill, filler)
                (tmp / "other").mkdir(exist_ok=True)
                shutil.copytree(src, tmp / "other" / "app", dirs_exist_ok=True)
                (tmp / "other" / "app" / "big.bin").write_bytes(os.urandom(4 << 20))
                created = await server.cli("app", "create", "--spec", "container",
                                           str(tmp / "other" / "app"), "/new")
                lines = created.err.strip().splitlines()
                clear = created.code != 0 and bool(lines) and lines[-1].startswith(
                    "error: ") and "Traceback" not in created.err
                result.notes.append(f"create on a full disk: exit {created.code}, "
                                    f"{lines[-1] if lines else '(no message)'}")
                if not clear:
                    result.failed += 1
                    result.notes.append("FAILED: no clear error for a full disk")
                await asyncio.sleep(1.5)  # requests (and their log lines) on a full disk
                load.phase = "space back"
                filler.unlink()
                again = await server.cli("app", "create", "--spec", "container",
                                         str(tmp / "other" / "app"), "/new")
                if again.code != 0:
                    result.failed += 1
                    result.notes.append(f"FAILED: create after space returned: {again.err}")
                else:
                    await wait_serving([server.url("/new/")], 120)
                await asyncio.sleep(0.5)
            total = load.total()
            result.sent += total.sent
            result.failed += total.failed
            full = load.phases.get("full")
            result.notes.append(f"the running app on a full disk: {full.sent if full else 0} "
                                f"requests, {full.failed if full else 0} failed")
            expected.update(await app_ids(server))
            await end_state(server, expected, result)
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)
    return result


def _fill(path: Path) -> None:
    """Write until the filesystem is full."""
    chunk = b"\0" * (1 << 20)
    with path.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass


SCENARIOS: dict[str, Scenario] = {
    "sighup": sighup_storm,
    "cold": cold_storm,
    "broken": broken_containers,
    "kill9": kill9_storm,
    "engine": engine_restart,
    "disk": disk_full,
}

__all__ = ["SCENARIOS", "Scenario"]

