"""Declarative apps: the config's `apps:` list, reconciled at start and on SIGHUP."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, container_config, remove_containers
from tests.e2e.test_containers import copy_app, get

pytestmark = pytest.mark.timeout(600)


def static_site(tmp_path: Path, name: str) -> Path:
    site = tmp_path / name
    site.mkdir()
    (site / "index.html").write_text(f"<h1>{name}</h1>\n")
    return site


def config_with(apps: list[dict[str, Any]]) -> str:
    return container_config("apps:\n" + "".join(f"  - {json.dumps(a)}\n" for a in apps))


def reconcile_events(server: Orun) -> list[dict[str, Any]]:
    """Every reconcile or failed reload event in the server log (all its runs)."""
    return [e for e in server.log_events()
            if e.get("event") in ("apps_reconciled", "config_reload_failed",
                                  "config_unchanged")]


async def reconciled(server: Orun, count: int, timeout: float = 60) -> dict[str, Any]:
    """The `count`-th reconcile or failed reload event in the server log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = reconcile_events(server)
        if len(events) >= count:
            return events[count - 1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no reconcile #{count}:\n{server.log()[-3000:]}")


async def apps_by_path(server: Orun) -> dict[str, dict[str, Any]]:
    out = (await server.cli("app", "list", "-i", "-f", "json")).ok().out
    return {a["app_path"]: a for a in json.loads(out)}


async def main_paths(server: Orun) -> set[str]:
    return {p for p, a in (await apps_by_path(server)).items() if a["kind"] != "stage"}


async def test_sighup_reconciles_exactly_the_listed_apps(
        make_orun: Any, engine: None, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    versioned = copy_app("versioned_app", tmp_path)
    site_b = static_site(tmp_path, "site_b")
    site_c = static_site(tmp_path, "site_c")
    entry_a = {"path": "/da", "source": str(versioned), "spec": "container",
               "stage_at": "path", "params": {"MESSAGE": "one"}}
    # a relative source is relative to the config file's folder
    entry_b = {"path": "/db", "source": "../site_b", "spec": "static"}
    server: Orun = make_orun(config_with([entry_a, entry_b]))
    assert server.home.parent == site_b.parent
    await server.start()
    try:
        await reconciled(server, 1)
        apps = await apps_by_path(server)
        assert apps["/da"]["origin"] == "config" and apps["/db"]["origin"] == "config"
        assert apps["/db"]["source"] == str(site_b)
        assert await get(http, server.url("/da/")) == (200, "version 1 message=one\n")
        assert (await get(http, server.url("/db/")))[1] == "<h1>site_b</h1>\n"
        # an app made from the CLI is never touched by the file
        (await server.cli("app", "create", "--spec", "static", str(site_c), "/cli")).ok()

        # change /da (promoted), drop /db, add /dc
        entry_a2 = {**entry_a, "params": {"MESSAGE": "two"}, "promote": True}
        entry_c = {"path": "/dc", "source": str(site_c), "spec": "static"}
        server.write_config(config_with([entry_a2, entry_c]))
        check = (await server.cli("config", "check")).ok().out
        assert "would create /dc" in check
        assert "would update /da (params) and promote" in check
        assert "would delete /db" in check
        assert (await get(http, server.url("/db/")))[0] == 200  # a check changes nothing

        server.signal(signal.SIGHUP)
        done = await reconciled(server, 2)
        assert done["event"] == "apps_reconciled", done
        assert done["created"] == ["/dc"] and done["deleted"] == ["/db"]
        assert done["updated"] == ["/da"]
        assert await get(http, server.url("/da/")) == (200, "version 1 message=two\n")
        assert await get(http, server.url("/da_cl_stage/")) == (200, "version 1 message=two\n")
        assert (await get(http, server.url("/db/")))[0] == 404
        assert (await get(http, server.url("/dc/")))[1] == "<h1>site_c</h1>\n"
        assert (await get(http, server.url("/cli/")))[1] == "<h1>site_c</h1>\n"
        assert await main_paths(server) == {"/da", "/dc", "/cli"}

        # without `promote` a change waits in the stage app
        entry_a3 = {**entry_a, "params": {"MESSAGE": "three"}}
        server.write_config(config_with([entry_a3, entry_c]))
        result = (await server.cli("config", "reload")).ok().out
        assert "updated /da" in result
        assert await get(http, server.url("/da_cl_stage/")) == (200, "version 1 message=three\n")
        assert await get(http, server.url("/da/")) == (200, "version 1 message=two\n")
        listing = (await server.cli("app", "list")).ok().out  # Name Type Ver Auth AppPath
        assert next(ln for ln in listing.splitlines()
                    if ln.endswith(" /da")).split()[1] == "PROD*"

        # an invalid entry rejects the whole reload: nothing changes
        before = await apps_by_path(server)
        bad = [{**entry_a3, "params": {"MESSAGE": "four"}}, entry_c,
               {"path": "/bad", "source": str(site_c), "spec": "no-such-spec"},
               {"path": "/cli", "source": str(site_c), "spec": "static"}]
        server.write_config(config_with(bad))
        check = await server.cli("config", "check")
        assert check.code == 1
        assert "apps[2] (/bad): " in check.err and "no-such-spec" in check.err
        assert "apps[3] (/cli): App already exists at /cli" in check.err
        server.signal(signal.SIGHUP)
        failed = await reconciled(server, 4)
        assert failed["event"] == "config_reload_failed"
        assert any(p.startswith("apps[2] (/bad): ") for p in failed["problems"])
        reload_cli = await server.cli("config", "reload")
        assert reload_cli.code == 1 and "the old config stays in force" in reload_cli.err
        after = await apps_by_path(server)
        assert {p: a["current"] for p, a in after.items()} == \
            {p: a["current"] for p, a in before.items()}
        assert await get(http, server.url("/da_cl_stage/")) == (200, "version 1 message=three\n")

        # a restart reconciles too: the file changed while orun was down (/da promoted
        # with a new param, /dc dropped, /dd added) is applied at start
        await server.stop()
        seen = len(reconcile_events(server))
        entry_a5 = {**entry_a, "params": {"MESSAGE": "five"}, "promote": True}
        entry_d = {"path": "/dd", "source": str(site_b), "spec": "static"}
        server.write_config(config_with([entry_a5, entry_d]))
        await server.start()
        done = await reconciled(server, seen + 1)
        assert done["event"] == "apps_reconciled", done
        assert done["created"] == ["/dd"] and done["deleted"] == ["/dc"]
        assert done["updated"] == ["/da"]
        assert await get(http, server.url("/da/")) == (200, "version 1 message=five\n")
        assert (await get(http, server.url("/dd/")))[1] == "<h1>site_b</h1>\n"
        assert (await get(http, server.url("/dc/")))[0] == 404
        assert await main_paths(server) == {"/da", "/dd", "/cli"}
    finally:
        await server.stop()
        remove_containers(server.home)
