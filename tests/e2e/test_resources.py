"""Per-app CPU and memory in `app list`, read from the real engine's stats: a busy
container shows a core's worth of CPU, memory grows when the app holds more, the figures
agree with what `docker stats` reports, and a stopped app shows none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, docker
from tests.e2e.test_containers import copy_app, get, own_orun, wait_for

pytestmark = pytest.mark.timeout(240)

MIB = 2**20


async def resources(server: Orun, path: str) -> Any:
    apps = json.loads((await server.cli("app", "list", "-f", "json")).ok().out)
    (app,) = [a for a in apps if a["app_path"] == path]
    return app["resources"]


def engine_memory_limit(container: str) -> int:
    """The limit `docker stats` shows, in bytes (its `MemUsage` is `used / limit`)."""
    row = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", container))
    shown = row["MemUsage"].split("/")[1].strip()
    factor = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[shown[-3:]]
    return int(float(shown[:-3]) * factor)


async def test_app_list_shows_cpu_and_memory_from_the_engine(
        make_orun: Any, http: aiohttp.ClientSession, tmp_path: Path, engine: None) -> None:
    server = await own_orun(make_orun, "system: {resource_sample_secs: 0.5}\n")
    (await server.cli("app", "create", "--spec", "container",
                      str(copy_app("fault_app", tmp_path)), "/r")).ok()
    (await server.cli("app", "create", "--spec", "container",
                      "--conf", "container.idle_shutdown_secs=4",
                      str(copy_app("versioned_app", tmp_path)), "/idle")).ok()
    assert (await resources(server, "/r")) is None  # not started yet: nothing to read
    assert (await get(http, server.url("/r/")))[0] == 200
    assert (await get(http, server.url("/idle/")))[0] == 200

    first: dict[str, Any] = {}

    async def sampled() -> bool:
        first.update(await resources(server, "/r") or {})
        return bool(first)

    await wait_for(sampled, 20, "a resource sample of /r")
    idle: dict[str, Any] = {}

    async def idle_sampled() -> bool:
        idle.update(await resources(server, "/idle") or {})
        return bool(idle)

    await wait_for(idle_sampled, 5, "a resource sample of /idle")
    assert idle["cpu_percent"] < 20 and idle["memory_bytes"] > MIB
    assert 1 * MIB < first["memory_bytes"] < 200 * MIB
    assert first["memory_limit_bytes"] >= first["memory_bytes"]
    apps = json.loads((await server.cli("app", "list", "-f", "json")).ok().out)
    (listed,) = [a for a in apps if a["app_path"] == "/r"]
    limit = engine_memory_limit(listed["runtime"]["container"])
    assert abs(first["memory_limit_bytes"] - limit) <= limit // 100  # docker rounds it

    # one core busy for a while: the sample shows about a core's worth
    assert (await get(http, server.url("/r/spin?s=6")))[0] == 200

    async def busy() -> bool:
        now = await resources(server, "/r")
        return now is not None and now["cpu_percent"] > 50

    await wait_for(busy, 8, "/r to show a busy core")

    # 64 MiB more held: memory follows
    assert (await get(http, server.url("/r/hold?mb=64")))[0] == 200

    async def grown() -> bool:
        now = await resources(server, "/r")
        return now is not None and now["memory_bytes"] >= first["memory_bytes"] + 60 * MIB

    await wait_for(grown, 10, "/r's memory to grow by 64 MiB")
    # the table format shows the same reading (State, CPU%, Mem are its last columns)
    table = (await server.cli("app", "list", "-f", "table")).ok().out.splitlines()
    assert table[0].split()[-3:] == ["State", "CPU%", "Mem"]
    (row,) = [line.split() for line in table if " /r " in f" {line} "]
    assert row[-3] == "running" and float(row[-2]) >= 0 and row[-1].endswith("MiB")
    assert float(row[-1][:-3]) >= 60
    # and Prometheus sees it (the metrics answer loopback clients without a token)
    async with http.get(server.url("/_orun/metrics")) as resp:
        assert resp.status == 200
        series = {line.split(" ")[0]: float(line.split(" ")[1])
                  for line in (await resp.text()).splitlines()
                  if line.startswith("orun_app_")}
    assert series['orun_app_memory_bytes{app="/r"}'] >= 60 * MIB
    assert series['orun_app_memory_limit_bytes{app="/r"}'] == first["memory_limit_bytes"]
    assert series['orun_app_cpu_percent{app="/r"}'] >= 0
    # an app stopped when idle shows no figures
    async def stopped() -> bool:
        return await resources(server, "/idle") is None

    await wait_for(stopped, 15, "/idle to be stopped and show no figures")
