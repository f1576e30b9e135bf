"""The python-shiny spec end to end: a real Shiny for Python app built and run by orun.

orun strips the app path and Shiny's page names its scripts and its websocket with
relative URLs, so the app works under any prefix without knowing it. The tests check the
page (every script relative, and loading under the prefix), the websocket session (the
server's greeting for an input sent at init, then for an update) at a path and at a
domain, and a real browser typing into the app.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import copy_app, get

pytestmark = pytest.mark.timeout(900)


async def greeting_over_websocket(http: aiohttp.ClientSession, base: str,
                                  headers: dict[str, str] | None = None) -> list[str]:
    """Open Shiny's websocket at `base` + `websocket/` as shiny.js does, send the input at
    init and again as an update; the greetings the server computed for each."""
    greetings: list[str] = []
    async with http.ws_connect(base + "websocket/", headers=headers or {},
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:

        async def next_greeting() -> str:
            while True:
                msg: dict[str, Any] = json.loads(await ws.receive_str(timeout=30))
                if "greeting" in msg.get("values", {}):
                    return str(msg["values"]["greeting"])

        config = json.loads(await ws.receive_str(timeout=30))
        assert config["config"]["sessionId"], config
        # an output is computed only while the page shows it (the client says so)
        await ws.send_str(json.dumps({"method": "init", "data": {
            "name": "orun", ".clientdata_url_search": "",
            ".clientdata_output_greeting_hidden": False}}))
        greetings.append(await next_greeting())
        await ws.send_str(json.dumps({"method": "update", "data": {"name": "again"}}))
        greetings.append(await next_greeting())
    return greetings


async def check_app(http: aiohttp.ClientSession, base: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "orun shiny sample" in page and f"served at path: [{path}]" in page
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts and not [s for s in scripts if s.startswith(("/", "http"))], scripts
    shiny_js = next(s for s in scripts if s.endswith("/shiny.js"))
    async with http.get(base + shiny_js, headers=headers) as resp:
        assert resp.status == 200, f"{base + shiny_js}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
    assert await greeting_over_websocket(http, base, headers) == ["Hello, orun!",
                                                                  "Hello, again!"]


async def test_shiny_at_path_domain_and_in_browser(corun: Orun, http: aiohttp.ClientSession,
                                                   browser: Browser, tmp_path: Path) -> None:
    src = copy_app("shiny_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-shiny", str(src),
                     "/shy")).ok()
    async with http.get(corun.url("/shy"), allow_redirects=False) as resp:
        assert resp.status == 307  # redirect_bare_path: relative URLs resolve in /shy/
        assert resp.headers["Location"] == "/shy/"
    await check_app(http, corun.url("/shy/"), "/shy")

    (await corun.cli("app", "create", "--wait", "--spec", "python-shiny", str(src),
                     "shydom.:")).ok()
    await check_app(http, corun.url("/"), "", {"Host": f"shydom.localhost:{corun.port}"})

    # a browser at the sub-path: shiny.js opens ws://.../shy/websocket/ from the page's URL
    page = await browser.new_page()
    body = "document.body.innerText"
    try:
        await step(page, lambda: page.goto(corun.url("/shy"), timeout=60),  # redirects
                   f"{body}.includes('orun shiny sample') && {body}.includes('Type a name')",
                   timeout=30)
        assert await page.url() == corun.url("/shy/")
        assert "served at path: [/shy]" in await page.text()
        await page.screenshot(screenshot_path("shiny-browser-loaded"))
        await page.wait_for("(() => { const i = document.getElementById('name');"
                            " if (!i) return false; i.focus();"
                            " return document.activeElement === i; })()", 10)
        await page.send("Input.insertText", {"text": "orun"})
        await page.wait_for(f"{body}.includes('Hello, orun!')", timeout=30)
        await page.screenshot(screenshot_path("shiny-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("shiny-browser-failed"))
        raise
    await stops_cleanly(corun, "shydom.localhost:/")
