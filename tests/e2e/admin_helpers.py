"""Shared by the remote-admin and audit tests: a server with the admin API on its HTTPS
listener, a CLI run against it as a remote machine would, and a TLS client context."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

from tests.conftest import PYTHON, CliResult, Orun

ADMIN_ON = "http: {host: 127.0.0.1, port: 0}\nsecurity: {admin_over_tcp: true}\n"


def ca_file(server: Orun) -> Path:
    """The server's self-signed default certificate: the CA a client trusts."""
    return server.home / "certs" / "_orun_default.crt"


def server_url(server: Orun) -> str:
    assert server.https_port
    return f"https://localhost:{server.https_port}"


def tls(server: Orun) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file(server)))


async def make_token(server: Orun, name: str, *extra: str) -> str:
    """A token made over the local socket; the CLI prints it alone on stdout."""
    result = (await server.cli("token", "create", name, *extra)).ok()
    token = result.out.strip()
    assert token.startswith("orun_") and len(token) > 40
    return token


async def remote_cli(server: Orun, token: str | None, *args: str, ca: bool = True,
                     url: str | None = None, cwd: Path | None = None) -> CliResult:
    """The CLI as on another machine: no local home to fall back on (ORUN_HOME points
    at an empty folder), the server, token and CA from the environment."""
    env = dict(os.environ)
    elsewhere = server.home.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env["ORUN_HOME"] = str(elsewhere)
    env["ORUN_SERVER"] = url or server_url(server)
    env.pop("ORUN_TOKEN", None)
    env.pop("ORUN_CA_FILE", None)
    if token is not None:
        env["ORUN_TOKEN"] = token
    if ca:
        env["ORUN_CA_FILE"] = str(ca_file(server))
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "orun", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())
