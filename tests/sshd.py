"""OpenSSH's sshd on loopback for tests: its own config, host key and authorized keys
under a temp folder, key-only root login, stream-local forwarding on (what `--server
ssh://` and remote engines use). `scripts/sshd` installs the binary."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator
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

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"

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


@contextlib.asynccontextmanager
async def run_sshd(folder: Path) -> AsyncIterator[Sshd]:
    if not SSHD.exists():
        pytest.fail("sshd is missing: run scripts/sshd (scripts/test does)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "AllowTcpForwarding yes", "AllowStreamLocalForwarding yes",
        "MaxSessions 50", "MaxStartups 50:30:100", ""]))
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    log = (folder / "sshd.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(SSHD), "-D", "-e", "-f", str(config), stdout=log, stderr=log,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.2):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"sshd did not listen: {(folder / 'sshd.log').read_text()}")
        public = " ".join((folder / "host_ed25519.pub").read_text().split()[:2])
        yield Sshd(port, public, client_key, folder)
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
