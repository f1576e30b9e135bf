"""Helpers for the framework specs' end-to-end tests (test_spec_*.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator

from tests.browser import Page
from tests.conftest import Orun, docker
from tests.e2e.test_containers import app_id

NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


async def stops_cleanly(corun: Orun, path: str) -> None:
    """`docker stop` (the image's stop signal) ends the app at once with exit code 0: the
    signal reaches the app (exec in the CMD), not a shell that ignores it as PID 1."""
    (container,) = docker("ps", "-q", "--filter",
                          f"label=orun.app.id={await app_id(corun, path)}").split()
    started = time.monotonic()
    docker("stop", "-t", "20", container)
    assert time.monotonic() - started < 10
    assert docker("inspect", container, "--format", "{{.State.ExitCode}}").strip() == "0"


@contextlib.contextmanager
def network_changes(page: Page) -> Iterator[Callable[[], bool]]:
    """While the block runs: a function telling whether Chromium failed a request of the
    page with ERR_NETWORK_CHANGED (the page's Network domain must be enabled)."""
    seen = False
    with page._conn.listen(page.session, "Network.loadingFailed") as failed:

        def changed() -> bool:
            nonlocal seen
            while not failed.empty():
                if failed.get_nowait().get("errorText") == NETWORK_CHANGED:
                    seen = True
            return seen

        yield changed


async def step(page: Page, action: Callable[[], Awaitable[object]], ready: str,
               timeout: float, attempts: int = 3) -> None:
    """Run `action` (load a page, click...), then wait until `ready` is true in the page.

    Chromium fails in-flight requests with ERR_NETWORK_CHANGED whenever the host's network
    interfaces change, and Docker adds and removes one for every container it runs (build
    steps included), so other work on the machine can cost a page a script or a fetch.
    Only when that happened is a step that did not finish tried again; any other failure
    fails at once. Use it for steps that are safe to repeat.
    """
    await page.send("Network.enable")
    for attempt in range(1, attempts + 1):
        with network_changes(page) as changed:
            await action()
            try:
                await page.wait_for(ready, timeout)
                return
            except AssertionError:
                if attempt == attempts or not changed():
                    raise
                print(f"attempt {attempt}: Chromium saw {NETWORK_CHANGED}; again")


async def scenario(page: Page, run: Callable[[], Awaitable[None]], attempts: int = 3) -> None:
    """Run a whole browser scenario (load the page, then interact), from the start again
    when it failed after Chromium saw ERR_NETWORK_CHANGED (see `step`): some apps cache a
    failed lazy import (streamlit's widget modules), so only a fresh page load recovers."""
    await page.send("Network.enable")
    for attempt in range(1, attempts + 1):
        with network_changes(page) as changed:
            try:
                await run()
                return
            except AssertionError:
                if attempt == attempts or not changed():
                    raise
                print(f"scenario attempt {attempt}: Chromium saw {NETWORK_CHANGED}; again")
