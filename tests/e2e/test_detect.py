"""Spec detection end to end: `orun spec detect` on a folder and on a git repository,
`app create` without `--spec` (and with `--spec auto`) choosing, saying why and serving,
the detected app file passed as a param, and an ambiguous source refused with nothing
created."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import aiohttp

from tests.conftest import Orun

APPS = Path(__file__).resolve().parent.parent / "apps"


def git_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).write_text(text)
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path),
           "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "trunk"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)
    return path.as_uri()


async def test_spec_detect_on_a_folder_and_a_git_repository(orun: Orun, tmp_path: Path) -> None:
    shown = (await orun.cli("spec", "detect", str(APPS / "gradio_app"))).ok().out
    assert shown.splitlines() == ["python-gradio: run.py imports gradio", "  app file: run.py"]
    data = json.loads((await orun.cli("spec", "detect", "-f", "json",
                                      str(APPS / "go_app"))).ok().out)
    assert (data["spec"], data["reason"]) == ("go", "the source has go.mod")

    url = git_repo(tmp_path / "repo", {"requirements.txt": "flask\n", "app.py": "import flask\n",
                                       "Dockerfile": "FROM scratch\n"})
    shown = (await orun.cli("spec", "detect", url)).ok().out
    assert shown.splitlines()[0] == "container: the source has its own Dockerfile"
    assert "  also seen, ranked lower: python-flask (requirements.txt names flask)" in shown

    ambiguous = tmp_path / "both"
    ambiguous.mkdir()
    (ambiguous / "requirements.txt").write_text("streamlit\ngradio\n")
    result = await orun.cli("spec", "detect", str(ambiguous))
    assert result.code == 1
    assert result.err.strip() == (
        "error: cannot tell which spec fits: python-gradio (requirements.txt names gradio); "
        "python-streamlit (requirements.txt names streamlit). Pass --spec NAME")


async def test_create_without_spec_detects_and_serves(orun: Orun, site: Path,
                                                      http: aiohttp.ClientSession) -> None:
    out = (await orun.cli("app", "create", str(site), "/site")).ok().out
    assert "     Spec: static (detected: the source holds only static files (index.html))" \
        in out.splitlines()
    async with http.get(orun.url("/site/")) as resp:
        assert resp.status == 200 and await resp.text() == "<h1>site</h1>"


async def test_create_auto_passes_the_app_file(orun: Orun, tmp_path: Path) -> None:
    src = tmp_path / "gradio"
    shutil.copytree(APPS / "gradio_app", src)
    (src / "run.py").rename(src / "ui.py")
    out = (await orun.cli("app", "create", "--spec", "auto", str(src), "/g")).ok().out
    assert "     Spec: python-gradio (detected: ui.py imports gradio; app_file=ui.py)" \
        in out.splitlines()
    apps = json.loads((await orun.cli("app", "list", "-f", "json")).ok().out)
    (app,) = [a for a in apps if a["app_path"] == "/g"]
    assert app["current"]["settings"]["spec"] == "python-gradio"
    assert list(app["current"]["settings"]["params"]) == ["app_file"]
    params = (await orun.cli("param", "list", "/g")).ok().out
    assert "app_file: ui.py" in params


async def test_ambiguous_create_is_refused_and_creates_nothing(orun: Orun,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "both"
    src.mkdir()
    (src / "requirements.txt").write_text("flask\nfastapi\n")
    result = await orun.cli("app", "create", str(src), "/both")
    assert result.code == 1
    assert result.err.startswith("error: cannot tell which spec fits: python-asgi ")
    assert json.loads((await orun.cli("app", "list", "-f", "json")).ok().out) == []
    result = await orun.cli("app", "create", "-", "/none")
    assert result.err.strip() == ("error: no app spec given and no source to detect one "
                                  "from: pass --spec NAME (see 'orun spec list')")


async def test_declared_apps_must_name_their_spec(orun: Orun, tmp_path: Path) -> None:
    """A config entry that left its spec to detection could change spec on a source edit:
    refused when the config is checked."""
    config = tmp_path / "orun.yaml"
    config.write_text(f"apps:\n  - {{path: /x, source: {tmp_path}, spec: auto}}\n")
    result = await orun.cli("config", "check", str(config))
    assert result.code == 1
    assert "apps[0].spec: a declared app names its spec; 'orun spec detect SOURCE' shows " \
        "which one fits" in result.err


async def test_spec_new_copies_a_spec_to_edit_and_check(orun: Orun, site: Path,
                                                         http: aiohttp.ClientSession) -> None:
    """`spec new` copies a bundled spec into the home; `spec check` passes it, flags an
    edit that breaks a rule, and the copy serves apps at once (no restart)."""
    out = (await orun.cli("spec", "new", "mysite", "--from", "static")).ok().out
    dest = orun.home / "specs" / "mysite"
    assert out.splitlines()[0] == f"Created spec mysite in {dest} from static."
    assert (await orun.cli("spec", "check", str(dest))).ok().out.strip() == \
        f"spec mysite is fine ({dest})"
    (await orun.cli("app", "create", "--spec", "mysite", str(site), "/mine")).ok()
    async with http.get(orun.url("/mine/")) as resp:
        assert resp.status == 200 and await resp.text() == "<h1>site</h1>"

    (await orun.cli("spec", "new", "myflask", "--from", "python-flask")).ok()
    flask = orun.home / "specs" / "myflask"
    assert "--spec myflask " in (flask / "spec.yaml").read_text()
    containerfile = flask / "Containerfile"
    containerfile.write_text(containerfile.read_text().replace("USER app\n", ""))
    result = await orun.cli("spec", "check", "myflask")
    assert result.code == 1
    assert result.out.startswith("myflask: Containerfile: the final stage runs as root")
    assert result.err.strip() == "error: spec myflask has 1 problem(s)"

    again = await orun.cli("spec", "new", "mysite", "--from", "static")
    assert again.err.strip() == f"error: spec mysite already exists in {dest}"
    bad = await orun.cli("spec", "new", "../x", "--from", "static")
    assert bad.err.strip().startswith("error: invalid spec name '../x'")
