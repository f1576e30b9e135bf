""".dockerignore rules with Docker's semantics, so orun sends the daemon what `docker build`
would send.

Docker's rules, re-implemented here:

* one pattern per line; lines starting with `#` are comments; blank lines are skipped;
  surrounding whitespace is trimmed;
* a pattern is cleaned like Go's `filepath.Clean` and a leading `/` is dropped, so
  `/build`, `./build` and `build/` all mean `build` at the context root;
* Go `filepath.Match` syntax: `*` and `?` never cross `/`, `[...]` classes (`[^...]`
  negates), `\\` escapes the next character; `**` matches any number of directories;
* `!pattern` re-includes what earlier lines excluded; the last matching line wins;
* a pattern that matches a directory matches everything below it.

Unlike Docker, an unterminated `[` is reported rather than silently never matching.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from orun.errors import BuildError


@dataclass(frozen=True, slots=True)
class _Rule:
    text: str
    exclusion: bool
    regex: re.Pattern[str]
    #: per-segment regexes (None for a `**` segment), for `may_contain_included`
    segments: tuple[re.Pattern[str] | None, ...]


def clean_pattern(pattern: str) -> str:
    """Go's `filepath.Clean` (slash form) minus any leading `/`."""
    if not pattern:
        return pattern
    cleaned = posixpath.normpath(pattern)
    if len(cleaned) > 1:
        cleaned = cleaned.lstrip("/") or "/"
    return cleaned


def _class_to_regex(pattern: str, start: int, text: str) -> tuple[str, int]:
    """Translate the `[...]` class opening at `start`; return (regex, index after `]`)."""
    i = start + 1
    out = "["
    if i < len(pattern) and pattern[i] == "^":
        out += "^"
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            return out + "]", i + 1
        first = False
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            ch = pattern[i]
        if ch == "-" and out[-1] not in "[^" and i + 1 < len(pattern) and pattern[i + 1] != "]":
            out += "-"
        else:
            out += re.escape(ch)
        i += 1
    raise BuildError(f"invalid .dockerignore pattern {text!r}: unterminated character class")


def _glob_to_regex(pattern: str, text: str) -> str:
    """Translate a cleaned pattern (or one path segment of it) into a regex body."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                # `**` at the end matches everything; elsewhere any number of directories
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            part, i = _class_to_regex(pattern, i, text)
            out.append(part)
            continue
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _compile(text: str, pattern: str, exclusion: bool) -> _Rule:
    regex = re.compile(_glob_to_regex(pattern, text), re.DOTALL)
    segments: list[re.Pattern[str] | None] = []
    for seg in pattern.split("/"):
        try:
            seg_regex = None if "**" in seg else _glob_to_regex(seg, text)
        except BuildError:  # a class spanning a `/`: be conservative
            seg_regex = None
        segments.append(None if seg_regex is None else re.compile(seg_regex, re.DOTALL))
    return _Rule(text, exclusion, regex, tuple(segments))


def _could_match_below(segments: tuple[re.Pattern[str] | None, ...], parts: list[str]) -> bool:
    """Whether a pattern could match `parts` itself or some path below it (conservative)."""
    for i, part in enumerate(parts):
        if i >= len(segments):
            return True  # the pattern matched an ancestor, so it matches everything below
        seg = segments[i]
        if seg is None:
            return True  # `**` can absorb any remaining directories
        if not seg.fullmatch(part):
            return False
    return True


class IgnoreRules:
    """A parsed .dockerignore. An empty file (or none) ignores nothing."""

    __slots__ = ("_has_exclusions", "_rules")

    def __init__(self, rules: list[_Rule]) -> None:
        self._rules = rules
        self._has_exclusions = any(r.exclusion for r in rules)

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        rules: list[_Rule] = []
        for raw in text.removeprefix("\ufeff").splitlines():
            if raw.startswith("#"):
                continue
            line = raw.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
                if not line:
                    raise BuildError('invalid .dockerignore: illegal exclusion pattern: "!"')
            rules.append(_compile(raw.strip(), clean_pattern(line), exclusion))
        return cls(rules)

    @property
    def empty(self) -> bool:
        return not self._rules

    def ignored(self, rel_path: str) -> bool:
        """Whether `rel_path` (slash-separated, relative to the context root) is excluded."""
        path = clean_pattern(rel_path)
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = False
        for rule in self._rules:
            # An exclusion can only flip an excluded path back, and vice versa.
            if rule.exclusion != matched:
                continue
            if any(rule.regex.fullmatch(p) for p in prefixes):
                matched = not rule.exclusion
        return matched

    def may_contain_included(self, rel_dir: str) -> bool:
        """Whether something below the directory `rel_dir` might not be ignored.

        False means a walker can skip the whole directory. It is exact when the
        directory is not ignored, and conservative (may say True needlessly) otherwise.
        """
        if not self.ignored(rel_dir):
            return True
        if not self._has_exclusions:
            return False
        parts = clean_pattern(rel_dir).split("/")
        return any(r.exclusion and _could_match_below(r.segments, parts) for r in self._rules)


__all__ = ["IgnoreRules", "clean_pattern"]
