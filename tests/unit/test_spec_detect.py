"""Spec detection on real folders: every sample app in tests/apps, the tiers (a
container file wins, frameworks before libraries before bare callables before static
files), ambiguous sources refused with their candidates, and hostile sources (symlinks
out, huge files, code that does not parse) read safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orun.errors import SpecError
from orun.spec.detect import MAX_FILE_BYTES, detect_spec

APPS = Path(__file__).resolve().parent.parent / "apps"

SAMPLES = {
    "asgi_app": ("python-asgi", ""),
    "container_app": ("container", ""),
    "django_app": ("python-django", "manage.py"),
    "fasthtml_app": ("python-fasthtml", "main.py"),
    "dash_app": ("python-dash", "app.py"),
    "fault_app": ("container", ""),
    "flask_app": ("python-flask", "app.py"),
    "flask_uv_app": ("python-flask", "app.py"),
    "go_app": ("go", ""),
    "gradio_app": ("python-gradio", "run.py"),
    "hono_app": ("js-hono", ""),
    "hostile_app": ("container", ""),
    "marimo_app": ("python-marimo", "notebook.py"),
    "nicegui_app": ("python-nicegui", "main.py"),
    "node_app": ("js-node", ""),
    "panel_app": ("python-panel", "app.py"),
    "reflex_app": ("python-reflex", "rxconfig.py"),
    "shiny_app": ("python-shiny", "app.py"),
    "spring_app": ("java-spring-boot", ""),
    "streamlit_app": ("python-streamlit", "streamlit_app.py"),
    "streamlit_poetry_app": ("python-streamlit-poetry", "streamlit_app.py"),
    "versioned_app": ("container", ""),
    "wsgi_app": ("python-wsgi", ""),
}


def test_every_sample_app_is_covered() -> None:
    assert {d.name for d in APPS.iterdir() if d.is_dir()} == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_apps(name: str) -> None:
    spec, app_file = SAMPLES[name]
    found = detect_spec(APPS / name)
    assert (found.spec, found.app_file) == (spec, app_file)
    assert found.reason


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(("files", "spec", "why"), [
    ({"requirements.txt": "dash==2.18\n", "app.py": "import dash\n"}, "python-dash",
     "requirements.txt names dash"),
    ({"requirements.txt": "shiny\n", "app.py": "from shiny import App\n"}, "python-shiny",
     "requirements.txt names shiny"),
    ({"requirements.txt": "panel>=1\n"}, "python-panel", "requirements.txt names panel"),
    ({"manage.py": "import os\n", "requirements.txt": "Django~=5.0\ngunicorn\n"},
     "python-django", "requirements.txt names django"),
    ({"nb.py": "import marimo\napp = marimo.App()\n"}, "python-marimo", "nb.py imports marimo"),
    ({"pyproject.toml": '[project]\nname="x"\ndependencies=["python-fasthtml>=0.6"]\n'},
     "python-fasthtml", "pyproject.toml names python-fasthtml"),
    ({"pyproject.toml": '[tool.poetry.dependencies]\npython="^3.11"\nFlask="^3"\n'},
     "python-flask", "pyproject.toml names flask"),
    ({"main.py": "from fastapi import FastAPI\napp = FastAPI()\n"}, "python-asgi",
     "main.py imports fastapi"),
    # a framework outranks the web library it is built on
    ({"requirements.txt": "nicegui\nfastapi\n"}, "python-nicegui",
     "requirements.txt names nicegui"),
    ({"package.json": json.dumps({"dependencies": {"hono": "^4"}})}, "js-hono",
     "package.json depends on hono"),
    ({"package.json": json.dumps({"scripts": {"start": "node server.js"}})}, "js-node",
     "package.json has a start script"),
    # a build-less package.json beside index.html is a static site
    ({"package.json": json.dumps({"devDependencies": {"prettier": "3"}}),
      "index.html": "<p>hi</p>"}, "static", "the source holds only static files (index.html)"),
    ({"index.html": "<p>hi</p>", "style.css": "p{}"}, "static",
     "the source holds only static files (index.html)"),
    # the source's own container file wins over everything
    ({"Containerfile": "FROM x\n", "requirements.txt": "streamlit\ngradio\n"}, "container",
     "the source has its own Containerfile"),
    ({"go.mod": "module x\n", "index.html": ""}, "go", "the source has go.mod"),
])
def test_detection_rules(tmp_path: Path, files: dict[str, str], spec: str, why: str) -> None:
    found = detect_spec(make(tmp_path, files))
    assert (found.spec, found.reason) == (spec, why)


def test_ambiguous_sources_are_refused_with_their_candidates(tmp_path: Path) -> None:
    make(tmp_path, {"requirements.txt": "streamlit\n# gradio later\n",
                    "ui.py": "import gradio as gr\n"})
    with pytest.raises(SpecError) as err:
        detect_spec(tmp_path)
    assert str(err.value) == (
        "cannot tell which spec fits: python-gradio (ui.py imports gradio); python-streamlit "
        "(requirements.txt names streamlit). Pass --spec NAME")


def test_flask_and_fastapi_together_are_ambiguous(tmp_path: Path) -> None:
    make(tmp_path, {"requirements.txt": "flask\nfastapi\n"})
    with pytest.raises(SpecError, match=r"python-asgi .*python-flask"):
        detect_spec(tmp_path)


def test_app_file_only_when_one_file_holds_the_framework(tmp_path: Path) -> None:
    make(tmp_path, {"a.py": "import streamlit\n", "b.py": "import streamlit as st\n"})
    found = detect_spec(tmp_path)
    assert (found.spec, found.app_file) == ("python-streamlit", "")


def test_nothing_to_go_on(tmp_path: Path) -> None:
    make(tmp_path, {"README.md": "hello", "data.csv": "1,2"})
    with pytest.raises(SpecError, match=r"no Containerfile or Dockerfile, go\.mod, "
                                        r"Spring Boot pom\.xml, package\.json"):
        detect_spec(tmp_path)
    with pytest.raises(SpecError, match="is not a folder"):
        detect_spec(tmp_path / "README.md")


def test_hostile_sources_are_read_safely(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make(outside, {"requirements.txt": "streamlit\n", "Dockerfile": "FROM x\n"})
    src = tmp_path / "src"
    make(src, {"index.html": "<p>x</p>",
               "broken.py": "def (:\n",  # does not parse: skipped
               "deep.py": "(" * 5000 + ")" * 5000,  # nesting the parser refuses: skipped
               "big.py": "import gradio\n" + "#" * MAX_FILE_BYTES})  # too big: not read
    # symlinks to files outside the source are no evidence
    (src / "requirements.txt").symlink_to(outside / "requirements.txt")
    (src / "Dockerfile").symlink_to(outside / "Dockerfile")
    found = detect_spec(src)
    assert found.spec == "static"
