"""What the benchmark scripts that drive orun with wrk share: running a command to its
end, making sure wrk is installed, and reading wrk's `--latency` report."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True, slots=True)
class WrkFigures:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    #: non-2xx/3xx answers plus socket errors (connect, read, write, timeout)
    failed: int


async def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """A command's output (stdout and stderr); RuntimeError with its tail when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{text[-2000:]}")
    return text


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package when it is missing (root only)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("error: wrk is missing (apt-get install wrk)")
    for attempt in ("install", "update"):
        if attempt == "update":
            subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("error: could not install wrk")


def _ms(text: str, percent: str) -> float:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)", text, re.M)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else 0.0


def wrk_figures(text: str) -> WrkFigures:
    """The figures of one `wrk --latency` run."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{text[-1000:]}")
    done = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return WrkFigures(
        rps=float(rps.group(1)), p50_ms=_ms(text, "50"), p99_ms=_ms(text, "99"),
        requests=int(done.group(1)) if done else 0,
        failed=(int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(n) for n in errors.groups()) if errors else 0))
