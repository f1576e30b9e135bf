"""The python-reflex spec end to end: a Reflex counter built and run by orun.

The image exports the frontend at build time (Bun from npm, Node.js from PyPI: nothing
from other hosts) and Reflex's backend serves it on the one container port, next to its
socket.io websocket `/_event`. Reflex apps live at a domain root only. The tests check the
refusal at a path, the page and its assets at a domain, the websocket carrying a counter
event through orun, and a real browser clicking the counter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun, containers, docker
from tests.e2e.test_containers import copy_app, get

pytestmark = pytest.mark.timeout(900)

#: the build arg this machine's containers need (Node and Bun ignore the system CA store)
CA_ARG = "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"
#: the counter's event handler as the frontend names it (module counter.counter)
INCREMENT = "reflex___state____state.counter___counter____counter_state.increment"
COUNTER_STATE = "reflex___state____state.counter___counter____counter_state"


async def create_counter(corun: Orun, src: Path, path: str) -> None:
    (await corun.cli("app", "create", "--wait", "--spec", "python-reflex",
                     "--carg", CA_ARG, str(src), path)).ok()


async def check_page_and_assets(http: aiohttp.ClientSession, base: str,
                                headers: dict[str, str]) -> None:
    """The exported page, its scripts and styles, the app's own asset and /ping."""
    headers = {**headers, "Accept-Encoding": "identity"}  # (Reflex has .gz copies too)
    status, page = await get(http, base + "/", headers=headers)
    assert status == 200, page[:2000]
    assert "<title>orun reflex counter</title>" in page, page[:2000]
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+\.(?:js|css))"', page)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets[:6]:
        async with http.get(base + asset, headers=headers) as resp:
            assert resp.status == 200, f"{asset}: {resp.status}"
            assert len(await resp.read()) > 100
    async with http.get(base + "/orun-logo.svg", headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/svg+xml"
        assert b"<circle" in await resp.read()
    assert await get(http, base + "/ping", headers=headers) == (200, '"pong"')


async def socketio_counter(http: aiohttp.ClientSession, url: str,
                           headers: dict[str, str], token: str, clicks: int) -> list[int]:
    """Speak socket.io (Engine.IO 4) on Reflex's `/_event` websocket as the page does:
    join the `/_event` namespace as client `token` (the browser tab's id), send `clicks`
    increment events, return the counts."""
    counts: list[int] = []
    async with http.ws_connect(f"{url}/_event/?EIO=4&transport=websocket&token={token}",
                               headers=headers,
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        opened = await ws.receive_str(timeout=30)
        assert opened.startswith("0{") and '"sid"' in opened, opened
        await ws.send_str("40/_event,")
        joined = await ws.receive_str(timeout=30)
        assert joined.startswith("40/_event,{"), joined
        for _ in range(clicks):
            event = {"name": INCREMENT, "payload": {},
                     "router_data": {"pathname": "/", "query": {}, "asPath": "/"}}
            await ws.send_str("42/_event," + json.dumps(["event", event]))
            while True:
                msg = await ws.receive_str(timeout=30)
                if msg == "2":  # an Engine.IO ping
                    await ws.send_str("3")
                    continue
                assert msg.startswith("42/_event,"), msg
                name, data = json.loads(msg.removeprefix("42/_event,"))
                delta = data.get("delta", {}).get(COUNTER_STATE, {})
                if name == "event" and "count_rx_state_" in delta:
                    counts.append(delta["count_rx_state_"])
                    break
    return counts


async def test_reflex_refused_at_a_path(corun: Orun, tmp_path: Path) -> None:
    src = copy_app("reflex_app", tmp_path)
    result = await corun.cli("app", "create", "--spec", "python-reflex", str(src), "/sub")
    assert result.code == 1
    assert "must be at a domain root" in result.err and "sub.:" in result.err, result.err
    (src / "rxconfig.py").unlink()
    result = await corun.cli("app", "create", "--spec", "python-reflex", str(src), "rx.:")
    assert result.code == 1
    assert "needs rxconfig.py in the app source" in result.err, result.err
    listing = (await corun.cli("app", "list")).ok().out
    assert "sub" not in listing and "rx." not in listing


async def test_reflex_counter_at_domain(corun: Orun, http: aiohttp.ClientSession,
                                        tmp_path: Path) -> None:
    src = copy_app("reflex_app", tmp_path)
    await create_counter(corun, src, "counter.:")
    host = {"Host": f"counter.localhost:{corun.port}"}
    await check_page_and_assets(http, corun.url(""), host)
    # the websocket through orun: each click's new count comes back
    assert await socketio_counter(http, corun.url(""), host, "tab-1", 3) == [1, 2, 3]
    # the state lives in the backend: the same client reconnecting goes on from 3, a new
    # one starts from 0
    assert await socketio_counter(http, corun.url(""), host, "tab-1", 1) == [4]
    assert await socketio_counter(http, corun.url(""), host, "tab-2", 1) == [1]
    # non-root, and neither Node.js nor Bun in the running image
    (cid,) = containers(corun.home)  # the stage app has not been asked for: not started
    assert docker("exec", cid, "id", "-u").strip() == "999"
    tools = docker("exec", cid, "sh", "-c", "command -v node bun npm || true").strip()
    assert tools == "", tools
    # the stage app (another domain) runs the same image: the frontend finds its backend
    # at the page's own origin, nothing about the app's URL is baked in
    stage = {"Host": f"stage.counter.localhost:{corun.port}"}
    await check_page_and_assets(http, corun.url(""), stage)
    assert await socketio_counter(http, corun.url(""), stage, "tab-1", 1) == [1]
    images = {docker("inspect", "-f", "{{.Image}}", c).strip() for c in containers(corun.home)}
    assert len(containers(corun.home)) == 2 and len(images) == 1


async def test_reflex_api_url_carg_is_baked_in(corun: Orun, http: aiohttp.ClientSession,
                                               tmp_path: Path) -> None:
    """`--carg API_URL=...` (a backend elsewhere) goes into the frontend as Reflex does."""
    src = copy_app("reflex_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-reflex", "--carg", CA_ARG,
                     "--carg", "API_URL=https://rx-backend.example:9443", str(src),
                     "rxapi.:")).ok()
    host = {"Host": f"rxapi.localhost:{corun.port}", "Accept-Encoding": "identity"}
    status, page = await get(http, corun.url("/"), headers=host)
    assert status == 200, page[:2000]
    bundle = ""
    for asset in set(re.findall(r'"(/assets/[^"]+\.js)"', page)):
        status, text = await get(http, corun.url(asset), headers=host)
        assert status == 200, asset
        bundle += text
    assert "wss://rx-backend.example:9443/_event" in bundle


async def test_reflex_counter_in_browser(corun: Orun, browser: Browser,
                                         tmp_path: Path) -> None:
    src = copy_app("reflex_app", tmp_path)
    await create_counter(corun, src, "rxb.:")
    page = await browser.new_page()
    try:
        # Chromium resolves *.localhost to loopback itself
        await page.goto(f"http://rxb.localhost:{corun.port}/", timeout=60)
        count = "document.getElementById('count')?.textContent"
        await page.wait_for(f"{count} === '0'", timeout=60)
        assert await page.evaluate(
            "document.getElementById('logo').complete && "
            "document.getElementById('logo').naturalWidth > 0")
        for expected in ("1", "2"):
            await page.click("#increment")
            await page.wait_for(f"{count} === '{expected}'", timeout=30)
        await page.screenshot(screenshot_path("reflex-counter"))
    except BaseException:
        await page.screenshot(screenshot_path("reflex-counter-failed"))
        raise
