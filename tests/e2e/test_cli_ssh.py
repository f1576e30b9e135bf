"""The CLI over SSH (`--server ssh://root@host:port/orun-home`): commands reach a real
orun through a real OpenSSH server, with the user's keys and known_hosts; an unknown
host key, a key the server does not authorise and a path where no orun runs each end in
one clear error line."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncssh

from tests.conftest import Orun
from tests.sshd import run_sshd


async def test_cli_over_ssh(orun: Orun, site: Path, tmp_path: Path,
                            http: aiohttp.ClientSession) -> None:
    async with run_sshd(tmp_path / "sshd") as sshd:
        home = sshd.client_home(tmp_path / "client")
        url = f"ssh://root@127.0.0.1:{sshd.port}{orun.home}"
        env = {"HOME": str(home), "ORUN_SERVER": url, "SSH_AUTH_SOCK": ""}

        async def remote(*args: str, **extra: str) -> tuple[int, str, str]:
            result = await orun.cli(*args, env={**env, **extra})
            return result.code, result.out, result.err

        code, out, err = await remote("app", "create", "--spec", "static", str(site), "/via")
        assert code == 0, err
        async with http.get(orun.url("/via/")) as resp:
            assert resp.status == 200 and await resp.text() == "<h1>site</h1>"
        code, out, err = await remote("app", "list", "-f", "json")
        assert code == 0 and [a["app_path"] for a in json.loads(out)] == ["/via"]
        # the server saw a local caller: the SSH user, root
        rows = json.loads((await orun.cli("audit", "list", "-f", "json")).ok().out)
        assert any(r["action"] == "app.create" and r["actor"] == "local:0" for r in rows)

        # a relative source cannot name a folder on the server
        code, _, err = await remote("app", "create", "--spec", "static", "site", "/rel")
        assert err.strip() == ("error: source site: with --server, give an absolute path "
                               "on the server (or a git URL)")

        code, _, err = await remote("app", "list", ORUN_SERVER=f"{url}/nowhere")
        assert code == 1 and err.strip().startswith(
            f"error: cannot reach the orun server through {url}/nowhere")

        wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {wrong}")
        code, _, err = await remote("app", "list")
        assert code == 1 and err.strip().startswith(
            f"error: the SSH host key of 127.0.0.1:{sshd.port} is not known or has changed")

        (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        (home / ".ssh" / "id_ed25519").write_bytes(stranger.export_private_key())
        code, _, err = await remote("app", "list")
        assert err.strip() == (f"error: 127.0.0.1:{sshd.port} refused the SSH sign-in (no "
                               "key of yours from the agent or ~/.ssh is authorised there)")
