"""Fetch git sources with the user's own ``git`` CLI, without blocking the event loop.

Why the CLI and not a library: the user's git configuration then applies unchanged
(``url.<base>.insteadOf`` rewrites, credential helpers, SSH keys and agents, proxies),
so a repository that clones in the user's shell clones here too. We therefore never
pass ``-c`` overrides; we only make sure git can never wait for a human:
``GIT_TERMINAL_PROMPT=0``, stdin from /dev/null, and a new session (no controlling
terminal, so ssh cannot prompt either). Each operation runs under one deadline; on
timeout or cancellation the whole process group (git, ssh, remote helpers) is killed.

Every failure becomes a one-line `SourceError` that names the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orun.errors import SourceError
from orun.sources.ref import SourceRef

DEFAULT_GIT_TIMEOUT = 300.0
GIT_HINT = "Wrong org/repo name can show as auth error. Use --branch to change branch"

# Variables that point git at some *other* repository (set when orun runs from a git
# hook, for instance). Inheriting them would make every command act on that repository.
_REPO_ENV_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_SHALLOW_FILE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_CEILING_DIRECTORIES",
)
_REPO_MISSING = (
    "repository not found",
    "does not exist",
    "does not appear to be a git repository",
    "could not read from remote repository",
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied",
    "access denied",
    "returned error: 401",
    "returned error: 403",
    "returned error: 404",
    "not a git repository",
)
_BRANCH_MISSING = ("remote branch", "could not find remote branch")
_GENERIC = "could not read from remote repository"
_NOISE = (
    "hint:",
    "cloning into",
    "please make sure you have the correct access rights",
    "and the repository exists",
)

FailureKind = Literal["repo", "branch", "other"]


@dataclass(frozen=True, slots=True)
class GitResult:
    """Exit status and decoded output of one git command."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class Checkout:
    """What was checked out: full sha, first line of its message, branch (or None)."""

    commit: str
    message: str
    branch: str | None


class Git:
    """Runs git commands for one source URL, in `workdir`, under the store's policy.

    `workdir` is both the cwd and the ceiling for repository discovery, so a git
    repository that happens to enclose ORUN_HOME (or the server's cwd) never lends its
    config or objects to our commands.
    """

    def __init__(self, ref: SourceRef, workdir: Path, *, timeout: float) -> None:
        if ref.kind != "git":
            raise SourceError(f"source {ref.original} is not a git repository URL")
        if ref.location.startswith("-"):
            raise SourceError(f"invalid git URL {ref.location}")
        self.ref = ref
        self.workdir = workdir
        self.timeout = timeout

    # --- public operations -------------------------------------------------------------

    async def checkout(self, dest: Path) -> Checkout:
        """Check out `ref` into `dest` (which must not exist): shallow, sparse if a
        folder is wanted, at `ref.commit` if set, else at `ref.branch` or remote HEAD."""
        async with self._deadline("clone"):
            if self.ref.commit is None:
                await self._clone_branch(dest)
            else:
                await self._fetch_commit(dest, self.ref.commit)
            return await self._describe(dest)

    async def remote_commit(self) -> str:
        """The sha `ref` points at on the remote now, via ``git ls-remote`` (no clone).

        A pinned commit is returned as given: it cannot move. A branch name is looked
        up as a branch first, then as a tag (peeled to its commit).
        """
        if self.ref.commit is not None:
            return self.ref.commit
        branch = self.ref.branch
        if branch is None:
            patterns = ["HEAD"]
        else:
            patterns = [f"refs/heads/{branch}", f"refs/tags/{branch}", f"refs/tags/{branch}^{{}}"]
        async with self._deadline("ls-remote"):
            result = await self._run(["ls-remote", "--", self.ref.location, *patterns])
        if result.returncode != 0:
            raise self._failure(result)
        refs = _parse_ls_remote(result.stdout)
        # A branch wins over a tag of the same name; an annotated tag is peeled ("^{}").
        preferred = patterns if branch is None else [patterns[0], patterns[2], patterns[1]]
        for name in preferred:
            if name in refs:
                return refs[name]
        if branch is None:
            raise self._error("the repository has no commits")
        raise self._branch_error(branch)

    # --- steps -------------------------------------------------------------------------

    async def _clone_branch(self, dest: Path) -> None:
        """Shallow clone of one branch; blob-less and sparse when only a folder is needed.

        Servers without filter support print a warning and send full blobs, and local
        path clones ignore --depth/--filter; both still produce the right tree.
        """
        args = ["clone", "--depth", "1", "--no-tags"]
        if self.ref.branch is not None:
            args += ["--branch", self.ref.branch]
        if self.ref.subdir:
            args += ["--filter=blob:none", "--sparse"]
        result = await self._run([*args, "--", self.ref.location, str(dest)])
        if result.returncode != 0:
            raise self._failure(result)
        if self.ref.subdir:
            await self._sparse(dest)

    async def _fetch_commit(self, dest: Path, commit: str) -> None:
        """Fetch just `commit` (depth 1); if the server refuses (short sha, or a server
        that only serves advertised refs), fall back to fetching every branch and tag."""
        await self._must(["init", "-q", "--", str(dest)])
        await self._must(["-C", str(dest), "remote", "add", "origin", self.ref.location])
        filters = ["--filter=blob:none"] if self.ref.subdir else []
        fetch = ["-C", str(dest), "fetch", "-q", "--no-tags", *filters]
        result = await self._run([*fetch, "--depth", "1", "origin", commit])
        if result.returncode != 0:
            if _classify(result.stderr) == "repo":
                raise self._failure(result)
            everything = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
            result = await self._run([*fetch, "origin", *everything])
            if result.returncode != 0:
                raise self._failure(result)
        resolved = await self._run(
            ["-C", str(dest), "rev-parse", "-q", "--verify", f"{commit}^{{commit}}"]
        )
        if resolved.returncode != 0:
            raise self._error(f'commit "{commit}" not found')
        if self.ref.subdir:
            await self._sparse(dest)
        await self._must(["-C", str(dest), "checkout", "-q", "--detach", resolved.stdout.strip()])

    async def _sparse(self, dest: Path) -> None:
        """Limit the work tree to `ref.subdir` (cone mode). The folder is passed on stdin
        so that no folder name can be mistaken for an option."""
        await self._must(
            ["-C", str(dest), "sparse-checkout", "set", "--stdin"], stdin=self.ref.subdir + "\n"
        )

    async def _describe(self, dest: Path) -> Checkout:
        """Read the checked-out commit's sha, subject line and branch."""
        result = await self._run(["-C", str(dest), "log", "-1", "--format=%H%n%B", "HEAD", "--"])
        if result.returncode != 0 or not result.stdout.strip():
            raise self._error("the repository has no commits")
        sha, _, body = result.stdout.partition("\n")
        message = body.strip().partition("\n")[0].strip()
        if self.ref.commit is not None:
            return Checkout(sha.strip(), message, None)
        branch = self.ref.branch
        if branch is None:
            head = await self._run(["-C", str(dest), "symbolic-ref", "-q", "--short", "HEAD"])
            branch = (head.stdout.strip() or None) if head.returncode == 0 else None
        return Checkout(sha.strip(), message, branch)

    # --- process handling --------------------------------------------------------------

    async def _must(self, args: Sequence[str], *, stdin: str | None = None) -> GitResult:
        """Run git and turn a non-zero exit into a `SourceError`."""
        result = await self._run(args, stdin=stdin)
        if result.returncode != 0:
            raise self._failure(result)
        return result

    async def _run(self, args: Sequence[str], *, stdin: str | None = None) -> GitResult:
        """Run one git command to completion; kill its process group if we are cancelled
        (which is also how the deadline in `_deadline` stops it)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *args,
                cwd=self.workdir,
                env=_git_env(os.environ, self.workdir),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise SourceError(
                f"failed to load source {self.ref.display} from git: git is not installed "
                "(or not on PATH); install git to use git sources"
            ) from None
        try:
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except BaseException:
            _kill_group(proc)
            with contextlib.suppress(Exception):
                await proc.wait()
            raise
        assert proc.returncode is not None
        return GitResult(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str) -> AsyncIterator[None]:
        """Bound a whole operation (not each command) by the store's git timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError:
            raise self._error(f"git {what} timed out after {self.timeout:g} s") from None

    # --- errors ------------------------------------------------------------------------

    def _failure(self, result: GitResult) -> SourceError:
        """Map a failed git command to the most specific message we can give."""
        kind = _classify(result.stderr)
        line = _last_words(result.stderr) or f"git exited with status {result.returncode}"
        if kind == "branch" and self.ref.branch is not None:
            return self._branch_error(self.ref.branch)
        if kind == "repo":
            return self._error(f"repository not found or not readable ({line}). {GIT_HINT}")
        return self._error(f"{line}. {GIT_HINT}")

    def _branch_error(self, branch: str) -> SourceError:
        return self._error(f'branch "{branch}" not found. Use --branch to change branch')

    def _error(self, detail: str) -> SourceError:
        return SourceError(f"failed to load source {self.ref.display} from git: {detail}")


def _git_env(base: Mapping[str, str], ceiling: Path) -> dict[str, str]:
    """The caller's environment (so HOME, SSH_AUTH_SOCK, proxies apply) minus variables
    that aim git at another repository, plus the no-prompt switches."""
    env = {k: v for k, v in base.items() if k not in _REPO_ENV_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GCM_INTERACTIVE"] = "never"  # Git Credential Manager: fail, do not pop a dialog
    env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    env["LC_ALL"] = "C"  # English messages, which `_classify` understands
    env.pop("LANGUAGE", None)
    return env


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL git and everything it started (ssh, git-remote-https, upload-pack)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _classify(stderr: str) -> FailureKind:
    """Guess from git's stderr whether the repository or the branch is missing."""
    text = stderr.lower()
    if any(marker in text for marker in _BRANCH_MISSING) and "not found" in text:
        return "branch"
    if any(marker in text for marker in _REPO_MISSING):
        return "repo"
    return "other"


def _last_words(stderr: str) -> str:
    """git's most telling stderr line, without its ``fatal:``/``error:`` prefix.

    Boilerplate is skipped (hints, "Cloning into", the access-rights advice), and the
    generic "Could not read from remote repository" yields to a specific line such as
    ssh's "Could not resolve hostname" when there is one.
    """
    lines = [line.strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(_NOISE)]
    specific = [line for line in lines if _GENERIC not in line.lower()]
    pool = specific or lines
    for line in pool:
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ("fatal", "error") and rest.strip():
            return rest.strip().rstrip(".")
    chosen = next((line for line in pool if not line.lower().startswith("warning:")), None)
    return (chosen or (pool[-1] if pool else "")).rstrip(".")


def _parse_ls_remote(stdout: str) -> dict[str, str]:
    """``<sha>\\t<ref>`` lines to {ref: sha}."""
    refs: dict[str, str] = {}
    for line in stdout.splitlines():
        sha, sep, name = line.partition("\t")
        if sep:
            refs[name.strip()] = sha.strip()
    return refs
