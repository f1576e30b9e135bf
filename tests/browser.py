"""A small headless-Chromium harness for browser tests: a Chrome DevTools Protocol client.

One websocket to the browser; each page is a target attached with `flatten=True`, so its
commands and events travel on that socket tagged with the page's session id. Every
command has a timeout, and a CDP error reply becomes a `CDPError` with its message.

    async with launch_browser(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for("document.title.startsWith('Starting')", 10)
        await page.screenshot(screenshot_path("my_test"))

`scripts/chromium` installs the browser; without it `launch_browser` fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = "chromium"
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
)
#: where tests put their screenshots (scripts/test collects test-artifacts/)
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
#: default timeout of one CDP command
COMMAND_TIMEOUT = 15.0


class CDPError(Exception):
    """A CDP command answered with an error, or a page's script threw."""


def screenshot_path(name: str) -> Path:
    """`test-artifacts/screenshots/<name>.png`, with its folder made."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name.replace('/', '_')}.png"


class _Connection:
    """One CDP websocket: command ids, pending replies, and event subscribers."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: (session id, method) -> queues that get each such event's params
        self._listeners: dict[tuple[str, str], list[asyncio.Queue[dict[str, Any]]]] = {}
        self._closed: Exception | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self._pending.pop(data["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
                    continue
                key = (data.get("sessionId", ""), data.get("method", ""))
                for queue in self._listeners.get(key, []):
                    queue.put_nowait(data.get("params", {}))
        except Exception as exc:  # the reader must not die silently
            self._closed = exc
        finally:
            self._closed = self._closed or CDPError("browser connection closed")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(self._closed)
            self._pending.clear()

    async def send(self, method: str, params: dict[str, Any] | None = None, *,
                   session: str = "", timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        if self._closed is not None:
            raise CDPError(f"{method}: {self._closed}")
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self.ws.send_str(json.dumps(message))
            async with asyncio.timeout(timeout):
                reply = await fut
        except TimeoutError:
            raise CDPError(f"{method}: no answer within {timeout}s") from None
        finally:
            self._pending.pop(msg_id, None)
        if "error" in reply:
            error = reply["error"]
            raise CDPError(f"{method}: {error.get('message', error)}"
                           + (f" ({error['data']})" if error.get("data") else ""))
        result: dict[str, Any] = reply.get("result", {})
        return result

    @contextlib.contextmanager
    def listen(self, session: str, method: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """Collect `method` events of `session` into a queue while the block runs."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.setdefault((session, method), []).append(queue)
        try:
            yield queue
        finally:
            self._listeners[(session, method)].remove(queue)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Page:
    """One tab, driven through its flattened CDP session."""

    def __init__(self, conn: _Connection, target_id: str, session: str) -> None:
        self._conn = conn
        self.target_id = target_id
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        return await self._conn.send(method, params, session=self.session, timeout=timeout)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event (any HTTP status counts as loaded)."""
        with self._conn.listen(self.session, "Page.loadEventFired") as loads:
            result = await self.send("Page.navigate", {"url": url}, timeout=timeout)
            if result.get("errorText"):
                raise CDPError(f"navigating to {url}: {result['errorText']}")
            try:
                async with asyncio.timeout(timeout):
                    await loads.get()
            except TimeoutError:
                raise AssertionError(f"{url} did not load within {timeout}s") from None

    async def evaluate(self, expression: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """The JSON value of `expression` (promises awaited); a JS exception raises."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
        }, timeout=timeout)
        details = result.get("exceptionDetails")
        if details:
            exc = details.get("exception", {})
            text = exc.get("description") or exc.get("value") or details.get("text")
            raise CDPError(f"JS error in {expression!r}: {text}")
        return result.get("result", {}).get("value")

    async def url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def text(self) -> str:
        return str(await self.evaluate("document.body ? document.body.innerText : ''"))

    async def wait_for(self, expression: str, timeout: float = 10.0,
                       interval: float = 0.1) -> Any:
        """Poll `expression` until truthy and return its value.

        Errors while polling (the page navigating, its context gone) count as falsy; on
        timeout the AssertionError shows the page's URL and text.
        """
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            try:
                value = await self.evaluate(expression)
                if value:
                    return value
            except CDPError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(interval)
        try:
            where, text = await self.url(), (await self.text())[:2000]
        except CDPError as exc:
            where, text = "?", f"(page unreadable: {exc})"
        raise AssertionError(
            f"timed out after {timeout}s waiting for {expression!r}\n"
            f"url: {where}\n" + (f"last error: {last_error}\n" if last_error else "")
            + f"page text:\n{text}")

    async def screenshot(self, path: Path | str) -> Path:
        """Save a PNG of the viewport to `path` (its folder made)."""
        result = await self.send("Page.captureScreenshot", {"format": "png"}, timeout=30)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def click(self, selector: str) -> None:
        found = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return false; el.click(); return true; })()")
        if not found:
            raise AssertionError(f"no element matches {selector!r} on {await self.url()}")


class Browser:
    """A headless Chromium process and a CDP connection to it."""

    def __init__(self, tmp_dir: Path | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.proc: asyncio.subprocess.Process | None = None
        #: a fresh dir holding the profile (`profile/`) and the browser's output (`log`)
        self.root: Path | None = None
        self._session: aiohttp.ClientSession | None = None
        self._conn: _Connection | None = None

    async def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which(CHROMIUM)
        if binary is None:
            pytest.fail("chromium not found: run scripts/chromium", pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="chromium-", dir=self.tmp_dir))
        profile = self.root / "profile"
        # output to a file, not a pipe nobody drains (a full pipe would stall chromium)
        with (self.root / "log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < 2 or not lines[0].isdigit():
            if self.proc.returncode is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"chromium did not open its DevTools port within "
                                     f"{timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)
            with contextlib.suppress(FileNotFoundError):
                lines = active.read_text().split()
        ws_url = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        self._session = aiohttp.ClientSession()
        async with asyncio.timeout(timeout):
            ws = await self._session.ws_connect(  # no size limit: screenshots are big
                ws_url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        self._conn = _Connection(ws)

    def log(self) -> str:
        """The tail of chromium's own output."""
        if self.root is None or not (self.root / "log").exists():
            return ""
        return (self.root / "log").read_text(errors="replace")[-4000:]

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        assert self._conn is not None, "browser not started"
        return await self._conn.send(method, params, timeout=timeout)

    async def new_page(self) -> Page:
        assert self._conn is not None, "browser not started"
        target = (await self.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})
        page = Page(self._conn, target, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", timeout=3)
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.proc is not None:
            if self.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await self.proc.wait()
            # the wrapper script and all of chromium's helpers share its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.returncode is None:
                await self.proc.wait()
            self.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


@contextlib.asynccontextmanager
async def launch_browser(tmp_path: Path | None = None) -> AsyncIterator[Browser]:
    """A started headless Chromium, closed (process group killed, profile removed) after.

    Its profile goes in a fresh dir under `tmp_path` (the system temp dir if None).
    """
    browser = Browser(tmp_path)
    try:
        await browser.start()
        yield browser
    finally:
        await browser.close()
