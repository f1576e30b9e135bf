"""Per-app CPU and memory, sampled from the engine off the request path.

One task asks the engine for the stats of every app's container (serving or paused)
every `system.resource_sample_secs`, a few at a time, and keeps the newest reading per
app. Readers (`app list`, the console) only look the reading up: a listing never waits
for the engine, and a sample belongs to one container, so an app that stopped or moved
to a new container shows nothing until its new container has been read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from orun.engine.stats import ContainerStats
from orun.errors import EngineError
from orun.runtime.hosts import SamplerHost

log = structlog.get_logger("orun.runtime")

#: engine stats calls in flight at once (each takes about a second)
CONCURRENT_READS = 4
#: how long one stats call may take before it is given up
READ_TIMEOUT_SECS = 10.0
#: the wait between rounds while sampling is off (the config may turn it on)
IDLE_RECHECK_SECS = 5.0


@dataclass(frozen=True, slots=True)
class ResourceSample:
    container_id: str
    stats: ContainerStats
    sampled_at: float

    def to_json(self) -> dict[str, float | int]:
        return {"cpu_percent": self.stats.cpu_percent,
                "memory_bytes": self.stats.memory_bytes,
                "memory_limit_bytes": self.stats.memory_limit_bytes,
                "sampled_at": round(self.sampled_at, 3)}


class ResourceSampler:
    def __init__(self, host: SamplerHost) -> None:
        self._host = host
        self._samples: dict[str, ResourceSample] = {}
        #: finished rounds (logged at debug level; tells a reader sampling is alive)
        self.rounds = 0

    def get(self, app_id: str) -> ResourceSample | None:
        """The newest reading of the app's current container, if there is one."""
        sample = self._samples.get(app_id)
        if sample is None:
            return None
        rt = self._host.get(app_id)
        inst = rt.current() if rt is not None else None
        if inst is None or inst.container_id != sample.container_id:
            return None
        return sample

    async def run(self) -> None:
        while True:
            interval = self._host.config().system.resource_sample_secs
            if interval <= 0:
                self._samples.clear()
                await asyncio.sleep(IDLE_RECHECK_SECS)
                continue
            started = time.monotonic()
            await self.sample_once()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def sample_once(self) -> None:
        """Read every app's container once; a failed read drops that app's reading."""
        targets: dict[str, str] = {}
        for rt in self._host.runtimes():
            inst = rt.current()
            if inst is not None:
                targets[rt.app_id] = inst.container_id
        if targets:
            try:
                engine = await self._host.engine()
            except EngineError:
                targets = {}
            else:
                gate = asyncio.Semaphore(CONCURRENT_READS)

                async def read(app_id: str, container_id: str) -> None:
                    async with gate:
                        try:
                            stats = await asyncio.wait_for(
                                engine.stats(container_id, READ_TIMEOUT_SECS),
                                READ_TIMEOUT_SECS + 1)
                        except (EngineError, TimeoutError) as exc:
                            log.debug("container_stats_failed", app_id=app_id, error=str(exc))
                            stats = None
                    if stats is None:
                        self._samples.pop(app_id, None)
                    else:
                        self._samples[app_id] = ResourceSample(container_id, stats, time.time())

                await asyncio.gather(*(read(a, c) for a, c in targets.items()))
        for gone in set(self._samples) - set(targets):
            del self._samples[gone]
        self.rounds += 1
