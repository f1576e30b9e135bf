"""The python-gradio spec end to end: a real gradio app built and run by orun.

Gradio serves under the app path through GRADIO_ROOT_PATH (orun strips the path). Its
events run through the queue: `queue/join` then the `queue/data` server-sent events
stream (gradio 4+ uses no websockets); the REST-style `call/<api_name>` API streams SSE
too. The tests check the page, an asset, the queue and call streams (a generator's
results arriving one by one) at a path and at a domain, and a real browser.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import Browser, Page, screenshot_path
from tests.conftest import Orun
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(900)


async def queue_run(http: aiohttp.ClientSession, base: str, api_name: str, data: list[Any],
                    headers: dict[str, str] | None = None) -> list[tuple[float, dict[str, Any]]]:
    """Run the event `api_name` as the page does: join the queue, then read the session's
    SSE stream until the event completes. Returns (arrival time, message) pairs."""
    config = await get_json(http, base + "config", headers=headers)
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    session = uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0],
            "session_hash": session, "event_data": None}
    async with http.post(base + "gradio_api/queue/join", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        event_id = (await resp.json())["event_id"]
    messages: list[tuple[float, dict[str, Any]]] = []
    async with http.get(base + "gradio_api/queue/data", params={"session_hash": session},
                        headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as sse:
        assert sse.status == 200
        assert sse.headers["Content-Type"].startswith("text/event-stream")
        async for line in sse.content:
            if not line.startswith(b"data: "):
                continue
            msg = json.loads(line[6:])
            messages.append((time.monotonic(), msg))
            if msg.get("msg") == "process_completed":
                break
    assert all(m.get("event_id") in (event_id, None) for _, m in messages), messages
    assert messages and messages[-1][1]["msg"] == "process_completed", messages
    assert messages[-1][1]["success"], messages[-1]
    return messages


async def call_api(http: aiohttp.ClientSession, base: str, api_name: str, data: list[Any],
                   headers: dict[str, str] | None = None) -> str:
    """The `call/<api_name>` API: POST gives an event id, GET streams its result (SSE)."""
    async with http.post(base + f"gradio_api/call/{api_name}", json={"data": data},
                         headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        event_id = (await resp.json())["event_id"]
    async with http.get(base + f"gradio_api/call/{api_name}/{event_id}",
                        headers=headers) as sse:
        assert sse.status == 200
        assert sse.headers["Content-Type"].startswith("text/event-stream")
        return await sse.text()


async def check_app(http: aiohttp.ClientSession, base: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
    """Page, asset, queue and call API of the sample app at `base` (ending in /)."""
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "orun gradio sample" in page
    assert f"served at path: [{path}]" in page
    assets = re.findall(r'src="\./(assets/[^"]+\.js)"', page)
    assert assets, page[:3000]
    async with http.get(base + assets[0], headers=headers) as resp:
        assert resp.status == 200, f"{base + assets[0]}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
    config = await get_json(http, base + "config", headers=headers)
    assert config["root"].endswith(path)  # gradio knows where it is served

    messages = await queue_run(http, base, "greet", ["orun"], headers)
    assert messages[-1][1]["output"]["data"] == ["Hello, orun!"]
    # a generator's results stream through orun one by one, as gradio sends them
    # (0.3 s apart), not buffered up to the end
    messages = await queue_run(http, base, "count", [3], headers)
    generating = [(t, m) for t, m in messages if m["msg"] == "process_generating"]
    assert len(generating) == 3, messages
    # the first result whole (later ones are diffs against it)
    assert generating[0][1]["output"]["data"] == ["tick 1"]
    assert messages[-1][1]["output"]["data"] == ["tick 3"]
    assert generating[-1][0] - generating[0][0] >= 0.4, generating
    text = await call_api(http, base, "greet", ["api"], headers)
    assert "event: complete" in text and '["Hello, api!"]' in text, text


async def test_gradio_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                         tmp_path: Path) -> None:
    src = copy_app("gradio_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-gradio",
                     str(src), "/gr")).ok()
    async with http.get(corun.url("/gr"), allow_redirects=False) as resp:
        assert resp.status == 307  # redirect_bare_path: relative URLs resolve in /gr/
        assert resp.headers["Location"] == "/gr/"
    await check_app(http, corun.url("/gr/"), "/gr")

    (await corun.cli("app", "create", "--wait", "--spec", "python-gradio",
                     str(src), "grdom.:")).ok()
    await check_app(http, corun.url("/"), "", {"Host": f"grdom.localhost:{corun.port}"})
    await stops_cleanly(corun, "grdom.localhost:/")  # STOPSIGNAL SIGINT: gradio ignores SIGTERM


async def draw_url(http: aiohttp.ClientSession, base: str) -> str:
    """The URL gradio gives the sample's image output (a file it serves)."""
    text = await call_api(http, base, "draw", [])
    data = json.loads(text.split("data: ", 1)[1].splitlines()[0])
    return str(data[0]["url"])


async def test_gradio_file_urls_keep_the_port(corun: Orun, http: aiohttp.ClientSession,
                                              tmp_path: Path) -> None:
    src = copy_app("gradio_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-gradio",
                     str(src), "/grf")).ok()
    url = await draw_url(http, corun.url("/grf/"))
    assert url.startswith(corun.url("/grf/gradio_api/file=")), url


async def test_gradio_root_path_param_sets_the_public_url(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A GRADIO_ROOT_PATH param (a full URL) replaces the app path: file URLs use it."""
    src = copy_app("gradio_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-gradio",
                     "--param", f"GRADIO_ROOT_PATH={corun.url('/grp')}", str(src),
                     "/grp")).ok()
    url = await draw_url(http, corun.url("/grp/"))
    assert url.startswith(corun.url("/grp/gradio_api/file=")), url
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("image/")
    await check_app(http, corun.url("/grp/"), "/grp")


# -- a real browser ------------------------------------------------------------------------


def field_value(elem_id: str) -> str:
    return f"(document.querySelector('#{elem_id} textarea, #{elem_id} input') || {{}}).value"


async def test_gradio_in_browser_at_sub_path(corun: Orun, browser: Browser,
                                             tmp_path: Path) -> None:
    src = copy_app("gradio_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-gradio",
                     str(src), "/grb")).ok()
    page: Page = await browser.new_page()
    try:
        await step(page, lambda: page.goto(corun.url("/grb"), timeout=60),  # redirects
                   "!!document.querySelector('#greet') && "
                   "document.body.innerText.includes('orun gradio sample')", timeout=30)
        assert await page.url() == corun.url("/grb/")
        assert "served at path: [/grb]" in await page.text()
        await page.screenshot(screenshot_path("gradio-browser-loaded"))
        await page.wait_for("(() => { const t = document.querySelector('#name textarea');"
                            " if (!t) return false; t.focus();"
                            " return document.activeElement === t; })()", 10)
        await page.send("Input.insertText", {"text": "orun"})
        # each click runs the event through the queue (POST join, then the SSE stream)
        await step(page, lambda: page.click("#greet"),
                   f"{field_value('greeting')} === 'Hello, orun!'", timeout=30)
        # a streaming event: the progress box counts up to the last tick
        await step(page, lambda: page.click("#count"),
                   f"{field_value('progress')} === 'tick 3'", timeout=30)
        await page.evaluate("document.querySelector('#progress').scrollIntoView()")
        await page.screenshot(screenshot_path("gradio-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("gradio-browser-failed"))
        raise
