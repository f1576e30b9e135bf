"""The idle pause tier end to end on the real Docker engine: an idle app's container is
paused (the engine reports it), the next request thaws it and is answered, a paused
container is never health-checked, a websocket kept open wakes it with a frame, the idle
stop still comes later, a new version replaces it, and a restarted orun adopts it.

The engine's view is read with the docker CLI, independently of orun.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, containers, docker
from tests.e2e.test_containers import app_id, copy_app, get, own_orun, wait_for

pytestmark = pytest.mark.timeout(300)

#: fast background health checks: a paused container probed by mistake fails at once
FAST_HEALTH = ("app_defaults: {idle_pause_secs: 1, health_check_interval_secs: 0.2,\n"
               "               health_timeout_secs: 0.5, health_check_failures: 1}\n")


def engine_state(container_id: str) -> str:
    return docker("inspect", "-f", "{{.State.Status}}", container_id).strip()


async def the_container(orun: Orun, path: str) -> str:
    (cid,) = containers(orun.home, all_=True, app_id=await app_id(orun, path))
    return cid


async def wait_state(container_id: str, state: str, timeout: float = 15) -> None:
    async def reached() -> bool:
        return engine_state(container_id) == state

    await wait_for(reached, timeout, f"container {container_id[:12]} to be {state}")


async def listed_state(orun: Orun, path: str) -> str:
    apps = json.loads((await orun.cli("app", "list", "-i", "-f", "json")).ok().out)
    (app,) = [a for a in apps if a["app_path"] == path]
    return str(app["runtime"]["state"])


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, float]:
    began = time.monotonic()
    status, text = await get(http, url)
    return status, text, time.monotonic() - began


def events(orun: Orun, name: str) -> list[dict[str, Any]]:
    return [e for e in orun.log_events() if e.get("event") == name]


async def test_idle_app_pauses_and_the_next_request_thaws_it(
        make_orun: Any, http: aiohttp.ClientSession, tmp_path: Path, engine: None) -> None:
    """`app_defaults.idle_pause_secs` pauses an idle app (not one with its own
    `container.idle_pause_secs=0`); health checks every 0.2 s leave it alone; the next
    request unpauses the same container and is answered at once."""
    server = await own_orun(make_orun, FAST_HEALTH)
    src = copy_app("versioned_app", tmp_path)
    (await server.cli("app", "create", "--spec", "container", str(src), "/p")).ok()
    (await server.cli("app", "create", "--spec", "container",
                      "--conf", "container.idle_pause_secs=0", str(src), "/awake")).ok()
    assert (await get(http, server.url("/p/")))[0] == 200
    assert (await get(http, server.url("/awake/")))[0] == 200
    cid, awake = await the_container(server, "/p"), await the_container(server, "/awake")

    await wait_state(cid, "paused")
    assert await listed_state(server, "/p") == "paused"
    status, text = await get(http, server.url("/p/_orun_app/status"))
    assert status == 200 and json.loads(text)["state"] == "paused"
    # ten health-check periods: a paused container is never probed, so never flagged
    await asyncio.sleep(2)
    assert engine_state(cid) == "paused"
    assert await listed_state(server, "/p") == "paused"
    assert not events(server, "health_check_failed"), events(server, "health_check_failed")
    assert engine_state(awake) == "running"  # pause=0: that app keeps running

    status, text, took = await timed_get(http, server.url("/p/again"))
    assert (status, text) == (200, "version 1 message=\n")
    assert took < 1.0, f"a thaw took {took:.3f}s"
    assert engine_state(cid) == "running"
    assert await listed_state(server, "/p") == "running"
    assert containers(server.home, all_=True, app_id=await app_id(server, "/p")) == [cid]
    assert events(server, "app_paused") and events(server, "app_thawed")
    # idle again: paused again; concurrent requests share one thaw
    await wait_state(cid, "paused")
    results = await asyncio.gather(*(get(http, server.url(f"/p/{i}")) for i in range(10)))
    assert [status for status, _ in results] == [200] * 10
    assert len(events(server, "app_thawed")) == 2
    assert not events(server, "health_check_failed")


async def test_paused_container_stopped_outside_orun(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """`docker stop` of a paused container: orun notices, and the next request starts
    it again (no hang on a thaw of a stopped container)."""
    src = copy_app("versioned_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container",
                     "--conf", "container.idle_pause_secs=1", str(src), "/po")).ok()
    assert (await get(http, corun.url("/po/")))[0] == 200
    cid = await the_container(corun, "/po")
    await wait_state(cid, "paused")
    docker("stop", "-t", "1", cid)

    async def noticed() -> bool:
        return await listed_state(corun, "/po") in ("stopped", "crashed")

    await wait_for(noticed, 10, "orun to notice the stop")
    assert await get(http, corun.url("/po/")) == (200, "version 1 message=\n")
    assert engine_state(cid) == "running"


async def test_idle_stop_follows_the_pause(corun: Orun, http: aiohttp.ClientSession,
                                           tmp_path: Path) -> None:
    """Paused after 1 s, stopped after 4 s (thawed first, so it exits on its SIGTERM),
    started again by the next request."""
    src = copy_app("versioned_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container",
                     "--conf", "container.idle_pause_secs=1",
                     "--conf", "container.idle_shutdown_secs=4", str(src), "/ps")).ok()
    assert (await get(http, corun.url("/ps/")))[0] == 200
    cid = await the_container(corun, "/ps")
    await wait_state(cid, "paused")
    await wait_state(cid, "exited")
    assert await listed_state(corun, "/ps") == "stopped"
    stopped = events(corun, "app_stopped")
    assert stopped and "idle" in stopped[-1]["reason"], stopped
    assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).strip() == "0"  # SIGTERM
    assert not any(e.get("event") == "container_crashed" for e in corun.log_events())
    assert (await get(http, corun.url("/ps/x")))[0] == 200
    assert engine_state(cid) == "running"  # the same container, started again


async def test_open_websocket_wakes_a_paused_app(corun: Orun, http: aiohttp.ClientSession,
                                                 tmp_path: Path) -> None:
    """A websocket left open while the app went idle: its next frame thaws the app and
    is answered on the same connection."""
    src = copy_app("versioned_app", tmp_path)  # its websocket echoes "v<VERSION> <text>"
    (await corun.cli("app", "create", "--spec", "container",
                     "--conf", "container.idle_pause_secs=1", str(src), "/pws")).ok()
    async with http.ws_connect(corun.url("/pws/socket")) as ws:
        await ws.send_str("first")
        assert (await ws.receive(timeout=10)).data == "v1 first"
        cid = await the_container(corun, "/pws")
        await wait_state(cid, "paused")  # a silent websocket is no activity
        await ws.send_str("second")
        assert (await ws.receive(timeout=10)).data == "v1 second"
        assert engine_state(cid) == "running"
        assert await listed_state(corun, "/pws") == "running"
    assert events(corun, "app_thawed")


async def test_new_version_replaces_a_paused_container(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A promoted change while the app is paused: the new container serves, the paused
    one is thawed and stopped (no frozen leftover)."""
    src = copy_app("versioned_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container",
                     "--conf", "container.idle_pause_secs=1", str(src), "/pv")).ok()
    assert (await get(http, corun.url("/pv/")))[0] == 200
    old = await the_container(corun, "/pv")
    await wait_state(old, "paused")
    (await corun.cli("param", "update", "MESSAGE", "two", "/pv", "--promote")).ok()
    assert await get(http, corun.url("/pv/")) == (200, "version 1 message=two\n")
    prod = await app_id(corun, "/pv")

    async def retired() -> bool:  # stopped, then removed
        return old not in containers(corun.home, all_=True, app_id=prod)

    await wait_for(retired, 20, "the paused container to be retired")
    assert events(corun, "container_retired")
    assert not any(e.get("event") == "container_crashed" for e in corun.log_events())
    running = containers(corun.home, app_id=prod)
    assert len(running) == 1 and running[0] != old
    assert engine_state(running[0]) in ("running", "paused")


async def test_restarted_orun_adopts_a_paused_container(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """orun killed (-9) while the app is paused: the next orun adopts it as paused (no
    duplicate, no stop), and the next request thaws that same container."""
    src = copy_app("versioned_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container",
                     "--conf", "container.idle_pause_secs=1", str(src), "/pr")).ok()
    assert (await get(http, corun.url("/pr/")))[0] == 200
    cid = await the_container(corun, "/pr")
    await wait_state(cid, "paused")
    corun.kill9()
    await corun.start()
    assert engine_state(cid) == "paused"
    assert await listed_state(corun, "/pr") == "paused"
    assert events(corun, "app_adopted_paused")
    status, text, took = await timed_get(http, corun.url("/pr/"))
    assert (status, text) == (200, "version 1 message=\n")
    assert took < 1.0, f"a thaw after adoption took {took:.3f}s"
    assert containers(corun.home, all_=True, app_id=await app_id(corun, "/pr")) == [cid]
    assert engine_state(cid) == "running"
