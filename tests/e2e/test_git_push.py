"""`git push` deploys through orun's SSH server, with the real git and OpenSSH clients:
a push creates a flask app (build log on the pusher's terminal), the next push is staged,
`-o promote` promotes, a failing build is rejected with uv's error while the old version
keeps serving, a key outside the app's scope and an unknown host key are refused, and
nothing but git-receive-pack is offered."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from tests.conftest import Orun
from tests.e2e.test_containers import get, own_orun

pytestmark = pytest.mark.timeout(300)

APPS = Path(__file__).resolve().parent.parent / "apps"


class Pusher:
    """A git work tree and an SSH identity that pushes to one orun."""

    def __init__(self, tmp: Path, server: Orun, key_name: str) -> None:
        self.tmp = tmp
        self.server = server
        self.key = tmp / f"{key_name}_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key_name,
                        "-f", str(self.key)], check=True)
        info = json.loads((server.home / "run" / "server.json").read_text())
        self.port = int(info["ssh_port"])
        host_key = asyncssh.read_private_key(str(server.home / "ssh" / "host_ed25519"))
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} "
                                    f"{host_key.export_public_key().decode()}")
        self.work = tmp / f"work_{key_name}"

    def env(self, known_hosts: Path | None = None) -> dict[str, str]:
        ssh = (f"ssh -i {self.key} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=yes "
               f"-o UserKnownHostsFile={known_hosts or self.known_hosts}")
        return {"PATH": os.environ["PATH"], "HOME": str(self.tmp), "GIT_SSH_COMMAND": ssh,
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@x"}

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.work, check=True, env=self.env(),
                       capture_output=True)

    def start_from(self, app: str) -> None:
        shutil.copytree(APPS / app, self.work)
        self.git("init", "-q", "-b", "main")
        self.commit("first")

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    async def push(self, path: str, *options: str,
                   known_hosts: Path | None = None) -> tuple[int, str]:
        args = [f"--push-option={o}" for o in options]
        proc = await asyncio.create_subprocess_exec(
            "git", "push", *args, f"ssh://orun@127.0.0.1:{self.port}{path}", "main",
            cwd=self.work, env=self.env(known_hosts), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        return proc.returncode or 0, out.decode(errors="replace")


async def add_key(server: Orun, pusher: Pusher, name: str, scope: str) -> None:
    (await server.cli("key", "add", name, f"{pusher.key}.pub", "--scope", scope)).ok()


async def test_push_creates_stages_promotes_and_survives_a_failed_build(
        make_orun: Any, http: aiohttp.ClientSession, tmp_path: Path, engine: None) -> None:
    server = await own_orun(make_orun, "ssh: {host: 127.0.0.1, port: 0}\n"
                                       "system: {stage_at: path}\n")
    dev = Pusher(tmp_path, server, "dev")
    await add_key(server, dev, "dev", "admin")
    dev.start_from("flask_app")

    code, out = await dev.push("/pushed", "spec=python-flask")
    assert code == 0, out
    assert "orun: creating app /pushed from branch main" in out
    assert "uv" in out and "Successfully built" in out  # the build log reached git
    assert "orun: /pushed is live at https://localhost:" in out
    assert await get(http, server.url("/pushed/")) == (200, "flask app ok\n")

    app_py = dev.work / "app.py"
    app_py.write_text(app_py.read_text().replace("flask app ok", "flask app v2"))
    dev.commit("v2")
    code, out = await dev.push("/pushed")
    assert code == 0, out
    assert "orun: deploying main" in out and "to /pushed_cl_stage" in out
    assert await get(http, server.url("/pushed_cl_stage/")) == (200, "flask app v2\n"), out
    assert await get(http, server.url("/pushed/")) == (200, "flask app ok\n")  # staged

    app_py.write_text(app_py.read_text().replace("flask app v2", "flask app v3"))
    dev.commit("v3")
    code, out = await dev.push("/pushed", "promote")
    assert code == 0, out
    assert "and promoting it" in out
    assert await get(http, server.url("/pushed/")) == (200, "flask app v3\n")

    # a build that fails: uv's error reaches the pusher, git push fails, prod serves on
    (dev.work / "requirements.txt").write_text("flask\norun-no-such-package-xyz==9.9\n")
    dev.commit("broken")
    code, out = await dev.push("/pushed", "promote")
    assert code != 0, out
    assert "orun-no-such-package-xyz" in out and "orun: error:" in out
    assert await get(http, server.url("/pushed/")) == (200, "flask app v3\n")

    rows = (await server.cli("audit", "list", "-f", "json")).ok().out
    pushes = [r for r in json.loads(rows) if r["action"] == "git.push"]
    assert len(pushes) == 4 and {r["actor"] for r in pushes} == {"key:dev"}


async def test_push_refusals(make_orun: Any, tmp_path: Path, engine: None) -> None:
    server = await own_orun(make_orun, "ssh: {host: 127.0.0.1, port: 0}\n")
    team = Pusher(tmp_path, server, "team")
    await add_key(server, team, "team", "/team/*")
    team.start_from("flask_app")

    code, out = await team.push("/elsewhere", "spec=python-flask")
    assert code != 0
    assert "orun: key 'team' may not push to /elsewhere (its scope is /team/*)" in out

    # an unknown host key: OpenSSH refuses before anything is sent
    other = tmp_path / "other_known_hosts"
    fake = asyncssh.generate_private_key("ssh-ed25519")
    other.write_text(f"[127.0.0.1]:{team.port} {fake.export_public_key().decode()}")
    code, out = await team.push("/team/x", known_hosts=other)
    assert code != 0 and "HOST IDENTIFICATION HAS CHANGED" in out

    # a key orun does not know
    (tmp_path / "s").mkdir()
    stranger = Pusher(tmp_path / "s", server, "stranger")
    stranger.start_from("flask_app")
    code, out = await stranger.push("/team/x")
    assert code != 0 and "Permission denied (publickey)" in out

    # only receive-pack: no shell, no other command, no fetch
    for command in ([], ["ls", "/"], ["git-upload-pack", "/team/x"], ["git-receive-pack '/x"]):
        done = subprocess.run(
            ["ssh", "-i", str(team.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={team.known_hosts}", "-p", str(team.port),
             "-T", "orun@127.0.0.1", *command], capture_output=True, text=True, timeout=30,
            env=team.env())
        assert done.returncode != 0
        assert "orun: this SSH server only takes git push (git-receive-pack)" in done.stderr

    # removing a key takes effect at once
    (await server.cli("key", "remove", "team")).ok()
    code, out = await team.push("/team/x", "spec=python-flask")
    assert code != 0 and "Permission denied (publickey)" in out


async def test_push_to_the_prod_branch_promotes(make_orun: Any, http: aiohttp.ClientSession,
                                                tmp_path: Path) -> None:
    """An app created with `-o prod_branch=release`: pushes to other branches are staged,
    a push to `release` goes to prod too (a static site: no build needed)."""
    server: Orun = make_orun("ssh: {host: 127.0.0.1, port: 0}\nsystem: {stage_at: path}\n")
    await server.start()
    dev = Pusher(tmp_path, server, "dev")
    await add_key(server, dev, "dev", "/site*")
    dev.work.mkdir()
    (dev.work / "index.html").write_text("one")
    dev.git("init", "-q", "-b", "main")
    dev.commit("one")
    code, out = await dev.push("/site", "spec=static", "prod_branch=release")
    assert code == 0, out
    assert await get(http, server.url("/site/")) == (200, "one")

    (dev.work / "index.html").write_text("two")
    dev.commit("two")
    code, out = await dev.push("/site")
    assert code == 0, out
    assert await get(http, server.url("/site_cl_stage/")) == (200, "two")
    assert await get(http, server.url("/site/")) == (200, "one")

    dev.git("checkout", "-q", "-b", "release")
    proc = await asyncio.create_subprocess_exec(
        "git", "push", f"ssh://orun@127.0.0.1:{dev.port}/site", "release", cwd=dev.work,
        env=dev.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, out
    assert "deploying release" in out and "and promoting it" in out
    assert await get(http, server.url("/site/")) == (200, "two")
