"""Logging: structlog in front, one writer thread behind.

Events are rendered and written by a `QueueListener` thread, so a slow terminal or disk
never blocks the event loop; the loop only builds the event dict and enqueues it.
Console rendering on a TTY, JSON lines otherwise (or as configured).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from typing import Any

import structlog

_listener: logging.handlers.QueueListener | None = None


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Enqueue the record untouched: structlog's formatter runs in the listener thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """(Re)configure logging for the whole process. Safe to call again on reload."""
    global _listener
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
