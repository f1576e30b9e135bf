"""SnapshotStore end to end: real folders, real git repositories, the real git CLI.

Every test runs with HOME pointing at an empty temp dir and the system git config
disabled, so the machine's own git settings cannot change the outcome; the
``insteadOf`` test then writes a user config there to prove that it is honoured.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orun.errors import SourceError
from orun.sources import EMPTY_DIGEST, SnapshotStore, SourceRef, parse_source


def git(cwd: Path, *args: str) -> str:
    """Run git synchronously in a test fixture and return its stdout."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def write(path: Path, text: str, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)


def tree(root: Path) -> dict[str, str]:
    """{relative path: content} of every file below root ("<dir>" for folders)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = "<dir>" if path.is_dir() else path.read_text()
    return found


def tmp_dirs(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".tmp-")] if root.exists() else []


@dataclass
class Origin:
    """A repository with default branch "trunk" (not main), a branch and a tag."""

    path: Path
    first: str  # commit 1: "first commit"
    second: str  # commit 2 (trunk HEAD): "second commit"
    feature: str  # branch "feature": "feature work"

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def ref(
        self, subdir: str = "", branch: str | None = None, commit: str | None = None
    ) -> SourceRef:
        return SourceRef("git", self.url, subdir, branch, commit, self.url)


@pytest.fixture(autouse=True)
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HOME and a fixed git identity for the fixture commits."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
    return home


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "orun" / "snapshots")


def make_origin(path: Path, *, allow_filter: bool = True) -> Origin:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "trunk")
    if allow_filter:
        git(path, "config", "uploadpack.allowFilter", "true")
    write(path / "app.py", "print('v1')\n")
    write(path / "run.sh", "#!/bin/sh\n", executable=True)
    write(path / "sub" / "dir" / "b.txt", "b\n")
    write(path / "sub" / "c.txt", "c\n")
    write(path / "other" / "x.txt", "x\n")
    first = commit_all(path, "first commit\n\nwith a body")
    write(path / "app.py", "print('v2')\n")
    second = commit_all(path, "second commit")
    git(path, "checkout", "-q", "-b", "feature")
    write(path / "feature.txt", "f\n")
    feature = commit_all(path, "feature work")
    git(path, "checkout", "-q", "trunk")
    git(path, "tag", "-a", "-m", "release one", "v1", first)
    return Origin(path, first, second, feature)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return make_origin(tmp_path / "origin")


# --- no source and local folders --------------------------------------------------------


async def test_no_source_is_the_empty_snapshot(store: SnapshotStore) -> None:
    snap = await store.take(parse_source("-"))
    assert snap.digest == EMPTY_DIGEST
    assert snap.path == store.root / EMPTY_DIGEST
    assert snap.path.is_dir()
    assert list(snap.path.iterdir()) == []
    assert (snap.git_commit, snap.git_message, snap.git_branch) == (None, None, None)
    assert (await store.take(parse_source("-"))).digest == EMPTY_DIGEST


async def test_local_folder_skips_git_and_venv(store: SnapshotStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "app.py", "print(1)\n")
    write(src / "start.sh", "#!/bin/sh\n", executable=True)
    write(src / ".venv" / "lib" / "mod.py", "x = 1\n")
    (src / ".venv" / "bin").mkdir()
    (src / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    write(src / "pkg" / "__pycache__" / "m.pyc", "bytecode")
    write(src / "node_modules" / "pkg" / "index.js", "1\n")
    write(src / ".dockerignore", "*.pyc\n")
    (src / "empty").mkdir()
    git(src, "init", "-q")
    write(src / "vendored" / ".git", "gitdir: ../elsewhere\n")  # a gitlink file

    snap = await store.take(parse_source(str(src)))

    assert snap.path == store.root / snap.digest
    assert tree(snap.path) == {
        ".dockerignore": "*.pyc\n",
        "app.py": "print(1)\n",
        "empty": "<dir>",
        "node_modules": "<dir>",
        "node_modules/pkg": "<dir>",
        "node_modules/pkg/index.js": "1\n",
        "pkg": "<dir>",
        "start.sh": "#!/bin/sh\n",
        "vendored": "<dir>",
    }
    assert stat.S_IMODE((snap.path / "start.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((snap.path / "app.py").stat().st_mode) == 0o644
    assert snap.git_commit is None
    assert tmp_dirs(store.root) == []


async def test_local_digest_is_stable_and_content_addressed(
    store: SnapshotStore, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for src in (one, two):
        write(src / "a.txt", "same\n")
        write(src / "d" / "b.txt", "also same\n")
    first = await store.take(parse_source(str(one)))
    again = await store.take(parse_source(str(one)))
    elsewhere = await store.take(parse_source(str(two)))
    assert first.digest == again.digest == elsewhere.digest
    assert sorted(p.name for p in store.root.iterdir()) == [first.digest]


async def test_local_digest_changes_with_any_change(store: SnapshotStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", "one\n")
    ref = parse_source(str(src))
    digests = [(await store.take(ref)).digest]

    write(src / "a.txt", "two\n")  # content
    digests.append((await store.take(ref)).digest)
    write(src / "b.txt", "")  # new empty file
    digests.append((await store.take(ref)).digest)
    (src / "a.txt").chmod(0o755)  # exec bit only
    digests.append((await store.take(ref)).digest)
    (src / "newdir").mkdir()  # empty folder
    digests.append((await store.take(ref)).digest)
    (src / "b.txt").rename(src / "c.txt")  # rename
    digests.append((await store.take(ref)).digest)
    assert len(set(digests)) == len(digests)

    (src / "c.txt").rename(src / "b.txt")  # undo the rename: back to a stored digest
    assert (await store.take(ref)).digest == digests[-2]


async def test_owner_only_files_stay_owner_only(store: SnapshotStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "public.txt", "p\n")
    write(src / "secret.env", "TOKEN=x\n")
    write(src / "run.sh", "#!/bin/sh\n", executable=True)
    write(src / "private.sh", "#!/bin/sh\n", executable=True)
    (src / "secret.env").chmod(0o600)
    (src / "private.sh").chmod(0o700)
    (src / "public.txt").chmod(0o640)  # group-readable: not owner-only
    ref = parse_source(str(src))
    snap = await store.take(ref)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in snap.path.iterdir()}
    assert modes == {"public.txt": 0o644, "secret.env": 0o600, "run.sh": 0o755,
                     "private.sh": 0o700}
    assert stat.S_IMODE(snap.path.stat().st_mode) == 0o755
    assert stat.S_IMODE(store.root.stat().st_mode) & 0o077 == 0
    (src / "secret.env").chmod(0o644)  # the owner-only bit is part of the content
    assert (await store.take(ref)).digest != snap.digest


@pytest.mark.parametrize("tamper", ["content", "symlink", "mode", "extra", "fifo"])
async def test_a_tampered_snapshot_is_replaced_not_reused(
        store: SnapshotStore, tmp_path: Path, tamper: str) -> None:
    src = tmp_path / "src"
    write(src / "index.html", "<h1>original</h1>\n")
    write(src / "conf" / "secret.tmpl", "token={{.params.token}}\n")
    host_secret = tmp_path / "host-secret"
    write(host_secret, "host only\n")
    host_secret.chmod(0o600)
    ref = parse_source(str(src))
    snap = await store.take(ref)
    stored = snap.path
    if tamper == "content":
        (stored / "index.html").write_text("<h1>defaced</h1>\n")
    elif tamper == "symlink":
        (stored / "conf" / "secret.tmpl").unlink()
        (stored / "conf" / "secret.tmpl").symlink_to(host_secret)
    elif tamper == "mode":
        (stored / "index.html").chmod(0o666)
    elif tamper == "extra":
        write(stored / "evil.js", "alert(1)\n")
    else:
        os.mkfifo(stored / "pipe")
    again = await store.take(ref)
    assert again.digest == snap.digest and again.path == stored
    assert (stored / "index.html").read_text() == "<h1>original</h1>\n"
    assert not (stored / "conf" / "secret.tmpl").is_symlink()
    assert (stored / "conf" / "secret.tmpl").read_text() == "token={{.params.token}}\n"
    assert sorted(p.name for p in stored.iterdir()) == ["conf", "index.html"]
    assert stat.S_IMODE((stored / "index.html").stat().st_mode) == 0o644
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]


async def test_an_intact_snapshot_is_reused(store: SnapshotStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", "a\n")
    snap = await store.take(parse_source(str(src)))
    marker = snap.path.stat().st_ino
    assert (await store.take(parse_source(str(src)))).path == snap.path
    assert snap.path.stat().st_ino == marker  # the same folder, not a fresh copy


async def test_symlinks_inside_the_tree_are_copied_as_files(
    store: SnapshotStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "real" / "data.txt", "data\n")
    write(src / "tool.sh", "#!/bin/sh\n", executable=True)
    (src / "link.txt").symlink_to("real/data.txt")
    (src / "linked_dir").symlink_to("real")
    (src / "bin").mkdir()
    (src / "bin" / "tool").symlink_to("../tool.sh")

    snap = await store.take(parse_source(str(src)))

    assert not any(p.is_symlink() for p in snap.path.rglob("*"))
    assert (snap.path / "link.txt").read_text() == "data\n"
    assert (snap.path / "linked_dir" / "data.txt").read_text() == "data\n"
    assert (snap.path / "bin" / "tool").stat().st_mode & 0o111


@pytest.mark.parametrize(
    ("link", "target", "message"),
    [
        ("esc", "{outside}", "symlinks outside the source are not allowed: esc"),
        ("d/up", "../../outside.txt", "symlinks outside the source are not allowed: d/up"),
        ("gone", "missing.txt", "broken symlink in the source: gone"),
        ("d/loop", "..", "symlink loop in the source: d/loop"),
        ("d/ping", "pong", "symlink loop in the source: d/p"),  # d/pong -> ping, below
    ],
    ids=["absolute-escape", "relative-escape", "broken", "loop", "cycle"],
)
async def test_bad_symlinks_are_refused(
    store: SnapshotStore, tmp_path: Path, link: str, target: str, message: str
) -> None:
    src = tmp_path / "src"
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    write(src / "d" / "ok.txt", "ok\n")
    if link == "d/ping":
        (src / "d" / "pong").symlink_to("ping")
    (src / link).symlink_to(target.format(outside=outside))
    with pytest.raises(SourceError) as info:
        await store.take(parse_source(str(src)))
    assert str(info.value).startswith(message)
    assert tmp_dirs(store.root) == []


async def test_store_inside_the_source_is_not_copied(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "app.py", "x\n")
    store = SnapshotStore(src / ".orun" / "snapshots")
    first = await store.take(parse_source(str(src)))
    assert tree(first.path) == {".orun": "<dir>", "app.py": "x\n"}
    assert (await store.take(parse_source(str(src)))).digest == first.digest


async def test_local_errors(store: SnapshotStore, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SourceError, match=f"^path does not exist {missing}$"):
        await store.take(parse_source(str(missing)))
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        await store.take(parse_source(str(afile)))
    assert tmp_dirs(store.root) == []


# --- git -----------------------------------------------------------------------------------


async def test_git_default_branch_is_the_remote_head(store: SnapshotStore, origin: Origin) -> None:
    snap = await store.take(parse_source(origin.url))
    assert snap.git_commit == origin.second
    assert snap.git_message == "second commit"
    assert snap.git_branch == "trunk"
    assert (snap.path / "app.py").read_text() == "print('v2')\n"
    assert not (snap.path / ".git").exists()
    assert not (snap.path / "feature.txt").exists()
    assert (snap.path / "run.sh").stat().st_mode & 0o111
    assert tmp_dirs(store.root) == []


async def test_git_digest_matches_a_local_copy_of_the_same_tree(
    store: SnapshotStore, origin: Origin
) -> None:
    from_git = await store.take(parse_source(origin.url))
    from_disk = await store.take(parse_source(str(origin.path)))  # .git excluded
    assert from_git.digest == from_disk.digest


async def test_git_branch(store: SnapshotStore, origin: Origin) -> None:
    snap = await store.take(parse_source(origin.url, branch="feature"))
    assert snap.git_commit == origin.feature
    assert snap.git_message == "feature work"
    assert snap.git_branch == "feature"
    assert (snap.path / "feature.txt").read_text() == "f\n"


async def test_git_tag_as_branch(store: SnapshotStore, origin: Origin) -> None:
    snap = await store.take(parse_source(origin.url, branch="v1"))
    assert snap.git_commit == origin.first
    assert (snap.path / "app.py").read_text() == "print('v1')\n"


@pytest.mark.parametrize("short", [False, True], ids=["full-sha", "short-sha"])
async def test_git_commit(store: SnapshotStore, origin: Origin, short: bool) -> None:
    commit = origin.first[:8] if short else origin.first
    snap = await store.take(parse_source(origin.url, branch="feature", commit=commit))
    assert snap.git_commit == origin.first
    assert snap.git_message == "first commit"
    assert snap.git_branch is None  # a pinned commit is not on a branch
    assert (snap.path / "app.py").read_text() == "print('v1')\n"
    assert not (snap.path / "feature.txt").exists()


@pytest.mark.parametrize("allow_filter", [True, False], ids=["filter", "no-filter"])
@pytest.mark.parametrize("form", ["{url}#sub/dir", "{url}//sub/dir"])
async def test_git_subdir_is_sparse(
    store: SnapshotStore, tmp_path: Path, allow_filter: bool, form: str
) -> None:
    origin = make_origin(tmp_path / "origin", allow_filter=allow_filter)
    snap = await store.take(parse_source(form.format(url=origin.url)))
    assert tree(snap.path) == {"b.txt": "b\n"}
    assert snap.git_commit == origin.second
    assert snap.git_branch == "trunk"


async def test_git_subdir_at_a_commit(store: SnapshotStore, origin: Origin) -> None:
    snap = await store.take(origin.ref(subdir="sub", commit=origin.first))
    assert tree(snap.path) == {"c.txt": "c\n", "dir": "<dir>", "dir/b.txt": "b\n"}
    assert snap.git_commit == origin.first


async def test_git_plain_path_clone(store: SnapshotStore, origin: Origin) -> None:
    """A git source may also be a local repository path (git ignores --depth there)."""
    path = str(origin.path)
    snap = await store.take(SourceRef("git", path, "sub", None, None, path))
    assert tree(snap.path)["dir/b.txt"] == "b\n"
    assert snap.git_commit == origin.second
    at_commit = await store.take(SourceRef("git", path, "", None, origin.first, path))
    assert at_commit.git_commit == origin.first


async def test_concurrent_takes_share_one_snapshot(store: SnapshotStore, origin: Origin) -> None:
    ref = parse_source(origin.url)
    first, second = await asyncio.gather(store.take(ref), store.take(ref))
    assert first.digest == second.digest
    assert [p.name for p in store.root.iterdir()] == [first.digest]


# --- git errors ---------------------------------------------------------------------------


async def test_missing_branch(store: SnapshotStore, origin: Origin) -> None:
    with pytest.raises(SourceError) as info:
        await store.take(parse_source(origin.url, branch="nope"))
    assert str(info.value) == (
        f'failed to load source {origin.url} from git: branch "nope" not found. '
        "Use --branch to change branch"
    )
    assert tmp_dirs(store.root) == []


async def test_missing_repo(store: SnapshotStore, tmp_path: Path) -> None:
    url = (tmp_path / "no-such-repo").as_uri()
    with pytest.raises(SourceError) as info:
        await store.take(parse_source(url))
    message = str(info.value)
    assert message.startswith(
        f"failed to load source {url} from git: repository not found or not readable ("
    )
    assert message.endswith(
        "Wrong org/repo name can show as auth error. Use --branch to change branch"
    )
    assert "\n" not in message
    assert tmp_dirs(store.root) == []


async def test_missing_subdir(store: SnapshotStore, origin: Origin) -> None:
    with pytest.raises(SourceError) as info:
        await store.take(parse_source(f"{origin.url}#nope/deeper"))
    assert str(info.value) == f'folder "nope/deeper" not found in {origin.url}'
    assert tmp_dirs(store.root) == []


@pytest.mark.parametrize("commit", ["0" * 40, "deadbeef"], ids=["full-sha", "short-sha"])
async def test_missing_commit(store: SnapshotStore, origin: Origin, commit: str) -> None:
    with pytest.raises(SourceError) as info:
        await store.take(parse_source(origin.url, commit=commit))
    assert (
        str(info.value)
        == f'failed to load source {origin.url} from git: commit "{commit}" not found'
    )
    assert tmp_dirs(store.root) == []


async def test_empty_repository(store: SnapshotStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(SourceError, match="the repository has no commits"):
        await store.take(parse_source(empty.as_uri()))


async def test_git_not_installed(
    store: SnapshotStore, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(SourceError, match="git is not installed"):
        await store.take(parse_source(origin.url))
    assert tmp_dirs(store.root) == []


def fake_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` on PATH that records its pid and then hangs."""
    bin_dir = tmp_path / "fake-bin"
    pid_file = tmp_path / "git.pid"
    write(bin_dir / "git", f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n", executable=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return pid_file


def assert_gone(pid_file: Path) -> None:
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_git_timeout_kills_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = fake_git(tmp_path, monkeypatch)
    store = SnapshotStore(tmp_path / "snaps", git_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"from git: git clone timed out after 0\.5 s$"):
        await store.take(parse_source("https://git.example.com/org/repo"))
    assert time.monotonic() - started < 10
    assert_gone(pid_file)
    assert tmp_dirs(store.root) == []


async def test_cancel_kills_git_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = fake_git(tmp_path, monkeypatch)
    store = SnapshotStore(tmp_path / "snaps")
    task = asyncio.create_task(store.take(parse_source("https://git.example.com/org/repo")))
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(pid_file)
    assert tmp_dirs(store.root) == []


# --- the user's git config applies ---------------------------------------------------------


async def test_insteadof_in_user_config_is_honoured(
    store: SnapshotStore, tmp_path: Path, git_home: Path
) -> None:
    mirror = tmp_path / "mirror"
    origin = make_origin(mirror / "org" / "repo")
    (git_home / ".gitconfig").write_text(
        f'[url "{mirror.as_uri()}/"]\n\tinsteadOf = https://github.com/\n'
    )
    ref = parse_source("github.com/org/repo/sub/dir")
    assert ref.location == "https://github.com/org/repo"

    snap = await store.take(ref)
    assert tree(snap.path) == {"b.txt": "b\n"}
    assert snap.git_commit == origin.second
    assert await store.remote_commit(ref) == origin.second


# --- remote_commit ---------------------------------------------------------------------------


async def test_remote_commit(store: SnapshotStore, origin: Origin) -> None:
    assert await store.remote_commit(origin.ref()) == origin.second
    assert await store.remote_commit(origin.ref(branch="trunk")) == origin.second
    assert await store.remote_commit(origin.ref(branch="feature")) == origin.feature
    assert await store.remote_commit(origin.ref(branch="v1")) == origin.first  # peeled tag
    pinned = origin.ref(branch="feature", commit=origin.first)
    assert await store.remote_commit(pinned) == origin.first

    write(origin.path / "app.py", "print('v3')\n")
    third = commit_all(origin.path, "third commit")
    assert await store.remote_commit(origin.ref()) == third
    snap = await store.take(origin.ref())
    assert snap.git_commit == third


async def test_remote_commit_errors(store: SnapshotStore, origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match='branch "nope" not found'):
        await store.remote_commit(origin.ref(branch="nope"))
    url = (tmp_path / "missing").as_uri()
    with pytest.raises(SourceError, match="repository not found or not readable"):
        await store.remote_commit(parse_source(url))
    with pytest.raises(SourceError, match="not a git repository URL"):
        await store.remote_commit(parse_source(str(tmp_path)))


# --- get and prune -------------------------------------------------------------------------


async def test_get_and_prune(store: SnapshotStore, tmp_path: Path) -> None:
    assert store.get(EMPTY_DIGEST) is None
    assert await store.prune(set()) == 0  # root does not exist yet

    digests = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        write(src / "f.txt", f"{i}\n")
        digests.append((await store.take(parse_source(str(src)))).digest)
    kept, *dropped = digests

    found = store.get(kept)
    assert found is not None
    assert (found.path / "f.txt").read_text() == "0\n"
    assert found.git_commit is None
    assert store.get("not-a-digest") is None
    assert store.get("../" + kept) is None

    assert await store.prune({kept}, grace_seconds=3600) == 0  # all too recent
    stale = store.root / ".tmp-crashed"
    stale.mkdir()
    os.utime(stale, (0, 0))
    (store.root / "unrelated").mkdir()

    assert await store.prune({kept}) == 2
    assert store.get(kept) is not None
    assert all(store.get(d) is None for d in dropped)
    assert not stale.exists()
    assert (store.root / "unrelated").is_dir()  # only digest-named dirs are touched
