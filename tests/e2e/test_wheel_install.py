"""The built wheel, installed with pip into a fresh venv outside the repository, is a
whole orun: `orun serve` from it serves a static app and builds and runs a Flask app
from its bundled specs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun, container_config, remove_containers
from tests.packaging import ROOT, built_wheel

APPS = Path(__file__).resolve().parent.parent / "apps"


def run(*argv: str | Path, cwd: Path) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=280)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
async def installed(tmp_path: Path, engine: None) -> AsyncIterator[Orun]:
    """orun from the wheel in its own venv (pip's cache makes the dependencies quick),
    run from a folder outside the checkout so nothing of the checkout is importable."""
    began = time.monotonic()
    wheel = built_wheel()
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    # the test venv's pip installs into the new venv, as `venv/bin/pip install` would
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
        "--quiet", "--no-compile", wheel, cwd=tmp_path)  # (bytecode: not under test)
    print(f"wheel built and installed in {time.monotonic() - began:.1f}s")
    server = Orun(tmp_path / "home", container_config())
    server.command = [str(venv / "bin" / "orun")]
    server.cwd = tmp_path
    await server.start()
    yield server
    await server.stop()
    remove_containers(server.home)


async def test_wheel_in_a_fresh_venv_serves_static_and_flask(installed: Orun,
                                                             tmp_path: Path) -> None:
    venv_python = Path(installed.command[0]).parent / "python"
    where = json.loads(run(venv_python, "-c", "import json, orun; from orun.spec.catalog "
                           "import bundled_specs_dir as d; print(json.dumps([orun.__file__, "
                           "str(d())]))", cwd=tmp_path))
    site_packages = next((venv_python.parent.parent / "lib").glob("python3*/site-packages"))
    assert Path(where[0]).is_relative_to(site_packages)
    assert Path(where[1]) == site_packages / "orun" / "specs"
    assert not any(Path(p).is_relative_to(ROOT) for p in where)

    version = await installed.cli("--version")
    assert version.ok().out.startswith("orun ")
    assert "python-flask" in (await installed.cli("spec", "list")).ok().out
    assert "_shtab_orun" in (await installed.cli("completion", "bash")).ok().out
    server_info = json.loads((installed.home / "run" / "server.json").read_text())
    assert server_info["home"] == str(installed.home)

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>from the wheel</h1>")
    (await installed.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
    flask = tmp_path / "flask_app"
    shutil.copytree(APPS / "flask_app", flask)
    created = (await installed.cli("app", "create", "--wait", "--spec", "python-flask",
                                   str(flask), "/flask")).ok()
    assert "App is running" in created.out
    async with aiohttp.ClientSession() as http:
        async with http.get(installed.url("/site/")) as resp:
            assert (resp.status, await resp.text()) == (200, "<h1>from the wheel</h1>")
        async with http.get(installed.url("/flask/")) as resp:
            assert (resp.status, await resp.text()) == (200, "flask app ok\n")
