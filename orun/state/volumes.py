"""Container volumes (`--cvol`, spec volumes, Containerfile VOLUME) and secret templates.

Entry forms of `--cvol` and spec volumes follow OpenRun:

    /dst or dst              a named volume keyed on the target (data survives updates)
    name:/dst                a named volume
    /abs:/dst, ./rel:/dst    a bind mount (absolute sources must be in an allowed folder;
                             relative ones are inside the app source and always read-only)
    cl_secret:tmpl:/dst      a template from the app, rendered with the params, mounted
    ...:ro / ...:rw          read-only / read-write (the default)

Those entries come from the admin (CLI, config) or a spec. A source's own container
file is the app's repository, which is untrusted: its `VOLUME` lines only declare
container paths (as in Docker), so `declared_volumes` makes each one a named volume and
never a bind mount or a secret. A relative bind reaches into the source snapshot, which
other versions and apps share, so it is read-only whatever the entry says.

Named volumes are per app id, as in OpenRun, so stage and prod never share data.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orun.errors import ContainerConfigError
from orun.state.config import Config

SECRET_PREFIX = "cl_secret:"


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """One mount. `source` is a volume name, an absolute host path, or (for "secret") the
    template's path relative to the app source."""

    kind: Literal["volume", "bind", "secret"]
    source: str
    target: str
    read_only: bool = False


def volume_name(app_id: str, name: str) -> str:
    """The Docker volume for `name` of an app: stable, short, and safe as a name."""
    return f"orun-{app_id}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _target(entry: str, raw: str) -> str:
    if not raw:
        raise ContainerConfigError(f"error parsing volume {entry}: the target path is empty")
    target = posixpath.normpath("/" + raw)
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    if target == "/":
        raise ContainerConfigError(f"error parsing volume {entry}: cannot mount over /")
    return target


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


@dataclass(frozen=True, slots=True)
class _Context:
    app_id: str
    allowed: tuple[Path, ...]
    source_dir: Path | None
    app_run_dir: Path


def _allowed_dirs(allowed_mounts: Sequence[str], source_dir: Path | None,
                  app_run_dir: Path) -> tuple[Path, ...]:
    """Allowed mount roots, env-expanded and resolved; unexpandable ones are dropped."""
    dirs: list[Path] = []
    for raw in allowed_mounts:
        expanded = os.path.expandvars(raw)
        if not expanded:
            continue
        path = Path(expanded).expanduser()
        if path.is_absolute():
            dirs.append(path.resolve())
    if source_dir is not None:
        dirs.append(source_dir.resolve())
    dirs.append(app_run_dir.resolve())
    return tuple(dict.fromkeys(dirs))


def _bind_source(entry: str, raw: str, ctx: _Context) -> str:
    """Check a bind source and return it as an absolute, resolved host path."""
    if raw.startswith("/"):
        path = Path(posixpath.normpath(raw)).resolve()
        if not any(_inside(path, d) for d in ctx.allowed):
            shown = ", ".join(str(d) for d in ctx.allowed)
            raise ContainerConfigError(
                f"error parsing volume {entry}: bind volume source {raw} is not allowed: "
                f"source path {raw} is not within an allowed mount directory "
                f"(allowed: {shown})")
        return str(path)
    if ctx.source_dir is None:
        raise ContainerConfigError(f"error parsing volume {entry}: relative bind volume source "
                                   f"{raw} needs an app source folder")
    root = ctx.source_dir.resolve()
    path = (root / raw).resolve()
    if not _inside(path, root):
        raise ContainerConfigError(f"error parsing volume {entry}: bind volume source {raw} is "
                                   "not allowed: source path is outside the app source")
    return str(path)


def _split_mode(entry: str, parts: list[str]) -> tuple[list[str], bool | None]:
    """Strip a trailing `ro`/`rw`; leave at most `source:target` (or just `target`).

    The mode is None when the entry names none (read-write, except for source binds).
    """
    read_only: bool | None = None
    if len(parts) >= 2 and parts[-1] in ("ro", "rw"):
        parts, read_only = parts[:-1], parts[-1] == "ro"
    elif len(parts) == 3 and "/" not in parts[-1]:
        raise ContainerConfigError(f'error parsing volume {entry}: unknown volume option '
                                   f'"{parts[-1]}" (use ro or rw)')
    if len(parts) > 2:
        raise ContainerConfigError(f"error parsing volume {entry}: too many ':' separators")
    return parts, read_only


def _parse_secret(entry: str) -> VolumeMount:
    rest = entry[len(SECRET_PREFIX):]
    parts, read_only = _split_mode(entry, rest.split(":"))
    if len(parts) < 2 or not parts[0]:
        raise ContainerConfigError(
            f"expected bind mount (source:target) for cl_secret volume {rest}")
    template = posixpath.normpath(parts[0])
    if template.startswith(("/", "../")) or template in (".", ".."):
        raise ContainerConfigError(f"error parsing volume {entry}: secret template {parts[0]} "
                                   "must be a path inside the app source")
    return VolumeMount("secret", template, _target(entry, parts[1]), bool(read_only))


def _parse_one(entry: str, ctx: _Context) -> VolumeMount:
    if entry.startswith(SECRET_PREFIX):
        return _parse_secret(entry)
    parts, read_only = _split_mode(entry, entry.split(":"))
    if len(parts) == 1:
        target = _target(entry, parts[0])
        return VolumeMount("volume", volume_name(ctx.app_id, target), target, bool(read_only))
    source, target = parts[0], _target(entry, parts[1])
    if not source:
        raise ContainerConfigError(f"error parsing volume {entry}: the source is empty")
    if source.startswith(("$", "~")):
        # `$ORUN_HOME/../x` would otherwise be a folder named `$ORUN_HOME` in the source:
        # the admin meant a host path, and gets a mount of something else.
        raise ContainerConfigError(
            f"error parsing volume {entry}: {source[0]} is not expanded in volumes; write "
            "the host folder as an absolute path")
    if source.startswith((".", "/")) or "/" in source:
        if not source.startswith("/"):
            # Inside the app source: a snapshot shared by versions and apps, never
            # writable by a container.
            if read_only is False:
                raise ContainerConfigError(
                    f"error parsing volume {entry}: a bind mount from the app source is "
                    "read-only (the source snapshot is shared and must not change); use a "
                    "named volume (name:/dst) for data the app writes")
            read_only = True
        return VolumeMount("bind", _bind_source(entry, source, ctx), target, bool(read_only))
    return VolumeMount("volume", volume_name(ctx.app_id, source), target, bool(read_only))


def declared_volumes(paths: Sequence[str], *, app_id: str,
                     containerfile: str) -> list[VolumeMount]:
    """The named volumes for the `VOLUME` paths of the source's own container file.

    In Docker a `VOLUME` line only declares a path inside the container, and so it is
    here: each path gets the app's named volume at that place. Anything that reads as a
    mount spec (`src:dst`, `cl_secret:...`) is refused rather than reinterpreted: host
    mounts and secrets are granted by the admin with `--cvol`, never by the repository.
    """
    mounts: list[VolumeMount] = []
    for raw in paths:
        path = raw.strip()
        if ":" in path:
            raise ContainerConfigError(
                f"{containerfile or 'container file'}: VOLUME {path}: a VOLUME declares a "
                "path inside the container and cannot contain ':'; host folders and secrets "
                "are mounted only with --cvol by the admin")
        target = _target(f"VOLUME {path}", path)
        mounts.append(VolumeMount("volume", volume_name(app_id, target), target))
    return mounts


def parse_volumes(
    entries: Sequence[str],
    *,
    app_id: str,
    allowed_mounts: Sequence[str],
    source_dir: Path | None,
    app_run_dir: Path,
    declared: Sequence[VolumeMount] = (),
) -> list[VolumeMount]:
    """Parse and check volume entries (earlier sources first), one mount per target.

    `declared` (from `declared_volumes`) come first. A later entry for a target replaces
    an earlier one, except that a `cl_secret` entry is never replaced by a plain one: a
    secret template overrides the spec's volume at the same place, whichever comes first.
    """
    ctx = _Context(app_id, _allowed_dirs(allowed_mounts, source_dir, app_run_dir),
                   source_dir, app_run_dir)
    by_target: dict[str, VolumeMount] = {m.target: m for m in declared}
    for raw in entries:
        entry = raw.strip()
        if not entry:
            raise ContainerConfigError("error parsing volume: the entry is empty")
        if any(ord(c) < 32 or c == "\x7f" for c in entry):
            raise ContainerConfigError(f"error parsing volume {entry!r}: control characters "
                                       "(NUL, newline, ...) are not allowed in volumes")
        mount = _parse_one(entry, ctx)
        previous = by_target.get(mount.target)
        if previous is not None:
            if previous.kind == "secret" and mount.kind != "secret":
                continue
            del by_target[mount.target]
        by_target[mount.target] = mount
    return list(by_target.values())


def allowed_mounts(config: Config, home: Path) -> list[str]:
    """`security.allowed_mounts` with `$ORUN_HOME` meaning this server's home, whatever
    the environment says."""
    return [p.replace("${ORUN_HOME}", str(home)).replace("$ORUN_HOME", str(home))
            for p in config.security.allowed_mounts]


def app_run_dir(home: Path, app_id: str) -> Path:
    return home / "run" / "app" / app_id


# -- secret templates -------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.params\.([A-Za-z_][A-Za-z0-9_]*)$")
_INDEX = re.compile(r'^index\s+\.params\s+"([^"\\]*)"$')
_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_RANGE = re.compile(
    r"^range\s+(?:\$([A-Za-z_]\w*)\s*,\s*)?\$([A-Za-z_]\w*)\s*:=\s*\.params$")


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Param:
    name: str


@dataclass(frozen=True, slots=True)
class _Var:
    name: str


@dataclass(frozen=True, slots=True)
class _Range:
    key_var: str | None
    value_var: str
    body: tuple[_Node, ...]


_Node = _Text | _Param | _Var | _Range


def _lex(text: str, name: str) -> list[str | tuple[str]]:
    """Text pieces (str) and actions (1-tuples), with `{{-`/`-}}` trimming applied."""
    pieces: list[str | tuple[str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if "{{" in chunk:
            raise ContainerConfigError(f"secret template {name}: unclosed action")
        pieces.append(chunk)
        pieces.append((m.group(2).strip(),))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:].lstrip() if trim_next else text[pos:]
    if "{{" in tail:
        raise ContainerConfigError(f"secret template {name}: unclosed action")
    pieces.append(tail)
    return pieces


def _parse(pieces: list[str | tuple[str]], name: str) -> tuple[_Node, ...]:
    stack: list[tuple[list[_Node], re.Match[str] | None]] = [([], None)]
    for piece in pieces:
        nodes = stack[-1][0]
        if isinstance(piece, str):
            if piece:
                nodes.append(_Text(piece))
            continue
        action = piece[0]
        if action.startswith("/*") and action.endswith("*/"):
            continue
        if m := _FIELD.match(action) or _INDEX.match(action):
            nodes.append(_Param(m.group(1)))
        elif m := _VAR.match(action):
            nodes.append(_Var(m.group(1)))
        elif m := _RANGE.match(action):
            stack.append(([], m))
        elif action == "end" and len(stack) > 1:
            body, opened = stack.pop()
            assert opened is not None
            stack[-1][0].append(_Range(opened.group(1), opened.group(2), tuple(body)))
        else:
            raise ContainerConfigError(
                f"secret template {name}: unsupported action {{{{{action}}}}} (supported: "
                "{{.params.NAME}}, {{range $k, $v := .params}}...{{end}}, {{$k}}, {{$v}})")
    if len(stack) > 1:
        raise ContainerConfigError(f"secret template {name}: range without {{{{end}}}}")
    return tuple(stack[0][0])


def _render(nodes: tuple[_Node, ...], params: Mapping[str, str], bound: dict[str, str],
            name: str, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Param):
            if node.name not in params:
                raise ContainerConfigError(
                    f"secret template {name}: param {node.name} is not defined")
            out.append(params[node.name])
        elif isinstance(node, _Var):
            if node.name not in bound:
                raise ContainerConfigError(
                    f"secret template {name}: undefined variable ${node.name}")
            out.append(bound[node.name])
        else:
            for key in sorted(params):
                inner = dict(bound)
                if node.key_var is not None:
                    inner[node.key_var] = key
                inner[node.value_var] = params[key]
                _render(node.body, params, inner, name, out)


def render_template(text: str, params: Mapping[str, str], *, name: str) -> str:
    """Render a secret template with the subset of Go text/template that such files use.

    Supported: `{{.params.NAME}}`, `{{index .params "NAME"}}`, `{{range $k, $v :=
    .params}}...{{end}}` (sorted by key, as Go does) with `{{$k}}`/`{{$v}}`, comments
    and `{{-`/`-}}` trimming. Anything else is an error rather than a silent blank, as
    is a param that is not defined.
    """
    nodes = _parse(_lex(text, name), name)
    out: list[str] = []
    _render(nodes, params, {}, name, out)
    return "".join(out)


__all__ = ["SECRET_PREFIX", "VolumeMount", "allowed_mounts", "app_run_dir", "declared_volumes",
           "parse_volumes", "render_template", "volume_name"]
