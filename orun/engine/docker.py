"""The container engine, behind one narrow interface. The only module that imports aiodocker.

Docker and Podman (its Docker-compatible API) are both reached over their HTTP API on a
unix socket (or `tcp://`). Everything the builder and runtime need is a method here, so
the rest of orun never sees aiodocker's types or its exceptions: engine failures become
`EngineError` with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents
from aiodocker.exceptions import DockerError

from orun.engine.registry import push_problem, split_ref
from orun.engine.remote import RemoteDocker, check_remote_url
from orun.engine.stats import ContainerStats, parse_stats
from orun.engine.swarminfo import SwarmInfo, parse_swarm_info
from orun.errors import BuildError, EngineError

#: where engines listen when nothing says otherwise, in the order `auto` tries them
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def podman_sockets() -> tuple[str, ...]:
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return (f"{runtime_dir}/podman/podman.sock", "/run/podman/podman.sock")


NO_ENGINE_HELP = (
    "no container engine found: install and start Docker (e.g. `apt-get install docker.io` "
    "then start dockerd) or Podman (`podman system service --time=0`), or point "
    "system.container_engine in orun.yaml (or DOCKER_HOST) at its socket"
)


def swarm_target(setting: str) -> str | None:
    """For a swarm-mode setting (`swarm`, `swarm+<url>`), the manager's own engine
    setting; None when the setting is not swarm mode."""
    value = setting.strip()
    if value == "swarm":
        return "auto"
    if value.startswith("swarm+"):
        return value.removeprefix("swarm+")
    return None


def resolve_engine_url(setting: str) -> str | None:
    """The API URL for `system.container_engine`; None when no engine is configured/found.

    `auto`: DOCKER_HOST, else the Docker socket, else a Podman socket. `docker`/`podman`:
    that engine's usual sockets. `unix:///path` or `tcp://host:port`: used as is.
    `ssh://[user@]host[:port][/socket]`: a remote engine over SSH. `none` (or empty)
    disables containers.
    """
    value = swarm_target(setting) or setting.strip()
    if value in ("", "none", "disabled"):
        return None
    if "://" in value:
        if value.startswith("ssh://"):
            check_remote_url(value)
        return value
    if value == "auto":
        env = os.environ.get("DOCKER_HOST", "").strip()
        if env:
            if env.startswith("ssh://"):
                check_remote_url(env)
            return env
        candidates: tuple[str, ...] = DOCKER_SOCKETS + podman_sockets()
    elif value == "docker":
        candidates = DOCKER_SOCKETS
    elif value == "podman":
        candidates = podman_sockets()
    elif value.startswith("/"):
        candidates = (value,)
    else:
        raise EngineError(f"system.container_engine: {value!r} is not auto, docker, podman, "
                          "none, a socket path or a unix:// or tcp:// URL")
    for path in candidates:
        if Path(path).is_socket():
            return f"unix://{path}"
    return None


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What orun needs to know about one container."""

    id: str
    name: str
    #: created, running, paused, restarting, removing, exited, dead
    state: str
    labels: Mapping[str, str]
    image: str
    #: the port the container port is published on (on the engine's machine), when running
    host_port: int | None = None
    exit_code: int | None = None
    status: str = ""
    #: the address `host_port` is published on, where the engine knows it (a Swarm task's
    #: node); "" = the engine's machine
    host_ip: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def paused(self) -> bool:
        """Frozen by `pause`: its processes and memory are kept, it gets no CPU."""
        return self.state == "paused"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: int
    size: int


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """A container event: `action` is Docker's (start, die, stop, kill, oom, destroy...)."""

    action: str
    container_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    exit_code: int | None = None


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


def _first_line(exc: DockerError) -> str:
    text = str(exc.message or "").strip()
    return text.splitlines()[0] if text else f"engine error {exc.status}"


#: how often a remote engine's port forwards are checked against its published ports
FORWARD_PRUNE_SECS = 60.0
#: the longest a plain (non-streaming) API call may take
API_TIMEOUT_SECS = 30.0
#: push stream statuses that only report progress (one line per layer per tick)
_PUSH_PROGRESS = frozenset({"Preparing", "Waiting", "Pushing"})


class EngineAPIError(EngineError):
    """An Engine API call failed: `code` is the engine's HTTP status (0 when the engine
    did not answer) and `reason` the first line of what it said. Modules that call the
    API directly (the swarm layer) turn it into a message that says what to do."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Engine:
    """A connected engine. Create with `Engine.connect()`; close with `close()`."""

    def __init__(self, client: aiodocker.Docker, url: str, kind: str, version: str,
                 remote: RemoteDocker | None = None, *, prune_forwards: bool = True) -> None:
        self._client = client
        self.url = url
        #: "docker" or "podman" (decides which `--copt engine.<flag>` options apply)
        self.kind = kind
        self.version = version
        #: set for an engine on another machine (reached over SSH)
        self.remote = remote
        self._pruner: asyncio.Task[None] | None = None
        if remote is not None and not remote.publish_host and prune_forwards:
            self._pruner = asyncio.get_running_loop().create_task(
                self._prune_forwards(), name="orun.engine.forwards")

    @classmethod
    async def connect(cls, setting: str, *, publish_host: str = "",
                      ssh_keepalive_secs: float = 10.0) -> Engine:
        """Connect to the engine `setting` names; `publish_host` is the remote machine's
        address containers publish on when the engine is remote (else its loopback,
        reached through the SSH connection)."""
        url = resolve_engine_url(setting)
        if url is None:
            raise EngineError(NO_ENGINE_HELP)
        remote: RemoteDocker | None = None
        api_url = url
        if url.startswith("ssh://"):
            remote = RemoteDocker(url, publish_host, keepalive_secs=ssh_keepalive_secs)
            await remote.open()
            api_url = remote.local_url
        try:
            client = aiodocker.Docker(url=api_url)
        except (ValueError, DockerError) as exc:
            if remote is not None:
                await remote.close()
            raise EngineError(f"container engine {url}: {exc}") from None
        try:
            info = await client.version()
        except (DockerError, aiohttp.ClientError, OSError) as exc:
            await client.close()
            if remote is not None:
                await remote.close()
                raise EngineError(f"container engine {url}: the Docker API at "
                                  f"{remote.remote_socket} there does not answer ({exc}); is "
                                  "Docker running there, and may the SSH user use its "
                                  "socket?") from None
            raise EngineError(f"container engine at {url} does not answer ({exc}); "
                              "is it running? " + NO_ENGINE_HELP) from None
        names = " ".join(str(c.get("Name", "")) for c in info.get("Components") or [])
        kind = "podman" if "podman" in names.lower() else "docker"
        return cls(client, url, kind, str(info.get("Version", "")), remote)

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        await self._client.close()
        if self.remote is not None:
            await self.remote.close()

    # -- where containers are reached ------------------------------------------------

    @property
    def publish_ip(self) -> str:
        """The address (on the engine's machine) containers publish their port on."""
        if self.remote is not None and self.remote.publish_host:
            return self.remote.publish_host
        return "127.0.0.1"

    async def reach(self, info: ContainerInfo) -> tuple[str, int]:
        """The (host, port) orun connects to for the container's published port:
        loopback for a local engine; for a remote one the publish host, or a loopback
        port carried over the SSH connection."""
        if info.host_port is None:
            raise EngineError(f"container {info.name} publishes no port ({info.status})")
        if self.remote is None:
            return "127.0.0.1", info.host_port
        return await self.remote.reach(info.host_port)

    async def _prune_forwards(self) -> None:
        """Close the port forwards no container publishes any more (each start of a
        container publishes a new port; without this they would pile up)."""
        assert self.remote is not None
        while True:
            await asyncio.sleep(FORWARD_PRUNE_SECS)
            try:
                items = await self._client.containers.list(all=True)
            except (DockerError, aiohttp.ClientError, OSError):
                continue  # the link is down: try again later, keep everything
            published = {int(port["PublicPort"]) for item in items
                         for port in item["Ports"] or ()
                         if port.get("PublicPort")}
            await self.remote.retain_ports(published)

    async def ping(self) -> None:
        try:
            await self._client.version()
        except (DockerError, aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"container engine at {self.url} does not answer: {exc}") from None

    # -- the raw API (for endpoints this class does not wrap) -------------------

    async def api(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                  body: Any = None, timeout: float = API_TIMEOUT_SECS) -> Any:
        """One Engine API call with a JSON body (or none); its decoded JSON answer (""
        when it has none). Failures raise `EngineAPIError`."""
        data = json.dumps(body) if body is not None else None
        try:
            return await self._client._query_json(
                path, method, params=dict(params or {}), data=data,
                timeout=aiohttp.ClientTimeout(total=timeout))
        except DockerError as exc:
            if exc.status == 900:  # aiodocker's code for a connection failure
                raise EngineAPIError(0, f"the engine at {self.url} does not answer "
                                        f"({_first_line(exc)})") from None
            raise EngineAPIError(exc.status, _first_line(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineAPIError(0, f"the engine at {self.url} does not answer "
                                    f"({exc or type(exc).__name__})") from None

    async def api_frames(self, path: str, *, params: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> AsyncIterator[tuple[int, bytes]]:
        """A GET whose answer is a multiplexed output stream (logs of a container
        without a TTY, or of a service): (stream, payload) per frame, stream 1 being
        stdout and 2 stderr, until the engine ends the stream. Failures raise
        `EngineAPIError`."""
        client_timeout = aiohttp.ClientTimeout(total=timeout, sock_read=None)
        try:
            async with self._client._query(path, "GET", params=dict(params or {}),
                                           timeout=client_timeout) as response:
                while True:
                    try:
                        header = await response.content.readexactly(8)
                        stream, length = struct.unpack(">BxxxL", header)
                        payload = await response.content.readexactly(length)
                    except asyncio.IncompleteReadError:
                        return
                    yield stream, payload
        except DockerError as exc:
            code = 0 if exc.status == 900 else exc.status
            raise EngineAPIError(code, _first_line(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EngineAPIError(0, f"the engine at {self.url} does not answer "
                                    f"({exc or type(exc).__name__})") from None

    async def swarm_info(self) -> SwarmInfo:
        """This engine's swarm membership (whether it is an active manager, its node id,
        how many nodes and managers the swarm has), from `GET /info`."""
        try:
            info = await self._client.system.info()
        except DockerError as exc:
            raise EngineError(f"cannot read the engine's info: {_first_line(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"container engine at {self.url} does not answer: {exc}") from None
        return parse_swarm_info(info)

    # -- images ----------------------------------------------------------------

    async def image_exists(self, ref: str) -> bool:
        try:
            await self._client.images.inspect(ref)
        except DockerError as exc:
            if exc.status == 404:
                return False
            raise EngineError(f"cannot inspect image {ref}: {_first_line(exc)}") from None
        return True

    async def image_user(self, ref: str) -> str:
        """The user an image runs as (`USER`; empty means root)."""
        try:
            data = await self._client.images.inspect(ref)
        except DockerError as exc:
            raise EngineError(f"cannot inspect image {ref}: {_first_line(exc)}") from None
        return str((data.get("Config") or {}).get("User") or "")

    async def pull(self, ref: str, on_line: Callable[[str], None]) -> None:
        """Pull an image from its registry (used for image-spec apps whose image is absent)."""
        try:
            async for item in self._client.images.pull(ref, stream=True):
                if "error" in item:
                    raise EngineError(f"error pulling image {ref}: {item['error']}")
                status = item.get("status")
                if status and "id" not in item:
                    on_line(str(status))
        except DockerError as exc:
            raise EngineError(f"error pulling image {ref}: {_first_line(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"error pulling image {ref}: {exc}") from None

    async def tag(self, image: str, repo: str, tag: str) -> None:
        """Give the image `image` (a name or id) the name `repo:tag` too."""
        try:
            await self._client.images.tag(image, repo, tag=tag)
        except DockerError as exc:
            if exc.status == 404:
                raise EngineError(f"no image {image} on the engine at {self.url} "
                                  "to tag") from None
            raise EngineError(f"cannot tag {image} as {repo}:{tag}: "
                              f"{_first_line(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"container engine at {self.url} does not answer: {exc}") from None

    async def push(self, ref: str, on_line: Callable[[str], None]) -> str:
        """Push `ref` (`registry/name:tag`) to its registry; the pushed manifest's digest
        (`sha256:...`), which is what swarm services name so every node runs the same
        image. The engine reports failures inside the stream; they become one-line
        `EngineError`s that say what to fix (see `push_problem`)."""
        name, tag = split_ref(ref)
        digest = ""
        try:
            async for item in self._client.images.push(name, tag=tag, stream=True):
                error = item.get("error") or (item.get("errorDetail") or {}).get("message")
                if error:  # older aiodocker yields the error item instead of raising
                    raise EngineError(push_problem(str(error), ref, self.url))
                aux = item.get("aux")
                if isinstance(aux, Mapping) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                status = str(item.get("status") or "")
                if status and status not in _PUSH_PROGRESS:
                    on_line(f"{item['id']}: {status}" if item.get("id") else status)
        except DockerError as exc:
            raise EngineError(push_problem(_first_line(exc), ref, self.url)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"lost the container engine at {self.url} while pushing "
                              f"{ref}: {exc}") from None
        if not digest:
            digest = await self._repo_digest(f"{name}:{tag}", name)
        if not digest.startswith("sha256:"):
            raise EngineError(f"pushed {ref} but the engine at {self.url} reported no digest")
        return digest

    async def _repo_digest(self, ref: str, name: str) -> str:
        """The digest the engine recorded for image `ref` in repository `name` (after a
        push), or ""."""
        with contextlib.suppress(DockerError, aiohttp.ClientError, OSError):
            data = await self._client.images.inspect(ref)
            for entry in data.get("RepoDigests") or ():
                repo, _, digest = str(entry).partition("@")
                if repo == name:
                    return digest
        return ""

    async def build(self, context_tar: Path, *, tag: str, dockerfile: str,
                    build_args: Mapping[str, str], labels: Mapping[str, str],
                    on_line: Callable[[str], None], nocache: bool = False) -> None:
        """Build `context_tar` into `tag` with the classic builder, streaming the log.

        The engine reports a failed step inside the stream, not as an HTTP error, so the
        stream is read to its end and an `error` item becomes a `BuildError` carrying the
        last lines of the log.
        """
        tail: list[str] = []

        def emit(text: str) -> None:
            for line in text.splitlines():
                on_line(line)
                tail.append(line)
                if len(tail) > 60:
                    del tail[:20]

        error: str | None = None
        try:
            with context_tar.open("rb") as fileobj:
                stream = self._client.images.build(
                    fileobj=fileobj, path_dockerfile=dockerfile, tag=tag,
                    buildargs=dict(build_args), labels=dict(labels), rm=True, forcerm=True,
                    stream=True, encoding="identity", nocache=nocache,
                )
                async for item in stream:
                    if "stream" in item:
                        emit(str(item["stream"]).rstrip("\n"))
                    elif "status" in item:
                        emit(str(item["status"]))
                    if "error" in item or "errorDetail" in item:
                        detail = item.get("errorDetail") or {}
                        error = str(item.get("error") or detail.get("message") or "build failed")
                        emit(error)
        except DockerError as exc:
            error = _first_line(exc)
            emit(error)
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineError(f"lost the container engine during the build: {exc}") from None
        if error is not None:
            raise BuildError(f"error building image: {error}", log_tail="\n".join(tail[-40:]))

    async def list_images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        try:
            items = await self._client.images.list(
                filters=json.dumps({"label": _label_filter(labels)}))
        except DockerError as exc:
            raise EngineError(f"cannot list images: {_first_line(exc)}") from None
        return [ImageInfo(str(i["Id"]), tuple(t for t in i.get("RepoTags") or ()
                                             if t != "<none>:<none>"),
                          dict(i.get("Labels") or {}), int(i.get("Created", 0)),
                          int(i.get("Size", 0))) for i in items]

    async def remove_image(self, ref: str) -> bool:
        """Remove an image; False when it is in use or already gone."""
        try:
            await self._client.images.delete(ref, force=False, noprune=False)
        except DockerError as exc:
            if exc.status in (404, 409):
                return False
            raise EngineError(f"cannot remove image {ref}: {_first_line(exc)}") from None
        return True

    # -- volumes ---------------------------------------------------------------

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the named volume if missing; True when it already existed."""
        try:
            await self._client.volumes.get(name)  # type: ignore[no-untyped-call]
            return True
        except DockerError as exc:
            if exc.status != 404:
                raise EngineError(f"cannot inspect volume {name}: {_first_line(exc)}") from None
        try:
            await self._client.volumes.create({"Name": name, "Labels": dict(labels)})  # type: ignore[no-untyped-call]
        except DockerError as exc:
            raise EngineError(f"cannot create volume {name}: {_first_line(exc)}") from None
        return False

    # -- containers --------------------------------------------------------------

    async def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        try:
            container = await self._client.containers.create(dict(body), name=name)
        except DockerError as exc:
            raise EngineError(f"cannot create container {name}: {_first_line(exc)}") from None
        return str(container.id)

    async def start(self, container_id: str) -> None:
        try:
            await self._client.containers.container(container_id).start()
        except DockerError as exc:
            raise EngineError(f"cannot start container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def stop(self, container_id: str, timeout: int = 5) -> None:
        try:
            await self._client.containers.container(container_id).stop(t=timeout)
        except DockerError as exc:
            if exc.status in (304, 404):
                return
            raise EngineError(f"cannot stop container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the container (cgroup freezer): memory, sockets and
        open connections stay, CPU use drops to zero. Tens of milliseconds either way.
        One that is already paused is left so (the result is what was asked)."""
        try:
            await self._client.containers.container(container_id).pause()
        except DockerError as exc:
            if "already paused" in str(exc.message or "").lower():
                return
            raise EngineError(f"cannot pause container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def unpause(self, container_id: str) -> bool:
        """Thaw a paused container; False when it was not paused (Docker answers 500
        "is not paused" for a running and for a stopped one alike: the caller looks),
        so a thaw that races with another is harmless. A missing one is an error."""
        try:
            await self._client.containers.container(container_id).unpause()
        except DockerError as exc:
            if "not paused" in str(exc.message or "").lower():
                return False
            raise EngineError(f"cannot unpause container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None
        return True

    async def restart(self, container_id: str, timeout: int = 0) -> None:
        """Stop (killing after `timeout` seconds) and start again: same container, same
        writable layer, maybe another host port."""
        try:
            await self._client.containers.container(container_id).restart(t=timeout)
        except DockerError as exc:
            raise EngineError(f"cannot restart container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def remove(self, container_id: str) -> None:
        try:
            await self._client.containers.container(container_id).delete(force=True, v=False)
        except DockerError as exc:
            if exc.status in (404, 409):
                return
            raise EngineError(f"cannot remove container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def image_size(self, ref: str) -> int:
        """The image's size in bytes (all its layers)."""
        try:
            data = await self._client.images.inspect(ref)
        except DockerError as exc:
            raise EngineError(f"cannot inspect image {ref}: {_first_line(exc)}") from None
        return int(data.get("Size", 0))

    async def stats(self, container_id: str, timeout: float = 10.0) -> ContainerStats | None:
        """One CPU and memory reading of a running or paused container (the engine takes
        about a second to answer: it measures the CPU over that time). None when the
        container is gone or reports nothing."""
        try:
            data = await self._client.containers.container(container_id).stats(
                stream=False, timeout=timeout)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise EngineError(f"cannot read stats of container {container_id[:12]}: "
                              f"{_first_line(exc)}") from None
        if not data or not isinstance(data[0], Mapping):
            return None
        return parse_stats(data[0])

    async def inspect(self, ref: str) -> ContainerInfo | None:
        try:
            data = await self._client.containers.container(ref).show()
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise EngineError(f"cannot inspect container {ref}: {_first_line(exc)}") from None
        return _container_info(data)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of `labels`, fully inspected."""
        try:
            items = await self._client.containers.list(
                all=True, filters=json.dumps({"label": _label_filter(labels)}))
        except DockerError as exc:
            raise EngineError(f"cannot list containers: {_first_line(exc)}") from None
        infos = await asyncio.gather(*(self.inspect(c.id) for c in items))
        return [i for i in infos if i is not None]

    async def logs(self, container_id: str, *, since: float = 0,
                   follow: bool = True) -> AsyncIterator[str]:
        """Container output (stdout and stderr), line by line, following by default."""
        container = self._client.containers.container(container_id)
        try:
            if follow:
                async for chunk in container.log(stdout=True, stderr=True, follow=True,
                                                 since=f"{since:.6f}"):
                    yield chunk
            else:
                for chunk in await container.log(stdout=True, stderr=True,
                                                 since=f"{since:.6f}"):
                    yield chunk
        except DockerError as exc:
            if exc.status == 404:
                return
            raise EngineError(f"cannot read logs of {container_id[:12]}: "
                              f"{_first_line(exc)}") from None

    async def events(self, labels: Mapping[str, str]) -> AsyncIterator[EngineEvent]:
        """Container events for containers with `labels`, until the stream drops.

        The caller reconnects (with backoff) and resynchronises by listing containers,
        because events that happened while disconnected are not replayed.
        """
        events = DockerEvents(self._client)  # type: ignore[no-untyped-call]
        subscriber = events.subscribe(filters=json.dumps(  # type: ignore[no-untyped-call]
            {"type": ["container"], "label": _label_filter(labels)}))
        try:
            while True:
                item = await subscriber.get()
                if item is None:
                    return
                actor = item.get("Actor") or {}
                attributes = dict(actor.get("Attributes") or {})
                code = attributes.get("exitCode")
                yield EngineEvent(
                    action=str(item.get("Action") or item.get("status") or "").split(":")[0],
                    container_id=str(actor.get("ID") or item.get("id") or ""),
                    labels=attributes,
                    exit_code=int(code) if code is not None and str(code).isdigit() else None,
                )
        finally:
            await events.stop()  # type: ignore[no-untyped-call]


def _container_info(data: Mapping[str, Any]) -> ContainerInfo:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    host_port: int | None = None
    for bindings in ports.values():
        for binding in bindings or ():
            port = str(binding.get("HostPort") or "")
            if port.isdigit():
                host_port = int(port)
                break
        if host_port is not None:
            break
    status = str(state.get("Status") or "")
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=str(data.get("Id", "")), name=str(data.get("Name", "")).lstrip("/"),
        state=status, labels=dict(config.get("Labels") or {}),
        image=str(config.get("Image", "")), host_port=host_port,
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        status=f"{status} ({exit_code})" if status == "exited" else status,
    )
