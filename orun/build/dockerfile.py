"""Just enough Containerfile parsing to plan a container: the port, volumes, base images
and global build args, plus a lint for features the classic builder lacks.

orun never builds from this parse (the daemon parses the file itself); it only reads
facts that decide how the container is run. The tokeniser follows Docker's parser:
parser directives at the top (`# escape=` is honoured), comments, line continuations,
case-insensitive instructions, quotes, `$VAR`/`${VAR}`/`${VAR:-default}` expansion, and
heredoc bodies (skipped, so their lines are never mistaken for instructions).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Lookup = Callable[[str], str | None]

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"""^\d*<<(-?)(["']?)([^<"'\s]+)\2$""")
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})


@dataclass(frozen=True, slots=True)
class ContainerfileInfo:
    """Facts read from a container file.

    `args` holds the global ARGs (declared before the first FROM) and their defaults,
    expanded against earlier global defaults; None when an ARG has no default.
    `workdir` is the final stage's WORKDIR (inherited from an earlier stage it is built
    on); None when that stage sets none (the base image's then applies, unknown here)
    or it cannot be resolved.
    """

    exposed_port: int | None
    volumes: tuple[str, ...]
    base_images: tuple[str, ...]
    args: dict[str, str | None] = field(default_factory=dict)
    workdir: str | None = None


@dataclass(frozen=True, slots=True)
class _Instruction:
    line: int
    keyword: str
    rest: str
    heredocs: tuple[str, ...] = ()


@dataclass(slots=True)
class _Parsed:
    directives: dict[str, tuple[int, str]]
    instructions: list[_Instruction]
    escape: str


# -- tokenising ------------------------------------------------------------------------


def _read_directives(lines: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """Parser directives: `# key=value` lines at the very top, before anything else.

    Returns {key: (line number, value)} and the index of the first line after them."""
    found: dict[str, tuple[int, str]] = {}
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if m is None or m.group(1).lower() not in _KNOWN_DIRECTIVES or m.group(1).lower() in found:
            return found, i  # anything else is a comment, and ends the directives
        found[m.group(1).lower()] = (i + 1, m.group(2))
    return found, len(lines)


def _strip_continuation(line: str, escape: str) -> tuple[str, bool]:
    """Remove a trailing escape (plus trailing blanks); True when the line continues."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[: -len(escape)], True
    return line, False


def _heredoc_names(rest: str, escape: str) -> tuple[str, ...]:
    names: list[str] = []
    for word in split_words(rest, escape):
        m = _HEREDOC.match(word)
        if m:
            names.append(("-" if m.group(1) else "") + m.group(3))
    return tuple(names)


def _tokenise(text: str) -> _Parsed:
    lines = text.removeprefix("\ufeff").splitlines()
    directives, i = _read_directives(lines)
    escape = directives.get("escape", (0, "\\"))[1]
    if escape not in ("\\", "`"):
        escape = "\\"
    instructions: list[_Instruction] = []
    while i < len(lines):
        start = i + 1
        line = lines[i].lstrip()
        i += 1
        if not line or line.startswith("#"):
            continue
        logical, more = _strip_continuation(line, escape)
        while more and i < len(lines):
            nxt = lines[i].lstrip()
            i += 1
            if not nxt or nxt.startswith("#"):
                continue
            part, more = _strip_continuation(nxt, escape)
            logical += part
        words = logical.strip().split(None, 1)
        if not words:
            continue
        keyword = words[0].upper()
        rest = words[1] if len(words) > 1 else ""
        heredocs: tuple[str, ...] = ()
        if keyword in _HEREDOC_INSTRUCTIONS:
            heredocs = _heredoc_names(rest, escape)
            for name in heredocs:
                strip_tabs = name.startswith("-")
                delimiter = name.lstrip("-") if strip_tabs else name
                while i < len(lines):
                    body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if body == delimiter:
                        break
        instructions.append(_Instruction(start, keyword, rest, heredocs))
    return _Parsed(directives, instructions, escape)


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            current.append(text[i : i + 2])
            in_word = True
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
            i += 1
            continue
        current.append(ch)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


# -- variable expansion ----------------------------------------------------------------


def _find_close(word: str, start: int) -> int:
    """Index of the `}` closing the `${` whose body starts at `start`, or -1."""
    depth = 1
    i = start
    while i < len(word):
        if word.startswith("${", i):
            depth += 1
            i += 2
            continue
        if word[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand_braced(body: str, lookup: Lookup, escape: str, missing: list[str]) -> str:
    m = _NAME.match(body)
    if not m:
        missing.append(body)
        return ""
    name, tail = m.group(0), body[m.end() :]
    value = lookup(name)
    if not tail:
        if value is None:
            missing.append(name)
        return value or ""
    colon = tail.startswith(":")
    op = tail[1:2] if colon else tail[:1]
    word = tail[2:] if colon else tail[1:]
    unset = value is None or (colon and value == "")
    if op == "-":
        return expand_word(word, lookup, escape, missing) if unset else value or ""
    if op == "+":
        return "" if unset else expand_word(word, lookup, escape, missing)
    if op == "?" and not unset:
        return value or ""
    # `${VAR?msg}` with VAR unset, or a pattern operator the classic builder lacks
    missing.append(name)
    return ""


def expand_word(word: str, lookup: Lookup, escape: str = "\\",
                missing: list[str] | None = None) -> str:
    """Expand variables and remove quotes in one word, as Docker's shell lexer does.

    Names that cannot be resolved expand to "" and are appended to `missing`.
    """
    if missing is None:
        missing = []
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(word):
        ch = word[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
            i += 1
            continue
        if ch == escape and i + 1 < len(word):
            nxt = word[i + 1]
            if quote == '"' and nxt not in ('"', "$", escape):
                out.append(ch)
            out.append(nxt)
            i += 2
            continue
        if ch == "$":
            if word.startswith("${", i):
                close = _find_close(word, i + 2)
                if close >= 0:
                    out.append(_expand_braced(word[i + 2 : close], lookup, escape, missing))
                    i = close + 1
                    continue
            m = _NAME.match(word, i + 1)
            if m:
                value = lookup(m.group(0))
                if value is None:
                    missing.append(m.group(0))
                out.append(value or "")
                i = m.end()
                continue
            out.append(ch)
            i += 1
            continue
        if quote == '"' and ch == '"':
            quote = ""
        elif not quote and ch in "\"'":
            quote = ch
        else:
            out.append(ch)
        i += 1
    return "".join(out)


# -- facts ------------------------------------------------------------------------------


def _flags_and_words(rest: str, escape: str) -> tuple[list[str], list[str]]:
    words = split_words(rest, escape)
    flags: list[str] = []
    while words and words[0].startswith("--"):
        flags.append(words.pop(0))
    return flags, words


def _parse_port(word: str) -> int | None:
    text = word.strip()
    proto = text.rpartition("/")
    if proto[1]:
        if proto[2].lower() not in ("tcp", "udp", "sctp"):
            return None
        text = proto[0]
    text = text.partition("-")[0]  # a range exposes its first port first
    if not text.isascii() or not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _port_word(word: str, scope: _Scope, escape: str) -> int | None:
    """Expand as Docker would; if that leaves a name unset, fall back to `lenient`."""
    for lookup in (scope.in_stage, scope.lenient):
        missing: list[str] = []
        value = expand_word(word, lookup, escape, missing)
        if not missing:
            return _parse_port(value)
    return None


class _Scope:
    """Variables visible while walking the file, with Docker's precedence."""

    def __init__(self, build_args: Mapping[str, str]) -> None:
        self.build_args = build_args
        self.global_defaults: dict[str, str | None] = {}
        self.stage_args: dict[str, str | None] = {}
        self.stage_env: dict[str, str] = {}
        self.stage_envs: dict[str, dict[str, str]] = {}

    def global_value(self, name: str) -> str | None:
        if name not in self.global_defaults:
            return None
        return self.build_args.get(name, self.global_defaults[name])

    def declare_stage_arg(self, name: str, default: str | None) -> None:
        """An ARG inside a stage: its build arg, else its default, else the global one."""
        if name in self.build_args:
            self.stage_args[name] = self.build_args[name]
        else:
            self.stage_args[name] = default if default is not None else self.global_value(name)

    def in_stage(self, name: str) -> str | None:
        """Docker's view inside a stage: ENV beats ARG; global ARGs need redeclaring."""
        if name in self.stage_env:
            return self.stage_env[name]
        return self.stage_args.get(name)

    def lenient(self, name: str) -> str | None:
        """Docker's view, then global ARGs and plain build args: a last resort."""
        value = self.in_stage(name)
        if value is None:
            value = self.global_value(name)
        return value if value is not None else self.build_args.get(name)


def _arg_words(rest: str, escape: str) -> list[tuple[str, str | None]]:
    """`ARG A B=1 C="x y"` -> [(A, None), (B, "1"), (C, '"x y"')] (defaults unexpanded)."""
    declared: list[tuple[str, str | None]] = []
    for word in split_words(rest, escape):
        name, eq, raw = word.partition("=")
        declared.append((name, raw if eq else None))
    return declared


def _env_pairs(rest: str, escape: str, lookup: Lookup) -> dict[str, str]:
    words = split_words(rest, escape)
    if not words:
        return {}
    if "=" not in words[0]:  # legacy `ENV NAME value with spaces`
        value = rest.strip()[len(words[0]) :].strip()
        return {words[0]: expand_word(value, lookup, escape)}
    pairs: dict[str, str] = {}
    for word in words:
        name, _, raw = word.partition("=")
        pairs[name] = expand_word(raw, lookup, escape)
    return pairs


def _volumes(rest: str, escape: str, lookup: Lookup) -> list[str]:
    text = rest.strip()
    raw: list[str] | None = None
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, list) and all(isinstance(v, str) for v in loaded):
            raw = [expand_word(v, lookup, escape) for v in loaded]
    if raw is None:
        raw = [expand_word(w, lookup, escape) for w in split_words(text, escape)]
    return [v for v in raw if v]


def parse_containerfile(text: str, build_args: Mapping[str, str] = {}) -> ContainerfileInfo:
    """Read the exposed port, volumes, base images and global ARGs of a container file.

    `exposed_port` is the first port of the LAST `EXPOSE` (any stage), as OpenRun does,
    but `8000/tcp` and variables are understood. Variables resolve like Docker (an ENV
    set earlier in the stage beats an ARG; an ARG takes its build arg, else its default;
    a global ARG is visible in a stage only when redeclared there). Where Docker would
    leave a name unset, global ARGs and then plain build args are tried. A port that is
    still unresolvable gives None rather than a guess.
    """
    parsed = _tokenise(text)
    esc = parsed.escape
    scope = _Scope(build_args)
    args: dict[str, str | None] = {}
    stages: set[str] = set()
    bases: list[str] = []
    volumes: list[str] = []
    port: int | None = None
    seen_from = False
    current_stage: str | None = None
    #: the WORKDIR of the stage being read, and of each named stage (for FROM <stage>)
    workdir: str | None = None
    stage_workdirs: dict[str, str | None] = {}
    for ins in parsed.instructions:
        if ins.keyword == "ARG" and not seen_from:
            for name, raw in _arg_words(ins.rest, esc):
                if raw is None:
                    args[name] = scope.global_defaults[name] = None
                    continue
                args[name] = expand_word(raw, args.get, esc)
                scope.global_defaults[name] = expand_word(raw, scope.global_value, esc)
        elif ins.keyword == "ARG":
            for name, raw in _arg_words(ins.rest, esc):
                default = None if raw is None else expand_word(raw, scope.in_stage, esc)
                scope.declare_stage_arg(name, default)
        elif ins.keyword == "FROM":
            seen_from = True
            _, words = _flags_and_words(ins.rest, esc)
            image = expand_word(words[0], scope.global_value, esc) if words else ""
            parent = image.lower()
            scope.stage_args = {}
            scope.stage_env = dict(scope.stage_envs.get(parent, {}))
            workdir = stage_workdirs.get(parent) if parent in stages else None
            if image and parent not in stages and parent != "scratch" and image not in bases:
                bases.append(image)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
                scope.stage_envs[words[2].lower()] = scope.stage_env
                stage_workdirs[words[2].lower()] = workdir
            current_stage = words[2].lower() if len(words) >= 3 and \
                words[1].lower() == "as" else None
        elif ins.keyword == "WORKDIR":
            words = split_words(ins.rest, esc)
            unresolved: list[str] = []
            value = expand_word(words[0], scope.in_stage, esc, unresolved) if words else ""
            if not value or unresolved:
                workdir = None
            elif value.startswith("/"):
                workdir = posixpath.normpath(value)
            elif workdir is not None:
                workdir = posixpath.normpath(posixpath.join(workdir, value))
            else:  # relative to the base image's WORKDIR, unknown here
                workdir = None
            if current_stage is not None:
                stage_workdirs[current_stage] = workdir
        elif ins.keyword == "ENV":
            scope.stage_env.update(_env_pairs(ins.rest, esc, scope.in_stage))
        elif ins.keyword == "EXPOSE":
            words = split_words(ins.rest, esc)
            port = None
            if words:
                port = _port_word(words[0], scope, esc)
        elif ins.keyword == "VOLUME":
            for v in _volumes(ins.rest, esc, scope.in_stage):
                if v not in volumes:
                    volumes.append(v)
    return ContainerfileInfo(port, tuple(volumes), tuple(bases), args, workdir)


# -- lint -------------------------------------------------------------------------------

_BUILDKIT_FLAGS: dict[str, tuple[str, ...]] = {
    "RUN": ("mount", "network", "security"),
    "COPY": ("link", "parents", "exclude"),
    "ADD": ("link", "checksum", "keep-git-dir", "exclude"),
}


def forbidden_features(text: str) -> list[str]:
    """Problems for features the classic builder (which orun uses) cannot handle.

    Each is one human-readable line naming the line number, so spec authors can fix
    bundled container files before users hit an obscure daemon error.
    """
    parsed = _tokenise(text)
    problems: list[str] = []
    if "syntax" in parsed.directives:
        line, value = parsed.directives["syntax"]
        problems.append(f"line {line}: the '# syntax={value}' parser directive needs BuildKit")
    for ins in parsed.instructions:
        flags, _ = _flags_and_words(ins.rest, parsed.escape)
        for flag in flags:
            name = flag[2:].partition("=")[0].lower()
            if name in _BUILDKIT_FLAGS.get(ins.keyword, ()):
                problems.append(f"line {ins.line}: {ins.keyword} --{name} needs BuildKit")
        if ins.heredocs:
            problems.append(f"line {ins.line}: {ins.keyword} with a heredoc "
                            f"(<<{ins.heredocs[0].lstrip('-')}) needs BuildKit")
    return problems


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction of a container file: its line, upper-case keyword, flags (`--x=y`)
    and words (quotes removed, variables left as written)."""

    line: int
    keyword: str
    flags: tuple[str, ...]
    words: tuple[str, ...]
    rest: str


def instructions(text: str) -> list[Instruction]:
    """Every instruction of a container file, as Docker's parser reads them (for lint
    rules that look at more than `parse_containerfile` keeps)."""
    parsed = _tokenise(text)
    found = []
    for ins in parsed.instructions:
        flags, words = _flags_and_words(ins.rest, parsed.escape)
        found.append(Instruction(ins.line, ins.keyword, tuple(flags), tuple(words), ins.rest))
    return found


__all__ = [
    "ContainerfileInfo",
    "Instruction",
    "expand_word",
    "forbidden_features",
    "instructions",
    "parse_containerfile",
    "split_words",
]
