"""The python-marimo spec end to end: a real marimo notebook run as an app by orun.

marimo serves under the full app path (`--base-url`). Its page opens a websocket
(`<path>/ws?session_id=...`) over which the server runs the notebook for that session
and sends every cell's output; a widget's new value goes up as an HTTP call carrying the
session id and the page's server token, and the cells that depend on it run again and
send their outputs down the websocket. The tests check the health endpoint, the page
and an asset, that round trip at a path and at a domain, and a real browser.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(900)


async def outputs_until(ws: aiohttp.ClientWebSocketResponse, text: str) -> list[str]:
    """The cell outputs the server sends on `ws`, up to one containing `text`."""
    outputs: list[str] = []
    while not any(text in o for o in outputs):
        msg: dict[str, Any] = json.loads(await ws.receive_str(timeout=60))
        if msg["op"] == "cell-op":
            output = msg["data"].get("output") or {}
            if output.get("data"):
                outputs.append(str(output["data"]))
    return outputs


async def check_app(http: aiohttp.ClientSession, base: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
    """Health, page, an asset and a widget round trip of the sample at `base` (ending
    in /)."""
    assert await get_json(http, base + "health", headers=headers) == {"status": "healthy"}
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    asset = re.search(r'<script type="module" crossorigin src="\./(assets/[^"]+\.js)"', page)
    assert asset, page[:3000]  # relative: resolves under the app path
    async with http.get(base + asset.group(1), headers=headers) as resp:
        assert resp.status == 200, f"{asset.group(1)}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
    token = re.search(r'<marimo-server-token data-token="([^"]+)"', page)
    assert token, page[:3000]
    session = f"s_{uuid.uuid4().hex[:8]}"
    async with http.ws_connect(f"{base}ws?session_id={session}", headers=headers or {},
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        outputs = await outputs_until(ws, "Type a name")
        assert any(f"served at path: [{path}]" in o for o in outputs), outputs
        widget = next(m.group(1) for o in outputs
                      if (m := re.search(r"object-id='([^']+)'", o)))
        async with http.post(base + "api/kernel/set_ui_element_value",
                             json={"objectIds": [widget], "values": ["orun"]},
                             headers={**(headers or {}), "Marimo-Session-Id": session,
                                      "Marimo-Server-Token": token.group(1)}) as resp:
            assert resp.status == 200, await resp.text()
        await outputs_until(ws, "Hello, orun!")


async def test_marimo_at_path_domain_and_in_browser(corun: Orun, http: aiohttp.ClientSession,
                                                    browser: Browser, tmp_path: Path) -> None:
    src = copy_app("marimo_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-marimo", str(src),
                     "/mmo")).ok()
    async with http.get(corun.url("/mmo"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)  # marimo's own redirect
        assert resp.headers["Location"].endswith("/mmo/")
    await check_app(http, corun.url("/mmo/"), "/mmo")

    (await corun.cli("app", "create", "--wait", "--spec", "python-marimo", str(src),
                     "mmodom.:")).ok()
    await check_app(http, corun.url("/"), "", {"Host": f"mmodom.localhost:{corun.port}"})

    # a browser at the sub-path: the notebook renders its cells' outputs, and typing into
    # the text widget re-runs the cell that greets
    page = await browser.new_page()
    body = "document.body.innerText"
    try:
        await step(page, lambda: page.goto(corun.url("/mmo"), timeout=60),  # redirects
                   f"{body}.includes('orun marimo sample') && {body}.includes('Type a name')",
                   timeout=60)
        assert "served at path: [/mmo]" in await page.text()
        await page.screenshot(screenshot_path("marimo-browser-loaded"))
        await page.wait_for(
            "(() => { const find = (root) => { for (const el of root.querySelectorAll('*'))"
            " { if (el.tagName === 'INPUT') return el; if (el.shadowRoot) {"
            " const f = find(el.shadowRoot); if (f) return f; } } return null; };"
            " const i = find(document); if (!i) return false; i.focus();"
            " return i.getRootNode().activeElement === i; })()", 20)
        await page.send("Input.insertText", {"text": "orun"})
        for kind in ("keyDown", "keyUp"):
            await page.send("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                **({"text": "\r"} if kind == "keyDown" else {})})
        await page.wait_for(f"{body}.includes('Hello, orun!')", timeout=30)
        await page.screenshot(screenshot_path("marimo-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("marimo-browser-failed"))
        raise
    await stops_cleanly(corun, "mmodom.localhost:/")
