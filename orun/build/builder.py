"""The builder: a composed build context into an image, at most N builds at a time.

An image is tagged with a hash of its build inputs, so a build whose image exists is
skipped (an unchanged app restarts without building; prod and stage share images). The
context tar is written in a thread to a temp file and streamed to the engine from there.
Every log line goes to the caller's sink (per-app log file, bus, starting page).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from orun.build.plan import BuildPlan
from orun.engine.docker import Engine
from orun.engine.labels import LABEL_APP_KEY, LABEL_HOME
from orun.errors import BuildError

log = structlog.get_logger("orun.builder")


class Builder:
    def __init__(self, home: Path, max_concurrent: int, max_wait_secs: float,
                 timeout_secs: float) -> None:
        self._home = home
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self.max_wait_secs = max_wait_secs
        self.timeout_secs = timeout_secs
        #: tags being built now -> the task building them (same inputs share one build)
        self._building: dict[str, asyncio.Task[bool]] = {}

    def resize(self, max_concurrent: int) -> None:
        """Apply a new `builder.max_concurrent_builds` (takes effect for new builds)."""
        if max_concurrent != self._max_concurrent:
            self._slots = asyncio.Semaphore(max_concurrent)
            self._max_concurrent = max_concurrent

    async def ensure_image(self, engine: Engine, plan: BuildPlan, app_key: str,
                           on_line: Callable[[str], None]) -> bool:
        """Make sure `plan.tag` exists; True when it had to be built."""
        if await engine.image_exists(plan.tag):
            on_line(f"image {plan.tag} is up to date (build skipped)")
            return False
        running = self._building.get(plan.tag)
        if running is None:
            running = asyncio.create_task(self._build(engine, plan, app_key, on_line),
                                          name=f"orun.build.{plan.tag}")
            self._building[plan.tag] = running
            running.add_done_callback(lambda _t: self._building.pop(plan.tag, None))
        else:
            on_line(f"joining the build of {plan.tag} already running")
        return await asyncio.shield(running)

    async def _build(self, engine: Engine, plan: BuildPlan, app_key: str,
                     on_line: Callable[[str], None]) -> bool:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.max_wait_secs):
                if self._slots.locked():
                    on_line("waiting for a build slot (builder.max_concurrent_builds)")
                await self._slots.acquire()
        except TimeoutError:
            raise BuildError(f"error acquiring build slot: waited {self.max_wait_secs:g}s "
                             "(builder.max_build_wait_secs)") from None
        try:
            tmp_dir = self._home / "tmp"
            tar_path = await asyncio.to_thread(_write_context, plan, tmp_dir)
            try:
                on_line(f"building {plan.tag} from {plan.context.containerfile} "
                        f"({len(plan.context.files)} files)")
                try:
                    async with asyncio.timeout(self.timeout_secs):
                        await engine.build(
                            tar_path, tag=plan.tag, dockerfile=plan.context.containerfile,
                            build_args=plan.build_args,
                            labels={LABEL_HOME: str(self._home), LABEL_APP_KEY: app_key},
                            on_line=on_line)
                except TimeoutError:
                    raise BuildError(f"error building image: the build took longer than "
                                     f"{self.timeout_secs:g}s (builder.build_timeout_secs)"
                                     ) from None
            finally:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(tar_path.unlink)
        finally:
            self._slots.release()
        secs = time.monotonic() - started
        on_line(f"built {plan.tag} in {secs:.1f}s")
        log.info("image_built", tag=plan.tag, secs=round(secs, 2))
        return True


def _write_context(plan: BuildPlan, tmp_dir: Path) -> Path:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="context-", suffix=".tar", dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    plan.context.write_tar(path)
    return path
