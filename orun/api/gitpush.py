"""`git push` deploys: orun's own SSH server (asyncssh) receives pushes and deploys them.

`git push ssh://orun@HOST:PORT/<app path> <branch>` reaches `git-receive-pack` here. The
key that signs in must be one `orun key add` allowed (scope `admin`, or an app path glob
the pushed path matches); anything but a receive-pack command is refused (no shell, no
forwarding, no fetch). The push lands in a bare repository under `$ORUN_HOME/git/`, then
the app is deployed from it through the same services as `orun app create` and `orun app
reload`, with its build log written to the pusher's terminal (the SSH channel's stderr,
which git shows as it comes):

- no app at that path: one is created from the pushed branch (`-o spec=NAME`, else the
  spec is detected from the source), then built and started;
- an app made by a push: its stage app reloads from the pushed branch (staged); with
  `-o promote`, or when the branch is the app's `git.prod_branch` (`--conf`), prod too.

The refs are kept even when the build fails (git has already accepted them); what was
serving keeps serving, and the push exits non-zero with the error, so `git push` fails.
The repository's `post-receive` hook is orun's own: it only writes the pushed refs and
push options to a file that orun reads after `git receive-pack` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncssh
import structlog

from orun.api.admin import ServerControl
from orun.bus import EventBus
from orun.control.apps import AppService, CreateRequest
from orun.control.changes import ChangeService
from orun.errors import OrunError
from orun.events import BuildProgress, Event
from orun.state.audit import AuditTrail
from orun.state.config import SshConfig
from orun.state.model import App
from orun.state.paths import AppPath, parse_app_path
from orun.state.records import SshKeyRecord
from orun.state.sshkeys import scope_allows
from orun.state.store import Store

log = structlog.get_logger("orun.gitpush")

HOST_KEY_FILE = "host_ed25519"
#: the app setting naming the branch whose pushes go straight to prod
PROD_BRANCH_SETTING = "git.prod_branch"
_CHUNK = 64 * 1024
_POST_RECEIVE = """#!/bin/sh
# Written by orun. It only records what this push sent; orun deploys after it.
out="$GIT_DIR/orun-push"
: > "$out.tmp"
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    printf 'option %s\\n' "$(printenv "GIT_PUSH_OPTION_$i")" >> "$out.tmp"
    i=$((i + 1))
done
while read -r old new ref; do
    printf 'ref %s %s %s\\n' "$old" "$new" "$ref" >> "$out.tmp"
done
mv "$out.tmp" "$out"
"""


class PushRefused(OrunError):
    """A push orun will not take, with the line the pusher sees."""


@dataclass(slots=True)
class Pushed:
    """What one push sent: branches (name -> new commit) and `-o` options."""

    branches: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, text: str) -> Pushed:
        pushed = cls()
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "option":
                key, _, value = rest.partition("=")
                pushed.options[key.strip()] = value.strip()
            elif kind == "ref":
                _old, new, ref = [*rest.split(" "), "", "", ""][:3]
                if ref.startswith("refs/heads/") and new.strip("0"):
                    pushed.branches[ref.removeprefix("refs/heads/")] = new
        return pushed


def parse_push_target(argument: str, default_domain: str) -> AppPath:
    """The app path a receive-pack argument names: `/app` or `/domain:/path` (the URL's
    path after the host), a trailing `.git` or `/` dropped."""
    text = argument.strip()
    if text.endswith(".git"):
        text = text[:-4]
    if ":" in text:
        text = text.lstrip("/")
    if len(text) > 1:
        text = text.rstrip("/") or "/"
    return parse_app_path(text or "/", default_domain)


def repo_dir(home: Path, path: AppPath) -> Path:
    """The bare repository of the app at `path` (one folder name per app path)."""
    return home / "git" / (quote(str(path), safe="") + ".git")


def _git_env(repo: Path) -> dict[str, str]:
    """git run with nothing from orun's environment or the machine's git config."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(repo),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LANG": "C"}


async def _git(repo: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=repo, env=_git_env(repo), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise OrunError(f"git {args[0]} failed: {err.decode(errors='replace').strip()}")


async def prepare_repo(repo: Path, max_push_mb: int) -> None:
    """Make (or re-check) the app's bare repository and orun's hook in it."""
    if not (repo / "HEAD").is_file():
        await asyncio.to_thread(repo.mkdir, parents=True, exist_ok=True)
        await _git(repo, "init", "--bare", "-q", ".")
    for key, value in (("receive.advertisePushOptions", "true"),
                       ("receive.fsckObjects", "true"), ("receive.denyDeletes", "true"),
                       ("receive.maxInputSize", str(max_push_mb * 1024 * 1024))):
        await _git(repo, "config", key, value)

    def hooks() -> None:
        folder = repo / "hooks"
        if folder.is_dir():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o755)
        hook = folder / "post-receive"
        hook.write_text(_POST_RECEIVE)
        hook.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        (repo / "orun-push").unlink(missing_ok=True)

    await asyncio.to_thread(hooks)


def load_host_key(home: Path) -> asyncssh.SSHKey:
    """The server's host key, made once (ed25519, 0600) under `$ORUN_HOME/ssh/`."""
    path = home / "ssh" / HOST_KEY_FILE
    if path.is_file():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="orun host key")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    tmp.replace(path)
    return key


class _Connection(asyncssh.SSHServer):
    """One client connection: public-key sign-in against orun's key table only."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.key: SshKeyRecord | None = None
        self.remote = ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("", 0)
        self.remote = str(peer[0])

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate: the user name is not checked (orun@, git@)

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        record = await self._store.use_ssh_key(key.get_fingerprint("sha256"), time.time())
        if record is None:
            return False
        self.key = record
        return True


class PushServer:
    """orun's SSH server. One per server; the server starts, restarts and stops it."""

    def __init__(self, home: Path, apps: AppService, changes: ChangeService,
                 server: ServerControl, store: Store, audit: AuditTrail, bus: EventBus,
                 config: Callable[[], SshConfig]) -> None:
        self.home = home
        self._apps = apps
        self._changes = changes
        self._server = server
        self._store = store
        self._audit = audit
        self._bus = bus
        self._config = config
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._bound: tuple[str, int] | None = None
        self._locks: dict[Path, asyncio.Lock] = {}
        self._sessions: set[asyncio.Task[Any]] = set()
        self.host_key_fingerprint = ""

    @property
    def port(self) -> int | None:
        return self._bound[1] if self._bound else None

    async def apply(self, cfg: SshConfig) -> None:
        """Listen as `cfg` says: started, moved or stopped; unchanged when it is the same
        address. OSError when the address cannot be bound (the caller reports it)."""
        wanted = (cfg.host, cfg.port) if cfg.enabled else None
        if self._acceptor is not None and wanted is not None and self._bound is not None \
                and (wanted == self._bound or (cfg.port == 0 and wanted[0] == self._bound[0])):
            return
        if wanted is None:
            await self.close()
            return
        key = await asyncio.to_thread(load_host_key, self.home)
        self.host_key_fingerprint = key.get_fingerprint("sha256")
        acceptor = await asyncssh.create_server(
            lambda: _Connection(self._store), cfg.host, cfg.port, server_host_keys=[key],
            process_factory=self._session, encoding=None, allow_scp=False,
            agent_forwarding=False, x11_forwarding=False, line_editor=False,
            keepalive_interval=30, login_timeout=30)
        await self.close()
        self._acceptor = acceptor
        sockets = acceptor.sockets
        self._bound = (cfg.host, int(sockets[0].getsockname()[1]))
        log.info("ssh_listening", host=cfg.host, port=self._bound[1],
                 host_key=self.host_key_fingerprint)

    async def close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
            self._bound = None
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    # -- one session ---------------------------------------------------------------------

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        conn = process.get_extra_info("connection")
        owner = conn.get_owner() if conn is not None else None
        key = owner.key if isinstance(owner, _Connection) else None
        remote = owner.remote if isinstance(owner, _Connection) else ""
        status = 1
        try:
            if key is None:
                raise PushRefused("not signed in")
            status = await self._handle(process, key, remote)
        except PushRefused as exc:
            _say(process, f"orun: {exc.message}")
        except OrunError as exc:
            _say(process, f"orun: error: {exc.message}")
            if exc.detail:
                _say(process, exc.detail)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            status = 1
        finally:
            self._sessions.discard(task)
            with contextlib.suppress(Exception):
                process.exit(status)

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes], key: SshKeyRecord,
                      remote: str) -> int:
        try:
            words = shlex.split(process.command or "")
        except ValueError:  # unbalanced quotes
            words = ["a malformed command"]
        if words[:2] == ["git", "receive-pack"]:
            words = ["git-receive-pack", *words[2:]]
        if len(words) != 2 or words[0] != "git-receive-pack":
            raise PushRefused("this SSH server only takes git push (git-receive-pack); "
                              f"{(words or ['a shell'])[0]} is not offered")
        default_domain = self._apps.config().system.default_domain
        try:
            path = parse_push_target(words[1], default_domain)
        except OrunError as exc:
            raise PushRefused(f"cannot push to {words[1]!r}: {exc.message}") from None
        actor = f"key:{key.name}"
        if not scope_allows(key.scope, path, default_domain):
            self._audit.record(actor, remote, "git.push", str(path), "",
                               f"refused: outside the key's scope {key.scope}")
            raise PushRefused(f"key {key.name!r} may not push to {path} (its scope is "
                              f"{key.scope})")
        existing = self._apps.at(str(path))
        repo = repo_dir(self.home, path)
        if existing is not None and existing.source != repo.as_uri():
            raise PushRefused(f"app {path} deploys from {existing.source}, not from git push; "
                              "push to a new path, or delete the app first")
        cfg = self._config()
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            await prepare_repo(repo, cfg.max_push_mb)
            code = await asyncio.wait_for(self._receive(process, repo),
                                          cfg.receive_timeout_secs)
            if code != 0:
                return code
            pushed = Pushed.read(await asyncio.to_thread(_take_marker, repo / "orun-push"))
            outcome = "ok"
            try:
                return await self._deploy(process, path, repo, pushed, actor)
            except OrunError as exc:
                outcome = exc.message
                raise
            finally:
                self._audit.record(actor, remote, "git.push", str(path),
                                   existing.id if existing is not None else "", outcome)

    async def _receive(self, process: asyncssh.SSHServerProcess[bytes], repo: Path) -> int:
        """Run `git receive-pack` on the repository, wired to the SSH channel."""
        proc = await asyncio.create_subprocess_exec(
            "git", "receive-pack", str(repo), cwd=repo, env=_git_env(repo),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

        async def upstream() -> None:
            assert proc.stdin is not None
            try:
                while data := await process.stdin.read(_CHUNK):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except (BrokenPipeError, ConnectionError):
                pass
            finally:
                proc.stdin.close()

        async def downstream(source: asyncio.StreamReader, sink: Any) -> None:
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()

        feeding = asyncio.ensure_future(upstream())
        try:
            await asyncio.gather(downstream(proc.stdout, process.stdout),
                                 downstream(proc.stderr, process.stderr))
            return await proc.wait()
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _deploy(self, process: asyncssh.SSHServerProcess[bytes], path: AppPath,
                      repo: Path, pushed: Pushed, actor: str) -> int:
        if not pushed.branches:
            _say(process, "orun: no branch was updated: nothing to deploy")
            return 0
        existing = self._apps.at(str(path))
        if len(pushed.branches) > 1:
            names = ", ".join(sorted(pushed.branches))
            raise PushRefused(f"push one branch at a time (this push updated {names})")
        ((branch, commit),) = pushed.branches.items()
        followed: set[str] = set()
        unsubscribe = self._follow_build(process, followed)
        try:
            if existing is None:
                return await self._create(process, path, repo, branch, commit, pushed,
                                          followed)
            return await self._update(process, existing, branch, commit, pushed, followed)
        finally:
            unsubscribe()

    def _follow_build(self, process: asyncssh.SSHServerProcess[bytes],
                      apps: set[str]) -> Callable[[], None]:
        """Write the build and start lines of the apps in `apps` to the pusher."""

        async def on_line(event: Event) -> None:
            if isinstance(event, BuildProgress) and event.app_id in apps:
                with contextlib.suppress(Exception):
                    process.stderr.write(event.line.encode(errors="replace") + b"\n")

        return self._bus.subscribe(f"gitpush.{id(process)}", (BuildProgress,), on_line)

    async def _create(self, process: asyncssh.SSHServerProcess[bytes], path: AppPath,
                      repo: Path, branch: str, commit: str, pushed: Pushed,
                      followed: set[str]) -> int:
        spec = pushed.options.get("spec", "")
        _say(process, f"orun: creating app {path} from branch {branch} ({commit[:12]})"
             + (f", spec {spec}" if spec else ", spec detected from the source"))
        conf = {}
        if pushed.options.get("prod_branch"):
            conf[PROD_BRANCH_SETTING] = pushed.options["prod_branch"]
        result = await self._apps.create(CreateRequest(
            path=str(path), source=repo.as_uri(), spec=spec, branch=branch,
            app_config=conf, origin="push"))
        await self._server.sync_routes()  # routed before the pusher is told it is live
        detected = result.get("detected")
        if detected:
            _say(process, f"orun: spec {detected['spec']} ({detected['reason']})")
        app = self._apps.at(str(path))
        if app is None:  # deleted at once by someone else
            raise OrunError(f"app {path} was removed while it was being created")
        return await self._start(process, app, followed)

    async def _update(self, process: asyncssh.SSHServerProcess[bytes], main: App,
                      branch: str, commit: str, pushed: Pushed, followed: set[str]) -> int:
        prod_branch = main.current.settings.app_config.get(PROD_BRANCH_SETTING, "")
        prod_branch = prod_branch.strip("\"' ")  # `--conf` values may be TOML-quoted
        promote = "promote" in pushed.options or (bool(prod_branch) and branch == prod_branch)
        stage = self._apps.get(main.linked_id or "")
        target = main if promote or stage is None else stage
        followed.update({main.id, *([stage.id] if stage is not None else [])})
        _say(process, f"orun: deploying {branch} ({commit[:12]}) to "
             f"{target.path}" + (" and promoting it" if promote and stage else ""))
        outcome = await self._changes.reload(str(main.path), branch=branch, force=True,
                                             promote=promote)
        await self._server.sync_routes()
        if outcome.failed:
            _app, err = outcome.failed[0]
            _say(process, f"orun: error: {err.message}")
            if err.detail:
                _say(process, err.detail)
            _say(process, f"orun: {main.path} keeps serving its current version")
            return 1
        current = self._apps.get(target.id) or target
        return await self._start(process, current, followed)

    async def _start(self, process: asyncssh.SSHServerProcess[bytes], app: App,
                     followed: set[str]) -> int:
        """Build and start `app` now (its lines reach the pusher), then say where it is."""
        followed.add(app.id)
        urls = self._server.app_urls(app.path.domain, app.path.path)
        url = urls.get("https") or urls.get("http", "")
        started = self._server.start_app(app) \
            if await self._server.spec_kind(app) == "container" else None
        if started is not None:
            future, _progress = started
            try:
                await future
            except OrunError as exc:
                _say(process, f"orun: error: {exc.message}")
                if exc.detail:
                    _say(process, exc.detail)
                return 1
        _say(process, f"orun: {app.path} is live" + (f" at {url}" if url else ""))
        return 0


def _take_marker(marker: Path) -> str:
    """What the post-receive hook wrote for this push, removed once read (blocking)."""
    text = marker.read_text() if marker.is_file() else ""
    marker.unlink(missing_ok=True)
    return text


def _say(process: asyncssh.SSHServerProcess[bytes], line: str) -> None:
    with contextlib.suppress(Exception):
        process.stderr.write(line.encode(errors="replace") + b"\n")
