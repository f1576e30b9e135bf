"""The access log's writer thread: batching, the line format, and dropping (counted)
when the thread falls behind, never blocking the caller."""

from __future__ import annotations

import json
import threading
import time

from orun.log import AccessLog


def record(n: int) -> tuple[float, str, str, str, int, int, float, str | None]:
    return (1796094000.25, "GET", f"/app/{n}?q=1", "localhost:25222", 200, 47, 0.42,
            "127.0.0.1")


def test_records_become_json_lines_in_the_log_format() -> None:
    out: list[str] = []
    access = AccessLog(sink=out.append, json_lines=True, interval=0.01)
    access.start()
    for n in range(3):
        access.add(record(n))
    access.stop()
    lines = "".join(out).splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["/app/0?q=1", "/app/1?q=1",
                                                           "/app/2?q=1"]
    assert json.loads(lines[0]) == {
        "method": "GET", "path": "/app/0?q=1", "host": "localhost:25222", "status": 200,
        "bytes": 47, "ms": 0.42, "remote": "127.0.0.1", "event": "request", "level": "info",
        "logger": "orun.access", "timestamp": "2026-12-01T03:00:00.250000Z"}


def test_console_lines() -> None:
    out: list[str] = []
    access = AccessLog(sink=out.append, json_lines=False)
    access.add(record(7))
    access.drain()
    assert out == ["2026-12-01T03:00:00.250000Z [info     ] request  method=GET "
                   "path=/app/7?q=1 host=localhost:25222 status=200 bytes=47 ms=0.42 "
                   "remote=127.0.0.1\n"]


def test_a_writer_that_falls_behind_drops_and_counts_never_blocks() -> None:
    """The sink blocks (a stuck disk or terminal): adding stays instant, records past
    the capacity are dropped, and once the sink moves the count is written."""
    release = threading.Event()
    entered = threading.Event()
    out: list[str] = []

    def stuck_sink(text: str) -> None:
        entered.set()
        release.wait(10)
        out.append(text)

    access = AccessLog(sink=stuck_sink, json_lines=True, capacity=100, interval=0.01)
    access.start()
    access.add(record(0))
    assert entered.wait(5)  # the thread has taken record 0 and is stuck writing it
    started = time.perf_counter()
    for n in range(1, 1001):
        access.add(record(n))
    assert time.perf_counter() - started < 0.1
    assert access.dropped == 900
    release.set()
    access.stop()
    lines = [json.loads(line) for line in "".join(out).splitlines()]
    requests = [line for line in lines if line["event"] == "request"]
    assert [r["path"] for r in requests] == [f"/app/{n}?q=1" for n in range(101)]
    (dropped,) = [line for line in lines if line["event"] == "access_log_dropped"]
    assert (dropped["count"], dropped["total"], dropped["level"]) == (900, 900, "warning")
