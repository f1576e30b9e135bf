"""`orun spec check` rules: every bundled spec passes them, and each rule catches the
container file or spec.yaml it is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from orun.build.speccheck import check_spec_dir, lint_containerfile

SPECS = Path(__file__).resolve().parent.parent.parent / "specs"

GOOD = """\
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE} AS build
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY . .
RUN python -m compileall .
FROM build
USER 999
CMD ["python", "app.py"]
"""


@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.iterdir() if p.is_dir()))
def test_bundled_specs_pass(name: str) -> None:
    assert check_spec_dir(SPECS / name) == []


def test_a_good_file_passes() -> None:
    assert lint_containerfile(GOOD) == []


@pytest.mark.parametrize(("change", "problem"), [
    (("FROM ${PYTHON_IMAGE} AS build", "FROM python:3.12 AS build"),
     "line 2: FROM python:3.12: name the base image with a build arg"),
    (("ARG PYTHON_IMAGE=python:3.12-slim", "ARG PYTHON_IMAGE"),
     "line 2: FROM ${PYTHON_IMAGE}: declare ARG PYTHON_IMAGE with a default image"),
    (("RUN python -m compileall .", "RUN uv sync --frozen"),
     "line 6: dependencies are installed after the whole source is copied (line 5)"),
    (("RUN python -m compileall .", "RUN npm ci"),
     "line 6: dependencies are installed after the whole source is copied (line 5)"),
    (("USER 999", "USER root"), "line 8: the final stage runs as root"),
    (("USER 999\n", ""), "the final stage runs as root"),
    (('CMD ["python", "app.py"]\n', ""), "the final stage has no CMD or ENTRYPOINT"),
    (("COPY requirements.txt ./", "ADD https://example.org/x.tgz /x.tgz"),
     "line 3: ADD from a URL downloads at every build with no checksum"),
    (("RUN pip install -r requirements.txt", "RUN --mount=type=cache,target=/c pip list"),
     "line 4: RUN --mount needs BuildKit"),
])
def test_each_rule(change: tuple[str, str], problem: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    found = lint_containerfile(text)
    assert len(found) == 1 and found[0].startswith(problem), found


def test_a_user_in_an_earlier_stage_does_not_count() -> None:
    text = GOOD.replace("FROM build\nUSER 999\n", "USER 999\nFROM build\n")
    assert any("final stage runs as root" in p for p in lint_containerfile(text))


def test_spec_yaml_problems(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "kind: container\nparams: {port: {type: int, default: 80}}\n"
        "container: {health: healthz}\n")
    (tmp_path / "Containerfile").write_text(GOOD)
    assert check_spec_dir(tmp_path, "mine") == [
        "spec.yaml: description is empty (spec list shows it)",
        "spec.yaml: params.port has no description",
        "spec.yaml: container.health must be a path starting with /",
        ".dockerignore: missing: the source's .git, virtualenvs and node_modules would go "
        "into every build context",
    ]
    (tmp_path / ".dockerignore").write_text(".git\n")
    (tmp_path / "spec.yaml").write_text(
        "description: x\nexample: orun app create --spec python-flask ./a /a\n")
    assert check_spec_dir(tmp_path, "mine") == [
        "spec.yaml: example should be a command starting 'orun app create --spec mine ' "
        "(spec show and the README show it)"]
    (tmp_path / "spec.yaml").write_text("kind: nope\n")
    (problem,) = check_spec_dir(tmp_path, "mine")
    assert "kind" in problem
    assert check_spec_dir(tmp_path / "missing") == [f"{tmp_path / 'missing'} has no spec.yaml"]
