"""One SSH connection to a remote machine, kept up: signs in as `ssh` would, reconnects
with backoff when it drops, and opens channels to the remote side's sockets.

Signing in follows OpenSSH's habits so nothing new has to be learnt: keys come from the
SSH agent and `~/.ssh`, `~/.ssh/config` applies (User, Port, IdentityFile...), and the
host key must be in `~/.ssh/known_hosts`. An unknown or changed host key is refused with
a message that says how to trust it; orun never adds one by itself.

The connection is the only thing that comes and goes: the local listeners that bridge to
it (orun/engine/forward.py) stay open across reconnects, so the Docker client and the
proxy's upstream addresses never change. Opening a channel while the link is down waits
for the reconnection (a bounded time) instead of failing at once: a cut of a second or
two under load costs delays, not errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncssh
import structlog
from asyncssh.encryption import get_default_encryption_algs

from orun.errors import EngineError

log = structlog.get_logger("orun.engine.ssh")

CONNECT_TIMEOUT_SECS = 15.0
#: reconnect delays grow from the first to the last
BACKOFF_SECS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: how long opening a channel waits for a dropped link to come back
CHANNEL_WAIT_SECS = 10.0

#: ciphers in the order offered: AES-GCM first (one AEAD call per packet, AES-NI), which
#: moves more requests per CPU second through the link than asyncssh's default
#: chacha20-poly1305 (two calls); the rest of asyncssh's list follows for older servers
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where an `ssh://[user@]host[:port][/socket-path]` URL points."""

    host: str
    port: int | None
    user: str | None
    #: the remote path of the URL ("" when none)
    path: str

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port or 22}"


def parse_ssh_url(url: str, *, what: str, path_name: str = "path") -> SshTarget:
    """The target of an ssh:// URL; `what` names the setting in the error, `path_name`
    what the URL's path means there."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise EngineError(f"{what} {url}: expected ssh://[user@]host[:port][/{path_name}]")
    try:
        port = parts.port
    except ValueError:
        raise EngineError(f"{what} {url}: invalid port") from None
    if parts.query or parts.fragment:
        raise EngineError(f"{what} {url}: no ?query or #fragment allowed")
    path = unquote(parts.path) if parts.path not in ("", "/") else ""
    return SshTarget(parts.hostname, port, unquote(parts.username) if parts.username
                     else None, path)


def describe_connect_error(exc: BaseException, where: str) -> str:
    """What went wrong signing in to `where`, and what to do, in one line."""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return (f"the SSH host key of {where} is not known or has changed ({exc.reason}): "
                "check its fingerprint and add it to ~/.ssh/known_hosts (ssh to it once)")
    if isinstance(exc, asyncssh.PermissionDenied):
        return (f"{where} refused the SSH sign-in (no key of yours from the agent or ~/.ssh is "
                "authorised there)")
    if isinstance(exc, asyncssh.DisconnectError):
        return f"SSH connection to {where} failed: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return f"cannot reach {where} over SSH: no answer within {CONNECT_TIMEOUT_SECS:g}s"
    reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
    return f"cannot reach {where} over SSH: {reason}"


class SshLink:
    """A kept-up SSH connection. `connect()` signs in once (raising `EngineError` when it
    cannot), then a supervisor task owned by the link reconnects whenever it drops, until
    `close()`."""

    def __init__(self, target: SshTarget, *, keepalive_secs: float = 10.0,
                 on_state: Callable[[bool, str], None] | None = None) -> None:
        self.target = target
        self._keepalive_secs = keepalive_secs
        self._on_state = on_state
        self._conn: asyncssh.SSHClientConnection | None = None
        self._up = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        #: times the link was re-established after a drop
        self.reconnects = 0
        self.last_error = ""

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def connect(self) -> None:
        self._conn = await self._sign_in()
        self._up.set()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"orun.engine.ssh.{self.target.where}")

    async def _sign_in(self) -> asyncssh.SSHClientConnection:
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECS,
            # a dead peer (cable pulled, machine gone) is noticed in about 3 intervals
            "keepalive_interval": self._keepalive_secs, "keepalive_count_max": 3,
            "encryption_algs": [*PREFERRED_CIPHERS, *(
                name for name in (a.decode() for a in get_default_encryption_algs())
                if name not in PREFERRED_CIPHERS)],
        }
        if self.target.port is not None:
            options["port"] = self.target.port
        if self.target.user:
            options["username"] = self.target.user
        try:
            return await asyncssh.connect(self.target.host, **options)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise EngineError(describe_connect_error(exc, self.target.where)) from None

    async def _supervise(self) -> None:
        """Wait for the connection to drop, then sign in again with growing delays."""
        while True:
            conn = self._conn
            assert conn is not None
            await conn.wait_closed()
            if self._closed:
                return
            self._up.clear()
            self._conn = None
            self.last_error = "the SSH connection dropped"
            log.warning("engine_ssh_lost", host=self.target.where)
            self._notify(False)
            attempt = 0
            while not self._closed:
                await asyncio.sleep(BACKOFF_SECS[min(attempt, len(BACKOFF_SECS) - 1)])
                attempt += 1
                try:
                    self._conn = await self._sign_in()
                except EngineError as exc:
                    self.last_error = exc.message
                    log.warning("engine_ssh_reconnect_failed", host=self.target.where,
                                attempt=attempt, error=exc.message)
                    continue
                self.reconnects += 1
                self.last_error = ""
                self._up.set()
                log.info("engine_ssh_reconnected", host=self.target.where, attempts=attempt)
                self._notify(True)
                break

    def _notify(self, up: bool) -> None:
        if self._on_state is not None:
            self._on_state(up, self.last_error)

    async def connection(self, wait: float = CHANNEL_WAIT_SECS) -> asyncssh.SSHClientConnection:
        """The live connection; waits up to `wait` seconds for a dropped one to return."""
        if not self._up.is_set():
            if self._closed:
                raise EngineError(f"the SSH connection to {self.target.where} is closed")
            try:
                await asyncio.wait_for(self._up.wait(), wait)
            except TimeoutError:
                raise EngineError(f"the SSH connection to {self.target.where} is down "
                                  f"({self.last_error or 'reconnecting'})") from None
        assert self._conn is not None
        return self._conn

    async def open_tcp(self, factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
                       host: str, port: int) -> asyncssh.SSHTCPChannel[bytes]:
        """A channel to `host:port` as seen from the remote machine."""
        conn = await self.connection()
        try:
            channel, _ = await conn.create_connection(factory, host, port)
        except (OSError, asyncssh.Error) as exc:
            raise EngineError(f"{self.target.where} cannot open {host}:{port}: "
                              f"{getattr(exc, 'reason', None) or exc}") from None
        return channel

    async def open_unix(self, factory: Callable[[], asyncssh.SSHUNIXSession[bytes]],
                        path: str) -> asyncssh.SSHUNIXChannel[bytes]:
        """A channel to the remote machine's unix socket at `path`."""
        conn = await self.connection()
        try:
            channel, _ = await conn.create_unix_connection(factory, path)
        except (OSError, asyncssh.Error) as exc:
            raise EngineError(f"{self.target.where} cannot open {path}: "
                              f"{getattr(exc, 'reason', None) or exc}") from None
        return channel

    async def run(self, command: str, timeout: float = CONNECT_TIMEOUT_SECS) -> str:
        """A command's standard output on the remote machine (EngineError when it fails)."""
        conn = await self.connection()
        try:
            result = await conn.run(command, check=False, timeout=timeout)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise EngineError(f"{self.target.where}: {command!r} failed: {exc}") from None
        if result.exit_status != 0:
            raise EngineError(f"{self.target.where}: {command!r} failed: "
                              f"{str(result.stderr or '').strip()[:200]}")
        return str(result.stdout or "")

    def drop(self) -> None:
        """Close the current connection as if it had been cut (the supervisor reconnects).
        For tests and for `orun engine reconnect`-like operations."""
        if self._conn is not None:
            self._conn.close()

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn, self._conn = self._conn, None
        self._up.clear()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
