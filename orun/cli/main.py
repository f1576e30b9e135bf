"""The `orun` command line: `serve` runs the server, everything else talks to it.

Errors print one line `error: <message>` on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from orun import __version__
from orun.cli import completion
from orun.cli.argv import long_flags, normalize_go_flags
from orun.cli.client import AdminClient, Remote
from orun.cli.output import Column, Row, add_format_option, emit, size, text

if TYPE_CHECKING:
    from orun.cli.sshtunnel import SshTunnel
from orun.errors import ConfigError, OrunError
from orun.state.authtype import label as auth_label

DRY_RUN_TRAILER = "\n*** dry-run mode, changes have NOT been committed. ***"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error:` line (exit 1, like OpenRun)."""

    def error(self, message: str) -> NoReturn:
        raise OrunError(f"{message}\nrun '{self.prog} --help' for usage")


def _home() -> Path:
    from orun.state.home import default_home

    return default_home()


#: set by `main` from --server/ORUN_SERVER: the orun every command talks to
_REMOTE: Remote | None = None
#: the SSH connection of `--server ssh://...` (orun/cli/sshtunnel.py)
_TUNNEL: SshTunnel | None = None


def _client() -> AdminClient:
    if _TUNNEL is not None:
        return AdminClient(_TUNNEL.local_socket, via=_TUNNEL.describe())
    return AdminClient(_home() / "run" / "orun.sock", remote=_REMOTE)


def _elsewhere() -> bool:
    """Does this command talk to an orun on another machine (--server)?"""
    return _REMOTE is not None or _TUNNEL is not None


def _remote_from(args: argparse.Namespace) -> Remote | None:
    """--server/ORUN_SERVER, the token (ORUN_TOKEN or --token-file) and the CA."""
    url = args.server or os.environ.get("ORUN_SERVER", "")
    if not url or url.startswith("ssh://"):
        return None
    token = ""
    if args.token_file:
        try:
            token = Path(args.token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise OrunError(f"cannot read the token file {args.token_file}: "
                            f"{exc.strerror or exc}") from None
    else:
        token = os.environ.get("ORUN_TOKEN", "").strip()
    if not token:
        raise OrunError(f"--server {url} needs an API token: set ORUN_TOKEN or pass "
                        "--token-file (make one on the server with 'orun token create')")
    ca_file = args.ca_file or os.environ.get("ORUN_CA_FILE") or None
    remote = Remote(url.rstrip("/"), token, ca_file, insecure=args.insecure)
    remote.address()  # a bad URL is reported before anything is sent
    return remote


def _pairs(values: list[str] | None, what: str, *, allow_bare: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep and not allow_bare:
            raise OrunError(f"invalid {what} format: {item}")
        if not key:
            raise OrunError(f"invalid {what} format: {item}")
        out[key] = value
    return out


def _source_arg(source: str) -> str:
    """Make a local source absolute, from the caller's working directory."""
    from orun.sources.ref import is_git_source

    if source == "-" or is_git_source(source):
        return source
    if _elsewhere():  # a folder on the server's machine
        if not source.startswith("/"):
            raise OrunError(f"source {source}: with --server, give an absolute path on the "
                            "server (or a git URL)")
        return source
    path = Path(source).expanduser().absolute()
    if not path.exists():
        raise OrunError(f"path does not exist {path}: stat {path}: no such file or directory")
    return str(path.resolve())


# -- commands --------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio  # here: the other commands start faster without it

    from orun.server import run_server

    config = Path(args.config).expanduser().resolve() if args.config else None
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        return int(runner(run_server(_home(), config)))
    except KeyboardInterrupt:
        return 130


_CVOL_FLAGS = frozenset({"--cvol", "--container-volume"})


def _check_cvol_values(argv: list[str]) -> None:
    """`--cvol --dev` is a forgotten value, not a volume named `--dev` (OpenRun's check)."""
    for flag, value in itertools.pairwise(argv):
        if flag in _CVOL_FLAGS and value.startswith("--"):
            raise OrunError(
                f'invalid container volume value "{value}" for --cvol: values cannot start '
                "with --; did you forget to provide a value for --cvol?"
            )


def cmd_app_create(args: argparse.Namespace) -> int:
    body = {
        "path": args.path,
        "source": _source_arg(args.source),
        "spec": args.spec or "",
        "params": _pairs(args.param, "param"),
        "container_args": _pairs(args.carg, "container arg"),
        "container_options": _pairs(args.copt, "container option", allow_bare=True),
        "container_volumes": list(args.cvol or []),
        "app_config": _pairs(args.conf, "app config"),
        "branch": args.branch,
        "commit": args.commit,
        "dev": args.dev,
        "stage_at": args.stage_at or "",
        "approve": args.approve,
        "dry_run": args.dry_run,
        "auth": args.auth or "",
    }
    result = _client().request("POST", "/app", body=body)
    app = result["app"]
    lines = [f"      App: {app['app_path']}"]
    urls = result.get("urls", {})
    if urls.get("https"):
        lines.append(f"HTTPS Url: {urls['https']}")
    if urls.get("http"):
        lines.append(f" HTTP Url: {urls['http']}")
    stage = result.get("stage")
    if stage:
        stage_urls = stage.get("urls", {})
        url = stage_urls.get("https") or stage_urls.get("http", "")
        lines.append(f"    Stage: {stage['app_path']}" + (f"  ({url})" if url else ""))
    lines.append(f"     Spec: {app['current']['settings']['spec']}" + _detected_note(result))
    auth = app["current"]["settings"].get("auth", "")
    if auth:
        lines.append(f"     Auth: {auth}")
    if app["current"].get("git_commit"):
        cur = app["current"]
        lines.append(f"   Commit: {cur['git_commit'][:12]} {cur.get('git_message') or ''}".rstrip())
    lines.append("App created.")
    print("\n".join(lines))
    if result.get("dry_run"):
        print(DRY_RUN_TRAILER)
        return 0
    if args.wait:
        return _start_and_stream(app["app_path"])
    return 0


def _detected_note(result: dict[str, Any]) -> str:
    """` (detected: why)` after the spec line of an app whose spec orun chose."""
    detected = result.get("detected")
    if not detected:
        return ""
    note = f" (detected: {detected['reason']}"
    if detected.get("app_file"):
        note += f"; app_file={detected['app_file']}"
    return note + ")"


def _start_and_stream(app_path: str) -> int:
    """Build and start the app now, printing its progress as it happens: the plain log,
    or on a terminal one line per build step (orun/cli/progress.py)."""
    from orun.cli.progress import StepProgress

    view = StepProgress(sys.stdout, shutil.get_terminal_size().columns) \
        if sys.stdout.isatty() else None
    detail: list[str] = []
    try:
        for line in _client().stream("POST", "/apps/start", query={"glob": app_path}):
            if line.startswith("@@ready"):
                url = line[len("@@ready"):].strip()
                took = ""
                if view is not None:
                    view.close()
                    took = f" (after {view.elapsed():.1f}s)"
                print(f"App is running{': ' + url if url else ''}{took}")
                return 0
            if line.startswith("@@detail"):
                detail.append(line[len("@@detail "):])
            elif line.startswith("@@failed"):
                if view is not None:
                    view.close()
                    detail = view.failure_detail(detail)
                if detail:
                    print("\n".join(detail), file=sys.stderr)
                raise OrunError(line[len("@@failed"):].strip())
            elif view is not None:
                view.line(line)
            else:
                print(line, flush=True)
    finally:
        if view is not None:
            view.close()
    raise OrunError("the server closed the connection before the app started")


def _app_name(app: Mapping[str, Any]) -> str:
    """A short name for the Name column: the path's last segment, or for an app at a
    domain's root the domain (`/docs` -> docs, `svc.localhost:/` -> svc.localhost)."""
    last = app["path"].rstrip("/").rpartition("/")[2]
    return last or app.get("domain") or "/"


def _app_type(app: Mapping[str, Any]) -> str:
    kind = {"prod": "PROD", "stage": "STG", "dev": "DEV"}.get(app["kind"], "----")
    return "PROD*" if kind == "PROD" and app.get("staged_changes") else kind


def _git_info(app: Mapping[str, Any]) -> str:
    cur = app["current"]
    branch = cur.get("git_branch") or cur["settings"].get("branch") or ""
    commit = cur.get("git_commit") or cur["settings"].get("commit") or ""
    return f"{branch}:{commit[:20]}" if branch or commit else "-"


def _resources(app: Mapping[str, Any]) -> Mapping[str, Any]:
    """The runtime's last CPU/memory sample of a running container app, else {}."""
    return app.get("resources") or {}


def _cpu(app: Mapping[str, Any]) -> str:
    cpu = _resources(app).get("cpu_percent")
    return "-" if cpu is None else f"{cpu:.1f}"


def _auth(app: Mapping[str, Any]) -> str:
    return auth_label(app["current"]["settings"].get("auth", ""))


_APP_BASIC = (
    Column("Name", _app_name), Column("Type", _app_type),
    Column("Ver", lambda a: str(a["current"]["version"])), Column("Auth", _auth),
    Column("AppPath", lambda a: a["app_path"]))
_APP_TABLE = (
    Column("Name", _app_name), Column("Id", lambda a: a["id"]), Column("Type", _app_type),
    Column("Version", lambda a: str(a["current"]["version"])), Column("Auth", _auth),
    Column("AppPath", lambda a: a["app_path"]), Column("SourceUrl", lambda a: a["source"]),
    Column("Spec", lambda a: a["current"]["settings"]["spec"]),
    Column("GitInfo", _git_info),
    Column("State", lambda a: text((a.get("runtime") or {}).get("state"))),
    Column("CPU%", _cpu),
    Column("Mem", lambda a: size(_resources(a).get("memory_bytes"))))


def cmd_app_list(args: argparse.Namespace) -> int:
    result = _client().request("GET", "/apps", query={
        "glob": args.glob, "internal": "true" if args.internal else None})
    apps = result["apps"]
    emit(args.format, apps, _APP_TABLE, _APP_BASIC)
    if args.format in ("basic", "table"):
        for app in apps:
            error = (app.get("runtime") or {}).get("error")
            if error:
                print(f"{app['app_path']}: {error}")
    return 0


def cmd_app_logs(args: argparse.Namespace) -> int:
    query = {"glob": args.app, "build": "true" if args.build else None,
             "follow": "true" if args.follow else None, "lines": str(args.lines)}
    client = _client()
    if args.follow:
        client.timeout = 24 * 3600.0
    try:
        for line in client.stream("GET", "/apps/logs", query=query):
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _flag_value(value: bool) -> str | None:
    return "true" if value else None


def _report_failures(result: dict[str, Any]) -> int:
    """Print each app that failed (with its log tail) as an error line; exit status."""
    for failure in result.get("failed", []):
        if failure.get("detail"):
            print(failure["detail"], file=sys.stderr)
        _print_error(failure["message"])
    if result.get("dry_run"):
        print(DRY_RUN_TRAILER)
    return 1 if result.get("failed") else 0


def cmd_app_reload(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/apps/reload", query={
        "glob": args.glob, "promote": _flag_value(args.promote),
        "verify": _flag_value(args.verify), "force": _flag_value(args.force_reload),
        "branch": args.branch or None, "commit": args.commit or None,
        "dryRun": _flag_value(args.dry_run)})
    reloaded = [a["app_path"] for a in result["stage"]] + \
        [a["app_path"] for a in result["main"] if a["kind"] == "dev"]
    promoted = [a["app_path"] for a in result["main"] if a["kind"] == "prod"]
    skipped = [a["app_path"] for a in result["skipped"]]
    if reloaded:
        print("Reloaded apps: " + ", ".join(reloaded))
    if skipped:
        print("Skipped apps: " + ", ".join(skipped))
    if promoted:
        print("Promoted apps: " + ", ".join(promoted))
    print(f"{len(reloaded)} app(s) reloaded, {len(skipped)} app(s) skipped, "
          f"{len(promoted)} app(s) promoted.")
    return _report_failures(result)


def cmd_app_promote(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/apps/promote", query={
        "glob": args.glob, "dryRun": _flag_value(args.dry_run)})
    for app in result["main"]:
        print(f"Promoting {app['app_path']}")
    for app in result["skipped"]:
        print(f"No staged changes for {app['app_path']}")
    print(f"{len(result['main'])} app(s) promoted.")
    return _report_failures(result)


def cmd_app_stop(args: argparse.Namespace) -> int:
    """Stop an app's container now; its next request starts it again."""
    result = _client().request("POST", "/apps/stop", query={"glob": args.app})
    print(f"Stopped {result['app']}" if result["stopped"]
          else f"{result['app']} was not running")
    return 0


def cmd_app_restart(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/apps/restart", query={"glob": args.app})
    print(f"Restarted {result['app']}")
    return 0


def _update(kind: str, values: list[str], glob: str, promote: bool, dry_run: bool,
            line: str) -> int:
    result = _client().request("POST", "/apps/update", body={
        "kind": kind, "values": values, "glob": glob, "promote": promote,
        "dry_run": dry_run})
    for path in result["main_paths"]:
        print(f"{line} {path}")
    promoted = [a for a in result["main"] if a["kind"] == "prod"]
    print(f"{len(result['main_paths'])} app(s) updated, {len(promoted)} app(s) promoted.")
    return _report_failures(result)


def cmd_app_update(args: argparse.Namespace) -> int:
    if len(args.values) < 2:
        if args.kind in ("spec", "auth"):
            raise OrunError("requires two arguments: <value> <appPathGlob>")
        raise OrunError("requires at least two arguments: key=value [key=value ...] "
                        "<appPathGlob>")
    *values, glob = args.values
    return _update(args.kind, values, glob, args.promote, args.dry_run, "Updated")


def cmd_param_update(args: argparse.Namespace) -> int:
    return _update("param", [args.name, args.value], args.glob, args.promote, args.dry_run,
                   "Updated app")


def cmd_param_list(args: argparse.Namespace) -> int:
    result = _client().request("GET", "/params", query={"app": args.app})
    app, params = result["app"], result["params"]
    if args.format != "basic":
        rows = [{"name": k, "value": v} for k, v in sorted(params.items())]
        emit(args.format, rows, (Column("Name", lambda r: r["name"]),
                                 Column("Value", lambda r: str(r["value"]))))
        return 0
    if not params:
        print(f"No param values for app {app['app_path']} : {app['id']}")
        return 0
    print(f"Param values for app {app['app_path']} : {app['id']}")
    for key, value in sorted(params.items()):
        print(f"  {key}: {value}")
    return 0


def _read_new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(the new password, whether to print it): from stdin, generated, or typed twice."""
    if args.generate:
        import secrets

        return secrets.token_urlsafe(18), True
    if args.stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise OrunError("no password on standard input")
        return password, False
    import getpass

    first = getpass.getpass("New admin password: ")
    if not first:
        raise OrunError("the password must not be empty")
    if getpass.getpass("Again: ") != first:
        raise OrunError("the passwords do not match")
    return first, False


def cmd_password(args: argparse.Namespace) -> int:
    """Set the admin password (`system` auth) in the home: no server needed."""
    from orun.state.secrets import ADMIN_USER, set_admin_password

    if args.stdin and args.generate:
        raise OrunError("use either --stdin or --generate")
    password, show = _read_new_password(args)
    home = _home()
    os.umask(0o077)
    set_admin_password(home, password)
    if show:
        print(f"admin password: {password}")
    print(f"Password set for user {ADMIN_USER} ({home / 'admin_password'}); a running "
          "server uses it within a second.", file=sys.stderr if show else sys.stdout)
    return 0


def cmd_version_list(args: argparse.Namespace) -> int:
    result = _client().request("GET", "/versions", query={"app": args.app})
    app, current = result["app"], result["app"]["current"]["version"]

    def marker(v: Row) -> str:
        return "*" if v["version"] == current else ""

    def message(v: Row) -> str:
        return (v.get("git_message") or "").partition("\n")[0]

    version = Column("Version", lambda v: str(v["version"]))
    created = Column("Created", lambda v: _when(v["created"]))
    commit = Column("Commit", lambda v: (v.get("git_commit") or "-")[:12])
    spec = Column("Spec", lambda v: v["settings"]["spec"])
    emit(args.format, list(reversed(result["versions"])),
         (version, Column("Current", marker), created,
          Column("Branch", lambda v: text(v.get("git_branch") or v["settings"]["branch"])),
          commit, spec, Column("Message", message)),
         (version, Column("", marker), created, commit, spec, Column("Message", message)),
         title=f"Versions of {app['app_path']} ({app['id']}):")
    return 0


def _switch(app: str, target: str, dry_run: bool) -> int:
    result = _client().request("POST", "/versions/switch", query={
        "app": app, "target": target, "dryRun": _flag_value(dry_run)})
    moved = (result["stage"] + result["main"])[0]
    print(f"Switched {moved['app_path']} from version {result['from_version']} to version "
          f"{moved['current']['version']}")
    if result.get("dry_run"):
        print(DRY_RUN_TRAILER)
    return 0


def cmd_version_switch(args: argparse.Namespace) -> int:
    return _switch(args.app, args.target, args.dry_run)


def cmd_version_revert(args: argparse.Namespace) -> int:
    return _switch(args.app, "revert", args.dry_run)


def cmd_app_delete(args: argparse.Namespace) -> int:
    result = _client().request("DELETE", "/apps", query={
        "glob": args.glob, "dryRun": "true" if args.dry_run else None})
    for app in result["deleted"]:
        print(f"Deleting {app['app_path']} - {app['id']}")
    print(f"{len(result['deleted'])} app(s) deleted.")
    if result.get("dry_run"):
        print(DRY_RUN_TRAILER)
    return 0


def _catalog() -> Any:
    from orun.spec import SpecCatalog

    return SpecCatalog(_home() / "specs")


def cmd_spec_list(args: argparse.Namespace) -> int:
    specs = _catalog().all()
    if args.format == "markdown":
        from orun.spec.table import markdown_table

        print(markdown_table(specs))
        return 0
    name = Column("Name", lambda s: s["name"])
    kind = Column("Kind", lambda s: s["kind"])
    description = Column("Description", lambda s: s["description"])
    emit(args.format, [s.to_json() for s in specs],
         (name, kind, Column("Params", lambda s: text(", ".join(s.get("params") or {}))),
          description),
         (name, kind, description))
    return 0


def cmd_spec_detect(args: argparse.Namespace) -> int:
    """Which spec `app create` would choose for SOURCE, and why; creates nothing."""
    import asyncio
    import tempfile

    from orun.sources import SnapshotStore, parse_source
    from orun.spec.detect import detect_spec

    ref = parse_source(_source_arg(args.source), branch=args.branch, commit=args.commit)
    with tempfile.TemporaryDirectory(prefix="orun-detect-") as tmp:
        snapshot = asyncio.run(SnapshotStore(Path(tmp)).take(ref))
        detection = detect_spec(snapshot.path)
    if args.format == "json":
        print(json.dumps(detection.to_json(), indent=2))
        return 0
    print(f"{detection.spec}: {detection.reason}")
    if detection.app_file:
        print(f"  app file: {detection.app_file}")
    others = {s: why for s, why in detection.candidates.items() if s != detection.spec}
    for spec, why in sorted(others.items()):
        print(f"  also seen, ranked lower: {spec} ({why})")
    return 0


def cmd_spec_new(args: argparse.Namespace) -> int:
    dest, overrides = _catalog().copy(args.source, args.name)
    print(f"Created spec {args.name} in {dest} from {args.source}"
          + (f" (it replaces the bundled spec {args.name})" if overrides else "") + ".")
    print(f"Edit its files, check them with 'orun spec check {dest}', then use "
          f"'orun app create --spec {args.name} ...' (no restart needed).")
    return 0


def cmd_spec_check(args: argparse.Namespace) -> int:
    """Check a spec folder (or a spec by name); each problem on its own line."""
    from orun.build.speccheck import check_spec_dir

    path = Path(args.path)
    if not path.is_dir():
        if os.sep in args.path:
            raise OrunError(f"spec folder {args.path} does not exist")
        path = _catalog().path_of(args.path)
    problems = check_spec_dir(path)
    for problem in problems:
        print(f"{path.name}: {problem}")
    if problems:
        raise OrunError(f"spec {path.name} has {len(problems)} problem(s)")
    print(f"spec {path.name} is fine ({path})")
    return 0


def cmd_spec_show(args: argparse.Namespace) -> int:
    spec = _catalog().get(args.name)
    if args.format == "json":
        print(json.dumps(spec.to_json(), indent=2))
        return 0
    print(f"{spec.name}: {spec.description}")
    print(f"  kind: {spec.kind}")
    print(f"  folder: {spec.path}")
    print("  params:")
    for name, p in spec.params.items():
        req = "required" if p.is_required else f"default {json.dumps(p.default)}"
        print(f"    {name} ({p.type}, {req}){': ' + p.description if p.description else ''}")
    if not spec.params:
        print("    (none)")
    r = spec.routing
    print(f"  routing: strip_app={str(r.strip_app).lower()} "
          f"redirect_bare_path={str(r.redirect_bare_path).lower()} "
          f"path_routing={str(r.path_routing).lower()}")
    print("  files: " + (", ".join(spec.files) if spec.files else "(none)"))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from orun.state.config import read_config_file

    if _elsewhere():
        return _remote_config_check(args.path)
    path = Path(args.path).expanduser().absolute() if args.path else _home() / "orun.yaml"
    try:
        read_config_file(path, required=bool(args.path))
    except ConfigError as exc:
        print(f"error: {path} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    exists = path.exists()
    if not exists:
        print(f"config OK: {path} (not present; built-in defaults apply)")
        return 0
    try:
        result = _client().request("POST", "/config/check", body={"path": str(path)})
    except OrunError:
        print(f"config OK: {path} (orun is not running: what a reload would change to the "
              "apps is not known)")
        return 0
    if result["problems"]:
        print(f"error: {path} would be rejected by the running server:", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"config OK: {path}")
    _print_reconcile(result["apps"], would=True)
    if result["changed"]:
        print("a reload would change: " + ", ".join(result["changed"]))
    return 0


def _remote_config_check(path: str | None) -> int:
    """`config check` against a remote orun: its own config file (or `path` on its
    machine) as its next reload would read it."""
    result = _client().request("POST", "/config/check", body={"path": path or ""})
    if result["problems"]:
        print("error: the server's config would be rejected:", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("config OK")
    _print_reconcile(result["apps"], would=True)
    if result["changed"]:
        print("a reload would change: " + ", ".join(result["changed"]))
    return 0


def _print_reconcile(apps: dict[str, Any], *, would: bool) -> None:
    """The app changes of a config reload (`apps:` list), one line each."""
    prefix = "would " if would else ""
    for path in apps.get("create", []) + apps.get("created", []):
        print(f"{prefix}create {path}")
    for item in apps.get("update", []):
        extra = " and promote" if item["promote"] and item["changes"] != ["promote"] else ""
        print(f"{prefix}update {item['path']} ({', '.join(item['changes'])}){extra}")
    for path in apps.get("updated", []):
        print(f"updated {path}")
    for path in apps.get("delete", []) + apps.get("deleted", []):
        print(f"{prefix}delete {path}")
    for failure in apps.get("failed", []):
        print(f"failed {failure}", file=sys.stderr)
    if would and not any(apps.get(k) for k in ("create", "update", "delete")):
        print("no app changes")


def cmd_config_reload(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/config/reload")
    if not result.get("applied"):
        raise OrunError("config reload rejected, the old config stays in force:\n  "
                        + "\n  ".join(result.get("problems", [])))
    changed = result.get("changed") or []
    print("config reloaded: " + (", ".join(changed) + " changed" if changed else "no changes"))
    _print_reconcile(result.get("apps") or {}, would=False)
    return 1 if (result.get("apps") or {}).get("failed") else 0


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def cmd_token_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "scope": args.scope}
    if args.expires is not None:
        body["expires_days"] = args.expires
    result = _client().request("POST", "/tokens", body=body)
    # the token alone on stdout (ORUN_TOKEN=$(orun token create ci) works); the rest
    # on stderr
    print(f"token {result['name']!r} created (scope {result['scope']}, expires "
          f"{_when(result['expires']) if result['expires'] else 'never'}); it is shown "
          "only now, orun keeps just its hash:", file=sys.stderr)
    print(result["token"])
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    tokens = _client().request("GET", "/tokens")["tokens"]
    emit(args.format, tokens, (
        Column("Name", lambda t: t["name"]), Column("Scope", lambda t: t["scope"]),
        Column("Created", lambda t: _when(t["created"])),
        Column("LastUsed", lambda t: _when(t["last_used"])),
        Column("Expires", lambda t: _when(t["expires"]) if t["expires"] else "never")))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    _client().request("DELETE", "/tokens", query={"name": args.name})
    print(f"token {args.name!r} revoked")
    return 0


def cmd_key_add(args: argparse.Namespace) -> int:
    """Allow a public key to git push; the key comes from a file or stdin (`-`)."""
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).expanduser().read_text()
        except OSError as exc:
            raise OrunError(f"cannot read {args.file}: {exc.strerror}") from None
    result = _client().request("POST", "/keys", body={"name": args.name, "key": text,
                                                      "scope": args.scope})
    print(f"key {result['name']!r} added ({result['fingerprint']}, scope {result['scope']})")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    keys = _client().request("GET", "/keys")["keys"]
    emit(args.format, keys, (
        Column("Name", lambda k: k["name"]), Column("Scope", lambda k: k["scope"]),
        Column("Type", lambda k: k["type"]), Column("Fingerprint", lambda k: k["fingerprint"]),
        Column("Created", lambda k: _when(k["created"])),
        Column("LastUsed", lambda k: _when(k["last_used"]))))
    return 0


def cmd_key_remove(args: argparse.Namespace) -> int:
    _client().request("DELETE", "/keys", query={"name": args.name})
    print(f"key {args.name!r} removed")
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration back from now (`90s`, `30m`, `2h`, `7d`, `1w`) or a time
    (`2026-12-01`, `2026-12-01T10:00`, local time unless it names a zone)."""
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in _UNITS:
        return now - int(value[:-1]) * _UNITS[value[-1]]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise OrunError(f"invalid --since {text!r}: use a duration like 30m, 2h or 7d, "
                        "or a time like 2026-12-01T10:00") from None


def cmd_audit_list(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise OrunError("--limit must be greater than 0")
    query = {"app": args.app or None, "limit": str(args.limit),
             "since": str(parse_since(args.since, time.time())) if args.since else None}
    rows = _client().request("GET", "/audit", query=query)["rows"]
    emit(args.format, rows, (
        Column("Time", lambda r: _when(r["time"])), Column("Actor", lambda r: r["actor"]),
        Column("Remote", lambda r: text(r["remote"])), Column("Action", lambda r: r["action"]),
        Column("Target", lambda r: text(r["target"])),
        Column("Outcome", lambda r: r["outcome"] + (f" (x{r['count']})" if r["count"] > 1
                                                    else ""))))
    return 0


def _issuer(text: str) -> str:
    """The issuer's CN (or the whole name when it has none), for a table cell."""
    for part in text.split(","):
        if part.startswith("CN="):
            return part[3:]
    return text or "-"


def cmd_cert_list(args: argparse.Namespace) -> int:
    rows = _client().request("GET", "/certs")["certificates"]
    domain = Column("Domain", lambda r: r["domain"])
    source = Column("Source", lambda r: r["source"])
    expires = Column("Expires", lambda r: _when(r["not_after"]))
    renewal = Column("NextRenewal", lambda r: _when(r["next_renewal"]))
    error = Column("LastError", lambda r: text(r["last_error"]))
    emit(args.format, rows,
         (domain, source, Column("Issuer", lambda r: _issuer(r["issuer"])),
          Column("Serial", lambda r: text(r.get("serial"))), expires, renewal, error),
         (domain, source, Column("Issuer", lambda r: _issuer(r["issuer"])[:28]), expires,
          renewal, error))
    return 0


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/certs/revoke", query={"domain": args.domain})
    print(f"Revoked certificate {result['revoked']} of {result['domain']}; "
          f"now serving {result['serial']}")
    return 0


def cmd_service_print(args: argparse.Namespace) -> int:
    from orun.cli import service

    settings = service.settings_for(user_unit=args.user, run_as=args.run_as or "",
                                    config=args.config)
    print(service.render(settings), end="")
    return 0


def cmd_service_install(args: argparse.Namespace) -> int:
    from orun.cli import service

    settings = service.settings_for(user_unit=args.user, run_as=args.run_as or "",
                                    config=args.config)
    path, changed = service.install(service.render(settings),
                                    service.unit_dir(args.user, args.unit_dir), settings)
    print(f"{'wrote' if changed else 'unchanged:'} {path} (orun serve with home "
          f"{settings.home})")
    print(service.next_steps(args.user))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion.script(build_parser(), args.shell), end="")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"orun {__version__}")
    return 0


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orun", description="Deploy web apps from source plus an app spec.")
    parser.add_argument("--version", "-v", action="version", version=f"orun {__version__}")
    parser.add_argument("--server", metavar="URL",
                        help="talk to a remote orun: https://HOST[:PORT] (the token comes "
                             "from $ORUN_TOKEN or --token-file) or "
                             "ssh://[USER@]HOST[:PORT][/ORUN_HOME] (your SSH keys; default "
                             "$ORUN_SERVER)")
    completion.hint(parser.add_argument("--token-file", metavar="PATH",
                                        help="file holding the API token"), completion.FILE)
    completion.hint(parser.add_argument("--ca-file", metavar="PATH",
                                        help="CA certificate(s) to verify the server with "
                                             "(default $ORUN_CA_FILE, else the system's)"),
                    completion.FILE)
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the server's TLS certificate")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the orun server in the foreground")
    completion.hint(serve.add_argument("--config", "-c",
                                       help="config file (default $ORUN_HOME/orun.yaml)"),
                    completion.FILE)
    serve.set_defaults(func=cmd_serve)

    app = sub.add_parser("app", help="create, list and delete apps")
    app_sub = app.add_subparsers(dest="app_command", required=True, parser_class=_Parser)

    create = app_sub.add_parser("create", help="create an app")
    completion.hint(create.add_argument("source",
                                        help="local folder, git URL, or - for no source"),
                    completion.DIRECTORY)
    create.add_argument("path", help="[domain:]path the app is served at")
    completion.hint(create.add_argument(
        "--spec", help="app spec (see 'orun spec list'); 'auto' or none: detected from the "
                       "source ('orun spec detect')"), completion.SPEC_NAME)
    create.add_argument("--param", "-p", action="append", metavar="KEY=VALUE")
    create.add_argument("--container-arg", "--carg", dest="carg", action="append",
                        metavar="KEY=VALUE")
    create.add_argument("--container-option", "--copt", dest="copt", action="append",
                        metavar="KEY[=VALUE]")
    create.add_argument("--container-volume", "--cvol", dest="cvol", action="append",
                        metavar="VOLUME")
    create.add_argument("--app-config", "--conf", dest="conf", action="append",
                        metavar="KEY=VALUE")
    create.add_argument("--branch", "-b", help="git branch (default: the remote's default)")
    create.add_argument("--commit", "-c", help="git commit (wins over --branch)")
    create.add_argument("--dev", "-d", action="store_true", help="dev mode (local source)")
    create.add_argument("--approve", "-a", action="store_true")
    create.add_argument("--stage-at", help="path, domain, or a staging domain")
    create.add_argument("--auth", help="who may use the app: default (the server's "
                        "security.app_default_auth_type), none, system, oidc:NAME (or "
                        "NAME) or forward:NAME")
    create.add_argument("--dry-run", action="store_true")
    create.add_argument("--wait", "-w", action="store_true",
                        help="build and start the app now, streaming the build log")
    create.set_defaults(func=cmd_app_create)

    lst = app_sub.add_parser("list", help="list apps")
    lst.add_argument("glob", nargs="?", default="all")
    lst.add_argument("--internal", "-i", action="store_true", help="include stage apps")
    add_format_option(lst)
    lst.set_defaults(func=cmd_app_list)

    logs = app_sub.add_parser("logs", help="show an app's container output or build log")
    logs.add_argument("app", help="the app path, e.g. /myapp or name.:/")
    logs.add_argument("--build", action="store_true", help="the last build/start log")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--lines", "-n", type=int, default=200, help="lines of history")
    logs.set_defaults(func=cmd_app_logs)

    reload_app = app_sub.add_parser(
        "reload", help="fetch the source again into the stage app (and prod with --promote)")
    reload_app.add_argument("glob")
    reload_app.add_argument("--promote", "-p", action="store_true",
                            help="move prod to the new version too")
    reload_app.add_argument("--verify", action="store_true",
                            help="every app must come up healthy, else nothing changes")
    reload_app.add_argument("--force-reload", "-f", action="store_true",
                            help="reload git apps even when the commit did not move")
    reload_app.add_argument("--branch", "-b", help="switch to this git branch")
    reload_app.add_argument("--commit", "-c", help="switch to this git commit")
    reload_app.add_argument("--dry-run", action="store_true")
    reload_app.add_argument("--approve", "-a", action="store_true",
                            help="accepted as in OpenRun (specs need no approval in orun)")
    reload_app.set_defaults(func=cmd_app_reload)

    promote = app_sub.add_parser("promote", help="move prod apps to their stage version")
    promote.add_argument("glob")
    promote.add_argument("--dry-run", action="store_true")
    promote.set_defaults(func=cmd_app_promote)

    stop = app_sub.add_parser("stop", help="stop an app's container now (the next "
                                           "request starts it again)")
    stop.add_argument("app")
    stop.set_defaults(func=cmd_app_stop)
    restart = app_sub.add_parser("restart", help="stop an app's container and start it "
                                                 "again, waiting until it is healthy")
    restart.add_argument("app")
    restart.set_defaults(func=cmd_app_restart)

    update = app_sub.add_parser(
        "update", help="change an app setting (staged unless --promote)",
        description="app update spec NAME GLOB | copt|carg|conf KEY=VALUE... GLOB "
                    "(VALUE - deletes) | cvol VOLUME... GLOB (replaces the list) | "
                    "auth TYPE GLOB")
    update.add_argument("kind", choices=("spec", "copt", "container-option", "carg",
                                         "container-arg", "cvol", "container-volumes",
                                         "conf", "app-config", "auth"))
    update.add_argument("values", nargs="+", metavar="VALUE... GLOB")
    update.add_argument("--promote", "-p", action="store_true")
    update.add_argument("--dry-run", action="store_true")
    update.set_defaults(func=cmd_app_update)

    delete = app_sub.add_parser("delete", help="delete apps matching a glob")
    delete.add_argument("glob")
    delete.add_argument("--dry-run", action="store_true")
    delete.set_defaults(func=cmd_app_delete)

    spec = sub.add_parser("spec", help="list and show app specs")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True, parser_class=_Parser)
    slist = spec_sub.add_parser("list", help="list specs")
    add_format_option(slist, "markdown")
    slist.set_defaults(func=cmd_spec_list)
    show = spec_sub.add_parser("show", help="show one spec")
    show.add_argument("name")
    show.add_argument("--format", "-f", choices=("basic", "json"), default="basic")
    show.set_defaults(func=cmd_spec_show)
    snew = spec_sub.add_parser(
        "new", help="copy a spec into $ORUN_HOME/specs/NAME to edit it there")
    snew.add_argument("name", help="the new spec's name")
    completion.hint(snew.add_argument("--from", dest="source", required=True, metavar="SPEC",
                                      help="the spec to copy"), completion.SPEC_NAME)
    snew.set_defaults(func=cmd_spec_new)
    scheck = spec_sub.add_parser(
        "check", help="check a spec folder (spec.yaml, params, container file rules)")
    completion.hint(scheck.add_argument(
        "path", help="a spec folder, or the name of an installed spec"), completion.DIRECTORY)
    scheck.set_defaults(func=cmd_spec_check)
    detect = spec_sub.add_parser(
        "detect", help="show which spec 'app create' would choose for a source, and why")
    completion.hint(detect.add_argument("source", help="a folder or a git repository URL"),
                    completion.DIRECTORY)
    detect.add_argument("--branch", "-b", help="git branch")
    detect.add_argument("--commit", "-c", help="git commit")
    detect.add_argument("--format", "-f", choices=("basic", "json"), default="basic")
    detect.set_defaults(func=cmd_spec_detect)

    password = sub.add_parser(
        "password", help="set the admin password (system auth); no server needed",
        description="Asks for the new password twice on a terminal, reads one line from "
                    "standard input otherwise (or with --stdin), or makes a random one "
                    "and prints it once (--generate). Only its scrypt hash is stored.")
    password.add_argument("--stdin", action="store_true", help="read one line from stdin")
    password.add_argument("--generate", action="store_true",
                          help="make a random password and print it")
    password.set_defaults(func=cmd_password)

    config = sub.add_parser("config", help="check or reload the server config")
    config_sub = config.add_subparsers(dest="config_command", required=True,
                                       parser_class=_Parser)
    check = config_sub.add_parser("check", help="validate a config file without a server")
    completion.hint(check.add_argument("path", nargs="?"), completion.FILE)
    check.set_defaults(func=cmd_config_check)
    reload_ = config_sub.add_parser("reload", help="ask the running server to reload")
    reload_.set_defaults(func=cmd_config_reload)

    cert = sub.add_parser("cert", help="list certificates, revoke and replace an ACME one")
    cert_sub = cert.add_subparsers(dest="cert_command", required=True, parser_class=_Parser)
    clist = cert_sub.add_parser("list", help="the certificates the HTTPS listener serves")
    add_format_option(clist)
    clist.set_defaults(func=cmd_cert_list)
    crevoke = cert_sub.add_parser("revoke", help="revoke a domain's ACME certificate at the "
                                  "CA and serve a new one")
    crevoke.add_argument("domain")
    crevoke.set_defaults(func=cmd_cert_revoke)

    param = sub.add_parser("param", help="update and list app params")
    param_sub = param.add_subparsers(dest="param_command", required=True, parser_class=_Parser)
    pupdate = param_sub.add_parser("update", help="set (or with - delete) a param")
    pupdate.add_argument("name")
    pupdate.add_argument("value", help="the value, or - to delete the param")
    pupdate.add_argument("glob")
    pupdate.add_argument("--promote", "-p", action="store_true")
    pupdate.add_argument("--dry-run", action="store_true")
    pupdate.set_defaults(func=cmd_param_update)
    plist = param_sub.add_parser("list", help="list an app's params")
    plist.add_argument("app")
    add_format_option(plist)
    plist.set_defaults(func=cmd_param_list)

    version = sub.add_parser("version", help="print orun's version, or list and switch "
                             "app versions")
    version.set_defaults(func=cmd_version)
    version_sub = version.add_subparsers(dest="version_command", parser_class=_Parser)
    vlist = version_sub.add_parser("list", help="an app's kept versions")
    vlist.add_argument("app", help="a prod, stage or dev app path")
    add_format_option(vlist)
    vlist.set_defaults(func=cmd_version_list)
    vswitch = version_sub.add_parser("switch", help="move an app to another kept version")
    vswitch.add_argument("target", help="previous, next or a version number")
    vswitch.add_argument("app")
    vswitch.add_argument("--dry-run", action="store_true")
    vswitch.set_defaults(func=cmd_version_switch)
    vrevert = version_sub.add_parser("revert", help="undo an app's last version change")
    vrevert.add_argument("app")
    vrevert.add_argument("--dry-run", action="store_true")
    vrevert.set_defaults(func=cmd_version_revert)

    token = sub.add_parser("token", help="API tokens for remote admin (--server)")
    token_sub = token.add_subparsers(dest="token_command", required=True, parser_class=_Parser)
    tcreate = token_sub.add_parser("create", help="make a token (printed once)")
    tcreate.add_argument("name")
    tcreate.add_argument("--scope", choices=("read", "admin"), default="admin",
                         help="read: list and look only; admin: everything (default)")
    tcreate.add_argument("--expires", type=float, metavar="DAYS",
                         help="the token stops working after DAYS days (default never)")
    tcreate.set_defaults(func=cmd_token_create)
    tlist = token_sub.add_parser("list", help="list tokens (never their secrets)")
    add_format_option(tlist)
    tlist.set_defaults(func=cmd_token_list)
    trevoke = token_sub.add_parser("revoke", help="revoke a token (at once)")
    trevoke.add_argument("name")
    trevoke.set_defaults(func=cmd_token_revoke)

    key = sub.add_parser("key", help="SSH keys that may git push to orun's SSH server")
    key_sub = key.add_subparsers(dest="key_command", required=True, parser_class=_Parser)
    kadd = key_sub.add_parser("add", help="allow a public key to git push")
    kadd.add_argument("name")
    completion.hint(kadd.add_argument("file", help="the public key file (.pub), or - for "
                                                   "standard input"), completion.FILE)
    kadd.add_argument("--scope", default="admin", metavar="admin|GLOB",
                      help="admin: push to (and create) any app (default); an app path "
                           "glob: only apps it matches")
    kadd.set_defaults(func=cmd_key_add)
    klist = key_sub.add_parser("list", help="list the keys")
    add_format_option(klist)
    klist.set_defaults(func=cmd_key_list)
    kremove = key_sub.add_parser("remove", help="remove a key (at once)")
    kremove.add_argument("name")
    kremove.set_defaults(func=cmd_key_remove)

    audit = sub.add_parser("audit", help="the audit trail of admin operations and sign-ins")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    alist = audit_sub.add_parser("list", help="audit rows, newest first")
    alist.add_argument("--app", metavar="GLOB", help="only rows about apps matching GLOB")
    alist.add_argument("--since", metavar="DURATION|TIME",
                       help="only rows since then: 30m, 2h, 7d, or 2026-12-01T10:00")
    alist.add_argument("--limit", "-n", type=int, default=100)
    add_format_option(alist)
    alist.set_defaults(func=cmd_audit_list)

    svc = sub.add_parser("service", help="run orun as a systemd service")
    svc_sub = svc.add_subparsers(dest="service_command", required=True, parser_class=_Parser)
    for name, func, help_ in (
            ("print", cmd_service_print, "show the systemd unit install would write"),
            ("install", cmd_service_install,
             "write the systemd unit (/etc/systemd/system/orun.service, or with --user "
             "~/.config/systemd/user/orun.service)")):
        one = svc_sub.add_parser(name, help=help_)
        one.add_argument("--user", action="store_true",
                         help="a user unit (systemctl --user) instead of a system one")
        one.add_argument("--run-as", metavar="USER",
                         help="system unit: the user orun runs as (default: you; root "
                              "when run as root); the home is theirs unless ORUN_HOME")
        completion.hint(one.add_argument("--config", "-c", help="config file for orun "
                                         "serve (default $ORUN_HOME/orun.yaml)"),
                        completion.FILE)
        if name == "install":
            completion.hint(one.add_argument("--unit-dir", metavar="DIR",
                                             help="write the unit here instead"),
                            completion.DIRECTORY)
        one.set_defaults(func=func)

    complete = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="bash: add  eval \"$(orun completion bash)\"  to ~/.bashrc, or save "
                    "the script as ~/.local/share/bash-completion/completions/orun. "
                    "zsh: save it as _orun in a folder on $fpath (e.g. orun completion "
                    "zsh > ~/.zfunc/_orun, with fpath+=~/.zfunc before compinit).")
    complete.add_argument("shell", choices=completion.SHELLS)
    complete.set_defaults(func=cmd_completion)
    return parser


#: commands about this machine only: --server/ORUN_SERVER does not apply (a shell's
#: `eval "$(orun completion bash)"` must work with ORUN_SERVER set and no token)
_LOCAL_ONLY = frozenset({cmd_serve, cmd_completion, cmd_service_print, cmd_service_install,
                         cmd_spec_list, cmd_spec_show, cmd_version})


def main(argv: Sequence[str] | None = None) -> int:
    global _REMOTE, _TUNNEL
    parser = build_parser()
    args_in = list(sys.argv[1:] if argv is None else argv)
    args_in = normalize_go_flags(args_in, long_flags(parser))
    try:
        _check_cvol_values(args_in)
        args = parser.parse_args(args_in)
        _REMOTE = None if args.func in _LOCAL_ONLY else _remote_from(args)
        url = args.server or os.environ.get("ORUN_SERVER", "")
        if url.startswith("ssh://") and args.func not in _LOCAL_ONLY:
            from orun.cli.sshtunnel import SshTunnel

            _TUNNEL = SshTunnel(url)
            _TUNNEL.open()
        return int(args.func(args))
    except OrunError as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        _print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if _TUNNEL is not None:
            _TUNNEL.close()
            _TUNNEL = None


def _print_error(message: str) -> None:
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    prefix = "\033[31merror:\033[0m" if color else "error:"
    print(f"{prefix} {message}", file=sys.stderr)
