"""`app create --wait` on a terminal: one line per build step, `step n/N` and its time.

A quiet step (a long `RUN` that prints nothing) still shows its time going up: a
ticker thread redraws the line twice a second.

The server streams the start's log (orun's own lines, then the engine's build output,
then container start and health). Piped or redirected, the CLI prints that log as it
comes (scripts and CI logs keep every line). On a terminal the build steps become a
progress display: the running step's line is rewritten in place (`\\r`) with its elapsed
time and the last line it printed; when the next step starts the line is completed
with the step's duration and the next one begins below. orun's own lines (building,
creating the container, health) print as they are.

Steps are recognised in the classic builder's `Step 3/12 : RUN ...` lines and in
BuildKit's `#7 [3/12] RUN ...` (or `#7 [stage 3/12] ...`) lines.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TextIO

#: how often a running step's line is redrawn when its build prints nothing
TICK_SECS = 0.5

_CLASSIC = re.compile(r"Step (\d+)/(\d+) : (.*)")
_BUILDKIT = re.compile(r"#\d+ \[(?:[^\]\s]+ )?(\d+)/(\d+)\] (.*)")
#: a step's output in BuildKit's log: `#7 1.234 Collecting flask`
_BUILDKIT_OUTPUT = re.compile(r"#\d+ \d+\.\d+ (.*)")
#: the engine's own lines inside a build (not orun's): shown only as a step's tail
_BUILD_CHATTER = re.compile(r"( ---> |Removing intermediate container|Successfully built "
                            r"|Successfully tagged |#\d+ )")


def parse_step(line: str) -> tuple[int, int, str] | None:
    """(n, total, instruction) of a build step's first line, else None."""
    match = _CLASSIC.match(line) or _BUILDKIT.match(line)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3).strip()


class StepProgress:
    """Turns the start log into the terminal display (see the module docstring)."""

    def __init__(self, out: TextIO, width: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.width = max(width, 20)
        self.clock = clock
        self.started = clock()
        self._step: tuple[int, int, str] | None = None
        self._step_started = 0.0
        self._tail = ""
        self._building = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    def line(self, text: str) -> None:
        """One line of the server's log."""
        with self._lock:
            self._line(text)

    def _line(self, text: str) -> None:
        step = parse_step(text)
        if step is not None:
            self._finish_step()
            self._step, self._step_started, self._tail = step, self.clock(), ""
            self._building = True
            self._draw()
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="orun-progress",
                                                daemon=True)
                self._ticker.start()
        elif self._step is not None and (self._building and not _is_orun_line(text)):
            output = _BUILDKIT_OUTPUT.match(text)
            if output is not None:
                self._tail = output.group(1).strip() or self._tail
            elif text.strip() and not _BUILD_CHATTER.match(text):
                self._tail = text.strip()
            self._draw()
        else:
            self._finish_step()
            self._building = False
            self._print(text)

    def close(self) -> None:
        """The stream ended (ready or failed): complete the step line, stop the ticker."""
        self._done.set()
        with self._lock:
            self._finish_step()
        if self._ticker is not None:
            self._ticker.join()

    def _tick(self) -> None:
        while not self._done.wait(TICK_SECS):
            with self._lock:
                if self._step is not None:
                    self._draw()

    @staticmethod
    def failure_detail(detail: list[str]) -> list[str]:
        """The log tail a failed start sends, for a terminal that already shows the
        steps: from the last step on (its output is what explains the failure); a tail
        without steps (a container that did not get healthy) stays whole."""
        starts = [i for i, line in enumerate(detail) if parse_step(line) is not None]
        return detail[starts[-1]:] if starts else detail

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _label(self) -> str:
        assert self._step is not None
        n, total, _ = self._step
        return f"step {n:>{len(str(total))}}/{total}"

    def _draw(self) -> None:
        assert self._step is not None
        secs = self.clock() - self._step_started
        text = f"{self._label()}  {secs:5.1f}s  {self._step[2]}"
        if self._tail:
            text += f"  | {self._tail}"
        self.out.write("\r" + _fit(text, self.width - 1) + "\033[K")
        self.out.flush()

    def _finish_step(self) -> None:
        if self._step is None:
            return
        secs = self.clock() - self._step_started
        text = f"{self._label()}  {secs:5.1f}s  {self._step[2]}"
        self.out.write("\r" + _fit(text, self.width - 1) + "\033[K\n")
        self.out.flush()
        self._step = None

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _is_orun_line(text: str) -> bool:
    """orun's own lines after the build (`built X in 3.2s`, `creating container ...`)."""
    return text.startswith(("built ", "creating container", "waiting for", "healthy",
                            "image ", "joining the build", "error: "))


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
