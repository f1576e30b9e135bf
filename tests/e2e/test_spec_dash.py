"""The python-dash spec end to end: a real Plotly Dash app built and run by orun.

orun strips the app path; Dash routes at `/` and tells the browser to request
everything (scripts, layout, callbacks) under the app path (`requests_pathname_prefix`).
The tests check the page and its config, a component script, the layout, a callback
(`_dash-update-component`, how every interaction travels) at a path and at a domain, and
a real browser typing into the app and seeing the callback's answer.
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
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(900)

#: the sample's callback, as dash-renderer posts it when the input changes
CALLBACK = {"output": "greeting.children",
            "outputs": {"id": "greeting", "property": "children"},
            "inputs": [{"id": "name", "property": "value", "value": "orun"}],
            "changedPropIds": ["name.value"]}


async def check_app(http: aiohttp.ClientSession, base: str, path: str,
                    headers: dict[str, str] | None = None) -> None:
    """Page, config, a script, layout and a callback of the sample at `base` (ending
    in /); the page names every URL under `path` + `/`."""
    status, page = await get(http, base, headers=headers)
    assert status == 200, page[:2000]
    assert "<title>orun dash sample</title>" in page
    config = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>',
                       page, flags=re.DOTALL)
    assert config, page[:3000]
    assert json.loads(config.group(1))["requests_pathname_prefix"] == path + "/"
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts and all(s.startswith(f"{path}/_dash-component-suites/") for s in scripts)
    renderer = next(s for s in scripts if "dash_renderer" in s)
    async with http.get(base + renderer.removeprefix(path + "/"), headers=headers) as resp:
        assert resp.status == 200, f"{renderer}: {resp.status}"
        assert "javascript" in resp.headers["Content-Type"]
        assert len(await resp.read()) > 10000
    layout = json.dumps(await get_json(http, base + "_dash-layout", headers=headers))
    assert f"served at path: [{path}]" in layout.replace("\\u002f", "/")
    async with http.post(base + "_dash-update-component", json=CALLBACK,
                         headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["response"] == {"greeting": {"children": "Hello, orun!"}}


async def test_dash_at_path_domain_and_in_browser(corun: Orun, http: aiohttp.ClientSession,
                                                  browser: Browser, tmp_path: Path) -> None:
    src = copy_app("dash_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-dash", str(src),
                     "/dsh")).ok()
    async with http.get(corun.url("/dsh"), allow_redirects=False) as resp:
        assert resp.status == 307  # redirect_bare_path: relative URLs resolve in /dsh/
        assert resp.headers["Location"] == "/dsh/"
    await check_app(http, corun.url("/dsh/"), "/dsh")

    (await corun.cli("app", "create", "--wait", "--spec", "python-dash", str(src),
                     "dshdom.:")).ok()
    await check_app(http, corun.url("/"), "", {"Host": f"dshdom.localhost:{corun.port}"})

    # a browser: the renderer loads everything under /dsh/, and typing runs the callback
    page = await browser.new_page()
    body = "document.body.innerText"
    try:
        await step(page, lambda: page.goto(corun.url("/dsh/"), timeout=60),
                   f"{body}.includes('orun dash sample') && {body}.includes('Type a name')",
                   timeout=30)
        assert "served at path: [/dsh]" in await page.text()
        await page.screenshot(screenshot_path("dash-browser-loaded"))
        await page.wait_for("(() => { const i = document.getElementById('name');"
                            " if (!i) return false; i.focus();"
                            " return document.activeElement === i; })()", 10)
        await page.send("Input.insertText", {"text": "orun"})
        await page.wait_for(f"{body}.includes('Hello, orun!')", timeout=30)
        await page.screenshot(screenshot_path("dash-browser-interacted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("dash-browser-failed"))
        raise
    await stops_cleanly(corun, "dshdom.localhost:/")


async def test_dash_dev_app(corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A dev app mounts its folder on /app: the spec's entry module lives outside it."""
    src = copy_app("dash_app", tmp_path)
    (await corun.cli("app", "create", "--dev", "--wait", "--spec", "python-dash", str(src),
                     "/dshdev")).ok()
    await check_app(http, corun.url("/dshdev/"), "/dshdev")
