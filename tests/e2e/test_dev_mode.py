"""Dev mode end to end on the real Docker engine: a dev app runs from its live source
folder; a code edit shows on the next request without an image build, a dependency edit
rebuilds, and deleting the app stops its watcher."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, containers, docker
from tests.e2e.test_containers import app_id, copy_app, get, own_orun, wait_for

pytestmark = pytest.mark.timeout(600)


async def _async(value: bool) -> bool:
    return value


def image_of(container_id: str) -> str:
    return docker("inspect", "-f", "{{.Config.Image}}", container_id).strip()


async def build_log(server: Orun, path: str) -> str:
    return (await server.cli("app", "logs", "--build", path)).ok().out


def after(text: str, marker: str) -> str:
    """What the log says from the last `marker` on."""
    assert marker in text, f"{marker!r} not in the build log:\n{text}"
    return text[text.rindex(marker):]


async def test_dev_app_edit_restarts_without_rebuild_and_dependency_edit_rebuilds(
        make_orun: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    server = await own_orun(make_orun)
    src = copy_app("flask_app", tmp_path)
    (await server.cli("app", "create", "--dev", "--spec", "python-flask", str(src),
                      "/dev")).ok()
    assert await get(http, server.url("/dev/")) == (200, "flask app ok\n")
    dev_id = await app_id(server, "/dev")
    assert dev_id.startswith("app_dev_")
    (cid,) = containers(server.home, app_id=dev_id)
    image = image_of(cid)
    repo = image.split(":")[0]
    images_before = set(docker("images", "-q", repo).split())
    mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", cid)
    assert f"{src}:/app" in mounts.split()  # the live folder, not a snapshot

    # a code edit: the same container restarts, no image is built; requests sent
    # meanwhile (4 clients in a loop) wait for the restart instead of failing
    await wait_for(lambda: _has_event(server, "dev_watch_started", dev_id), 10, "the watcher")
    answers: collections.Counter[tuple[int, str]] = collections.Counter()
    seen_edit = asyncio.Event()

    async def client() -> None:
        while not seen_edit.is_set():
            answer = await get(http, server.url("/dev/"))
            answers[answer] += 1
            if answer == (200, "flask app edited\n"):
                seen_edit.set()

    clients = [asyncio.ensure_future(client()) for _ in range(4)]
    deadline = time.monotonic() + 10
    while sum(answers.values()) < 8:  # the clients are looping before the edit
        assert time.monotonic() < deadline, answers
        await asyncio.sleep(0.02)
    edited = time.monotonic()
    app_py = src / "app.py"
    app_py.write_text(app_py.read_text().replace('"flask app ok\\n"', '"flask app edited\\n"'))
    try:
        await asyncio.wait_for(seen_edit.wait(), 20)
    finally:
        latency = time.monotonic() - edited
        seen_edit.set()
        await asyncio.gather(*clients)
    assert set(answers) == {(200, "flask app ok\n"), (200, "flask app edited\n")}, answers
    assert containers(server.home, app_id=dev_id) == [cid]  # restarted, not replaced
    assert image_of(cid) == image
    assert set(docker("images", "-q", repo).split()) == images_before
    log = after(await build_log(server, "/dev"), "change detected: app.py → restart")
    assert "restarted in" in log
    assert "building" not in log and "image " not in log, log
    restart = float(log.split("restarted in ", 1)[1].split("s", 1)[0])
    print(f"\nedit → visible: {latency:.2f}s (container restart + health: {restart:.2f}s)")
    assert latency < 10

    # a dependency edit: the image is rebuilt and a new container replaces the old one
    (src / "requirements.txt").write_text(f"flask\n# {uuid.uuid4().hex}\n")
    rebuild_started = time.monotonic()

    async def rebuilt() -> bool:
        log = await build_log(server, "/dev")
        return "change detected: requirements.txt → rebuild" in log and \
            "dev change applied" in after(log, "change detected: requirements.txt")

    async def replaced() -> bool:
        now = containers(server.home, app_id=dev_id)
        return len(now) == 1 and now != [cid]

    await wait_for(rebuilt, 240, "the rebuilt container to serve")
    print(f"dependency edit → new container serving: {time.monotonic() - rebuild_started:.1f}s")
    await wait_for(replaced, 30, "the old container to be retired")
    (new_cid,) = containers(server.home, app_id=dev_id)
    assert image_of(new_cid) != image and image_of(new_cid).startswith(repo + ":")
    log = after(await build_log(server, "/dev"), "change detected: requirements.txt → rebuild")
    assert f"building {image_of(new_cid)}" in log and "built " in log
    assert await get(http, server.url("/dev/")) == (200, "flask app edited\n")

    # deleting the app stops its watcher; later edits do nothing
    (await server.cli("app", "delete", "/dev")).ok()
    await wait_for(lambda: _has_event(server, "dev_watch_stopped", dev_id), 10,
                   "the watcher to stop")
    await wait_for(lambda: _async(not containers(server.home, all_=True, app_id=dev_id)), 10,
                   "the container's removal")
    changes = _count(server, "dev_change")
    app_py.write_text(app_py.read_text() + "\n# after delete\n")
    await asyncio.sleep(1.5)
    assert _count(server, "dev_change") == changes
    assert not containers(server.home, all_=True, app_id=dev_id)
    assert (await get(http, server.url("/dev/")))[0] == 404


async def _has_event(server: Orun, event: str, app: str) -> bool:
    return any(e.get("event") == event and e.get("app_id") == app
               for e in server.log_events())


def _count(server: Orun, event: str) -> int:
    return sum(1 for e in server.log_events() if e.get("event") == event)
