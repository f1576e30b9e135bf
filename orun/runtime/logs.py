"""Per-app log files: the latest build log and the container output, kept across restarts.

Layout: `$ORUN_HOME/logs/apps/<app id>/build.log` (the last build or start attempt,
replaced by the next one; the previous is kept as `build.log.1`) and `container.log`
(every container run of the app, appended, rotated to `container.log.1` past a size
limit). Lines are buffered in memory and written by a thread in batches, so a chatty
build or app never blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

#: container.log is rotated past this size
MAX_CONTAINER_LOG = 8 * 1024 * 1024


class LogFile:
    """Append-only file written in batches by a thread; `write()` never blocks."""

    def __init__(self, path: Path, *, rotate_at: int = 0) -> None:
        self.path = path
        self._rotate_at = rotate_at
        self._pending: list[str] = []
        self._flushing: asyncio.Task[None] | None = None

    def write(self, line: str) -> None:
        self._pending.append(line if line.endswith("\n") else line + "\n")
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(0.05)
            while self._pending:
                batch, self._pending = self._pending, []
                await asyncio.to_thread(self._append, "".join(batch))
        finally:
            self._flushing = None

    async def flush(self) -> None:
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._pending:
            batch, self._pending = self._pending, []
            await asyncio.to_thread(self._append, "".join(batch))

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._rotate_at:
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size > self._rotate_at:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
        with self.path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(text)

    async def restart(self) -> None:
        """Start a new file, keeping the previous one as `<name>.1`."""
        await self.flush()

        def rotate() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.replace(self.path.with_name(self.path.name + ".1"))

        await asyncio.to_thread(rotate)


class AppLogs:
    """The two log files of one app."""

    def __init__(self, root: Path, app_id: str) -> None:
        self.dir = root / app_id
        self.build = LogFile(self.dir / "build.log")
        self.container = LogFile(self.dir / "container.log", rotate_at=MAX_CONTAINER_LOG)

    async def flush(self) -> None:
        await self.build.flush()
        await self.container.flush()


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def read_tail(path: Path, max_lines: int) -> list[str]:
    """The last `max_lines` lines of a file (blocking; read from the end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            block = 64 * 1024
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= max_lines:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-max_lines:] if max_lines else lines
