"""Pure timing rules of the runtime: startup poll steps, housekeeping ticks, crash backoff."""

from __future__ import annotations

import time
from pathlib import Path

from orun.runtime.app import CRASH_WINDOW, MAX_BACKOFF, AppRuntime
from orun.runtime.health import startup_delay
from orun.runtime.housekeeping import idle_tick
from orun.runtime.logs import AppLogs


def test_startup_polls_fast_then_backs_off() -> None:
    assert startup_delay(0.0) == 0.01
    assert startup_delay(0.99) == 0.01
    assert startup_delay(2.0) == 0.05
    assert startup_delay(5.0) == 0.1
    assert startup_delay(60.0) == 0.25


def test_idle_tick_follows_the_timeout() -> None:
    assert idle_tick(0) == 15.0  # idle stop off: only health checks need the tick
    assert idle_tick(2) == 0.5
    assert idle_tick(0.1) == 0.2  # never busier than 5 ticks a second
    assert idle_tick(180) == 15.0


def crashed(tmp_path: Path, *ages: float) -> AppRuntime:
    rt = AppRuntime("app_prd_x", "/x", AppLogs(tmp_path, "app_prd_x"))
    rt.state = "crashed"
    now = time.monotonic()
    for age in ages:
        rt.crashes.append(now - age)
    return rt


def backoff(rt: AppRuntime) -> float:
    return rt.crash_backoff(time.monotonic())


def test_crash_backoff(tmp_path: Path) -> None:
    assert backoff(crashed(tmp_path, 0.1)) == 0.0
    # two recent crashes: wait 1 s after the last; three: 2 s; it doubles, capped
    assert 0.8 < backoff(crashed(tmp_path, 5, 0.1)) <= 1.0
    assert 1.8 < backoff(crashed(tmp_path, 9, 5, 0.1)) <= 2.0
    many = crashed(tmp_path, *[float(i) for i in range(9, 0, -1)])
    assert backoff(many) <= MAX_BACKOFF
    # crashes older than the window do not count
    old = crashed(tmp_path, CRASH_WINDOW + 10, CRASH_WINDOW + 5, 0.1)
    assert backoff(old) == 0.0
    stopped = crashed(tmp_path, 5, 0.1)
    stopped.state = "stopped"
    assert backoff(stopped) == 0.0
