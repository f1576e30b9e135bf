"""HTTP health probes of app containers.

A probe is `GET http://<address><path>` (the container's published port on loopback, or
where a remote engine's container is reached) with Host that address,
redirects followed, and only status 200 counts (as OpenRun). At startup the probe polls
fast (every 10 ms for the first second, growing to 250 ms) so an app that is up in
300 ms is routed in about that time, not after a multi-second sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

#: (elapsed seconds, delay) steps for startup probes: a failed probe on loopback costs
#: about a millisecond, so the first second polls every 10 ms
STARTUP_DELAYS = ((1.0, 0.01), (3.0, 0.05), (10.0, 0.1), (float("inf"), 0.25))


def startup_delay(elapsed: float) -> float:
    for limit, delay in STARTUP_DELAYS:
        if elapsed < limit:
            return delay
    return STARTUP_DELAYS[-1][1]


class HealthError(Exception):
    """The container did not become healthy; the message says why."""


class HealthProber:
    """One small client session for every probe of every app."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def probe(self, host: str, port: int, path: str, timeout: float) -> str | None:
        """None when healthy, else what went wrong (one line)."""
        assert self._session is not None, "HealthProber.start() was not called"
        url = f"http://{host}:{port}{path}"
        try:
            async with self._session.get(
                url, allow_redirects=True, max_redirects=10,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status == 200:
                    return None
                return f"health check {path} returned status {resp.status}"
        except TimeoutError:
            return f"health check {path} did not answer within {timeout:g}s"
        except aiohttp.ClientConnectorError as exc:
            return f"health check {path}: cannot connect ({exc.os_error.strerror or exc})"
        except aiohttp.ClientError as exc:
            return f"health check {path} failed: {exc.__class__.__name__}: {exc}"

    async def wait_healthy(self, host: str, port: int, path: str, *, probe_timeout: float,
                           budget: float, alive: Callable[[], Awaitable[str | None]]) -> None:
        """Poll until healthy; raise `HealthError` when the budget is spent or the
        container dies (`alive()` returns why it is not running, else None)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + budget
        last = "no health check completed"
        next_alive_check = loop.time() + 0.5
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise HealthError(f"not healthy after {budget:g}s: {last}")
            problem = await self.probe(host, port, path, min(probe_timeout, max(remaining, 0.1)))
            if problem is None:
                return
            last = problem
            if loop.time() >= next_alive_check:
                dead = await alive()
                if dead is not None:
                    raise HealthError(dead)
                next_alive_check = loop.time() + 0.5
            await asyncio.sleep(startup_delay(loop.time() - started))
