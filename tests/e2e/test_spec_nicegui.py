"""The python-nicegui spec end to end: a real NiceGUI app built and run by orun.

NiceGUI takes its URL prefix from the X-Forwarded-Prefix header orun sends (orun strips
the app path), so its page, assets and socket.io connection all live under the app path.
The tests check the page, an asset, and a click sent over the socket.io websocket that
comes back as an update (at a path and at a domain), the production-mode launcher (one
process, port from the param), and a real browser.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from tests.browser import Browser, Page, screenshot_path
from tests.conftest import Orun, docker
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import app_id, copy_app, get

pytestmark = pytest.mark.timeout(900)


def page_elements(page: str) -> tuple[str, dict[str, Any]]:
    """The client id and the element tree NiceGUI put in its page."""
    client = re.search(r"'client_id': '([0-9a-f-]+)'", page)
    tree = re.search(r"parseElements\(String\.raw`(.*?)`\)", page, flags=re.DOTALL)
    assert client and tree, page[:3000]
    return client.group(1), json.loads(tree.group(1))


async def click_over_socketio(http: aiohttp.ClientSession, base: str, page: str,
                              headers: dict[str, str] | None = None) -> list[str]:
    """Connect to NiceGUI's socket.io websocket as the page does, click the Count button
    and collect the messages until the server's update shows the new count."""
    client_id, elements = page_elements(page)
    button_id, button = next((k, e) for k, e in elements.items()
                             if e.get("props", {}).get("id") == "count")
    listener = next(ev["listener_id"] for ev in button["events"] if ev["type"] == "click")
    query = urlencode({"client_id": client_id, "next_message_id": 0,
                       "implicit_handshake": "true", "document_id": "doc-1", "tab_id": "tab-1",
                       "EIO": 4, "transport": "websocket"})
    received: list[str] = []
    async with http.ws_connect(f"{base}_nicegui_ws/socket.io/?{query}", headers=headers or {},
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:

        async def receive() -> str:
            while True:
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.TEXT, f"{msg.type}: {msg.data!r}"
                received.append(msg.data)
                if msg.data == "2":  # engine.io ping
                    await ws.send_str("3")
                    continue
                return str(msg.data)

        opened = await receive()
        assert opened.startswith("0{") and '"sid"' in opened, opened  # engine.io open
        await ws.send_str("40")  # socket.io connect (the handshake rides in the query)
        connected = await receive()
        assert connected.startswith("40{"), connected
        event = {"id": int(button_id), "client_id": client_id, "listener_id": listener,
                 "args": []}
        await ws.send_str("42" + json.dumps(["event", event]))
        while "Clicks: 1" not in await receive():
            pass
    return received


async def check_app(http: aiohttp.ClientSession, base: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "orun nicegui sample" in page and f"served at path: [{path}]" in page
    assert f'prefix: "{path}"' in page  # from X-Forwarded-Prefix
    asset = re.search(r'<script defer src="([^"]+/nicegui\.js)"', page)
    assert asset and asset.group(1).startswith(f"{path}/_nicegui/"), page[:3000]
    async with http.get(URL(base).join(URL(asset.group(1))), headers=headers) as resp:
        assert resp.status == 200, f"{asset.group(1)}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
    messages = await click_over_socketio(http, base, page, headers)
    assert messages[-1].startswith('42["update",'), messages  # the label's new text


async def test_nicegui_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                          tmp_path: Path) -> None:
    src = copy_app("nicegui_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-nicegui",
                     str(src), "/ng")).ok()
    await check_app(http, corun.url("/ng/"), "/ng")
    (await corun.cli("app", "create", "--wait", "--spec", "python-nicegui",
                     str(src), "ngdom.:")).ok()
    await check_app(http, corun.url("/"), "", {"Host": f"ngdom.localhost:{corun.port}"})
    await stops_cleanly(corun, "ngdom.localhost:/")


async def test_nicegui_production_mode_and_port_param(corun: Orun, http: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    """The app runs without NiceGUI's reloader (one process), and listens on the port
    param; an app in script mode (UI in the global scope) works as well."""
    src = copy_app("nicegui_app", tmp_path)
    (src / "script.py").write_text(
        "from nicegui import ui\n\n"
        "ui.label('script mode works')\n"
        "ui.run()\n")
    (await corun.cli("app", "create", "--wait", "--spec", "python-nicegui",
                     "--param", "app_file=script.py", "--param", "port=9090",
                     str(src), "/ngs")).ok()
    status, page = await get(http, corun.url("/ngs/"))
    assert status == 200 and "script mode works" in page, page[:2000]
    (container,) = docker("ps", "-q", "--filter", f"label=orun.app.id={await app_id(corun, '/ngs')}"
                          ).split()
    processes = docker("top", container, "-eo", "pid,args").splitlines()[1:]
    assert len(processes) == 1 and "orun_nicegui.py" in processes[0], processes
    assert "9090" in docker("port", container)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that decompresses (NiceGUI gzips its pages and assets)."""
    async with aiohttp.ClientSession() as session:
        yield session


# -- a real browser ------------------------------------------------------------------------


async def test_nicegui_in_browser_at_sub_path(corun: Orun, browser: Browser,
                                              tmp_path: Path) -> None:
    src = copy_app("nicegui_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-nicegui",
                     str(src), "/ngb")).ok()
    page: Page = await browser.new_page()
    body = "document.body.innerText"
    try:
        # the app rendered and its socket connected (window.did_handshake)
        await step(page, lambda: page.goto(corun.url("/ngb/"), timeout=60),
                   f"window.did_handshake === true && {body}.includes('Clicks: 0')", timeout=30)
        # over a websocket through orun, not socket.io's long-polling fallback
        assert await page.evaluate("window.socket.io.engine.transport.name") == "websocket"
        assert "served at path: [/ngb]" in await page.text()
        await page.screenshot(screenshot_path("nicegui-browser-loaded"))
        await page.click("#count")
        await page.wait_for(f"{body}.includes('Clicks: 1')", 30)
        await page.wait_for("(() => { const el = document.querySelector('.name-input input');"
                            " if (!el) return false; el.focus();"
                            " return document.activeElement === el; })()", 10)
        await page.send("Input.insertText", {"text": "orun"})
        await page.wait_for("document.querySelector('#hello').innerText === 'Hello, orun!'", 30)
        await page.screenshot(screenshot_path("nicegui-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("nicegui-browser-failed"))
        raise
