"""`orun --server ssh://[user@]host[:port][/orun-home]`: the CLI over SSH.

An alternative to HTTPS and API tokens for people who can already log in to the server's
machine: the CLI signs in with asyncssh (keys from the SSH agent or `~/.ssh`, the host
checked against `~/.ssh/known_hosts`, as `ssh` does), and forwards a private local unix
socket to the remote orun's admin socket, `<orun home>/run/orun.sock`. The remote home
is the URL's path, else the remote user's `$ORUN_HOME`, else `~/.orun`. Everything else
is the local admin client, unchanged: the remote server sees a local caller, the SSH
user, and admits it only when that user may open its socket (the server's own user or
root).

asyncssh is asynchronous and the CLI is not, so the connection lives on an event loop in
a daemon thread for the life of the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import asyncssh

from orun.engine.sshlink import describe_connect_error, parse_ssh_url
from orun.errors import OrunError

CONNECT_TIMEOUT_SECS = 15.0


class SshTunnel:
    """One SSH connection forwarding a local socket to a remote orun's admin socket."""

    def __init__(self, url: str) -> None:
        self.url = url
        target = parse_ssh_url(url, what="--server", path_name="orun-home")
        self.host, self.port, self.user = target.host, target.port or 22, target.user
        self.home = target.path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="orun-ssh",
                                        daemon=True)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="orun-ssh-"))  # 0700: ours alone
        self.local_socket = self._dir / "orun.sock"
        self.remote_socket = ""

    def open(self) -> Path:
        """Connect and forward; the local socket's path. OrunError on any failure."""
        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            future.result(CONNECT_TIMEOUT_SECS + 5)
        except OrunError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise OrunError(f"cannot reach {self.host}:{self.port} over SSH: no answer "
                            f"within {CONNECT_TIMEOUT_SECS:g}s") from None
        return self.local_socket

    async def _open(self) -> None:
        options: dict[str, Any] = {"port": self.port, "connect_timeout": CONNECT_TIMEOUT_SECS}
        if self.user:
            options["username"] = self.user
        where = f"{self.host}:{self.port}"
        try:
            self._conn = await asyncssh.connect(self.host, **options)
        except (OSError, asyncssh.Error) as exc:
            raise OrunError(describe_connect_error(exc, where)) from None
        home = self.home or await self._remote_home()
        self.remote_socket = f"{home.rstrip('/')}/run/orun.sock"
        await self._conn.forward_local_path(str(self.local_socket), self.remote_socket)

    async def _remote_home(self) -> str:
        assert self._conn is not None
        result = await self._conn.run('printf %s "${ORUN_HOME:-$HOME/.orun}"',
                                      check=False, timeout=CONNECT_TIMEOUT_SECS)
        home = str(result.stdout or "").strip()
        if result.exit_status != 0 or not home.startswith("/"):
            raise OrunError(f"cannot find orun's home on {self.host}: give it in the URL "
                            f"(ssh://{self.host}/path/to/orun-home)")
        return home

    def describe(self) -> str:
        return f"{self.url} ({shlex.quote(self.remote_socket)} there)"

    def close(self) -> None:
        """Close the connection and remove the local socket (asyncssh leaves it)."""
        async def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()

        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(shut(), self._loop)
            # the command's outcome matters more than a clean close
            with contextlib.suppress(Exception):
                future.result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self.local_socket.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._dir.rmdir()
