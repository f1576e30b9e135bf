"""parse_source: every source form a user can type, and the errors for malformed ones."""

from __future__ import annotations

import pytest

from orun.errors import SourceError
from orun.sources import SourceRef, is_git_source, parse_source

# (typed source, expected kind, location, subdir)
VALID = [
    ("-", "none", "", ""),
    ("/srv/apps/blog", "local", "/srv/apps/blog", ""),
    ("/srv/apps/blog/", "local", "/srv/apps/blog", ""),
    ("/srv/apps/../blog", "local", "/srv/blog", ""),
    ("/srv/my#app", "local", "/srv/my#app", ""),
    ("github.com/org/repo", "git", "https://github.com/org/repo", ""),
    ("github.com/org/repo/", "git", "https://github.com/org/repo", ""),
    ("github.com/org/repo/sub/dir", "git", "https://github.com/org/repo", "sub/dir"),
    ("github.com/org/repo/sub/dir/", "git", "https://github.com/org/repo", "sub/dir"),
    ("github.com/org/repo.git/sub", "git", "https://github.com/org/repo.git", "sub"),
    ("github.com/org/repo#sub", "git", "https://github.com/org/repo", "sub"),
    ("https://github.com/org/repo", "git", "https://github.com/org/repo", ""),
    ("https://github.com/org/repo.git", "git", "https://github.com/org/repo.git", ""),
    ("https://github.com/org/repo/sub", "git", "https://github.com/org/repo", "sub"),
    ("https://github.com/org/repo#sub/dir", "git", "https://github.com/org/repo", "sub/dir"),
    ("https://github.com/org/repo#/sub/dir/", "git", "https://github.com/org/repo", "sub/dir"),
    ("https://github.com/org/repo#", "git", "https://github.com/org/repo", ""),
    ("http://localhost:3000/org/repo", "git", "http://localhost:3000/org/repo", ""),
    ("https://git.example.com/solo#app", "git", "https://git.example.com/solo", "app"),
    (
        "https://gitlab.com/grp/sub/repo//app/web",
        "git",
        "https://gitlab.com/grp/sub/repo",
        "app/web",
    ),
    ("gitlab.com/grp/sub/repo//app", "git", "https://gitlab.com/grp/sub/repo", "app"),
    ("https://gitlab.com/grp/sub/repo#app", "git", "https://gitlab.com/grp/sub/repo", "app"),
    ("ssh://git@host.example:2222/org/repo", "git", "ssh://git@host.example:2222/org/repo", ""),
    ("ssh://git@host.example/org/repo/sub", "git", "ssh://git@host.example/org/repo", "sub"),
    (
        "ssh://host.example/srv/git/repo.git/app",
        "git",
        "ssh://host.example/srv/git/repo.git",
        "app",
    ),
    ("git@github.com:org/repo.git", "git", "git@github.com:org/repo.git", ""),
    ("git@github.com:org/repo", "git", "git@github.com:org/repo", ""),
    ("git@github.com:org/repo/sub/dir", "git", "git@github.com:org/repo", "sub/dir"),
    ("git@github.com:org/repo.git#sub", "git", "git@github.com:org/repo.git", "sub"),
    ("git@gitlab.com:grp/sub/repo//app", "git", "git@gitlab.com:grp/sub/repo", "app"),
    ("deploy@git.example.com:team/app", "git", "deploy@git.example.com:team/app", ""),
    ("file:///srv/git/repo", "git", "file:///srv/git/repo", ""),
    ("file:///srv/git/deep/repo/", "git", "file:///srv/git/deep/repo", ""),
    ("file:///srv/git/repo#app/web", "git", "file:///srv/git/repo", "app/web"),
    ("file:///srv/git/repo//app", "git", "file:///srv/git/repo", "app"),
    ("file:///srv/git/repo.git/app", "git", "file:///srv/git/repo.git", "app"),
]


@pytest.mark.parametrize(("source", "kind", "location", "subdir"), VALID)
def test_valid_sources(source: str, kind: str, location: str, subdir: str) -> None:
    ref = parse_source(source)
    assert (ref.kind, ref.location, ref.subdir) == (kind, location, subdir)
    assert ref.original == source
    assert ref.branch is None
    assert ref.commit is None


def test_no_source_ignores_branch_and_commit() -> None:
    assert parse_source("-", branch="main", commit="abc123") == SourceRef(
        "none", "", "", None, None, "-"
    )


def test_local_source_ignores_branch_and_commit() -> None:
    ref = parse_source("/srv/app", branch="main", commit="abc123")
    assert (ref.branch, ref.commit) == (None, None)


def test_git_branch_and_commit_are_kept() -> None:
    ref = parse_source("github.com/org/repo", branch="release/1.x", commit="ABCDEF12")
    assert ref.branch == "release/1.x"
    assert ref.commit == "abcdef12"  # normalised to lower case


def test_empty_branch_and_commit_mean_unset() -> None:
    ref = parse_source("github.com/org/repo", branch="", commit=" ")
    assert (ref.branch, ref.commit) == (None, None)


def test_original_is_kept_verbatim() -> None:
    assert parse_source("  github.com/org/repo ").original == "  github.com/org/repo "


def test_sourceref_is_frozen() -> None:
    ref = parse_source("-")
    with pytest.raises(AttributeError):
        ref.kind = "local"  # type: ignore[misc]


def test_display_masks_password() -> None:
    ref = parse_source("https://bot:s3cret@git.example.com/org/repo")
    assert ref.location == "https://bot:s3cret@git.example.com/org/repo"
    assert ref.display == "https://bot:***@git.example.com/org/repo"
    assert "s3cret" not in ref.display


@pytest.mark.parametrize(
    ("source", "is_git"),
    [
        ("github.com/org/repo", True),
        ("git@host:repo", True),
        ("git@anything", True),
        ("https://x", True),
        ("file:///x", True),
        ("ssh://x", True),
        ("github.com/org", False),  # only two segments
        ("org/repo/sub", False),  # no dot in the first segment
        ("/abs/github.com/a/b", False),
        ("./github.com/a/b", False),
        ("~/github.com/a/b", False),
        ("-", False),
        ("", False),
    ],
)
def test_is_git_source(source: str, is_git: bool) -> None:
    assert is_git_source(source) is is_git


# (typed source, fragment the error message must contain)
INVALID = [
    ("", "source is empty"),
    ("   ", "source is empty"),
    ("relative/dir", 'source path "relative/dir" must be absolute'),
    ("./app", "must be absolute"),
    ("~/app", "must be absolute"),
    ("app", "must be absolute"),
    ("github.com/org", "must be absolute"),
    ("https://github.com/org", "expected host/org/repo"),
    ("https://github.com", "no repository path"),
    ("https://", "no host"),
    ("https:///org/repo", "no host"),
    ("git@github.com/org/repo", "expected git@host:org/repo"),
    ("git@github.com:", 'no repository after ":"'),
    ("github.com//repo/x", 'no repository before "//"'),
    ("https://github.com/org/repo#a#b", 'more than one "#"'),
    ("https://gitlab.com/g/repo//x#y", 'after "#" or after "//"'),
    ("github.com/org/repo/../../etc", 'invalid folder "../../etc"'),
    ("https://github.com/org/repo#./x", "invalid folder"),
]


@pytest.mark.parametrize(("source", "message"), INVALID)
def test_malformed_sources(source: str, message: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_source(source)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("branch", ["-b", "a b", "x..y", "x~1", "a:b", "end/", "x.lock", "@{u}"])
def test_bad_branch_names(branch: str) -> None:
    with pytest.raises(SourceError, match="invalid branch name"):
        parse_source("github.com/org/repo", branch=branch)


@pytest.mark.parametrize("commit", ["xyz", "abc", "--all", "1234567g", "a" * 65])
def test_bad_commits(commit: str) -> None:
    with pytest.raises(SourceError, match="invalid commit"):
        parse_source("github.com/org/repo", commit=commit)
