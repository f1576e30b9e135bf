"""Python specs install dependencies with uv: a pyproject.toml + uv.lock source gets
exactly the locked versions (an older werkzeug than a fresh resolve would pick), a
pyproject.toml without a lock gets its declared dependencies, the dependency layer is
reused across a code change, and the image carries neither uv nor pip in its venv
but does carry the venv's compiled bytecode."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from tests.conftest import Orun, docker
from tests.e2e.test_containers import copy_app, get_json


async def test_uv_lock_is_honoured_and_the_layer_cached(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = copy_app("flask_uv_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-flask", str(src),
                     "/locked")).ok()
    got = await get_json(http, corun.url("/locked/"))
    assert (got["flask"], got["werkzeug"], got["jinja2"]) == ("3.0.3", "3.0.6", "3.1.6")

    apps = (await corun.cli("app", "list", "-f", "json")).ok().out
    image = next(a["runtime"]["image"] for a in json.loads(apps)
                 if a["app_path"] == "/locked")
    venv = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                  "ls /opt/venv/bin; ls /tmp; command -v uv || true")
    assert "flask" in venv.split() and "uv" not in venv.split() and "pip" not in venv.split()
    # the venv's bytecode is compiled at build (the app user cannot write it at start)
    pyc = docker("run", "--rm", "--entrypoint", "python", image, "-c",
                 "import importlib.util, os, flask.app; "
                 "print(os.path.isfile(importlib.util.cache_from_source(flask.app.__file__)))")
    assert pyc.strip() == "True"

    # a code change: the dependency step comes from the cache, the source copy does not
    app_py = src / "app.py"
    app_py.write_text(app_py.read_text() + "\n# changed\n")
    (await corun.cli("app", "create", "--wait", "--spec", "python-flask", str(src),
                     "/locked2")).ok()
    log = (await corun.cli("app", "logs", "--build", "/locked2")).ok().out.splitlines()
    step = next(i for i, line in enumerate(log) if "uv sync" in line)
    assert log[step + 1].strip() == "---> Using cache", "\n".join(log)
    copy_step = next(i for i, line in enumerate(log) if "COPY --chown=app:app . ." in line)
    assert log[copy_step + 1].strip() != "---> Using cache", "\n".join(log)


async def test_pyproject_without_a_lock(corun: Orun, http: aiohttp.ClientSession,
                                        tmp_path: Path) -> None:
    src = copy_app("flask_uv_app", tmp_path)
    (src / "uv.lock").unlink()
    project = src / "pyproject.toml"
    project.write_text(project.read_text().replace('"flask==3.0.3"',
                                                   '"flask==3.0.2", "werkzeug==3.0.4"'))
    (await corun.cli("app", "create", "--wait", "--spec", "python-flask", str(src),
                     "/unlocked")).ok()
    got = await get_json(http, corun.url("/unlocked/"))
    assert (got["flask"], got["werkzeug"]) == ("3.0.2", "3.0.4")
