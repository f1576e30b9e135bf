"""The web console in headless Chromium (tests/browser.py) against a real orun and Docker.

Sign in, watch the app list change by itself when a request starts a container app,
follow a stage build's log live on its page, promote the staged change and revert it
from the page (the CLI's `version list` and `audit list` see the same), delete with
the confirmation step; and the pages at phone width. Screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orun.state.secrets import set_admin_password
from tests.browser import Browser, Page, screenshot_path
from tests.conftest import Orun, containers
from tests.e2e.test_console import started_at
from tests.e2e.test_starting_page_browser import marker, slow_app

pytestmark = pytest.mark.timeout(300)
__all__ = ["marker"]  # the fixture, imported so pytest finds it here

BASE = "/_orun/console"
PASSWORD = "open sesame"
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    tab = await browser.new_page()
    yield tab
    try:
        await tab.screenshot(screenshot_path(f"{request.node.name}_last"))
    except Exception as exc:  # a teardown screenshot must not hide the test's outcome
        print(f"final screenshot failed: {exc}")


async def wait_for(page: Page, server: Orun, expression: str, timeout: float = 15) -> object:
    try:
        return await page.wait_for(expression, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n-- orun log (tail):\n{server.log()[-5000:]}") from None


async def sign_in(page: Page, server: Orun) -> None:
    await page.goto(server.url(BASE))
    assert (await page.url()).startswith(server.url(f"{BASE}/login")), await page.url()
    await page.evaluate(f"document.getElementById('password').value = {json.dumps(PASSWORD)}")
    await page.click("#login button[type=submit]")
    await wait_for(page, server, f"location.pathname === {json.dumps(BASE)} && "
                   "!!document.getElementById('rows')")


def row_state(path: str) -> str:
    return (f"(document.querySelector('tr[data-path={json.dumps(path)}]') || "
            "{dataset: {}}).dataset.state")


async def click_and_wait(page: Page, server: Orun, selector: str, expression: str,
                         timeout: float = 60) -> None:
    """Click what submits a form or follows a link, then wait for the page it leads to."""
    await page.evaluate("window.__before = 1")
    await page.click(selector)
    await wait_for(page, server, f"!window.__before && ({expression})", timeout)


async def flash(page: Page) -> str:
    return str(await page.evaluate(
        "(document.querySelector('.flash') || {textContent: ''}).textContent"))


async def get_json(http: aiohttp.ClientSession, url: str, host: str = "") -> dict[str, str]:
    async with http.get(url, headers={"Host": host} if host else {}) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        return dict(json.loads(text))


async def version_count(server: Orun, path: str) -> int:
    out = (await server.cli("version", "list", path)).ok().out
    return len(re.findall(r"^\d+ ", out, re.MULTILINE))


def current_version(listing: str) -> int:
    found = re.search(r"^(\d+)\s+\*", listing, re.MULTILINE)
    assert found, listing
    return int(found.group(1))


async def test_console_live_list_build_log_promote_revert_delete(
        marker: str, corun: Orun, browser: Browser, page: Page, tmp_path: Path,
        http: aiohttp.ClientSession) -> None:
    src = slow_app(tmp_path, marker, f"RUN echo step-1-{marker} && sleep 1")
    (await corun.cli("app", "create", "--spec", "container", str(src), "/c")).ok()
    set_admin_password(corun.home, PASSWORD)
    await page.send("Emulation.setDeviceMetricsOverride",  # a desktop's width
                    {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    await sign_in(page, corun)
    assert await page.evaluate(row_state("/c")) == "stopped"
    await page.evaluate("window.__stay = 1")  # gone if the page reloads

    # a request starts the app: the list follows by itself (SSE), no reload
    first = asyncio.create_task(get_json(http, corun.url("/c/")))
    await wait_for(page, corun, f"{row_state('/c')} === 'running'", timeout=120)
    assert await page.evaluate("window.__stay") == 1
    assert await page.evaluate("document.getElementById('live').classList.contains('on')")
    await page.screenshot(screenshot_path("console_apps_live"))
    assert (await first)["message"] == "from the dockerfile"
    await wait_for(page, corun, "document.querySelector('tr[data-path=\"/c\"] "
                   "td[data-label=\"Container\"]').textContent.includes('orun')")

    # a changed source, reloaded from the app's page in a second tab, builds the stage
    # app's new version: the first tab's build log follows it live
    dockerfile = src / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text()
                          .replace(f"step-1-{marker} && sleep 1", f"step-2-{marker} && sleep 4")
                          .replace('MESSAGE="from the dockerfile"', 'MESSAGE="second"'))
    await page.goto(corun.url(f"{BASE}/app?app=/c"))
    await wait_for(page, corun, "document.getElementById('build-log').textContent"
                   f".includes('step-1-{marker}')")
    other = await browser.new_page()
    await other.goto(corun.url(f"{BASE}/app?app=/c"))
    await other.evaluate("document.getElementById('act-reload').click()")
    await wait_for(page, corun, "document.getElementById('build-log').textContent"
                   f".includes('step-2-{marker}')", timeout=90)
    # still building: the stage app has not got its new version yet
    assert await version_count(corun, "stage.localhost:/c") == 1
    await page.evaluate("document.getElementById('build-log').scrollIntoView()")
    await page.screenshot(screenshot_path("console_build_log_live"))
    await wait_for(other, corun, "(document.querySelector('.flash') || {}).textContent"
                   "?.includes('reloaded')", timeout=120)
    stage_host = f"stage.localhost:{corun.port}"
    assert (await get_json(http, corun.url("/c/"), host=stage_host))["message"] == "second"

    # promote from the prod app's page, then revert
    await page.goto(corun.url(f"{BASE}/app?app=/c"))
    assert await page.evaluate("!!document.getElementById('act-promote')"), await page.text()
    await click_and_wait(page, corun, "#act-promote", "!!document.querySelector('.flash')",
                         timeout=120)
    assert "promoted" in await flash(page), await page.text()
    assert (await get_json(http, corun.url("/c/")))["message"] == "second"
    assert current_version((await corun.cli("version", "list", "/c")).ok().out) == 2
    await page.screenshot(screenshot_path("console_promoted"))
    await click_and_wait(page, corun, "#act-revert", "!!document.querySelector('.flash')",
                         timeout=120)
    assert "version 2 -> 1" in await flash(page), await page.text()
    assert (await get_json(http, corun.url("/c/")))["message"] == "from the dockerfile"
    assert current_version((await corun.cli("version", "list", "/c")).ok().out) == 1

    # restart (a new container, healthy when the page comes back), then stop
    listed = json.loads((await corun.cli("app", "list", "-f", "json")).ok().out)
    prod_id = next(a["id"] for a in listed if a["app_path"] == "/c")
    deadline = time.monotonic() + 40  # the container reverted from drains, then stops
    while len(containers(corun.home, app_id=prod_id)) != 1:
        assert time.monotonic() < deadline, containers(corun.home, app_id=prod_id)
        await asyncio.sleep(0.2)
    before = started_at(corun, prod_id)
    await click_and_wait(page, corun, "#act-restart", "!!document.querySelector('.flash')")
    assert "/c restarted" in await flash(page), await page.text()
    assert started_at(corun, prod_id) > before
    assert await page.evaluate("document.getElementById('state').textContent") == "running"
    await click_and_wait(page, corun, "#act-stop", "!!document.querySelector('.flash')")
    assert "/c stopped" in await flash(page), await page.text()
    assert containers(corun.home, app_id=prod_id) == []
    await wait_for(page, corun, "document.getElementById('state').textContent === 'stopped'")
    # the health history follows too (newest first): the stop, after the restart's start
    await wait_for(page, corun, "document.querySelector('#history li b').textContent "
                   "=== 'stopped'")
    assert "healthy" in await page.evaluate("document.getElementById('history').textContent")
    # the CLI's audit trail has every action, with the console user as actor
    audit = (await corun.cli("audit", "list", "--app", "/c")).ok().out
    for action in ("app.reload", "app.promote", "version.switch", "app.restart", "app.stop"):
        assert re.search(rf"console:admin\s+\S+\s+{re.escape(action)}\s+/c\s+ok", audit), \
            f"{action} missing:\n{audit}"

    # delete, with the confirmation step
    await click_and_wait(page, corun, "#act-delete", "!!document.getElementById('confirm')")
    await page.evaluate("document.getElementById('confirm').value = '/c'")
    await click_and_wait(page, corun, "#delete", "!!document.getElementById('rows')")
    assert "deleted /c" in await flash(page), await page.text()
    assert await page.evaluate(row_state("/c")) is None
    assert "/c" not in (await corun.cli("app", "list")).ok().out
    audit = (await corun.cli("audit", "list")).ok().out
    assert re.search(r"console:admin\s+\S+\s+app.delete\s+/c\s+ok", audit), audit


async def test_console_readable_at_phone_width(orun: Orun, page: Page, site: Path) -> None:
    for path in ("/docs", "/a/rather/long/path/for/a/narrow/screen/to/show"):
        (await orun.cli("app", "create", "--spec", "static", str(site), path)).ok()
    (await orun.cli("param", "update", "api_token", "hunter2", "/docs", "--promote")).ok()
    set_admin_password(orun.home, PASSWORD)
    await page.send("Emulation.setDeviceMetricsOverride",
                    {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
    await page.goto(orun.url(f"{BASE}/login"))
    assert await page.evaluate(NO_OVERFLOW)
    await page.screenshot(screenshot_path("console_phone_login"))
    await sign_in(page, orun)
    assert await page.evaluate("window.innerWidth") == 390
    assert await page.evaluate(NO_OVERFLOW), await page.evaluate(
        "document.documentElement.scrollWidth")
    await page.screenshot(screenshot_path("console_phone_apps"))
    await page.goto(orun.url(f"{BASE}/app?app=/docs"))
    await wait_for(page, orun, "!!document.getElementById('status')")
    text = await page.text()
    assert "api_token" in text and "hunter2" not in text  # a secret param is masked
    assert await page.evaluate(NO_OVERFLOW), await page.evaluate(
        "document.documentElement.scrollWidth")
    await page.screenshot(screenshot_path("console_phone_app"))
