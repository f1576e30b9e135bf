"""OpenSSH's sshd for tests: its own config, host key and authorized keys under a temp
folder, key-only root login, stream-local forwarding on (what `--server ssh://` and
remote engines use). By default on loopback; tests/netnodes.py runs one inside each
node's namespaces (an argv prefix that enters them, the node's address, port 22).
`scripts/sshd` installs the binary."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True, slots=True)
class Sshd:
    port: int
    host_public_key: str  # "type base64"
    client_key: Path  # private key authorised for root
    folder: Path
    host: str = "127.0.0.1"
    #: the listening sshd's process id (its per-connection children are what a test
    #: kills to cut sessions)
    pid: int = 0

    def known_hosts_line(self) -> str:
        where = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{where} {self.host_public_key}\n"

    def client_home(self, home: Path) -> Path:
        """A HOME whose ~/.ssh has the client key and trusts this server."""
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ssh / "id_ed25519"
        key.write_bytes(self.client_key.read_bytes())
        key.chmod(0o600)
        (ssh / "known_hosts").write_text(self.known_hosts_line())
        return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _keygen(path: Path) -> None:
    for old in (path, path.with_name(path.name + ".pub")):  # a reused folder: new keys
        old.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"ssh-keygen failed: {out.decode(errors='replace').strip()}")


async def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError, TimeoutError):
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


@contextlib.asynccontextmanager
async def run_sshd(folder: Path, *, host: str = "127.0.0.1", port: int = 0,
                   enter: Sequence[str] = ()) -> AsyncIterator[Sshd]:
    """sshd listening on host:port (port 0: a free loopback port). `enter` is an argv
    prefix that runs it in other namespaces (e.g. nsenter into a test node); that
    namespace must provide sshd's privilege-separation folder /run/sshd (on the host it
    is made here)."""
    if not SSHD.exists():
        pytest.fail("sshd is missing: run scripts/sshd (scripts/test does)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    await asyncio.gather(_keygen(host_key), _keygen(client_key))
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = port or _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {host}", f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "AllowTcpForwarding yes", "AllowStreamLocalForwarding yes",
        "MaxSessions 50", "MaxStartups 50:30:100", ""]))
    if not enter:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    log = (folder / "sshd.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *enter, str(SSHD), "-D", "-e", "-f", str(config), stdout=log, stderr=log,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            if await _answers(host, port):
                break
            if proc.returncode is not None:
                pytest.fail(f"sshd exited: {(folder / 'sshd.log').read_text()}")
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"sshd did not listen: {(folder / 'sshd.log').read_text()}")
        public = " ".join((folder / "host_ed25519.pub").read_text().split()[:2])
        yield Sshd(port, public, client_key, folder, host, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
