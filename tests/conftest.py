"""Shared fixtures: a real `orun serve` process, its CLI, and real upstream servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

PYTHON = sys.executable

# Property-based tests: the suite runs a fixed, derandomised set of examples (a flaky
# suite is worse than a short one); `scripts/fuzz` runs the "fuzz" profile, random and
# long, and each finding becomes a regression example.
settings.register_profile("ci", derandomize=True, max_examples=150, deadline=None,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("ORUN_HYPOTHESIS_PROFILE", "ci"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def ok(self) -> CliResult:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        return self


def with_test_https(config: str) -> str:
    """Tests run many servers at once: unless a config says where HTTPS listens, it
    listens on a free loopback port (the default, 25223, would collide)."""
    if any(line.startswith("https:") for line in config.splitlines()):
        return config
    return config.rstrip("\n") + ("\n" if config.strip() else "") + \
        "https: {host: 127.0.0.1, port: 0}\n"


class Orun:
    """A real orun server process on loopback, with its home, CLI and log."""

    def __init__(self, home: Path, config: str = "") -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_text = with_test_https(config or "http: {host: 127.0.0.1, port: 0}\n")
        (home / "orun.yaml").write_text(self.config_text)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"
        self.port = 0
        #: the HTTPS listener's port (None when the config turns it off)
        self.https_port: int | None = None
        #: extra environment for the server process (e.g. DOCKER_HOST)
        self.extra_env: dict[str, str] = {}
        #: run in the server process before it starts (e.g. to lower a limit)
        self.preexec: Callable[[], None] | None = None
        #: how orun is run, server and CLI (an installed `orun` for the wheel test)
        self.command: list[str] = [PYTHON, "-m", "orun"]
        #: the working directory of the server and the CLI (None: the test's)
        self.cwd: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ORUN_HOME"] = str(self.home)
        env.pop("NO_COLOR", None)
        env.update(self.extra_env)
        return env

    def write_config(self, text: str) -> None:
        self.config_text = text = with_test_https(text)
        (self.home / "orun.yaml").write_text(text)

    async def start(self, timeout: float = 20.0) -> None:
        info = self.home / "run" / "server.json"
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*self.command, "serve"], env=self.env, cwd=self.cwd,
                                     stdout=log, stderr=log, start_new_session=True,
                                     preexec_fn=self.preexec)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"orun exited with {self.proc.returncode}:\n{self.log()}")
            if info.exists():
                data = json.loads(info.read_text())
                if data.get("pid") == self.proc.pid:
                    self.port = int(data["http_port"])
                    self.https_port = data.get("https_port")
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"orun did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("orun did not exit")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait_exit(15)
            except AssertionError:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def _status_kib(self, name: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {name}")

    def rss_kib(self) -> int:
        """Resident memory now."""
        return self._status_kib("VmRSS")

    def peak_kib(self) -> int:
        """The highest resident memory so far (VmHWM). Memory checks compare this before
        and after a transfer: RSS read after it would miss a buffer that was freed."""
        return self._status_kib("VmHWM")

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def cli(self, *args: str, cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> CliResult:
        """Run the CLI against this server (`env` adds to or replaces its variables)."""
        proc = await asyncio.create_subprocess_exec(
            *self.command, *args, env={**self.env, **(env or {})}, cwd=cwd or self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return CliResult(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def orun(tmp_path: Path) -> AsyncIterator[Orun]:
    server = Orun(tmp_path / "home")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_orun(tmp_path: Path) -> Iterator[Any]:
    """Factory for tests that need their own config or several servers."""
    servers: list[Orun] = []

    def make(config: str = "", name: str = "home") -> Orun:
        server = Orun(tmp_path / name, config)
        servers.append(server)
        return server

    yield make
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        if (s.home / "logs" / "apps").exists():  # it ran container apps
            remove_containers(s.home)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A one-page static site folder."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<h1>site</h1>")
    return root


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- container apps: a real Docker engine and the local base images ------------------------

#: the base images scripts/base-images makes; tests point every spec at them
BASE_IMAGES = {"PYTHON_IMAGE": "orun-test/python:3.11", "GO_IMAGE": "orun-test/go:1.19",
               "RUNTIME_IMAGE": "orun-test/runtime:12", "NODE_IMAGE": "orun-test/node:18"}
_homes_with_images: list[str] = []


def docker(*args: str, check: bool = True) -> str:
    """Run the docker CLI (tests inspect the engine with it, independently of orun)."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def containers(home: Path, *, all_: bool = False, app_id: str = "") -> list[str]:
    """Ids of the containers orun (with this home) made."""
    args = ["ps", "-q", "--no-trunc", "--filter", f"label=orun.home={home}"]
    if app_id:
        args += ["--filter", f"label=orun.app.id={app_id}"]
    if all_:
        args.append("-a")
    return docker(*args).split()


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine answers and the base images exist (scripts/test prepares both)."""
    if subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run scripts/docker-engine (scripts/test does)")
    for image in sorted(set(BASE_IMAGES.values())):
        if subprocess.run(["docker", "image", "inspect", image],
                          capture_output=True).returncode != 0:
            pytest.fail(f"base image {image} is missing: run scripts/base-images")


def container_config(extra: str = "") -> str:
    args = ", ".join(f"{k}: {v}" for k, v in BASE_IMAGES.items())
    return ("http: {host: 127.0.0.1, port: 0}\n"
            f"builder: {{build_args: {{{args}}}}}\n" + extra)


@pytest.fixture
async def corun(tmp_path: Path, engine: None) -> AsyncIterator[Orun]:
    """An orun server for container apps; its containers are removed afterwards."""
    server = Orun(tmp_path / "home", container_config())
    await server.start()
    yield server
    await server.stop()
    remove_containers(server.home)


def remove_containers(home: Path) -> None:
    ids = containers(home, all_=True)
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    _homes_with_images.append(str(home))


@pytest.fixture(scope="session", autouse=True)
def _remove_test_images() -> Iterator[None]:
    """Images built by the session go at its end (kept until then: layer cache)."""
    yield
    for home in _homes_with_images:
        images = docker("images", "-q", "--filter", f"label=orun.home={home}",
                        check=False).split()
        if images:
            docker("rmi", "-f", *sorted(set(images)), check=False)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A headless Chromium (tests/browser.py), closed after the test."""
    from tests.browser import launch_browser

    async with launch_browser(tmp_path) as b:
        yield b
