"""The process limits orun raises for itself when the server starts.

Every client connection costs orun an open file, and a relayed websocket two (the
client's and the upstream's). Most systems start processes with a soft limit of 1,024
open files and a far higher hard limit, which an unprivileged process may raise its
soft limit to: without that, orun would refuse connections (EMFILE) at about 500 open
websockets on a machine that allows it tens of thousands.
"""

from __future__ import annotations

import resource

import structlog

log = structlog.get_logger("orun.limits")

#: open files orun needs besides connections (listeners, store, logs, admin, epoll, ...)
OWN_FILES = 200
#: a relayed websocket holds two: the client's connection and the upstream's
FILES_PER_WEBSOCKET = 2


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (when it is lower) and log what the
    limit allows; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        # an "unlimited" hard limit is refused as a soft one by Linux: ask for nr_open
        target = hard if hard != resource.RLIM_INFINITY else _kernel_nr_open()
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open_files_limit_not_raised", soft=soft, hard=hard, error=str(exc))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    connections = max(0, soft - OWN_FILES)
    log.info("open_files_limit", limit=soft, raised_from=before if soft != before else None,
             hard=None if hard == resource.RLIM_INFINITY else hard,
             connections=connections, websockets=connections // FILES_PER_WEBSOCKET)
    return soft


def _kernel_nr_open() -> int:
    """The kernel's ceiling for one process's open files (1,048,576 by default)."""
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1_048_576
