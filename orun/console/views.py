"""What the console's pages show, shaped from what the server already describes.

The app list reads `describe(app)` (what `app list -f json` returns): the runtime's
status, with its request counter, and the resource sample (`resources`, None or
missing when the app runs no container). Requests per minute are differences of that
counter over the last minute, sampled when a page or a live stream asks (never on the
request path).
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from orun.state.model import App

#: param names whose values the console never shows (it has no other way to know
#: which params are secrets: specs do not mark them)
SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cred|private|cookie|salt",
                         re.IGNORECASE)
MASK = "••••••"
#: how far back requests/min looks, and how often it keeps a sample
RATE_WINDOW = 60.0
SAMPLE_EVERY = 2.0


def masked_params(params: dict[str, str]) -> list[tuple[str, str]]:
    return [(name, MASK if SECRET_NAME.search(name) else value)
            for name, value in sorted(params.items())]


class RateMeter:
    """Requests per minute per app, from samples of an ever-growing counter."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: dict[str, collections.deque[tuple[float, int]]] = {}

    def rate(self, app_id: str, count: int) -> float | None:
        """Requests in the last minute: a minute's samples give the rate; before a
        minute of them exists (a console opened just now), what came in so far (a lower
        bound, never an extrapolation of a few seconds). None for the first second."""
        now = self._clock()
        samples = self._samples.setdefault(app_id, collections.deque())
        if samples and count < samples[-1][1]:  # counter restarted
            samples.clear()
        if not samples or now - samples[-1][0] >= SAMPLE_EVERY:
            samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_time, first_count = samples[0]
        if now - first_time < 1.0:
            return None
        return (count - first_count) * 60.0 / max(now - first_time, RATE_WINDOW)

    def forget(self, keep: Iterable[str]) -> None:
        kept = set(keep)
        for app_id in [a for a in self._samples if a not in kept]:
            del self._samples[app_id]


@dataclass(frozen=True, slots=True)
class AppRow:
    """One line of the app list (all text, `-` where there is nothing to show)."""

    path: str
    kind: str
    spec: str
    source: str
    prod_version: str
    stage_version: str
    stage_path: str
    staged: bool
    state: str
    image: str
    container: str
    last_request: str
    requests_per_min: str
    cpu: str
    memory: str


def ago(when: float | None, now: float | None = None) -> str:
    if not when:
        return "-"
    secs = max(0.0, (time.time() if now is None else now) - when)
    if secs < 60:
        return f"{int(secs)}s ago"
    if secs < 3600:
        return f"{int(secs // 60)}m ago"
    if secs < 86400:
        return f"{int(secs // 3600)}h ago"
    return f"{int(secs // 86400)}d ago"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def resources(described: dict[str, Any]) -> tuple[str, str]:
    """(CPU, memory) of the app's container: `-` when there is no sample."""
    res = described.get("resources")
    if not isinstance(res, dict):
        return "-", "-"
    try:
        cpu = f"{float(res['cpu_percent']):.1f}%"
        mem = size(float(res["memory_bytes"]))
        limit = float(res.get("memory_limit_bytes") or 0)
    except (KeyError, TypeError, ValueError):
        return "-", "-"
    return cpu, f"{mem} / {size(limit)}" if limit else mem


def state_of(described: dict[str, Any]) -> str:
    """running, stopped, starting, paused, failed, ... for container apps; static and
    proxy apps always serve."""
    runtime = described.get("runtime")
    if not isinstance(runtime, dict):
        return "serving"
    state = str(runtime.get("state") or "stopped")
    return "starting" if state in ("building", "updating") and not runtime.get("container") \
        else state


def app_row(app: App, described: dict[str, Any], stage: App | None,
            meter: RateMeter) -> AppRow:
    runtime = described.get("runtime")
    rt = runtime if isinstance(runtime, dict) else {}
    count = rt.get("requests")
    rate = meter.rate(app.id, int(count)) if isinstance(count, int) else None
    cpu, memory = resources(described)
    last = rt.get("last_request")
    return AppRow(
        path=str(app.path), kind=app.kind, spec=app.spec, source=app.source or "-",
        prod_version=str(app.current.version),
        stage_version=str(stage.current.version) if stage is not None else "-",
        stage_path=str(stage.path) if stage is not None else "",
        staged=bool(described.get("staged_changes")), state=state_of(described),
        image=str(rt.get("image") or "-"), container=str(rt.get("container") or "-"),
        last_request=ago(float(last)) if isinstance(last, (int, float)) else "-",
        requests_per_min="-" if rate is None else f"{rate:.1f}",
        cpu=cpu, memory=memory)


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    created: str
    commit: str
    message: str
    current: bool


def version_rows(versions: Iterable[Any], current: int) -> list[VersionRow]:
    rows = []
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created)) \
            if v.created else "-"
        rows.append(VersionRow(v.version, created, (v.git_commit or "")[:12] or "-",
                               (v.git_message or "").strip().splitlines()[0]
                               if v.git_message else "-", v.version == current))
    return sorted(rows, key=lambda r: -r.version)
