"""The "starting" page in a real browser: headless Chromium driven over CDP (tests/browser.py).

A browser's first request to a container app that is still building gets orun's starting
page; its script follows `<app>/_orun_app/progress` (SSE), shows the build log live and
reloads into the app once it is healthy, or shows the failure and stays put.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.browser import Browser, Page, screenshot_path
from tests.conftest import Orun, docker
from tests.e2e.test_containers import copy_app

pytestmark = pytest.mark.timeout(300)

LOG = "document.getElementById('log').textContent"
HEADING = "document.getElementById('title').textContent"


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh tab; its last state is saved as test-artifacts/screenshots/<test>.png."""
    tab = await browser.new_page()
    yield tab
    try:
        await tab.screenshot(screenshot_path(request.node.name))
    except Exception as exc:  # a teardown screenshot must not hide the test's outcome
        print(f"final screenshot failed: {exc}")


async def wait_for(page: Page, corun: Orun, expression: str, timeout: float) -> object:
    """`page.wait_for`, with orun's log tail added to a timeout's message."""
    try:
        return await page.wait_for(expression, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n-- orun log (tail):\n{corun.log()[-6000:]}") from None


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique build step marker (no layer cache across runs: the slow steps stay slow).

    Request it before `corun`: its teardown, after the containers are gone, removes the
    images labelled with it (a failed build leaves its finished steps as dangling images).
    """
    mark = f"orun-browser-{uuid.uuid4().hex[:12]}"
    yield mark
    images = docker("images", "-a", "-q", "--filter", f"label=orun-browser-test={mark}",
                    check=False).split()
    if images:  # newest (children) first
        docker("rmi", "-f", *dict.fromkeys(images), check=False)


def slow_app(tmp_path: Path, marker: str, extra: str) -> Path:
    """container_app with `extra` Dockerfile steps after its COPY, labelled with `marker`."""
    src = copy_app("container_app", tmp_path)
    dockerfile = src / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "COPY server.py .", f"COPY server.py .\nLABEL orun-browser-test={marker}\n{extra}"))
    return src


async def test_starting_page_streams_build_log_then_switches_to_app(
        marker: str, corun: Orun, page: Page, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    src = slow_app(tmp_path, marker, f"RUN echo {marker} && sleep 6")
    (await corun.cli("app", "create", "--spec", "container", str(src), "/slow")).ok()

    await page.goto(corun.url("/slow/"), timeout=30)
    title = await page.evaluate("document.title")
    assert title.startswith("Starting"), f"not the starting page: {title!r}\n{await page.text()}"
    assert await page.evaluate(HEADING) == "Starting /slow…"
    # the log fills live while the build runs: the slow step's own output shows up on the
    # starting page (same title, no reload) before the step's sleep ends
    await wait_for(page, corun,
                   f"document.title.startsWith('Starting') && {LOG}.includes('{marker}')", 60)
    log = await page.evaluate(LOG)
    assert "Step" in log or "building" in log, log
    assert log.count("\n") >= 3, log
    await page.screenshot(screenshot_path(f"{request.node.name}-starting"))

    # no user action: the `ready` event reloads the page into the app itself
    await wait_for(page, corun,
                   "document.body.innerText.includes('\"app\": \"container\"')", 90)
    text = await page.text()
    assert '"path": "/"' in text, text
    assert await page.url() == corun.url("/slow/")
    await page.screenshot(screenshot_path(f"{request.node.name}-app"))


async def test_starting_page_shows_failed_build_without_reloading(
        marker: str, corun: Orun, page: Page, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    src = slow_app(tmp_path, marker, f"RUN echo {marker} && sleep 3\nRUN false")
    (await corun.cli("app", "create", "--spec", "container", str(src), "/fail")).ok()

    await page.goto(corun.url("/fail/"), timeout=30)
    title = await page.evaluate("document.title")
    assert title.startswith("Starting"), f"not the starting page: {title!r}\n{await page.text()}"
    # a mark on this document: a reload would lose it
    await page.evaluate("window.orunTestMark = 'same document'")

    heading = await wait_for(page, corun,
                             f"{HEADING}.includes('failed to start') && {HEADING}", 60)
    assert heading == "/fail failed to start"
    assert await page.evaluate("document.getElementById('title').className") == "err"
    log = await page.evaluate(LOG)
    assert "error:" in log and "false" in log, log
    assert "Fix the problem, then reload this page." in await page.text()
    await page.screenshot(screenshot_path(f"{request.node.name}-failed"))

    # it stays on the failure: no reload (the page's error handler would reload after 3 s)
    # and no new start attempt
    await asyncio.sleep(5)
    assert await page.evaluate("window.orunTestMark") == "same document"
    assert await page.evaluate(HEADING) == "/fail failed to start"
    starts = [e for e in corun.log_events()
              if e.get("event") == "app_start_failed" and e.get("app") == "/fail"]
    assert len(starts) == 1, starts
