"""The spec format.

A spec is a folder: `spec.yaml` describes it (kind, typed params, routing and container
settings) and every other file is a template overlaid on the app source, where source
files always win. Example:

    description: Proxy to an external URL
    kind: proxy
    params:
      url: {type: string, required: true, description: Where requests go}
      preserve_host: {type: bool, default: false}
    routing: {strip_app: true}

A param is required when it says so, or when it has no default.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from orun.errors import SpecError
from orun.state.schema import build, check

SPEC_FILE = "spec.yaml"
ParamType = Literal["string", "int", "bool", "list", "dict"]
SpecKind = Literal["static", "proxy", "container"]


@dataclass(frozen=True, slots=True)
class ParamSpec:
    type: ParamType = "string"
    default: Any = None
    required: bool | None = None
    description: str = ""

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


@dataclass(frozen=True, slots=True)
class RoutingSpec:
    #: strip the app path before proxying (False: the upstream sees `/app/...`)
    strip_app: bool = True
    #: answer `/app` with a redirect to `/app/` (relative links then resolve)
    redirect_bare_path: bool = False
    #: False: the app can only live at a domain root (`name.:`), never under a path
    path_routing: bool = True
    #: a static app served live from its local source folder, not from a snapshot
    static_from_disk: bool = False


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """How a `container` spec builds and runs its app.

    `port` 0 means: the `port` param if set, else the container file's last `EXPOSE`.
    `image_param` names the param holding a ready-made image (no build: the `image`
    spec). `build_args` are the spec's defaults, overridden by the server's
    `builder.build_args` and then the app's `--carg`.
    """

    port: int = 0
    health: str = "/"
    dockerfile: str = ""
    image_param: str = ""
    #: files the app source must have (checked at create: e.g. go.mod for the go spec)
    required_files: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    #: build args set from params (build arg -> param name): for specs whose image
    #: depends on what the admin chose at create time (image-cmd builds FROM `image`)
    param_build_args: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)


#: source files whose change rebuilds a dev app's image, unless a spec lists its own
DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock", "go.mod",
                    "go.sum")


def _relative_paths(paths: list[str]) -> str | None:
    for p in paths:
        parts = p.split("/")
        if not p or p.startswith("/") or ".." in parts:
            return f"{p!r} must be a relative path inside the app source"
    return None


def _absolute_or_empty(path: str) -> str | None:
    return None if not path or path.startswith("/") else f"{path!r} must be an absolute path"


@dataclass(frozen=True, slots=True)
class DevSpec:
    """How a dev app (`app create --dev`) of this spec follows edits of its source folder.

    The image is built from the spec's files plus the source's `dependency_files` only,
    and the live source folder is bind-mounted at `dir` (default: the final stage's
    WORKDIR), so a code edit changes neither the image nor the container. On an edit:
    a dependency file (or the source's own Containerfile, Dockerfile or .dockerignore)
    rebuilds the image and replaces the container; anything else does what `reload`
    says: `none` (the framework reloads by itself), `restart` the container, `recreate`
    it, or `rebuild` (no mount at all: every edit rebuilds the image from the whole
    source, for compiled apps). `ignore` adds glob patterns (of names or relative
    paths) the watcher skips, e.g. files the app writes into its own folder.
    """

    reload: Literal["none", "restart", "recreate", "rebuild"] = "restart"
    dependency_files: list[str] = field(default_factory=lambda: list(DEPENDENCY_FILES),
                                        metadata=check(_relative_paths))
    dir: str = field(default="", metadata=check(_absolute_or_empty))
    ignore: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SpecFile:
    description: str = ""
    #: a command that deploys an app with this spec (shown in `spec show` and the README)
    example: str = ""
    kind: SpecKind = "container"
    params: dict[str, ParamSpec] = field(default_factory=dict)
    routing: RoutingSpec = field(default_factory=RoutingSpec)
    container: ContainerSpec = field(default_factory=ContainerSpec)
    dev: DevSpec = field(default_factory=DevSpec)


@dataclass(frozen=True, slots=True)
class Spec:
    """A loaded spec: its name, folder, settings and template files."""

    name: str
    path: Path
    description: str
    kind: SpecKind
    params: dict[str, ParamSpec]
    routing: RoutingSpec
    container: ContainerSpec
    #: template files relative to `path` (everything but spec.yaml)
    files: tuple[str, ...]
    example: str = ""
    dev: DevSpec = field(default_factory=DevSpec)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "params": {
                n: {"type": p.type, "default": p.default, "required": p.is_required,
                    "description": p.description}
                for n, p in self.params.items()
            },
            "routing": {"strip_app": self.routing.strip_app,
                        "redirect_bare_path": self.routing.redirect_bare_path,
                        "path_routing": self.routing.path_routing,
                        "static_from_disk": self.routing.static_from_disk},
            "files": list(self.files),
            "example": self.example,
            "dev": {"reload": self.dev.reload,
                    "dependency_files": list(self.dev.dependency_files),
                    "dir": self.dev.dir, "ignore": list(self.dev.ignore)},
        }


_DEFAULT_CHECKS: dict[str, type | tuple[type, ...]] = {
    "string": str, "int": int, "bool": bool, "list": list, "dict": dict,
}


def _check_params(params: dict[str, ParamSpec], problems: list[str]) -> None:
    for name, p in params.items():
        if not name or any(c.isspace() for c in name):
            problems.append(f'params: param name "{name}" has spaces')
        if p.default is None:
            continue
        ok = _DEFAULT_CHECKS[p.type]
        if (isinstance(p.default, bool) and p.type == "int") or not isinstance(p.default, ok):
            problems.append(
                f"params.{name}: param {name} is of type {p.type} but default value "
                f"is not a {p.type}: {json.dumps(p.default)}"
            )


@functools.lru_cache(maxsize=64)
def _parse_yaml(text: str) -> Any:
    """A spec.yaml's data, parsed once per distinct text.

    Specs are loaded per app (route building, starts, checks at create) and the YAML
    parser is pure Python (a few ms per spec): with a thousand apps of a handful of
    specs, parsing the same few texts again dominated a restart and every reconcile.
    """
    return YAML(typ="safe", pure=True).load(text)


def load_spec_dir(name: str, path: Path) -> Spec:
    """Load the spec in folder `path` (blocking; call via `asyncio.to_thread`)."""
    spec_file = path / SPEC_FILE
    try:
        text = spec_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec {name} has no {SPEC_FILE} in {path}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec {name}: {spec_file} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise SpecError(f"spec {name}: cannot read {spec_file}: {exc.strerror}") from None
    try:
        # a copy: build() may hand parts of the data (param defaults) to the Spec
        data = copy.deepcopy(_parse_yaml(text))
    except YAMLError as exc:
        raise SpecError(f"spec {name}: {spec_file} is not valid YAML: {exc}") from None
    problems: list[str] = []
    parsed = build(SpecFile, data, "", problems)
    if not problems:
        _check_params(parsed.params, problems)
        for arg, pname in parsed.container.param_build_args.items():
            if pname not in parsed.params:
                problems.append(f"container.param_build_args.{arg}: no param {pname}")
    if problems:
        raise SpecError(f"spec {name} ({spec_file}) is invalid: " + "; ".join(problems))
    files = tuple(sorted(
        str(p.relative_to(path)) for p in path.rglob("*")
        if p.is_file() and p != spec_file and "__pycache__" not in p.parts
    ))
    return Spec(name=name, path=path, description=parsed.description, kind=parsed.kind,
                params=dict(parsed.params), routing=parsed.routing,
                container=parsed.container, files=files,
                example=parsed.example or f"orun app create --spec {name} ./src /app",
                dev=parsed.dev)
