"""The runtime state of one container app: its serving instance, activity and progress.

An `AppRuntime` is owned by the `Runtime`; the proxy reads `instance` and `activity`
(plain attribute reads on the hot path) and asks the runtime to bring the app up when
there is no instance. All mutation happens on the loop, in the runtime.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from dataclasses import dataclass, field

from yarl import URL

from orun.errors import BuildError, OrunError
from orun.runtime.activity import Activity
from orun.runtime.logs import AppLogs
from orun.runtime.replicas import ReplicaPool
from orun.state.config import Config
from orun.state.model import App

#: lines of the current start operation kept for the starting page
PROGRESS_LINES = 400
#: exits within this window count towards crash-loop backoff
CRASH_WINDOW = 300.0
MAX_BACKOFF = 60.0

_LOOPBACK = r"(?:127(?:\.\d{1,3}){3}|localhost|::1|0\.0\.0\.0)"
#: what an anonymous client must not learn from an error: orun's container, image and
#: volume names (all `orun-...`), engine ids, and loopback addresses (the upstream), also
#: in the `('127.0.0.1', 41234)` form of a refused connection
_PRIVATE = (
    r"\b[0-9a-f]{64}\b"
    rf"|\('{_LOOPBACK}',\s*\d+\)"
    rf"|(?:\w+://)?\[?{_LOOPBACK}\]?(?::\d+)?"
)


def _private_pattern(app_id: str) -> re.Pattern[str]:
    """Full engine ids, loopback addresses, and this app's own container, volume and
    image names (`orun-app_prd_<key>-...`, `orun-<key>:<tag>`). Names are matched by the
    app's key, so a user's own `orun-...` words in a build log stay as they are."""
    key = re.escape(app_id.split("_", 2)[-1])
    return re.compile(rf"\borun-(?:app_[a-z]{{3}}_)?{key}(?:[\w.:-]*\w)?|" + _PRIVATE)
HIDDEN = "(hidden)"


class StartError(OrunError):
    """An app could not be brought up; `detail` holds the build or container log tail."""

    status = 500

    def __init__(self, message: str, detail: str = "", *, status: int = 500,
                 retry_after: float | None = None, notice: str = "") -> None:
        super().__init__(message, status=status)
        self.detail = detail
        self.retry_after = retry_after
        #: when and why the next attempt happens (the error page shows it)
        self.notice = notice

    @classmethod
    def of(cls, exc: Exception) -> StartError:
        """Any failure of a start (build, engine, health) as a StartError."""
        if isinstance(exc, StartError):
            return exc
        if isinstance(exc, OrunError):
            detail = exc.log_tail if isinstance(exc, BuildError) else exc.detail
            return cls(exc.message, detail, status=exc.status)
        return cls(str(exc))


class InstanceLoad:
    """Requests and websockets open on one container right now: a superseded container
    is stopped only once this drops to zero (or the drain timeout passes)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = 0


@dataclass(frozen=True, slots=True)
class Instance:
    """A running, healthy container the app's requests go to."""

    container_id: str
    name: str
    host_port: int
    identity: str
    version: int
    image: str
    port: int
    health_path: str
    #: wall-clock start time (container output is followed from here)
    started: float
    #: the address orun connects to (with `host_port`): loopback, unless the engine is
    #: remote and its containers are reached directly on its `remote_publish_host`
    host: str = "127.0.0.1"
    #: a replicated version (a Swarm service): the healthy tasks requests are spread
    #: over; None for a single container
    replicas: ReplicaPool[Instance] | None = field(default=None, compare=False, repr=False)
    load: InstanceLoad = field(default_factory=InstanceLoad, compare=False, repr=False)
    #: the upstream origin, made once (the proxy's hot path only reads these)
    upstream: str = field(init=False, compare=False)
    base: URL = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        upstream = f"http://{self.host}:{self.host_port}"
        object.__setattr__(self, "upstream", upstream)
        object.__setattr__(self, "base", URL(upstream))


class Progress:
    """The lines of the current (or last) start operation, with live subscribers."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=PROGRESS_LINES)
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self.generation = 0

    def reset(self) -> None:
        self.lines.clear()
        self.generation += 1

    def add(self, line: str) -> None:
        self.lines.append(line)
        for queue in self._subscribers:
            if queue.qsize() < 1000:
                queue.put_nowait(line)

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for line in self.lines:
            queue.put_nowait(line)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._subscribers.discard(queue)

    def finish(self) -> None:
        """Wake every subscriber: the operation ended (they re-read the state)."""
        for queue in self._subscribers:
            queue.put_nowait(None)


@dataclass(slots=True)
class Paused:
    """A container the idle pause tier froze: its memory, sockets and open websockets
    are kept, it gets no CPU. It is not `instance` (requests take the cold path, where
    `ensure` thaws it), so nothing on the hot path needs to know about pausing."""

    instance: Instance
    #: dev mode's source generation when it was paused: an edit since then needs a
    #: (re)start, not a thaw of the old code
    generation: int = 0
    #: the engine's pause call while it runs (a thaw waits for it to finish first)
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Retirement:
    """A superseded instance on its way out: draining, then stopping."""

    instance: Instance
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    #: it was paused when superseded: it is thawed first, so its open websockets can
    #: finish while it drains
    thaw: bool = False


class AppRuntime:
    def __init__(self, app_id: str, label: str, logs: AppLogs) -> None:
        self.app_id = app_id
        self.label = label
        #: stopped, building, starting, running, paused, failed, crashed, unhealthy
        self.state = "stopped"
        self.instance: Instance | None = None
        #: the container the idle pause tier froze (then `instance` is None)
        self.paused: Paused | None = None
        #: `activity.last` of the idle period whose pause the engine refused (rootless
        #: Podman on cgroup v1 cannot pause): not tried again before new traffic
        self.pause_refused = -1.0
        self.operation: asyncio.Task[Instance] | None = None
        #: the last failure, shown to requests and in `app list` (with the log tail)
        self.error = ""
        self.error_detail = ""
        #: which version (`version_key`) failed to start, under which server config
        #: (`config_key`), how, how many times in a row, and when (monotonic) a request
        #: may try it again: until then repeats are answered from memory
        self.failed_version: object = None
        self.failed_config: object = None
        self.failed_status = 500
        self.failed_count = 0
        self.retry_at = 0.0
        self.image = ""
        self.port = 0
        self.crashes: collections.deque[float] = collections.deque(maxlen=10)
        #: the container that last left service (an outside `docker stop` names it)
        self.lost_container = ""
        #: what `public_text` hides, compiled on first use (cold path only)
        self._private: re.Pattern[str] | None = None
        self.health_failures = 0
        self.activity = Activity()
        self.progress = Progress()
        self.logs = logs
        self.log_follower: asyncio.Task[None] | None = None
        #: the container whose output `log_follower` copies
        self.log_container = ""
        #: the stop of the last container, while it runs (a restart waits for it)
        self.stopping: asyncio.Task[None] | None = None
        #: container ids orun itself is stopping (their exit is not a crash)
        self.expected_exits: set[str] = set()
        #: superseded instances draining before they stop, by container id
        self.retiring: dict[str, Retirement] = {}

    def crash_backoff(self, now: float) -> float:
        """Seconds to wait before starting a crashed app again: none after one crash,
        then 1, 2, 4 ... up to a minute after the last of the recent crashes."""
        if self.state != "crashed" or not self.crashes:
            return 0.0
        recent = [t for t in self.crashes if now - t < CRASH_WINDOW]
        if len(recent) <= 1:
            return 0.0
        delay = min(2.0 ** (len(recent) - 2), MAX_BACKOFF)
        return max(0.0, recent[-1] + delay - now)

    def public_text(self, text: str) -> str:
        """`text` without this app's container, image and volume names, engine ids and
        upstream address (for anonymous clients: log lines stay as they are)."""
        if not text:
            return text
        inst = self.current()
        known = (inst.name, inst.upstream, inst.image, inst.container_id,
                 inst.container_id[:12]) if inst else ()
        for name in (*known, self.lost_container, self.lost_container[:12], self.image):
            if name:
                text = text.replace(name, HIDDEN)
        if self._private is None:
            self._private = _private_pattern(self.app_id)
        return self._private.sub(HIDDEN, text)

    def current(self) -> Instance | None:
        """The app's container, serving or paused."""
        if self.instance is not None:
            return self.instance
        return self.paused.instance if self.paused is not None else None

    def status(self) -> dict[str, object]:
        inst = self.current()
        pool = inst.replicas if inst else None
        return {
            "state": self.state,
            # swarm mode: the healthy replicas requests are spread over, by address
            "replicas": [m.upstream for m in pool.members] if pool is not None else None,
            "image": inst.image if inst else self.image,
            "port": inst.port if inst else self.port,
            "upstream": inst.upstream if inst else "",
            "container": inst.name if inst else "",
            "version_running": inst.version if inst else None,
            "error": self.error,
            # traffic since orun started (the console turns it into requests/min)
            "requests": self.activity.requests,
            "last_request": wall_clock(self.activity.last) if self.activity.requests
            else None,
        }


def wall_clock(monotonic_time: float) -> float:
    """The epoch time of a `time.monotonic()` reading (for display)."""
    return time.time() - (time.monotonic() - monotonic_time)


def open_requests(inst: Instance) -> int:
    """Requests and websockets still open on `inst` (on any of its replicas)."""
    return inst.load.open + (inst.replicas.open_requests() if inst.replicas else 0)


def placement_of(app: App) -> tuple[int, tuple[str, ...]]:
    """`--conf container.replicas=N` (default 1) and `container.constraints=a==b,c!=d`
    (Swarm placement constraints, comma-separated); StartError when malformed."""
    conf = app.current.settings.app_config
    raw = conf.get("container.replicas", "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise StartError(f"--conf container.replicas={raw}: expected a whole number, 1 or "
                         "more (idle apps scale to 0 by themselves)", status=400)
    constraints = tuple(c.strip() for c in conf.get("container.constraints", "").split(",")
                        if c.strip())
    for c in constraints:
        if "==" not in c and "!=" not in c:
            raise StartError(f"--conf container.constraints: {c!r} is not a placement "
                             "constraint (e.g. node.role==worker, node.labels.zone!=b)",
                             status=400)
    return int(raw), constraints


def app_setting(app: App, key: str, default: float) -> float:
    """A numeric per-app override from `--conf key=value`, else `default`."""
    raw = app.current.settings.app_config.get(key)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


#: what a container's exit code says, for the exit codes that name a signal
_SIGNAL_EXITS = {137: "killed (SIGKILL: its memory limit, or `docker kill`)",
                 139: "crashed (SIGSEGV)", 134: "aborted (SIGABRT)",
                 143: "terminated (SIGTERM)"}
OOM_REASON = "ran out of memory and was killed at its memory limit (--copt memory)"


def exit_reason(exit_code: int | None) -> str:
    """How a container ended, in words: `exited with code 3`, or what a signal exit
    code means (137 is SIGKILL, usually the memory limit)."""
    if exit_code is None:
        return "exited"
    meaning = _SIGNAL_EXITS.get(exit_code)
    return f"exited with code {exit_code}" + (f": {meaning}" if meaning else "")


#: a failed start of unchanged inputs is tried again by a request only after this long,
#: doubled with each failure in a row, at most FAILED_RETRY_MAX_SECS
FAILED_RETRY_SECS = 10.0
FAILED_RETRY_MAX_SECS = 600.0


def failed_retry_delay(failures: int) -> float:
    """The backoff after `failures` failed starts of the same inputs in a row."""
    return float(min(FAILED_RETRY_MAX_SECS, FAILED_RETRY_SECS * 2.0 ** max(0, failures - 1)))


def config_key(config: Config) -> str:
    """The parts of the server config a build or start depends on (build args, the
    builder, the app defaults, what containers may be given): a change to any of them
    is a new input, so a remembered failure no longer applies."""
    return repr((config.builder, config.app_defaults, config.security.allowed_mounts,
                 config.security.allowed_container_args, config.system.container_engine))


def version_key(app: App) -> object:
    """What identifies an app version's inputs: a retried reload can reuse a version
    number with a different source, so the number alone is not enough."""
    v = app.current
    return (v.version, v.source_digest, v.spec_digest, v.settings)
