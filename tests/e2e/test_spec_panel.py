"""The python-panel spec end to end: a real Panel app on a Bokeh server, built and run by
orun.

Bokeh serves under the full app path (`--prefix`), the app at its root (`--index`), and
its page opens a websocket (`<path>/ws`) that carries every widget change. Bokeh refuses
that websocket to pages of other origins: the spec allows the app's own host, from
CL_APP_URL, never `*`. The tests check the page and a script, the websocket (Bokeh's
ACK and the document pulled over it) from the app's host at a path and at a domain,
the refusal of foreign origins (another app's host included), and a real browser whose
typing travels over the websocket and comes back as the server's greeting.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import copy_app, get

pytestmark = pytest.mark.timeout(900)


async def session_token(http: aiohttp.ClientSession, base: str,
                        headers: dict[str, str] | None = None) -> str:
    """Load the page at `base` (ending in /), check it and one of its scripts, and return
    the session token Bokeh put in it (the websocket's credential)."""
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "<title>orun panel sample</title>" in page
    bokeh_js = re.search(r'src="(static/js/bokeh\.min\.js[^"]*)"', page)
    assert bokeh_js, page[:3000]  # relative: resolves under the app path
    async with http.get(base + bokeh_js.group(1), headers=headers) as resp:
        assert resp.status == 200, f"{bokeh_js.group(1)}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
    token = re.search(r'"token":"([^"]+)"', page)
    assert token, page[:3000]
    return token.group(1)


async def pull_document(http: aiohttp.ClientSession, base: str, origin: str,
                        headers: dict[str, str] | None = None) -> str:
    """Open Bokeh's websocket as the page does (from `origin`), and pull the document:
    its JSON as the server sent it."""
    token = await session_token(http, base, headers)
    async with http.ws_connect(base + "ws", protocols=("bokeh", token),
                               headers={**(headers or {}), "Origin": origin},
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        # a Bokeh message is three text frames: header, metadata, content
        ack = [await ws.receive_str(timeout=30) for _ in range(3)]
        assert json.loads(ack[0])["msgtype"] == "ACK", ack
        for part in (json.dumps({"msgid": "m1", "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
            await ws.send_str(part)
        reply = [await ws.receive_str(timeout=30) for _ in range(3)]
        assert json.loads(reply[0])["msgtype"] == "PULL-DOC-REPLY", reply[0]
        return reply[2]


async def refused(http: aiohttp.ClientSession, base: str, origin: str,
                  headers: dict[str, str] | None = None) -> None:
    token = await session_token(http, base, headers)
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        async with http.ws_connect(base + "ws", protocols=("bokeh", token),
                                   headers={**(headers or {}), "Origin": origin}):
            pass
    assert error.value.status == 403


async def test_panel_at_path_domain_and_in_browser(corun: Orun, http: aiohttp.ClientSession,
                                                   browser: Browser, tmp_path: Path) -> None:
    src = copy_app("panel_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-panel", str(src),
                     "/pnl")).ok()
    async with http.get(corun.url("/pnl"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)  # Bokeh's own redirect
        assert resp.headers["Location"].endswith("/pnl/")
    base = corun.url("/pnl/")
    # CL_APP_URL names orun's HTTPS listener (these tests run one beside the HTTP one, as
    # orun does by default): the app's host is allowed on either
    doc = await pull_document(http, base, f"http://localhost:{corun.port}")
    assert "served at path: [/pnl]" in doc
    await pull_document(http, base, f"https://localhost:{corun.https_port}")
    # 127.0.0.1 is the same as localhost to orun, so to the app as well
    await pull_document(http, base, f"http://127.0.0.1:{corun.port}")
    await refused(http, base, "http://evil.example")
    await refused(http, base, f"http://localhost.evil.example:{corun.port}")

    (await corun.cli("app", "create", "--wait", "--spec", "python-panel", str(src),
                     "pnldom.:")).ok()
    host = f"pnldom.localhost:{corun.port}"
    doc = await pull_document(http, corun.url("/"), f"http://{host}", {"Host": host})
    assert "served at path: []" in doc
    # the path app's host is not this app's: each app allows only its own
    await refused(http, corun.url("/"), f"http://localhost:{corun.port}", {"Host": host})

    # more origins by param, each with its port (or host:* for any)
    (await corun.cli("app", "create", "--wait", "--spec", "python-panel", "--param",
                     "ALLOWED_ORIGINS=other.example:8443,any.example:*", str(src),
                     "/pnlx")).ok()
    await pull_document(http, corun.url("/pnlx/"), "https://other.example:8443")
    await pull_document(http, corun.url("/pnlx/"), "http://any.example:1234")
    await refused(http, corun.url("/pnlx/"), "https://other.example:9443")

    # a browser at the sub-path: the typed name goes to the server over the websocket,
    # and the greeting the server computes comes back the same way (Bokeh's widgets live
    # in shadow roots, so the page's text and the input are looked up through them)
    page = await browser.new_page()
    deep_text = ("(() => { const walk = (root) => [...root.querySelectorAll('*')].map("
                 "el => el.shadowRoot ? walk(el.shadowRoot) : '').join(' ')"
                 " + ' ' + (root.innerText || root.textContent || '');"
                 " return walk(document.body); })()")
    try:
        await step(page, lambda: page.goto(corun.url("/pnl/"), timeout=60),
                   f"{deep_text}.includes('Type a name')", timeout=30)
        assert "served at path: [/pnl]" in await page.evaluate(deep_text)
        await page.screenshot(screenshot_path("panel-browser-loaded"))
        await page.wait_for(
            "(() => { const find = (root) => { for (const el of root.querySelectorAll('*'))"
            " { if (el.tagName === 'INPUT') return el; if (el.shadowRoot) {"
            " const f = find(el.shadowRoot); if (f) return f; } } return null; };"
            " const i = find(document); if (!i) return false; i.focus();"
            " return i.getRootNode().activeElement === i; })()", 20)
        await page.send("Input.insertText", {"text": "orun"})
        for kind in ("keyDown", "keyUp"):  # a TextInput sends its value on Enter
            await page.send("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                **({"text": "\r"} if kind == "keyDown" else {})})
        await page.wait_for(f"{deep_text}.includes('Hello, orun!')", timeout=30)
        await page.screenshot(screenshot_path("panel-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("panel-browser-failed"))
        raise
    await stops_cleanly(corun, "pnldom.localhost:/")
