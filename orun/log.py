"""Logging: structlog in front, one writer thread behind.

Events are rendered and written by a `QueueListener` thread, so a slow terminal or disk
never blocks the event loop; the loop only builds the event dict and enqueues it.
Console rendering on a TTY, JSON lines otherwise (or as configured).

The access log is cheaper still (`AccessLog`): one tuple per request appended to a
bounded deque on the loop, formatted and written by its own thread in batches. When
that thread falls behind, records are dropped and counted (an `access_log_dropped`
line says how many), so logging never slows or blocks the proxy.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

_listener: logging.handlers.QueueListener | None = None
_output: logging.StreamHandler[Any] | None = None
_json = True


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Enqueue the record untouched: structlog's formatter runs in the listener thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """(Re)configure logging for the whole process. Safe to call again on reload."""
    global _listener, _output, _json
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.dict_tracebacks if use_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
    )
    out = logging.StreamHandler(stream)
    out.setFormatter(formatter)
    _output, _json = out, use_json
    if _listener is not None:
        _listener.stop()
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(q, out, respect_handler_level=False)
    _listener.start()
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_PassThroughQueueHandler(q))
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # asyncssh narrates every connection and channel at info; orun logs its own events
    # (engine_ssh_lost, git_push...) and wants asyncssh's warnings only
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared[:1], structlog.stdlib.filter_by_level,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(),
                    *shared[1:],
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def flush_logging() -> None:
    """Stop the writer thread after it has written everything queued (at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


#: (unix time, method, raw path, host, status, bytes, ms, remote)
AccessRecord = tuple[float, str, str, str, int, int, float, "str | None"]


def _write_to_log_stream(text: str) -> None:
    """Write whole lines to the stream the log thread writes to, under its lock."""
    out = _output
    if out is None:
        sys.stderr.write(text)
        return
    out.acquire()
    try:
        out.stream.write(text)
        out.flush()
    finally:
        out.release()


class AccessLog:
    """Per-request access records, formatted and written off the loop.

    `add` is all the loop pays: a length check and a deque append. A writer thread
    wakes every `interval` seconds and writes what accumulated in one batch, in the
    format of the other log lines (JSON lines, or console text on a TTY). Beyond
    `capacity` waiting records new ones are dropped and counted.
    """

    def __init__(self, *, capacity: int = 100_000, interval: float = 0.05,
                 sink: Callable[[str], None] = _write_to_log_stream,
                 json_lines: bool | None = None) -> None:
        self.capacity = capacity
        self.interval = interval
        self.dropped = 0
        self._reported = 0
        self._records: collections.deque[AccessRecord] = collections.deque()
        self._sink = sink
        self._json = json_lines
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="orun-access-log",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None

    def add(self, record: AccessRecord) -> None:
        if len(self._records) >= self.capacity:
            self.dropped += 1
            return
        self._records.append(record)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.drain()
        self.drain()

    def drain(self) -> None:
        """Format and write every waiting record (the writer thread calls this)."""
        use_json = _json if self._json is None else self._json
        lines: list[str] = []
        records = self._records
        while records:
            lines.append(_access_line(records.popleft(), use_json))
            if len(lines) >= 2000:
                self._sink("".join(lines))
                lines.clear()
        dropped = self.dropped
        if dropped != self._reported:
            lines.append(_dropped_line(dropped - self._reported, dropped, use_json))
            self._reported = dropped
        if lines:
            self._sink("".join(lines))


def _timestamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def _access_line(rec: AccessRecord, use_json: bool) -> str:
    when, method, path, host, status, size, ms, remote = rec
    if use_json:
        return json.dumps({"method": method, "path": path, "host": host, "status": status,
                           "bytes": size, "ms": ms, "remote": remote, "event": "request",
                           "level": "info", "logger": "orun.access",
                           "timestamp": _timestamp(when)}) + "\n"
    return (f"{_timestamp(when)} [info     ] request  method={method} path={path} "
            f"host={host} status={status} bytes={size} ms={ms} remote={remote}\n")


def _dropped_line(count: int, total: int, use_json: bool) -> str:
    if use_json:
        return json.dumps({"count": count, "total": total, "event": "access_log_dropped",
                           "level": "warning", "logger": "orun.access",
                           "timestamp": _timestamp(datetime.now(UTC).timestamp())}) + "\n"
    return (f"{_timestamp(datetime.now(UTC).timestamp())} [warning  ] access_log_dropped "
            f"count={count} total={total}\n")
