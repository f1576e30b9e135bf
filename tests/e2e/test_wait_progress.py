"""`app create --wait` on a real terminal (a pty) shows one line per build step with
`step n/N` and its time, redrawn in place while the step runs; piped, the plain log."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.conftest import Orun

APPS = Path(__file__).resolve().parent.parent / "apps"


def run_in_pty(argv: list[str], env: dict[str, str], columns: int) -> tuple[int, str]:
    """Run `argv` with a terminal of `columns` columns as stdin/stdout/stderr; (exit
    status, everything it wrote, with the terminal's \\r\\n turned back into \\n)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=120)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


async def test_wait_shows_build_steps_on_a_terminal(corun: Orun, tmp_path: Path) -> None:
    src = tmp_path / "app"
    shutil.copytree(APPS / "container_app", src)
    with (src / "Dockerfile").open("a") as f:  # a quiet step: its time must still move
        f.write("RUN sleep 2\n")
    env = {**corun.env, "COLUMNS": "", "LINES": ""}
    code, out = await asyncio.to_thread(
        run_in_pty, [sys.executable, "-m", "orun", "app", "create", "--wait", "--spec",
                     "container", str(src), "/tty"], env, 72)
    assert code == 0, out
    lines = out.split("\n")
    # each step ends as one line: its number, its time, its instruction, no more than
    # the terminal's width
    final = [ln.rpartition("\r")[2].replace("\033[K", "") for ln in lines]
    steps = [m for m in (re.fullmatch(r"step +(\d+)/(\d+) +(\d+\.\d)s  (.*)", ln)
                         for ln in final) if m]
    total = int(steps[0].group(2))
    assert [int(m.group(1)) for m in steps] == list(range(1, total + 1))
    assert all(len(ln) <= 71 for ln in final if ln.startswith("step"))
    sleep = next(m for m in steps if m.group(4) == "RUN sleep 2")
    assert float(sleep.group(3)) >= 2.0
    # while it ran, the line was redrawn in place with its time going up
    redraws = re.findall(r"\rstep +\d+/\d+ +(\d+\.\d)s  RUN sleep 2", out)
    assert len(set(redraws)) >= 3, redraws
    assert "Step 1/" not in out  # the engine's raw lines are not printed
    assert re.search(r"^App is running: http://\S+/tty \(after \d+\.\ds\)$", out, re.M)

    piped = (await corun.cli("app", "create", "--wait", "--spec", "container", str(src),
                             "/piped")).ok().out
    assert "\r" not in piped and "\033" not in piped
    assert re.search(rf"^Step \d+/{total} : RUN sleep 2$", piped, re.M)
    assert re.search(r"^App is running: http://\S+/piped$", piped, re.M)


async def test_failed_step_keeps_its_output_on_a_terminal(corun: Orun, tmp_path: Path) -> None:
    src = tmp_path / "broken"
    shutil.copytree(APPS / "container_app", src)
    with (src / "Dockerfile").open("a") as f:
        f.write("RUN echo boom-before-failing && exit 3\n")
    code, out = await asyncio.to_thread(
        run_in_pty, [sys.executable, "-m", "orun", "app", "create", "--wait", "--spec",
                     "container", str(src), "/broken"], corun.env, 100)
    assert code == 1, out
    final = [ln.rpartition("\r")[2].replace("\033[K", "") for ln in out.split("\n")]
    failed = [ln for ln in final if re.match(r"step +\d+/\d+ .*RUN echo boom", ln)]
    assert len(failed) == 1  # the failing step ends its line like the others
    after = "\n".join(final[final.index(failed[0]) + 1:])
    # its output follows (the log's tail from the failing step on: the steps before it
    # are on the screen already), then the error
    assert re.search(r"^Step \d+/\d+ : RUN echo boom.*\n(.*\n)*boom-before-failing$", after,
                     re.M), after
    assert "Step 1/" not in out
    last = re.sub(r"\x1b\[[0-9;]*m", "", after.rstrip().rpartition("\n")[2])  # no colour
    assert re.fullmatch(r"error: .*returned a non-zero code: 3", last), after
