"""Steady client load for fault tests: a few clients sending GETs back to back while
something breaks, recording when each answer came and its status (0: no answer)."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import aiohttp


class Load:
    """`async with Load(url, clients=4) as load:` ... then read `load.results`."""

    def __init__(self, url: str, *, clients: int = 4, timeout: float = 5.0) -> None:
        self.url = url
        self.clients = clients
        self.timeout = timeout
        #: (monotonic time of the answer, HTTP status or 0 for none), in arrival order
        self.results: list[tuple[float, int]] = []
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    async def _client(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self._stop.is_set():
                try:
                    async with http.get(self.url) as resp:
                        await resp.read()
                        self.results.append((time.monotonic(), resp.status))
                except (aiohttp.ClientError, TimeoutError):
                    self.results.append((time.monotonic(), 0))
                    await asyncio.sleep(0.01)

    async def __aenter__(self) -> Load:
        self._workers = [asyncio.ensure_future(self._client()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)

    def statuses(self, after: float = 0.0, before: float = float("inf")) -> list[int]:
        return [s for t, s in self.results if after < t < before]

    def failures(self) -> list[float]:
        """When the failed requests were answered (monotonic times)."""
        return [t for t, s in self.results if s != 200]
