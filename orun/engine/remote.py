"""A Docker engine on another machine, reached over SSH (`ssh://user@host[:port]`).

The remote engine's API socket is bridged to a private local unix socket, so the Docker
client is the same as for a local engine. Containers publish their port on the remote
machine's loopback, and orun reaches each through a loopback port of its own carried over
the same SSH connection: nothing on the remote machine needs an open port besides sshd.
With `system.remote_publish_host` set, containers publish on that address of the remote
machine instead and orun connects to it directly (faster, but the port must be reachable
from orun and is reachable by whoever else can route to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path

from orun.engine.forward import PortForwards, UnixForward
from orun.engine.sshlink import SshLink, parse_ssh_url
from orun.errors import EngineError

#: where the remote Docker socket is when the URL names none (as Docker's ssh:// does)
REMOTE_DOCKER_SOCKET = "/var/run/docker.sock"


class RemoteDocker:
    """The SSH link, the bridged API socket and the container port forwards of one remote
    engine. `open()` connects (EngineError when it cannot), `close()` undoes everything."""

    def __init__(self, url: str, publish_host: str = "", keepalive_secs: float = 10.0) -> None:
        target = parse_ssh_url(url, what="system.container_engine")
        self.url = url
        self.publish_host = publish_host
        self.link = SshLink(target, keepalive_secs=keepalive_secs)
        self.remote_socket = target.path or REMOTE_DOCKER_SOCKET
        self._dir: Path | None = None
        self._api: UnixForward | None = None
        self.ports = PortForwards(self.link)

    @property
    def local_url(self) -> str:
        """The Docker client's URL: the local end of the bridged API socket."""
        assert self._api is not None, "RemoteDocker.open() was not called"
        return f"unix://{self._api.local_path}"

    async def open(self) -> None:
        try:
            # a private folder (0700) for the socket: the engine is root's to command
            self._dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="orun-engine-"))
            self._api = UnixForward(self.link, self._dir / "docker.sock", self.remote_socket)
            await self.link.connect()
            await self._api.start()
        except BaseException:
            await self.close()
            raise

    async def reach(self, published_port: int) -> tuple[str, int]:
        """Where orun connects to a container port published on the remote machine."""
        if self.publish_host:
            return self.publish_host, published_port
        return "127.0.0.1", await self.ports.local_port(published_port)

    async def retain_ports(self, published: set[int]) -> None:
        await self.ports.retain(published)

    def describe(self) -> dict[str, object]:
        """The link's state for `orun server status`-like reports."""
        return {"host": self.link.target.where, "connected": self.link.connected,
                "reconnects": self.link.reconnects, "error": self.link.last_error,
                "port_forwards": len(self.ports),
                "requests_via": self.publish_host or "ssh"}

    async def close(self) -> None:
        await self.ports.close()
        if self._api is not None:
            await self._api.close()
        await self.link.close()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(shutil.rmtree, self._dir, True)


def check_remote_url(url: str) -> None:
    """Raise EngineError when an ssh:// engine URL is malformed (config checks)."""
    target = parse_ssh_url(url, what="system.container_engine")
    if target.path and not target.path.startswith("/"):
        raise EngineError(f"system.container_engine {url}: the socket path must be absolute")


__all__ = ["REMOTE_DOCKER_SOCKET", "RemoteDocker", "check_remote_url"]
