"""Staged changes end to end on the real engine: reload into stage, promote, verify across
a glob, zero-downtime switch under load, versions, param and app updates.

The sample app (tests/apps/versioned_app) answers `version <VERSION file> message=...`
and echoes websocket frames as `v<VERSION> ...`, so every check sees which container
answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, containers, docker
from tests.e2e.test_containers import copy_app, get, own_orun

pytestmark = pytest.mark.timeout(600)


def set_version(src: Path, version: str, *, broken: bool = False) -> None:
    (src / "VERSION").write_text(version + "\n")
    if broken:
        (src / "BROKEN").write_text("this version fails its health check\n")
    else:
        (src / "BROKEN").unlink(missing_ok=True)


async def body(http: aiohttp.ClientSession, url: str) -> str:
    status, text = await get(http, url)
    assert status == 200, f"{url}: {status} {text[:500]}"
    return text.strip()


async def listing(orun: Orun) -> dict[str, dict[str, object]]:
    out = (await orun.cli("app", "list", "-i", "-f", "json")).ok().out
    return {a["app_path"]: a for a in json.loads(out)}


async def versioned(orun: Orun, http: aiohttp.ClientSession, tmp_path: Path,
                    app_path: str, *options: str) -> Path:
    """The versioned sample app created at `app_path` (stage at path), prod running v1."""
    src = copy_app("versioned_app", tmp_path)
    (await orun.cli("app", "create", "--spec", "container", "--stage-at", "path",
                    *options, str(src), app_path)).ok()
    assert await body(http, orun.url(app_path + "/")) == "version 1 message="
    return src


def list_type(text: str, path: str) -> str:
    line = next(ln for ln in text.splitlines() if ln.endswith(f" {path}"))
    return line.split()[1]


async def test_reload_stages_then_promote(corun: Orun, http: aiohttp.ClientSession,
                                          tmp_path: Path) -> None:
    src = await versioned(corun, http, tmp_path, "/v")
    assert await body(http, corun.url("/v_cl_stage/")) == "version 1 message="

    set_version(src, "2")
    dry = (await corun.cli("app", "reload", "--dry-run", "/v")).ok().out
    assert "dry-run mode, changes have NOT been committed" in dry
    assert await body(http, corun.url("/v_cl_stage/")) == "version 1 message="

    out = (await corun.cli("app", "reload", "/v")).ok().out
    assert "Reloaded apps: /v_cl_stage" in out
    assert "1 app(s) reloaded, 0 app(s) skipped, 0 app(s) promoted." in out
    # the stage runs the new version at once (reload starts it), prod keeps the old one
    assert await body(http, corun.url("/v_cl_stage/")) == "version 2 message="
    assert await body(http, corun.url("/v/")) == "version 1 message="
    table = (await corun.cli("app", "list")).ok().out
    assert list_type(table, "/v") == "PROD*"
    apps = await listing(corun)
    assert apps["/v"]["current"]["version"] == 1  # type: ignore[index]
    assert apps["/v_cl_stage"]["current"]["version"] == 2  # type: ignore[index]

    dry = (await corun.cli("app", "promote", "--dry-run", "/v")).ok().out
    assert "Promoting /v" in dry and "NOT been committed" in dry
    assert await body(http, corun.url("/v/")) == "version 1 message="

    out = (await corun.cli("app", "promote", "/v")).ok().out
    assert "Promoting /v" in out and "1 app(s) promoted." in out
    # prod was running, so the new version was started and switched in before the
    # command returned
    assert await body(http, corun.url("/v/")) == "version 2 message="
    assert list_type((await corun.cli("app", "list")).ok().out, "/v") == "PROD"
    again = (await corun.cli("app", "promote", "/v")).ok().out
    assert "No staged changes for /v" in again and "0 app(s) promoted." in again


async def test_verify_over_a_glob_reverts_every_app(corun: Orun, http: aiohttp.ClientSession,
                                                    tmp_path: Path) -> None:
    # /g/b is created first, so /g/a (newest) is processed first: its new version is
    # started, then /g/b's fails, and /g/a's must be taken back
    srcs = {}
    for name in ("b", "a"):
        srcs[name] = copy_app("versioned_app", tmp_path / name)
        (await corun.cli("app", "create", "--spec", "container", "--stage-at", "path",
                         "--conf", "container.startup_timeout_secs=4",
                         str(srcs[name]), f"/g/{name}")).ok()
    for name in ("a", "b"):
        assert await body(http, corun.url(f"/g/{name}/")) == "version 1 message="
        assert await body(http, corun.url(f"/g/{name}_cl_stage/")) == "version 1 message="
    running = sorted(containers(corun.home))
    set_version(srcs["a"], "2")
    set_version(srcs["b"], "2", broken=True)

    result = await corun.cli("app", "reload", "--verify", "--promote", "/g/*")
    assert result.code == 1, result.out
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: verify failed for app /g/b_cl_stage: error waiting for "
                           "health"), result.err
    assert last.endswith("All changes have been reverted")
    for name in ("a", "b"):
        assert await body(http, corun.url(f"/g/{name}/")) == "version 1 message="
        assert await body(http, corun.url(f"/g/{name}_cl_stage/")) == "version 1 message="
    apps = await listing(corun)
    assert {p: a["current"]["version"] for p, a in apps.items()} == {  # type: ignore[index]
        "/g/a": 1, "/g/a_cl_stage": 1, "/g/b": 1, "/g/b_cl_stage": 1}
    # what the operation started is gone again
    assert sorted(containers(corun.home)) == running

    # without --verify each app stands alone: /g/a moves, /g/b stays and the exit says so
    result = await corun.cli("app", "reload", "--promote", "/g/*")
    assert result.code == 1
    assert "Reloaded apps: /g/a_cl_stage" in result.out
    assert "Promoted apps: /g/a" in result.out
    assert "error: error reloading app /g/b_cl_stage: error waiting for health" in result.err
    assert await body(http, corun.url("/g/a/")) == "version 2 message="
    assert await body(http, corun.url("/g/b/")) == "version 1 message="


async def test_promote_under_load_loses_no_request(corun: Orun, http: aiohttp.ClientSession,
                                                   tmp_path: Path) -> None:
    src = await versioned(corun, http, tmp_path, "/z")
    set_version(src, "2")
    (await corun.cli("app", "reload", "/z")).ok()
    prod_before = set(containers(corun.home, app_id=(await listing(corun))["/z"]["id"]))  # type: ignore[arg-type]
    assert len(prod_before) == 1

    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = asyncio.Event()

    async def loop_requests() -> None:
        async with aiohttp.ClientSession() as own:  # its own pool, as a separate client
            while not stop.is_set():
                try:
                    async with own.get(corun.url("/z/")) as resp:
                        text = (await resp.text()).strip()
                        if resp.status != 200:
                            failures.append(f"{resp.status} {text[:200]}")
                        else:
                            seen[text] = seen.get(text, 0) + 1
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    loaders = [asyncio.create_task(loop_requests()) for _ in range(3)]
    ws = await http.ws_connect(corun.url("/z/ws"))
    await ws.send_str("before")
    assert (await ws.receive(timeout=5)).data == "v1 before"
    slow = asyncio.create_task(get(http, corun.url("/z/slow?secs=3")))
    (old,) = prod_before
    deadline = time.monotonic() + 10  # the slow request is in the old container
    while "slow request started" not in docker("logs", old):
        assert time.monotonic() < deadline, "the slow request never reached the app"
        await asyncio.sleep(0.05)

    started = time.monotonic()
    out = (await corun.cli("app", "promote", "/z")).ok().out
    assert "1 app(s) promoted." in out
    promote_secs = time.monotonic() - started
    assert await body(http, corun.url("/z/")) == "version 2 message="
    # the open websocket still talks to the old container, which is draining
    await ws.send_str("during")
    assert (await ws.receive(timeout=5)).data == "v1 during"
    # the request that was in flight across the switch completes on the old container
    assert await slow == (200, "version 1 message=\n")
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*loaders)
    assert failures == [], failures[:5]
    assert seen.get("version 1 message=", 0) > 0 and seen.get("version 2 message=", 0) > 0, seen

    # the old container stops only once the websocket is gone (drained, not cut)
    assert old in containers(corun.home)
    await ws.close()
    deadline = time.monotonic() + 15
    while old in containers(corun.home, all_=True) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert old not in containers(corun.home, all_=True)
    retired = [e for e in corun.log_events() if e.get("event") == "container_retired"]
    assert retired and retired[-1]["drained_secs"] < 30
    assert promote_secs < 30


async def test_version_switch_and_revert_without_a_build(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = await versioned(corun, http, tmp_path, "/s")
    set_version(src, "2")
    out = (await corun.cli("app", "reload", "--promote", "/s")).ok().out
    assert "Promoted apps: /s" in out
    assert await body(http, corun.url("/s/")) == "version 2 message="
    builds = len([e for e in corun.log_events() if e.get("event") == "image_built"])

    listing_out = (await corun.cli("version", "list", "/s")).ok().out
    rows = [ln.split() for ln in listing_out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["2", "1"] and rows[0][1] == "*"

    out = (await corun.cli("version", "switch", "previous", "/s")).ok().out
    assert out.strip() == "Switched /s from version 2 to version 1"
    assert await body(http, corun.url("/s/")) == "version 1 message="
    assert await body(http, corun.url("/s_cl_stage/")) == "version 2 message="  # per app
    out = (await corun.cli("version", "revert", "/s")).ok().out
    assert out.strip() == "Switched /s from version 1 to version 2"
    assert await body(http, corun.url("/s/")) == "version 2 message="
    out = (await corun.cli("version", "switch", "1", "/s")).ok().out
    assert "to version 1" in out
    assert await body(http, corun.url("/s/")) == "version 1 message="
    # rollbacks reuse the kept images: nothing was built
    assert len([e for e in corun.log_events() if e.get("event") == "image_built"]) == builds

    missing = await corun.cli("version", "switch", "previous", "/s")
    assert missing.code == 1 and missing.err.strip() == "error: no previous version found"
    bad = await corun.cli("version", "switch", "9", "/s")
    assert bad.code == 1 and "version 9 of app /s not found (kept versions: 1, 2)" in bad.err
    dry = (await corun.cli("version", "switch", "next", "/s", "--dry-run")).ok().out
    assert "from version 1 to version 2" in dry and "NOT been committed" in dry
    assert await body(http, corun.url("/s/")) == "version 1 message="

    # two reloads at once: one waits for the other, each gets its own version
    results = await asyncio.gather(corun.cli("app", "reload", "/s"),
                                   corun.cli("app", "reload", "-a", "/s"))
    assert all(r.code == 0 for r in results), [r.err for r in results]
    stage_versions = (await corun.cli("version", "list", "/s_cl_stage")).ok().out
    assert [ln.split()[0] for ln in stage_versions.splitlines()[2:]] == ["4", "3", "2", "1"]


async def test_param_and_app_updates_are_staged_unless_promoted(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    await versioned(corun, http, tmp_path, "/p")

    out = (await corun.cli("param", "update", "MESSAGE", "hello", "/p")).ok().out
    assert out.splitlines() == ["Updated app /p", "1 app(s) updated, 0 app(s) promoted."]
    assert await body(http, corun.url("/p_cl_stage/")) == "version 1 message=hello"
    assert await body(http, corun.url("/p/")) == "version 1 message="
    assert list_type((await corun.cli("app", "list")).ok().out, "/p") == "PROD*"
    listed = (await corun.cli("param", "list", "/p_cl_stage")).ok().out.splitlines()
    assert listed[0].startswith("Param values for app /p_cl_stage : app_stg_")
    assert listed[1:] == ["  MESSAGE: hello"]
    none = (await corun.cli("param", "list", "/p")).ok().out
    assert none.startswith("No param values for app /p : app_prd_")

    # flags after the positionals work too (as OpenRun's interspersed flags)
    out = (await corun.cli("param", "update", "MESSAGE", "'bye'", "/p", "--promote")).ok().out
    assert out.splitlines() == ["Updated app /p", "1 app(s) updated, 1 app(s) promoted."]
    assert await body(http, corun.url("/p/")) == "version 1 message=bye"
    assert await body(http, corun.url("/p_cl_stage/")) == "version 1 message=bye"
    assert list_type((await corun.cli("app", "list")).ok().out, "/p") == "PROD"

    out = (await corun.cli("param", "update", "MESSAGE", "-", "/p", "-p")).ok().out
    assert "1 app(s) promoted." in out
    assert await body(http, corun.url("/p/")) == "version 1 message="

    out = (await corun.cli("app", "update", "conf", "container.idle_shutdown_secs=600",
                           "/p")).ok().out
    assert out.splitlines() == ["Updated /p", "1 app(s) updated, 0 app(s) promoted."]
    apps = await listing(corun)
    stage_conf = apps["/p_cl_stage"]["current"]["settings"]["app_config"]  # type: ignore[index]
    assert stage_conf == {"container.idle_shutdown_secs": "600"}
    assert apps["/p"]["current"]["settings"]["app_config"] == {}  # type: ignore[index]

    bad = await corun.cli("app", "update", "copt", "privileged=true", "/p")
    assert bad.code == 1 and bad.err.startswith("error: ") and "privileged" in bad.err
    bad = await corun.cli("app", "update", "copt", "memory", "/p")
    assert bad.code == 1
    assert bad.err.strip() == "error: invalid container_options memory, need key=value"
    bad = await corun.cli("app", "update", "spec", "no-such-spec", "/p")
    assert bad.code == 1 and "no-such-spec" in bad.err
    bad = await corun.cli("param", "update", "MESSAGE", "x", "/nothing-here")
    assert bad.code == 1 and bad.err.strip() == "error: no apps matched /nothing-here"
    # a refused update changed nothing
    after = await listing(corun)
    assert after["/p_cl_stage"]["current"] == apps["/p_cl_stage"]["current"]


async def test_promote_starts_prod_first_even_when_scaled_to_zero(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Production never moves to a version that did not come up healthy: a staged change
    that breaks the app (committed lazily, the stage was not running) fails `promote`,
    and prod, stopped meanwhile, still starts its old version."""
    await versioned(corun, http, tmp_path, "/q", "--conf", "container.startup_timeout_secs=4")
    prod = (await listing(corun))["/q"]["id"]
    for container in containers(corun.home, app_id=str(prod)):
        docker("stop", container)  # scaled to zero
    out = (await corun.cli("param", "update", "MESSAGE", "break", "/q")).ok().out
    assert "1 app(s) updated, 0 app(s) promoted." in out
    result = await corun.cli("app", "promote", "/q")
    assert result.code == 1
    assert "error: error updating app /q: error waiting for health" in result.err
    apps = await listing(corun)
    assert apps["/q"]["current"]["version"] == 1  # type: ignore[index]
    assert apps["/q_cl_stage"]["current"]["version"] == 2  # type: ignore[index]
    assert await body(http, corun.url("/q/")) == "version 1 message="
    # fixed in stage, the promote goes through
    (await corun.cli("param", "update", "MESSAGE", "fixed", "/q")).ok()
    assert "1 app(s) promoted." in (await corun.cli("app", "promote", "/q")).ok().out
    assert await body(http, corun.url("/q/")) == "version 1 message=fixed"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1",
                                           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                           "GIT_COMMITTER_NAME": "t",
                                           "GIT_COMMITTER_EMAIL": "t@x"})
    return done.stdout.strip()


async def test_git_reload_skips_unchanged_commits_and_moves_branches(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    repo = copy_app("versioned_app", tmp_path)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "version one")
    (await corun.cli("app", "create", "--spec", "container", "--stage-at", "path",
                     repo.as_uri(), "/git")).ok()
    assert await body(http, corun.url("/git/")) == "version 1 message="

    out = (await corun.cli("app", "reload", "/git")).ok().out
    assert "Skipped apps: /git_cl_stage" in out
    assert "0 app(s) reloaded, 1 app(s) skipped, 0 app(s) promoted." in out
    out = (await corun.cli("app", "reload", "--force-reload", "/git")).ok().out
    assert "1 app(s) reloaded, 0 app(s) skipped" in out

    set_version(repo, "2")
    git(repo, "commit", "-q", "-am", "version two")
    out = (await corun.cli("app", "reload", "--promote", "/git")).ok().out
    assert "Promoted apps: /git" in out
    assert await body(http, corun.url("/git/")) == "version 2 message="
    versions = (await corun.cli("version", "list", "/git")).ok().out
    assert "version two" in versions and git(repo, "rev-parse", "HEAD")[:12] in versions

    git(repo, "checkout", "-q", "-b", "feature")
    set_version(repo, "3")
    git(repo, "commit", "-q", "-am", "feature work")
    git(repo, "checkout", "-q", "main")
    out = (await corun.cli("app", "reload", "--branch", "feature", "/git")).ok().out
    assert "Reloaded apps: /git_cl_stage" in out
    assert await body(http, corun.url("/git_cl_stage/")) == "version 3 message="
    assert await body(http, corun.url("/git/")) == "version 2 message="
    stage = (await listing(corun))["/git_cl_stage"]["current"]
    assert stage["settings"]["branch"] == "feature"  # type: ignore[index]
    assert stage["git_message"] == "feature work"  # type: ignore[index]
    # the next plain reload follows the stage's branch
    out = (await corun.cli("app", "reload", "/git")).ok().out
    assert "Skipped apps: /git_cl_stage" in out
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    out = (await corun.cli("app", "reload", "--commit", first, "/git")).ok().out
    assert "1 app(s) reloaded" in out
    assert await body(http, corun.url("/git_cl_stage/")) == "version 1 message="


async def test_old_versions_beyond_retention_are_forgotten(
        make_orun: Any, engine: None, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    server = await own_orun(make_orun, "system: {retain_versions: 1}\n")
    try:
        src = await versioned(server, http, tmp_path, "/r")
        for version in ("2", "3", "4"):
            set_version(src, version)
            (await server.cli("app", "reload", "--promote", "/r")).ok()
        assert await body(http, server.url("/r/")) == "version 4 message="
        out = (await server.cli("version", "list", "/r")).ok().out
        assert [ln.split()[0] for ln in out.splitlines()[2:]] == ["4", "3"]
        out = (await server.cli("version", "switch", "previous", "/r")).ok().out
        assert "from version 4 to version 3" in out
        assert await body(http, server.url("/r/")) == "version 3 message="
        gone = await server.cli("version", "switch", "2", "/r")
        assert gone.code == 1 and "kept versions: 3, 4" in gone.err
    finally:
        await server.stop()
