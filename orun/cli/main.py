"""The `orun` command line: `serve` runs the server, everything else talks to it.

Errors print one line `error: <message>` on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from orun import __version__
from orun.cli.argv import long_flags, normalize_go_flags
from orun.cli.client import AdminClient
from orun.errors import ConfigError, OrunError

DRY_RUN_TRAILER = "\n*** dry-run mode, changes have NOT been committed. ***"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error:` line (exit 1, like OpenRun)."""

    def error(self, message: str) -> NoReturn:
        raise OrunError(f"{message}\nrun '{self.prog} --help' for usage")


def _home() -> Path:
    from orun.state.home import default_home

    return default_home()


def _client() -> AdminClient:
    return AdminClient(_home() / "run" / "orun.sock")


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
    lines.append(f"     Spec: {app['current']['settings']['spec']}")
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


def _start_and_stream(app_path: str) -> int:
    """Build and start the app now, printing its progress as it happens."""
    detail: list[str] = []
    for line in _client().stream("POST", "/apps/start", query={"glob": app_path}):
        if line.startswith("@@ready"):
            url = line[len("@@ready"):].strip()
            print(f"App is running{': ' + url if url else ''}")
            return 0
        if line.startswith("@@detail"):
            detail.append(line[len("@@detail "):])
        elif line.startswith("@@failed"):
            if detail:
                print("\n".join(detail), file=sys.stderr)
            raise OrunError(line[len("@@failed"):].strip())
        else:
            print(line, flush=True)
    raise OrunError("the server closed the connection before the app started")


def _app_rows(apps: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for a in apps:
        kind = {"prod": "PROD", "stage": "STG", "dev": "DEV"}[a["kind"]]
        if kind == "PROD" and a.get("staged_changes"):
            kind = "PROD*"
        runtime = a.get("runtime") or {}
        port = runtime.get("port") or ""
        rows.append((kind, str(a["current"]["version"]), a["current"]["settings"]["spec"],
                     a["app_path"], runtime.get("state", "-"), runtime.get("image") or "-",
                     str(port) if port else "-", a.get("urls", {}).get("http", ""),
                     a["source"]))
    return rows


def cmd_app_list(args: argparse.Namespace) -> int:
    result = _client().request("GET", "/apps", query={
        "glob": args.glob, "internal": "true" if args.internal else None})
    apps = result["apps"]
    if args.format == "json":
        print(json.dumps(apps, indent=2))
    elif args.format == "jsonl":
        for app in apps:
            print(json.dumps(app))
    else:
        fmt = "%-5s %4s %-16s %-32s %-9s %-30s %5s  %s"
        print(fmt % ("Type", "Ver", "Spec", "AppPath", "State", "Image", "Port", "Url"))
        for kind, ver, spec, path, state, image, port, url, _src in _app_rows(apps):
            print(fmt % (kind, ver, spec, path, state, image, port, url))
        errors = [(a["app_path"], (a.get("runtime") or {}).get("error")) for a in apps]
        for path, error in errors:
            if error:
                print(f"{path}: {error}")
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
        if args.kind == "spec":
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
    if not params:
        print(f"No param values for app {app['app_path']} : {app['id']}")
        return 0
    print(f"Param values for app {app['app_path']} : {app['id']}")
    for key, value in sorted(params.items()):
        print(f"  {key}: {value}")
    return 0


def cmd_version_list(args: argparse.Namespace) -> int:
    import datetime

    result = _client().request("GET", "/versions", query={"app": args.app})
    app, current = result["app"], result["app"]["current"]["version"]
    if args.format == "json":
        print(json.dumps(result["versions"], indent=2))
        return 0
    fmt = "%-8s %-2s %-19s %-12s %-16s %s"
    print(f"Versions of {app['app_path']} ({app['id']}):")
    print(fmt % ("Version", "", "Created", "Commit", "Spec", "Message"))
    for v in reversed(result["versions"]):
        created = datetime.datetime.fromtimestamp(v["created"]).strftime("%Y-%m-%d %H:%M:%S")
        message = (v.get("git_message") or "").partition("\n")[0]
        print(fmt % (v["version"], "*" if v["version"] == current else "", created,
                     (v.get("git_commit") or "-")[:12], v["settings"]["spec"], message))
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
    if args.format == "json":
        print(json.dumps([s.to_json() for s in specs], indent=2))
        return 0
    if args.format == "markdown":
        from orun.spec.table import markdown_table

        print(markdown_table(specs))
        return 0
    width = max((len(s.name) for s in specs), default=4)
    for spec in specs:
        print(f"{spec.name:<{width}}  {spec.kind:<9}  {spec.description}")
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


def _when(ts: float | None) -> str:
    import datetime

    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _issuer(text: str) -> str:
    """The issuer's CN (or the whole name when it has none), for a table cell."""
    for part in text.split(","):
        if part.startswith("CN="):
            return part[3:]
    return text or "-"


def cmd_cert_list(args: argparse.Namespace) -> int:
    rows = _client().request("GET", "/certs")["certificates"]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    fmt = "%-32s %-8s %-28s %-21s %-21s %s"
    print(fmt % ("Domain", "Source", "Issuer", "Expires", "Next renewal", "Last error"))
    for r in rows:
        print(fmt % (r["domain"], r["source"], _issuer(r["issuer"])[:28], _when(r["not_after"]),
                     _when(r["next_renewal"]), r["last_error"] or "-"))
    return 0


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    result = _client().request("POST", "/certs/revoke", query={"domain": args.domain})
    print(f"Revoked certificate {result['revoked']} of {result['domain']}; "
          f"now serving {result['serial']}")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"orun {__version__}")
    return 0


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orun", description="Deploy web apps from source plus an app spec.")
    parser.add_argument("--version", "-v", action="version", version=f"orun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the orun server in the foreground")
    serve.add_argument("--config", "-c", help="config file (default $ORUN_HOME/orun.yaml)")
    serve.set_defaults(func=cmd_serve)

    app = sub.add_parser("app", help="create, list and delete apps")
    app_sub = app.add_subparsers(dest="app_command", required=True, parser_class=_Parser)

    create = app_sub.add_parser("create", help="create an app")
    create.add_argument("source", help="local folder, git URL, or - for no source")
    create.add_argument("path", help="[domain:]path the app is served at")
    create.add_argument("--spec", help="app spec (see 'orun spec list')")
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
    create.add_argument("--dry-run", action="store_true")
    create.add_argument("--wait", "-w", action="store_true",
                        help="build and start the app now, streaming the build log")
    create.set_defaults(func=cmd_app_create)

    lst = app_sub.add_parser("list", help="list apps")
    lst.add_argument("glob", nargs="?", default="all")
    lst.add_argument("--internal", "-i", action="store_true", help="include stage apps")
    lst.add_argument("--format", "-f", choices=("basic", "json", "jsonl"), default="basic")
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

    update = app_sub.add_parser(
        "update", help="change an app setting (staged unless --promote)",
        description="app update spec NAME GLOB | copt|carg|conf KEY=VALUE... GLOB "
                    "(VALUE - deletes) | cvol VOLUME... GLOB (replaces the list)")
    update.add_argument("kind", choices=("spec", "copt", "container-option", "carg",
                                         "container-arg", "cvol", "container-volumes",
                                         "conf", "app-config"))
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
    slist.add_argument("--format", "-f", choices=("basic", "json", "markdown"), default="basic")
    slist.set_defaults(func=cmd_spec_list)
    show = spec_sub.add_parser("show", help="show one spec")
    show.add_argument("name")
    show.add_argument("--format", "-f", choices=("basic", "json"), default="basic")
    show.set_defaults(func=cmd_spec_show)

    config = sub.add_parser("config", help="check or reload the server config")
    config_sub = config.add_subparsers(dest="config_command", required=True,
                                       parser_class=_Parser)
    check = config_sub.add_parser("check", help="validate a config file without a server")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=cmd_config_check)
    reload_ = config_sub.add_parser("reload", help="ask the running server to reload")
    reload_.set_defaults(func=cmd_config_reload)

    cert = sub.add_parser("cert", help="list certificates, revoke and replace an ACME one")
    cert_sub = cert.add_subparsers(dest="cert_command", required=True, parser_class=_Parser)
    clist = cert_sub.add_parser("list", help="the certificates the HTTPS listener serves")
    clist.add_argument("--format", choices=("basic", "json"), default="basic")
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
    plist.set_defaults(func=cmd_param_list)

    version = sub.add_parser("version", help="print orun's version, or list and switch "
                             "app versions")
    version.set_defaults(func=cmd_version)
    version_sub = version.add_subparsers(dest="version_command", parser_class=_Parser)
    vlist = version_sub.add_parser("list", help="an app's kept versions")
    vlist.add_argument("app", help="a prod, stage or dev app path")
    vlist.add_argument("--format", "-f", choices=("basic", "json"), default="basic")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args_in = list(sys.argv[1:] if argv is None else argv)
    args_in = normalize_go_flags(args_in, long_flags(parser))
    try:
        _check_cvol_values(args_in)
        args = parser.parse_args(args_in)
        return int(args.func(args))
    except OrunError as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        _print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


def _print_error(message: str) -> None:
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    prefix = "\033[31merror:\033[0m" if color else "error:"
    print(f"{prefix} {message}", file=sys.stderr)
