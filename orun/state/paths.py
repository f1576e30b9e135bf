"""App paths (`[domain:]path`) and path globs, with OpenRun's syntax and messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from orun.errors import AppPathError

RESERVED = "_cl_"
T = TypeVar("T")


@dataclass(frozen=True, slots=True, order=True)
class AppPath:
    """Where an app lives. `domain` is "" for apps on the default domain."""

    domain: str
    path: str

    def __str__(self) -> str:
        return f"{self.domain}:{self.path}" if self.domain else self.path

    def effective_domain(self, default_domain: str) -> str:
        return self.domain or default_domain


def normalize_domain(domain: str, default_domain: str) -> str:
    """Lowercase; a trailing `.` makes the domain relative to the default domain."""
    domain = domain.strip().lower()
    if domain.endswith("."):
        if not default_domain:
            raise AppPathError(
                "Domain cannot end with '.' since default_domain is not configured"
            )
        domain = domain + default_domain
    if domain == "127.0.0.1":
        domain = "localhost"
    return domain


def parse_app_path(text: str, default_domain: str) -> AppPath:
    """Parse `domain:path` or `path` (`counter.:` is `counter.<default_domain>:/`)."""
    if text.count(":") > 1:
        raise AppPathError(f'invalid app path {text}, expected one ":"')
    domain, _, path = text.rpartition(":")
    if domain:
        domain = normalize_domain(domain, default_domain)
    if domain == default_domain:
        domain = ""  # the default domain is stored as "" so a later domain change follows
    if path == "":
        path = "/"
    if not path.startswith("/"):
        raise AppPathError(f'invalid app path {text}, expected path to start with "/"')
    path = path.rstrip("/") or "/"
    return AppPath(domain, path)


def validate_for_create(app_path: AppPath) -> None:
    """OpenRun's create-time checks: no dot segments, no reserved `_cl_` segment."""
    path = app_path.path
    if "/.." in path:
        raise AppPathError("path cannot contain '/..'")
    if "../" in path:
        raise AppPathError("path cannot contain '../'")
    if "/./" in path:
        raise AppPathError("path cannot contain '/./'")
    if path.endswith("/."):
        raise AppPathError("path cannot end with '/.'")
    if "//" in path:
        raise AppPathError("path cannot contain '//'")
    if RESERVED in path.rsplit("/", 1)[-1]:
        raise AppPathError(
            f"last section of path cannot contain {RESERVED}, orun reserved path"
        )
    if any(c in path for c in "?#% \t\r\n"):
        raise AppPathError(f"path {path} contains a character not allowed in app paths")


def paths_overlap(a: str, b: str) -> bool:
    """True when one path is the other or a `/`-boundary prefix of it."""
    if a == b or a == "/" or b == "/":
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.startswith(short + "/")


def path_ancestors(path: str) -> Iterator[str]:
    """Every path `path` would overlap as the longer one (`paths_overlap`): each prefix
    that ends just before a `/`, nearest first, then the root. None for the root."""
    if path == "/":
        return
    cut = path.rfind("/")
    while cut > 0:
        path = path[:cut]
        yield path
        cut = path.rfind("/")
    yield "/"


class PathIndex(Generic[T]):
    """Items at app paths, by domain, answering "which of them may overlap this path?"
    in time that grows with the path's depth, not with the number of items.

    `overlapping` returns exactly the items whose path `paths_overlap`s the one asked
    about (the same path, an ancestor, the root, or one below it), in the order they
    were added; callers apply their own finer rules (`paths_clash`) to that short list
    instead of comparing against every app.
    """

    def __init__(self) -> None:
        self._seq = 0
        #: (domain, path) -> the items at that path
        self._at: dict[tuple[str, str], list[tuple[int, T]]] = {}
        #: (domain, path) -> the items at paths below it
        self._below: dict[tuple[str, str], list[tuple[int, T]]] = {}

    def add(self, domain: str, path: str, item: T) -> None:
        self._seq += 1
        entry = (self._seq, item)
        self._at.setdefault((domain, path), []).append(entry)
        for above in path_ancestors(path):
            self._below.setdefault((domain, above), []).append(entry)

    def overlapping(self, domain: str, path: str) -> list[T]:
        found = list(self._at.get((domain, path), ()))
        found += self._below.get((domain, path), ())
        for above in path_ancestors(path):
            found += self._at.get((domain, above), ())
        found.sort(key=lambda entry: entry[0])
        return [item for _, item in found]


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """doublestar (v4) semantics, as OpenRun uses: `*` and `?` stay within a segment.

    `**` is special only as a whole segment: `/**/` matches zero or more segments (so
    `/a/**/b` matches `/a/b`), a trailing `/**` also matches the parent itself (`/a/**`
    matches `/a`), and a leading `**/` matches zero or more leading segments. Anywhere
    else (`/a**`) it acts like `*`.
    """
    out: list[str] = []
    slash = re.escape("/")
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c != "*":
            out.append("[^/]" if c == "?" else re.escape(c))
            i += 1
            continue
        j = i
        while j < n and pattern[j] == "*":
            j += 1
        whole_segment = (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/")
        if j - i < 2 or not whole_segment:
            out.append("[^/]*")
            i = j
            continue
        lead = bool(out) and out[-1] == slash  # the `/` before `**`, folded in below
        if lead:
            out.pop()
        if j == n:  # trailing `**` (`/a/**` also matches `/a`)
            out.append("(?:/.*)?" if lead else ".*")
            i = j
        else:  # `**/`: zero or more whole segments
            out.append("/(?:.*/)?" if lead else "(?:.*/)?")
            i = j + 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PathGlob:
    """An app path glob. A path-only glob matches only apps on the default domain."""

    domain: str | None  # None = any domain ("all")
    path: str

    @classmethod
    def parse(cls, text: str, default_domain: str) -> PathGlob:
        text = text.strip()
        if text in ("", "*:**") or text.lower() == "all":
            return cls(None, "**")
        if text.count(":") > 1:
            raise AppPathError(f'invalid app path glob {text}, expected one ":"')
        domain, sep, path = text.rpartition(":")
        if sep:
            domain = "" if domain == "" else normalize_domain(domain, default_domain)
            if domain == default_domain:
                domain = ""
        if path == "*":
            path = "/*"  # as OpenRun: `*` and `domain:*` mean every top-level app
        elif path == "":
            path = "/"
        if not path.startswith("/") and not path.startswith("*"):
            raise AppPathError(f'invalid app path glob {text}, expected path to start with "/"')
        if len(path) > 1:
            path = path.rstrip("/")
        return cls(domain if sep else "", path)

    def matches(self, app_path: AppPath) -> bool:
        if self.domain is not None and not _glob_regex(self.domain).match(app_path.domain):
            return False
        return bool(_glob_regex(self.path).match(app_path.path))
