"""The python-streamlit spec end to end: a real streamlit app built and run by orun.

Streamlit serves under the full app path (strip_app: false, --server.baseUrlPath), its
health is probed there, and the page talks to the server over the `_stcore/stream`
websocket (protobuf messages). The tests check the page, an asset, the websocket (a
rerun request answered with the app's own text) at a path and at a domain, params as
`st.secrets`, and a real browser clicking and typing into the app.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, Page, screenshot_path
from tests.conftest import Orun
from tests.e2e.spec_helpers import scenario, step, stops_cleanly
from tests.e2e.test_containers import copy_app, get

pytestmark = pytest.mark.timeout(900)

#: a BackMsg with `rerun_script` (field 11) holding an empty ClientState: what the page
#: sends first to run the script; the server answers with the script's ForwardMsgs
RERUN = b"\x5a\x00"


async def stream_text(http: aiohttp.ClientSession, url: str, until: list[bytes],
                      headers: dict[str, str] | None = None, timeout: float = 60) -> bytes:
    """Open streamlit's websocket at `url`, ask for a run, and collect the server's
    messages until every byte string in `until` has arrived."""
    data = b""
    async with http.ws_connect(url, protocols=("streamlit",), headers=headers or {},
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        assert ws.protocol == "streamlit"
        await ws.send_bytes(RERUN)
        while not all(u in data for u in until):
            msg = await ws.receive(timeout=timeout)
            assert msg.type == aiohttp.WSMsgType.BINARY, f"{msg.type}: {msg.data!r}"
            data += msg.data
    return data


async def check_page_and_asset(http: aiohttp.ClientSession, base: str,
                               headers: dict[str, str] | None = None) -> None:
    """The page at `base` (ending in /) is streamlit's, and a script it names loads."""
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "<title>Streamlit</title>" in page, page[:2000]
    scripts = re.findall(r'<script[^>]+src="([^"]+\.js)"', page)
    assert scripts, page
    asset = scripts[0].removeprefix("./")
    async with http.get(base + asset, headers=headers) as resp:
        assert resp.status == 200, f"{base + asset}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
        assert len(await resp.read()) > 1000
    status, health = await get(http, base + "_stcore/health", headers=headers)
    assert (status, health) == (200, "ok")


async def test_streamlit_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                            tmp_path: Path) -> None:
    src = copy_app("streamlit_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit",
                     "--param", "greeting=hi there", str(src), "/st")).ok()
    # the bare path redirects into the app (streamlit's own redirect, kept public)
    async with http.get(corun.url("/st"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)
        assert resp.headers["Location"].endswith("/st/")
    await check_page_and_asset(http, corun.url("/st/"))
    data = await stream_text(http, corun.url("/st/_stcore/stream"),
                             [b"orun streamlit sample", b"Clicks: 0"])
    assert b"served at path: [/st]" in data
    assert b"secret greeting: [hi there]" in data  # the params as st.secrets

    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit",
                     str(src), "stdom.:")).ok()
    host = {"Host": f"stdom.localhost:{corun.port}"}
    await check_page_and_asset(http, corun.url("/"), host)
    data = await stream_text(http, corun.url("/_stcore/stream"),
                             [b"orun streamlit sample", b"Clicks: 0"], headers=host)
    assert b"served at path: []" in data
    await stops_cleanly(corun, "stdom.localhost:/")


async def test_streamlit_hello_and_own_requirements(corun: Orun, http: aiohttp.ClientSession,
                                                    tmp_path: Path) -> None:
    """`app_file=hello` runs streamlit's demo; a source requirements.txt without
    streamlit gets it added."""
    src = copy_app("streamlit_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit",
                     "--param", "app_file=hello", str(src), "/hello")).ok()
    data = await stream_text(http, corun.url("/hello/_stcore/stream"), [b"Welcome to Streamlit"])
    assert b"Welcome to Streamlit" in data

    (src / "requirements.txt").write_text("tomli\n")
    (src / "streamlit_app.py").write_text(
        "import streamlit as st\nimport tomli\n\n"
        "st.write(f\"tomli says: [{tomli.loads('x = 1')['x']}]\")\n")
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit",
                     str(src), "/own")).ok()
    data = await stream_text(http, corun.url("/own/_stcore/stream"), [b"tomli says: [1]"])
    assert b"tomli says: [1]" in data


# -- a real browser ------------------------------------------------------------------------


async def type_text(page: Page, selector: str, text: str) -> None:
    """Focus `selector` (once it is there) and type `text` then Enter, as a user's
    keyboard would."""
    await page.wait_for(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
        " if (!el) return false; el.focus(); return document.activeElement === el; })()",
        timeout=30)
    await page.send("Input.insertText", {"text": text})
    for kind in ("keyDown", "keyUp"):
        await page.send("Input.dispatchKeyEvent", {
            "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
            **({"text": "\r"} if kind == "keyDown" else {})})


CLICK_COUNT = ("(() => { const b = [...document.querySelectorAll('button')]"
               ".find(b => b.innerText.trim() === 'Count'); if (!b) return false;"
               " b.click(); return true; })()")


async def streamlit_in_browser(corun: Orun, browser: Browser, path: str, name: str) -> None:
    """Open the app at `path` in Chromium, click its button and type into its input."""
    page = await browser.new_page()
    body = "document.body.innerText"

    async def run() -> None:
        await step(page, lambda: page.goto(corun.url(path + "/"), timeout=60),
                   f"{body}.includes('orun streamlit sample') && {body}.includes('Clicks: 0')",
                   timeout=30)
        assert f"served at path: [{path}]" in await page.text()
        await page.screenshot(screenshot_path(f"{name}-loaded"))
        # the click and the typing travel over the websocket: the page reruns the script
        assert await page.wait_for(CLICK_COUNT, timeout=10)
        await page.wait_for(f"{body}.includes('Clicks: 1')", timeout=30)
        await type_text(page, "input[aria-label='Your name']", "orun")
        await page.wait_for(f"{body}.includes('Hello, orun!')", timeout=30)
        assert "Clicks: 1" in await page.text()  # session state kept across reruns
        await page.screenshot(screenshot_path(f"{name}-interacted"))

    try:
        await scenario(page, run)
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path(f"{name}-failed"))
        raise


async def test_streamlit_in_browser_at_sub_path(corun: Orun, browser: Browser,
                                                tmp_path: Path) -> None:
    src = copy_app("streamlit_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit",
                     str(src), "/stb")).ok()
    await streamlit_in_browser(corun, browser, "/stb", "streamlit-browser")
