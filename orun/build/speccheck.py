"""`orun spec check PATH`: is a spec folder one orun can use, built the way the bundled
specs are?

Beyond loading `spec.yaml` (the same checks `app create` makes), the spec's container
file is held to the rules every bundled spec follows, because each one prevents a
failure users otherwise meet much later: base images named by build args (so one
`builder.build_args` setting points every build at a mirror or a local image),
dependencies installed before the source is copied (so a code change rebuilds in a
second instead of reinstalling everything), a non-root final user (an app's code is
untrusted), an explicit command, nothing fetched from a URL by `ADD`, no BuildKit-only
syntax (orun builds with the classic builder), and a `.dockerignore`.
"""

from __future__ import annotations

import re
from pathlib import Path

from orun.build.dockerfile import Instruction, forbidden_features, instructions
from orun.errors import SpecError
from orun.spec.model import SPEC_FILE, Spec, load_spec_dir

#: container file names a spec may ship (first found is checked)
CONTAINER_FILES = ("Containerfile", "Dockerfile")
#: commands that install an app's dependencies
_DEPENDENCY_INSTALL = re.compile(
    r"\b(pip3?\s+install\s+(-r|--requirement)|uv\s+(pip\s+install|sync)|poetry\s+install|"
    r"npm\s+(ci|install)|yarn\s+install|pnpm\s+install|go\s+mod\s+download|bundle\s+install)\b")
_ROOT_USERS = frozenset({"root", "0", "0:0", "root:root"})
_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


def check_spec_dir(path: Path, name: str | None = None) -> list[str]:
    """Every problem found in the spec folder at `path` (empty: it is fine). Blocking
    file reads: call in a thread from async code."""
    name = name or path.name
    if not (path / SPEC_FILE).is_file():
        return [f"{path} has no {SPEC_FILE}"]
    try:
        spec = load_spec_dir(name, path)
    except SpecError as exc:
        return [exc.message]
    problems = _spec_problems(spec)
    for file_name in CONTAINER_FILES:
        file = path / file_name
        if spec.kind == "container" and file.is_file():
            problems += [f"{file_name}: {p}" for p in
                         lint_containerfile(file.read_text(encoding="utf-8", errors="replace"))]
            if not (path / ".dockerignore").is_file():
                problems.append(".dockerignore: missing: the source's .git, virtualenvs and "
                                "node_modules would go into every build context")
            break
    return problems


def _spec_problems(spec: Spec) -> list[str]:
    problems = []
    if not spec.description.strip():
        problems.append(f"{SPEC_FILE}: description is empty (spec list shows it)")
    if not spec.example.startswith(f"orun app create --spec {spec.name} "):
        problems.append(f"{SPEC_FILE}: example should be a command starting "
                        f"'orun app create --spec {spec.name} ' (spec show and the README "
                        "show it)")
    for pname, param in spec.params.items():
        if not param.description.strip():
            problems.append(f"{SPEC_FILE}: params.{pname} has no description")
    if spec.kind == "container" and not spec.container.health.startswith("/"):
        problems.append(f"{SPEC_FILE}: container.health must be a path starting with /")
    return problems


def lint_containerfile(text: str) -> list[str]:
    """The container file's departures from the bundled specs' rules, one line each."""
    found = instructions(text)
    problems = list(forbidden_features(text))
    global_args: dict[str, bool] = {}
    stages: set[str] = set()
    seen_from = False
    source_copied: int | None = None
    last_user: Instruction | None = None
    command = False
    for ins in found:
        if ins.keyword == "ARG" and not seen_from:
            for word in ins.words:
                arg, eq, default = word.partition("=")
                global_args[arg] = bool(eq and default)
        elif ins.keyword == "FROM":
            seen_from = True
            source_copied, last_user, command = None, None, False
            problems += _from_problems(ins, global_args, stages)
        elif ins.keyword == "ADD" and any(w.startswith(("http://", "https://"))
                                          for w in ins.words[:-1]):
            problems.append(f"line {ins.line}: ADD from a URL downloads at every build "
                            "with no checksum: download in a RUN that checks a hash, or ship "
                            "the file in the spec")
        elif ins.keyword in ("COPY", "ADD") and not any(f.startswith("--from") for f in ins.flags) \
                and any(w in (".", "./") for w in ins.words[:-1]):
            source_copied = ins.line
        elif ins.keyword == "RUN" and source_copied is not None \
                and _DEPENDENCY_INSTALL.search(ins.rest):
            problems.append(
                f"line {ins.line}: dependencies are installed after the whole source is "
                f"copied (line {source_copied}), so every code change reinstalls them: COPY "
                "the dependency files (requirements.txt, pyproject.toml, uv.lock, "
                "package.json, go.mod ...) and install them before copying the source")
        elif ins.keyword == "USER":
            last_user = ins
        elif ins.keyword in ("CMD", "ENTRYPOINT"):
            command = True
    if not seen_from:
        return [*problems, "no FROM: not a container file"]
    if last_user is None or (last_user.words and last_user.words[0] in _ROOT_USERS):
        where = f"line {last_user.line}: " if last_user is not None else ""
        problems.append(f"{where}the final stage runs as root: end with USER and a non-root "
                        "user (the bundled specs use uid 999 or 65532), an app's code is "
                        "untrusted")
    if not command:
        problems.append("the final stage has no CMD or ENTRYPOINT: the container would run "
                        "whatever the base image runs")
    return problems


def _from_problems(ins: Instruction, global_args: dict[str, bool],
                   stages: set[str]) -> list[str]:
    words = list(ins.words)
    if not words:
        return [f"line {ins.line}: FROM without an image"]
    image = words[0]
    if len(words) >= 3 and words[1].lower() == "as":
        stages.add(words[2].lower())
    if image.lower() in stages or image == "scratch":
        return []
    match = _VAR.match(image)
    if match is None:
        return [f"line {ins.line}: FROM {image}: name the base image with a build arg "
                "(ARG PYTHON_IMAGE=python:3.12-slim, then FROM ${PYTHON_IMAGE}) so "
                "builder.build_args can point every build at a mirror or a local image"]
    if not global_args.get(match.group(1)):
        return [f"line {ins.line}: FROM {image}: declare ARG {match.group(1)} with a default "
                "image before the first FROM"]
    return []
