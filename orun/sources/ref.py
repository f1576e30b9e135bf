"""Parse the source argument a user typed into a `SourceRef`.

A source is one of three things (OpenRun §1.2):

* ``-``: no source at all (image and proxy apps);
* an absolute local path: a folder copied as is (the CLI makes relative paths absolute
  on the client, so a relative path reaching the server is a bug or a hand-written
  config, and is rejected rather than resolved against the server's cwd);
* a git URL: ``git@host:org/repo``, ``http(s)://``, ``ssh://``, ``file://`` or the bare
  ``host.tld/org/repo`` form. A folder inside the repository can follow the repository
  (``github.com/org/repo/sub/dir``), come after ``#`` (``URL#sub/dir``) or after a
  GitLab-style ``//`` (``gitlab.com/group/subgroup/repo//sub/dir``).

Parsing is pure string work: nothing here touches the disk or the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from orun.errors import SourceError

SourceKind = Literal["none", "local", "git"]

NO_SOURCE = "-"

_SCHEMES = ("http://", "https://", "ssh://", "file://", "git://")
# scp-like syntax as git understands it: user@host:path, with no "/" before the ":".
_SCP_RE = re.compile(r"^(?P<user>[A-Za-z0-9._~+-]+)@(?P<host>[A-Za-z0-9._-]+):(?P<path>.*)$")
_COMMIT_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_BAD_BRANCH_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_USAGE = "expected host/org/repo[/folder], a git URL, an absolute path or -"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an app's files come from; immutable and cheap to compare.

    `location` is "" for no source, an absolute path for a local folder and the URL
    handed to ``git clone`` for git. `subdir` is a relative folder inside the
    repository ("" for its root), never with a leading or trailing "/". `branch` None
    means the remote's default branch (its HEAD). `commit`, when set, wins over
    `branch`. `original` is the source exactly as the user typed it, for messages and
    for storing alongside the app.
    """

    kind: SourceKind
    location: str
    subdir: str
    branch: str | None
    commit: str | None
    original: str

    @property
    def display(self) -> str:
        """The location with any password in the URL masked, for messages and logs."""
        return redact_url(self.location) if self.kind == "git" else self.location


def parse_source(source: str, *, branch: str | None = None, commit: str | None = None) -> SourceRef:
    """Turn a user's source argument (plus --branch/--commit) into a `SourceRef`.

    `branch` and `commit` only mean something for git sources; for a local folder or
    no source they are dropped (the CLI may pass a default branch for every source).
    Raises `SourceError` with a message naming the problem.
    """
    text = source.strip()
    if not text:
        raise SourceError(f"source is empty: {_USAGE}")
    if text == NO_SOURCE:
        return SourceRef("none", "", "", None, None, source)
    if is_git_source(text):
        location, subdir = _split_git(text, source)
        return SourceRef(
            "git", location, subdir, _clean_branch(branch), _clean_commit(commit), source
        )
    if not Path(text).is_absolute():
        raise SourceError(
            f'source path "{text}" must be absolute (or a git URL such as '
            "github.com/org/repo); relative paths are resolved by the CLI"
        )
    return SourceRef("local", os.path.normpath(text), "", None, None, source)


def is_git_source(text: str) -> bool:
    """OpenRun's `IsGit`: URL schemes, scp-like ``user@host:path``, or ``host.tld/a/b``."""
    if not text or text[0] in "/.~":
        return False
    if text.startswith((*_SCHEMES, "git@")) or _SCP_RE.match(text):
        return True
    segments = text.split("/")
    return "." in segments[0] and len(segments) >= 3


def redact_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host/...`` so errors can be shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# --- git URL splitting -------------------------------------------------------------------


def _split_git(text: str, original: str) -> tuple[str, str]:
    """Split a git source into (clone URL, folder inside the repository).

    The repository ends, in order of precedence: before ``#``; before a ``//`` in the
    path; after the first path segment ending in ``.git``; at the end of the path for
    ``file://`` URLs (a local path can be any depth); otherwise after ``org/repo``, the
    first two path segments, as OpenRun does.
    """
    if "#" in text:
        repo_part, _, fragment = text.partition("#")
        if "#" in fragment:
            raise SourceError(f'invalid git source "{original}": more than one "#"')
        prefix, path = _split_prefix(repo_part.rstrip("/"), original)
        if "//" in path:
            raise SourceError(
                f'invalid git source "{original}": give the folder after "#" or after "//", '
                "not both"
            )
        return prefix + path, _normalize_subdir(fragment, original)

    prefix, path = _split_prefix(text, original)
    if "//" in path:
        repo_path, _, folder = path.partition("//")
        _require_repo_path(repo_path, original)
        return prefix + repo_path, _normalize_subdir(folder, original)

    path = path.rstrip("/")
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment.endswith(".git") and segment != ".git":
            repo_path, folder = "/".join(segments[: i + 1]), "/".join(segments[i + 1 :])
            return prefix + repo_path, _normalize_subdir(folder, original)
    if prefix.startswith("file://"):
        return prefix + path, ""

    leading = "/" if path.startswith("/") else ""
    names = path.lstrip("/").split("/")
    if len(names) < 2 or not names[0] or not names[1]:
        raise SourceError(
            f'invalid git source "{original}": expected host/org/repo[/folder]; '
            "use URL#folder to mark where the repository ends"
        )
    folder = "/".join(names[2:])
    return prefix + leading + "/".join(names[:2]), _normalize_subdir(folder, original)


def _split_prefix(text: str, original: str) -> tuple[str, str]:
    """Split into (scheme+authority prefix, path). Paths of URLs keep their leading "/".

    The bare ``host.tld/org/repo`` form gets an ``https://`` prefix, as in OpenRun.
    """
    scp = _SCP_RE.match(text) if not text.startswith(_SCHEMES) else None
    if scp:
        path = scp.group("path")
        if not path.strip("/"):
            raise SourceError(f'invalid git source "{original}": no repository after ":"')
        return f"{scp.group('user')}@{scp.group('host')}:", path
    if not text.startswith(_SCHEMES):
        if text.startswith("git@"):
            raise SourceError(f'invalid git source "{original}": expected git@host:org/repo')
        text = "https://" + text
    scheme, _, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    if scheme != "file" and not authority:
        raise SourceError(f'invalid git source "{original}": no host in the URL')
    if scheme != "file" and any(c in authority for c in " \t\\"):
        raise SourceError(f'invalid git source "{original}": bad host "{authority}"')
    if not slash or not path.strip("/"):
        raise SourceError(f'invalid git source "{original}": no repository path in the URL')
    return f"{scheme}://{authority}", "/" + path


def _require_repo_path(path: str, original: str) -> None:
    """Raise unless the repository part before a ``//`` folder separator is non-empty."""
    if not path.strip("/"):
        raise SourceError(f'invalid git source "{original}": no repository before "//"')


def _normalize_subdir(raw: str, original: str) -> str:
    """Clean a folder inside the repository: no empty, "." or ".." segments, no slashes
    at either end. ".." is refused so a source can never point outside its checkout."""
    segments = [s for s in raw.split("/") if s]
    for segment in segments:
        if segment in (".", "..") or "\x00" in segment or "\\" in segment:
            raise SourceError(
                f'invalid folder "{raw}" in source "{original}": it must be a plain '
                "relative path inside the repository"
            )
    return "/".join(segments)


def _clean_branch(branch: str | None) -> str | None:
    """Validate a branch (or tag) name; "" means the default branch like None does."""
    if branch is None or not branch.strip():
        return None
    name = branch.strip()
    bad = (
        name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "@{" in name
        or "//" in name
        or _BAD_BRANCH_CHARS.search(name) is not None
    )
    if bad:
        raise SourceError(f'invalid branch name "{branch}"')
    return name


def _clean_commit(commit: str | None) -> str | None:
    """Validate a commit sha (4 to 64 hex digits, stored lower case); "" means none."""
    if commit is None or not commit.strip():
        return None
    sha = commit.strip()
    if not _COMMIT_RE.match(sha):
        raise SourceError(f'invalid commit "{commit}": expected a hex commit sha')
    return sha.lower()
