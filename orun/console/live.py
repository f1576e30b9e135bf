"""Live updates for the console's pages: what changed on the bus, and SSE streams.

One bus subscription (not one per browser tab) counts changes to apps and their
containers and keeps a short health history per app; each open stream waits on it.
Every stream registers here while it runs and `close()` (server stop) ends them all,
so a browser holding an EventSource open cannot keep the server from stopping.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os
from aiohttp import web

from orun.bus import EventBus, Unsubscribe
from orun.events import (
    AppsChanged,
    BuildFinished,
    BuildStarted,
    ContainerExited,
    ContainerHealthy,
    ContainerUnhealthy,
    Event,
)

#: entries of health history kept per app
HISTORY = 30
#: a stream sends a comment this often, so proxies and browsers keep it open
HEARTBEAT_SECS = 15.0
#: the most one log read sends at once
MAX_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class HealthEntry:
    time: float
    what: str
    detail: str

    @property
    def when(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.time))


class LiveFeed:
    """Change counter and health history from the bus; the registry of open streams."""

    WATCHED = (AppsChanged, BuildStarted, BuildFinished, ContainerHealthy,
               ContainerUnhealthy, ContainerExited)

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()
        self.closed = asyncio.Event()
        self.history: dict[str, collections.deque[HealthEntry]] = {}
        self._streams: set[asyncio.Task[object]] = set()
        self._unsubscribe: Unsubscribe | None = None

    def start(self, bus: EventBus) -> None:
        self._unsubscribe = bus.subscribe("console", self.WATCHED, self._on_event)

    async def _on_event(self, event: Event) -> None:
        entry = _health_entry(event)
        if entry is not None:
            app_id, item = entry
            self.history.setdefault(app_id, collections.deque(maxlen=HISTORY)).append(item)
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def recent(self, app_id: str) -> list[HealthEntry]:
        """The app's health history, newest first."""
        return list(reversed(self.history.get(app_id, ())))

    async def wait(self, seen: int, timeout: float) -> bool:
        """Until something changed after `seen`, `timeout` passed or the feed closed;
        True unless it closed."""
        if self.closed.is_set():
            return False
        if self.version == seen:
            waiters = [asyncio.ensure_future(self._changed.wait()),
                       asyncio.ensure_future(self.closed.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return not self.closed.is_set()

    @contextlib.asynccontextmanager
    async def stream(self, request: web.Request) -> AsyncIterator[EventStream]:
        """An SSE response owned by this feed for as long as the block runs."""
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            out = EventStream()
            await out.open(request)
            yield out
        finally:
            self._streams.discard(task)

    async def close(self, timeout: float = 2.0) -> None:
        """End every stream (they see `closed` and return) and stop listening."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.closed.set()
        streams = list(self._streams)
        if streams:
            _done, pending = await asyncio.wait(streams, timeout=timeout)
            for task in pending:  # a write stuck on a client that reads nothing
                task.cancel()

    @property
    def open_streams(self) -> int:
        return len(self._streams)


def _health_entry(event: Event) -> tuple[str, HealthEntry] | None:
    now = time.time()
    if isinstance(event, ContainerHealthy):
        return event.app_id, HealthEntry(now, "healthy", f"version {event.version}")
    if isinstance(event, ContainerUnhealthy):
        return event.app_id, HealthEntry(now, "unhealthy", event.reason)
    if isinstance(event, ContainerExited):
        code = "" if event.exit_code is None else f" (exit {event.exit_code})"
        return event.app_id, HealthEntry(now, "stopped" if event.expected else "exited",
                                         event.reason + code)
    if isinstance(event, BuildStarted):
        return event.app_id, HealthEntry(now, "build started", "")
    if isinstance(event, BuildFinished):
        return event.app_id, HealthEntry(now, "build failed" if event.error
                                         else "build done", event.error[:200])
    return None


class EventStream:
    """A `text/event-stream` response: named events whose data may span lines."""

    def __init__(self) -> None:
        self.response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.last_write = time.monotonic()

    async def open(self, request: web.Request) -> None:
        await self.response.prepare(request)
        await self.response.write(b"retry: 2000\n\n")

    async def send(self, event: str, data: str) -> None:
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        payload = f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"
        await self.response.write(payload.encode("utf-8", "replace"))
        self.last_write = time.monotonic()

    async def heartbeat(self) -> None:
        if time.monotonic() - self.last_write >= HEARTBEAT_SECS:
            await self.response.write(b": keepalive\n\n")
            self.last_write = time.monotonic()


async def file_size(path: Path) -> int:
    try:
        return (await aiofiles.os.stat(path)).st_size
    except FileNotFoundError:
        return 0


async def file_mtime(path: Path) -> float:
    try:
        return (await aiofiles.os.stat(path)).st_mtime
    except FileNotFoundError:
        return 0.0


async def read_from(path: Path, offset: int, size: int) -> bytes:
    async with aiofiles.open(path, "rb") as f:
        await f.seek(offset)
        return await f.read(min(size - offset, MAX_CHUNK))
