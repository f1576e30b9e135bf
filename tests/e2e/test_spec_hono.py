"""The js-hono spec end to end: a Hono app that only exports itself from src/index.tsx
(no start script), built on the local Node base image; the spec adds @hono/node-server,
generates the server and compiles the TSX with esbuild.

Checks: the page at a sub-path (its links use BASE_PATH from CL_APP_PATH) and at a
domain, the bare path redirected to the slash, hono's server-sent events arriving one by
one through orun, a clean stop, and Chromium clicking the page's button (a fetch to the
app's API) while its EventSource receives the stream.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun, docker
from tests.e2e.spec_helpers import scenario, step, stops_cleanly
from tests.e2e.test_containers import app_id, copy_app, get, get_json

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[2]


async def sse_events(http: aiohttp.ClientSession, url: str,
                     headers: dict[str, str] | None = None) -> list[tuple[float, str]]:
    """The `data:` of each event of the stream at `url`, with when it arrived."""
    events = []
    async with http.get(url, headers={"Accept": "text/event-stream", **(headers or {})}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data:"):
                events.append((time.monotonic(), line[5:].decode().strip()))
    return events


async def test_hono_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                       tmp_path: Path) -> None:
    src = copy_app("hono_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "js-hono",
                     "--param", "greeting=hi", str(src), "/hono")).ok()
    async with http.get(corun.url("/hono"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)
        assert resp.headers["Location"].endswith("/hono/")
    status, page = await get(http, corun.url("/hono/"))
    assert status == 200, page[:2000]
    assert "served at path: [/hono]" in page
    assert '"/hono"' in page  # the script's base for fetch and EventSource
    got = await get_json(http, corun.url("/hono/api/hello?name=x"))
    assert got == {"message": "Hello, x!", "path": "/api/hello", "base_path": "/hono",
                   "greeting": "hi"}
    events = await sse_events(http, corun.url("/hono/sse"))
    assert [data for _, data in events] == ["1", "2", "3", "4", "5"]
    assert events[-1][0] - events[0][0] > 0.25  # streamed, not buffered to the end

    (await corun.cli("app", "create", "--wait", "--spec", "js-hono", str(src),
                     "honodom.:")).ok()
    host = {"Host": f"honodom.localhost:{corun.port}"}
    status, page = await get(http, corun.url("/"), headers=host)
    assert status == 200 and "served at path: []" in page, page[:2000]
    assert (await get_json(http, corun.url("/api/hello"), headers=host))["base_path"] == ""
    assert len(await sse_events(http, corun.url("/sse"), host)) == 5
    await stops_cleanly(corun, "honodom.localhost:/")

    # no start script: the spec generated the server from src/index.tsx
    log = (await corun.cli("app", "logs", "--build", "/hono")).ok().out
    assert "generated dist/orun-server.mjs serving the app of src/index.tsx" in log, log


async def test_hono_in_browser(corun: Orun, browser: Browser, tmp_path: Path) -> None:
    src = copy_app("hono_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "js-hono", str(src), "/hb")).ok()
    page = await browser.new_page()
    body = "document.body.innerText"

    async def run() -> None:
        await step(page, lambda: page.goto(corun.url("/hb/"), timeout=60),
                   f"{body}.includes('orun hono sample')", timeout=30)
        assert "served at path: [/hb]" in await page.text()
        await page.wait_for("document.getElementById('ticks').textContent.trim()"
                            " === '1 2 3 4 5'", timeout=30)
        await page.evaluate("document.getElementById('name').value = 'browser'")
        await page.click("#hello")
        await page.wait_for("document.getElementById('out').textContent"
                            " === 'Hello, browser!'", timeout=30)
        await page.screenshot(screenshot_path("hono-browser"))

    try:
        await scenario(page, run)
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("hono-browser-failed"))
        raise


def test_node_specs_share_one_start_wrapper() -> None:
    """js-node and js-hono ship the same start wrapper (each spec folder is whole)."""
    node = (ROOT / "specs/js-node/orun-start.mjs").read_bytes()
    assert node == (ROOT / "specs/js-hono/orun-start.mjs").read_bytes()


OWN_SERVER = """\
import { serve } from "@hono/node-server";
import { Hono } from "hono";

const app = new Hono();
app.get("/", (c) => c.json({ own: true, base: process.env.BASE_PATH }));
const server = serve({ fetch: app.fetch, port: Number(process.env.PORT) });
process.on("SIGTERM", () => server.close(() => process.exit(0)));
"""


async def test_hono_app_with_its_own_start_script(corun: Orun, http: aiohttp.ClientSession,
                                                  tmp_path: Path) -> None:
    """A start script is used as is: no server generated, no esbuild in the image; and a
    source with neither a start script nor src/index.* fails the build saying so."""
    src = copy_app("hono_app", tmp_path)
    package = json.loads((src / "package.json").read_text())
    package["scripts"] = {"start": "node server.mjs"}
    (src / "package.json").write_text(json.dumps(package))
    (src / "server.mjs").write_text(OWN_SERVER)
    (await corun.cli("app", "create", "--wait", "--spec", "js-hono", str(src), "/own")).ok()
    assert await get_json(http, corun.url("/own/")) == {"own": True, "base": "/own"}
    log = (await corun.cli("app", "logs", "--build", "/own")).ok().out
    assert "generated dist/orun-server.mjs" not in log, log
    container = docker("ps", "-q", "--filter",
                       f"label=orun.app.id={await app_id(corun, '/own')}").strip()
    assert docker("exec", container, "ls", "-A", "/opt/orun/tools").strip() == ""

    del package["scripts"]
    (src / "package.json").write_text(json.dumps(package))
    (src / "src" / "index.tsx").rename(src / "src" / "main.tsx")
    (await corun.cli("app", "create", "--spec", "js-hono", str(src), "/none")).ok()
    status, body = await get(http, corun.url("/none/"))
    assert status >= 500
    assert 'package.json has no "start" script and there is no src/index.' in body, body[:3000]
