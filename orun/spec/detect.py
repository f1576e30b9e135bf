"""Which spec fits a source folder: `--spec auto`, and `app create` without `--spec`.

The evidence is read, never run: file names (a Containerfile, `go.mod`, `pom.xml`,
`package.json`, `rxconfig.py`, `manage.py`, `index.html`), the dependencies that
`requirements.txt` and `pyproject.toml` declare, and the modules the top-level Python
files import (parsed with `ast`). The source is untrusted, so every read is bounded
(file count, file size, no symlinks) and a file that does not parse is skipped.

Evidence ranks in tiers, and the first tier with any evidence decides: the source's own
container file; Go and Spring Boot; Node; the Python app frameworks (Streamlit, Gradio, ...); the
general Python web libraries (Flask, FastAPI, ...); a bare ASGI or WSGI callable; static
files. Two different specs in the deciding tier are ambiguous: detection refuses and
lists them, so the user picks one with `--spec`, rather than orun guessing wrong.
"""

from __future__ import annotations

import ast
import json
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from orun.errors import SpecError

#: the spec name that asks for detection (as does no `--spec` at all)
AUTO_SPEC = "auto"
#: what a folder may be read for evidence, at most
MAX_FILE_BYTES = 1 << 20
MAX_PYTHON_FILES = 200

#: Python distribution or module name (lower case, `-`/`_` folded) -> spec, app frameworks
FRAMEWORKS: dict[str, str] = {
    "streamlit": "python-streamlit",
    "gradio": "python-gradio",
    "nicegui": "python-nicegui",
    "reflex": "python-reflex",
    "python_fasthtml": "python-fasthtml",
    "fasthtml": "python-fasthtml",
    "shiny": "python-shiny",
    "dash": "python-dash",
    "panel": "python-panel",
    "django": "python-django",
    "marimo": "python-marimo",
}
#: general web libraries: a WSGI or ASGI app the spec serves by its callable
LIBRARIES: dict[str, str] = {
    "flask": "python-flask",
    "fastapi": "python-asgi",
    "starlette": "python-asgi",
    "quart": "python-asgi",
    "litestar": "python-asgi",
    "falcon": "python-wsgi",
    "bottle": "python-wsgi",
    "pyramid": "python-wsgi",
}
#: files whose presence names a framework on its own
MARKER_FILES: dict[str, str] = {"rxconfig.py": "python-reflex", "manage.py": "python-django"}
CONTAINER_FILES = ("Containerfile", "Dockerfile")
STATIC_INDEX = ("index.html", "index.htm")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True, slots=True)
class Detection:
    """The spec chosen, why (one line a user reads), and the app file when the spec has
    an `app_file` param and the framework lives in a file other than its default."""

    spec: str
    reason: str
    app_file: str = ""
    #: every spec the evidence pointed at, with why (more than one: ambiguous)
    candidates: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"spec": self.spec, "reason": self.reason, "app_file": self.app_file,
                "candidates": self.candidates}


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(".", "_")


def _regular(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES


def _read(path: Path) -> str | None:
    if not _regular(path):
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def requirement_names(text: str) -> list[str]:
    """The distribution names a requirements file lists (options, URLs and comments
    skipped)."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-") or "://" in line:
            continue
        match = _REQUIREMENT_NAME.match(line)
        if match:
            names.append(_norm(match.group(1)))
    return names


def pyproject_names(text: str) -> tuple[list[str], bool]:
    """The dependency names of a `pyproject.toml` (PEP 621 and Poetry tables), and
    whether it is a Poetry project."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return [], False
    names: list[str] = []
    project = data.get("project")
    if isinstance(project, dict):
        for dep in project.get("dependencies") or ():
            if isinstance(dep, str):
                names.extend(requirement_names(dep))
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    if isinstance(poetry, dict):
        deps = poetry.get("dependencies")
        if isinstance(deps, dict):
            names.extend(_norm(n) for n in deps if _norm(n) != "python")
        group = poetry.get("group")
        main = group.get("main") if isinstance(group, dict) else None
        if isinstance(main, dict) and isinstance(main.get("dependencies"), dict):
            names.extend(_norm(n) for n in main["dependencies"])
    return names, isinstance(poetry, dict)


def python_imports(text: str) -> tuple[set[str], set[str]]:
    """The top-level modules a Python file imports, and the callables it defines that
    look like a bare server app: `asgi` for `async def app(scope, receive, send)`,
    `wsgi` for `def app(environ, start_response)` (any name, by the parameters)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(), set()
    modules: set[str] = set()
    callables: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(_norm(a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(_norm(node.module.split(".")[0]))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a.arg for a in node.args.args]
            if isinstance(node, ast.AsyncFunctionDef) and params[-3:] == \
                    ["scope", "receive", "send"]:
                callables.add("asgi")
            elif params[-2:] == ["environ", "start_response"]:
                callables.add("wsgi")
    return modules, callables


class _Evidence:
    """Why each spec was suggested, per tier (first reason kept)."""

    def __init__(self) -> None:
        self.tiers: list[dict[str, str]] = [{} for _ in range(7)]
        self.app_files: dict[str, list[str]] = {}

    def add(self, tier: int, spec: str, reason: str) -> None:
        self.tiers[tier].setdefault(spec, reason)


def detect_spec(folder: Path, *, poetry_spec: str = "python-streamlit-poetry") -> Detection:
    """The spec for the source in `folder`. Blocking file reads: call in a thread.
    Raises SpecError naming the candidates when the evidence is ambiguous, and saying
    what was looked for when there is none."""
    if not folder.is_dir():
        raise SpecError(f"cannot detect a spec: {folder} is not a folder")
    ev = _Evidence()
    names = {p.name for p in folder.iterdir()}
    for name in CONTAINER_FILES:
        if name in names and _regular(folder / name):
            ev.add(0, "container", f"the source has its own {name}")
    if "go.mod" in names and _regular(folder / "go.mod"):
        ev.add(1, "go", "the source has go.mod")
    if "pom.xml" in names and "spring-boot" in (_read(folder / "pom.xml") or ""):
        ev.add(1, "java-spring-boot", "pom.xml uses Spring Boot")
    _node_evidence(folder, names, ev)
    _python_evidence(folder, names, ev, poetry_spec)
    if not any(ev.tiers[:6]) and any(n in names for n in STATIC_INDEX):
        ev.add(6, "static", "the source holds only static files (index.html)")
    for tier in ev.tiers:
        if not tier:
            continue
        if len(tier) > 1:
            listed = "; ".join(f"{s} ({why})" for s, why in sorted(tier.items()))
            raise SpecError(f"cannot tell which spec fits: {listed}. Pass --spec NAME")
        ((spec, reason),) = tier.items()
        files = ev.app_files.get(spec, [])
        return Detection(spec, reason, files[0] if len(files) == 1 else "",
                         {s: why for t in ev.tiers for s, why in t.items()})
    raise SpecError("cannot tell which spec fits: no Containerfile or Dockerfile, go.mod, "
                    "Spring Boot pom.xml, package.json, Python web app or index.html found "
                    "at the source's top level. Pass --spec NAME (see 'orun spec list')")


def _node_evidence(folder: Path, names: set[str], ev: _Evidence) -> None:
    if "package.json" not in names:
        return
    text = _read(folder / "package.json")
    try:
        data = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        ev.add(2, "js-node", "the source has package.json (it does not parse)")
        return
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        if isinstance(data.get(key), dict):
            deps.update(data[key])
    scripts = data.get("scripts")
    if not isinstance(scripts, dict):
        scripts = {}
    if "hono" in deps:
        ev.add(2, "js-hono", "package.json depends on hono")
    elif "start" in scripts:
        ev.add(2, "js-node", "package.json has a start script")
    elif not any(n in names for n in STATIC_INDEX):
        ev.add(2, "js-node", "the source has package.json")


def _python_evidence(folder: Path, names: set[str], ev: _Evidence, poetry_spec: str) -> None:
    declared: list[tuple[str, str]] = []
    poetry = False
    if "requirements.txt" in names:
        text = _read(folder / "requirements.txt") or ""
        declared += [(n, "requirements.txt") for n in requirement_names(text)]
    if "pyproject.toml" in names:
        found, poetry = pyproject_names(_read(folder / "pyproject.toml") or "")
        declared += [(n, "pyproject.toml") for n in found]

    def spec_for(name: str) -> tuple[int, str] | None:
        if name in FRAMEWORKS:
            spec = FRAMEWORKS[name]
            return 3, poetry_spec if spec == "python-streamlit" and poetry else spec
        if name in LIBRARIES:
            return 4, LIBRARIES[name]
        return None

    for name, where in declared:
        found_spec = spec_for(name)
        if found_spec is not None:
            ev.add(found_spec[0], found_spec[1], f"{where} names {name.replace('_', '-')}")
    for marker, marked in MARKER_FILES.items():
        if marker in names and _regular(folder / marker):
            ev.add(3, marked, f"the source has {marker}")
    py_files = sorted(n for n in names if n.endswith(".py"))[:MAX_PYTHON_FILES]
    for name in py_files:
        code = _read(folder / name)
        if code is None:
            continue
        modules, callables = python_imports(code)
        for module in sorted(modules):
            found_spec = spec_for(module)
            if found_spec is None:
                continue
            tier, spec = found_spec
            ev.add(tier, spec, f"{name} imports {module}")
            ev.app_files.setdefault(spec, [])
            if name not in ev.app_files[spec]:
                ev.app_files[spec].append(name)
        for kind in sorted(callables):
            spec = "python-asgi" if kind == "asgi" else "python-wsgi"
            ev.add(5, spec, f"{name} defines a bare {kind.upper()} callable")
