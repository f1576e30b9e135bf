"""Volume entries (`--cvol`), bind-mount checks, merging, and secret template rendering."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orun.errors import ContainerConfigError
from orun.state.volumes import (
    VolumeMount,
    declared_volumes,
    parse_volumes,
    render_template,
    volume_name,
)

APP = "app_prd_abc"


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    d = {name: tmp_path / name for name in ("src", "run", "mounts", "other")}
    for path in d.values():
        path.mkdir()
    return d


def parse(entries: list[str], dirs: dict[str, Path], *, allowed: list[str] | None = None,
          source: bool = True) -> list[VolumeMount]:
    return parse_volumes(
        entries, app_id=APP,
        allowed_mounts=[str(dirs["mounts"])] if allowed is None else allowed,
        source_dir=dirs["src"] if source else None, app_run_dir=dirs["run"])


def error(entries: list[str], dirs: dict[str, Path], *, allowed: list[str] | None = None,
          source: bool = True) -> str:
    with pytest.raises(ContainerConfigError) as info:
        parse(entries, dirs, allowed=allowed, source=source)
    return info.value.message


def test_volume_name() -> None:
    digest = hashlib.sha256(b"data").hexdigest()[:16]
    assert volume_name(APP, "data") == f"orun-{APP}-{digest}"
    assert volume_name("app_stg_abc", "data") != volume_name(APP, "data")


# -- forms ----------------------------------------------------------------------------------


def test_unnamed_volume_is_keyed_on_the_target(dirs: dict[str, Path]) -> None:
    name = volume_name(APP, "/data")
    assert parse(["/data"], dirs) == [VolumeMount("volume", name, "/data")]
    assert parse(["data"], dirs) == [VolumeMount("volume", name, "/data")]
    assert parse(["/data/"], dirs) == [VolumeMount("volume", name, "/data")]


def test_named_volume(dirs: dict[str, Path]) -> None:
    assert parse(["cache:/root/.cache"], dirs) == [
        VolumeMount("volume", volume_name(APP, "cache"), "/root/.cache")]
    assert parse(["db:var/lib/db:ro"], dirs) == [
        VolumeMount("volume", volume_name(APP, "db"), "/var/lib/db", True)]


def test_read_only_and_read_write(dirs: dict[str, Path]) -> None:
    assert parse(["/data:ro"], dirs)[0].read_only
    assert not parse(["/data:rw"], dirs)[0].read_only
    assert parse(["./x:/x:ro"], dirs)[0].read_only


def test_relative_bind_mounts_are_read_only(dirs: dict[str, Path]) -> None:
    src = dirs["src"].resolve()
    assert parse(["./static:/srv/static"], dirs) == [
        VolumeMount("bind", str(src / "static"), "/srv/static", True)]
    assert parse([".:/app"], dirs) == [VolumeMount("bind", str(src), "/app", True)]
    assert parse(["conf/nginx:/etc/nginx"], dirs) == [
        VolumeMount("bind", str(src / "conf/nginx"), "/etc/nginx", True)]
    assert parse(["./a/../b:/b"], dirs) == [VolumeMount("bind", str(src / "b"), "/b", True)]
    assert parse([".env:/app/.env:ro"], dirs) == [
        VolumeMount("bind", str(src / ".env"), "/app/.env", True)]


def test_relative_bind_mounts_cannot_be_read_write(dirs: dict[str, Path]) -> None:
    assert error(["./data:/data:rw"], dirs) == (
        "error parsing volume ./data:/data:rw: a bind mount from the app source is read-only "
        "(the source snapshot is shared and must not change); use a named volume "
        "(name:/dst) for data the app writes")


def test_absolute_binds_stay_read_write_unless_asked(dirs: dict[str, Path]) -> None:
    allowed = dirs["mounts"].resolve()
    assert not parse([f"{allowed}:/x"], dirs)[0].read_only
    assert parse([f"{allowed}:/x:ro"], dirs)[0].read_only


def test_containerfile_volumes_are_container_paths_only() -> None:
    mounts = declared_volumes(["/data", "cache"], app_id="app_prd_x", containerfile="Dockerfile")
    assert mounts == [VolumeMount("volume", volume_name("app_prd_x", "/data"), "/data"),
                      VolumeMount("volume", volume_name("app_prd_x", "/cache"), "/cache")]
    for hostile in ("/root/.orun/mounts:/hostm", "./:/src", "cl_secret:./t:/x", "/a:/b:rw"):
        with pytest.raises(ContainerConfigError) as exc:
            declared_volumes([hostile], app_id="app_prd_x", containerfile="Dockerfile")
        assert exc.value.message == (
            f"Dockerfile: VOLUME {hostile}: a VOLUME declares a path inside the container and "
            "cannot contain ':'; host folders and secrets are mounted only with --cvol by the "
            "admin")


def test_declared_volumes_give_way_to_admin_entries(dirs: dict[str, Path]) -> None:
    declared = declared_volumes(["/data"], app_id="app_prd_x", containerfile="Dockerfile")
    mounts = parse_volumes(["shared:/data"], app_id="app_prd_x", allowed_mounts=[],
                           source_dir=dirs["src"], app_run_dir=dirs["run"], declared=declared)
    assert mounts == [VolumeMount("volume", volume_name("app_prd_x", "shared"), "/data")]


def test_relative_bind_may_not_escape(dirs: dict[str, Path]) -> None:
    assert error(["../other:/x"], dirs) == (
        "error parsing volume ../other:/x: bind volume source ../other is not allowed: "
        "source path is outside the app source")
    assert error(["./a/../../other:/x"], dirs).startswith(
        "error parsing volume ./a/../../other:/x: bind volume source")


def test_relative_bind_through_a_symlink_may_not_escape(dirs: dict[str, Path]) -> None:
    (dirs["src"] / "out").symlink_to(dirs["other"])
    assert error(["./out:/x"], dirs) == (
        "error parsing volume ./out:/x: bind volume source ./out is not allowed: "
        "source path is outside the app source")


def test_relative_bind_needs_a_source(dirs: dict[str, Path]) -> None:
    assert error(["./x:/x"], dirs, source=False) == (
        "error parsing volume ./x:/x: relative bind volume source ./x needs an app source "
        "folder")


def test_absolute_bind_in_allowed_folders(dirs: dict[str, Path]) -> None:
    for folder in ("mounts", "src", "run"):
        root = dirs[folder].resolve()
        assert parse([f"{root}/sub:/x"], dirs) == [VolumeMount("bind", str(root / "sub"), "/x")]
        assert parse([f"{root}:/x:ro"], dirs) == [VolumeMount("bind", str(root), "/x", True)]


def test_absolute_bind_not_allowed(dirs: dict[str, Path]) -> None:
    allowed = f"{dirs['mounts'].resolve()}, {dirs['src'].resolve()}, {dirs['run'].resolve()}"
    assert error(["/tmp2:/atmp"], dirs) == (
        "error parsing volume /tmp2:/atmp: bind volume source /tmp2 is not allowed: source "
        f"path /tmp2 is not within an allowed mount directory (allowed: {allowed})")


def test_absolute_bind_cannot_climb_out(dirs: dict[str, Path]) -> None:
    entry = f"{dirs['mounts']}/../other:/x"
    assert error([entry], dirs).startswith(f"error parsing volume {entry}: bind volume source")
    (dirs["mounts"] / "link").symlink_to(dirs["other"])
    assert error([f"{dirs['mounts']}/link:/x"], dirs).startswith("error parsing volume")
    # a sibling whose name merely starts with the allowed folder's name
    sibling = dirs["mounts"].parent / "mounts2"
    sibling.mkdir()
    assert error([f"{sibling}:/x"], dirs).startswith("error parsing volume")


def test_allowed_mounts_are_env_expanded(dirs: dict[str, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORUN_TEST_HOME", str(dirs["other"]))
    mounts = parse([f"{dirs['other']}/x:/x"], dirs,
                   allowed=["$ORUN_TEST_HOME", "${ORUN_UNSET_VAR}/m", "relative/dir"])
    assert mounts == [VolumeMount("bind", str(dirs["other"].resolve() / "x"), "/x")]


def test_secret_entries(dirs: dict[str, Path]) -> None:
    assert parse(["cl_secret:config.toml.tmpl:/app/config.toml"], dirs) == [
        VolumeMount("secret", "config.toml.tmpl", "/app/config.toml")]
    assert parse(["cl_secret:./conf/a.tmpl:/a:ro"], dirs) == [
        VolumeMount("secret", "conf/a.tmpl", "/a", True)]
    # the template may come from the spec, so no source folder is needed
    assert parse(["cl_secret:a.tmpl:/a"], dirs, source=False) == [
        VolumeMount("secret", "a.tmpl", "/a")]


def test_secret_without_target(dirs: dict[str, Path]) -> None:
    assert error(["cl_secret:X"], dirs) == (
        "expected bind mount (source:target) for cl_secret volume X")
    assert error(["cl_secret::/x"], dirs) == (
        "expected bind mount (source:target) for cl_secret volume :/x")


def test_secret_template_must_stay_in_the_source(dirs: dict[str, Path]) -> None:
    for tmpl in ("../x.tmpl", "/etc/passwd", "a/../../x"):
        assert error([f"cl_secret:{tmpl}:/x"], dirs) == (
            f"error parsing volume cl_secret:{tmpl}:/x: secret template {tmpl} must be a path "
            "inside the app source")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "error parsing volume: the entry is empty"),
        (":/x", "error parsing volume :/x: the source is empty"),
        ("data:", "error parsing volume data:: the target path is empty"),
        ("/", "error parsing volume /: cannot mount over /"),
        ("a:/x:z", 'error parsing volume a:/x:z: unknown volume option "z" (use ro or rw)'),
        ("a:b:/x:ro", "error parsing volume a:b:/x:ro: too many ':' separators"),
        ("cl_secret:a:b:/x", "error parsing volume cl_secret:a:b:/x: too many ':' separators"),
        ("$ORUN_HOME/../x:/d", "error parsing volume $ORUN_HOME/../x:/d: $ is not expanded "
         "in volumes; write the host folder as an absolute path"),
        ("~/data:/d", "error parsing volume ~/data:/d: ~ is not expanded in volumes; write "
         "the host folder as an absolute path"),
    ],
)
def test_entry_errors(dirs: dict[str, Path], entry: str, message: str) -> None:
    assert error([entry], dirs) == message


# -- merging ----------------------------------------------------------------------------------


def test_later_entries_win_per_target(dirs: dict[str, Path]) -> None:
    mounts = parse(["/data", "/cache", "store:/data", "./logs:/logs", "/data:ro"], dirs)
    assert [(m.target, m.kind, m.read_only) for m in mounts] == [
        ("/cache", "volume", False),
        ("/logs", "bind", True),
        ("/data", "volume", True),
    ]
    assert mounts[2].source == volume_name(APP, "/data")


def test_targets_are_compared_normalised(dirs: dict[str, Path]) -> None:
    mounts = parse(["data", "named:/data/"], dirs)
    assert mounts == [VolumeMount("volume", volume_name(APP, "named"), "/data")]


def test_secret_suppresses_a_plain_entry_either_way(dirs: dict[str, Path]) -> None:
    secret = VolumeMount("secret", "conf.tmpl", "/etc/app.conf")
    assert parse(["cl_secret:conf.tmpl:/etc/app.conf", "./conf:/etc/app.conf"], dirs) == [secret]
    assert parse(["./conf:/etc/app.conf", "cl_secret:conf.tmpl:/etc/app.conf"], dirs) == [secret]
    later = parse(["cl_secret:a.tmpl:/x", "cl_secret:b.tmpl:/x"], dirs)
    assert later == [VolumeMount("secret", "b.tmpl", "/x")]


def test_errors_in_a_suppressed_entry_still_count(dirs: dict[str, Path]) -> None:
    assert error(["cl_secret:a:/x", "/tmp2:/x"], dirs).startswith(
        "error parsing volume /tmp2:/x: bind volume source /tmp2 is not allowed")


# -- render_template ----------------------------------------------------------------------------


def render(text: str, **params: str) -> str:
    return render_template(text, params, name="conf.tmpl")


def template_error(text: str, **params: str) -> str:
    with pytest.raises(ContainerConfigError) as info:
        render_template(text, params, name="conf.tmpl")
    return info.value.message


def test_render_params() -> None:
    assert render("key = {{.params.KEY}}\nurl={{ .params.url }}\n", KEY="s3cr3t", url="x") == (
        "key = s3cr3t\nurl=x\n")
    assert render('{{index .params "my-name"}}', **{"my-name": "v"}) == "v"
    assert render("no actions {here}") == "no actions {here}"
    assert render("<&>{{.params.A}}", A="<b>") == "<&><b>"  # no HTML escaping


def test_render_range_sorted_by_key() -> None:
    text = "{{range $k, $v := .params}}{{$k}}={{$v}};{{end}}"
    assert render(text, b="2", a="1", c="3") == "a=1;b=2;c=3;"
    assert render("{{range $v := .params}}[{{$v}}]{{end}}", b="2", a="1") == "[1][2]"
    assert render("{{range $k, $v := .params}}x{{end}}") == ""


def test_render_nested_range() -> None:
    text = "{{range $a, $x := .params}}{{range $b, $y := .params}}{{$a}}{{$b}} {{end}}{{end}}"
    assert render(text, p="1", q="2") == "pp pq qp qq "


def test_render_trimming() -> None:
    text = "[\n  {{- .params.A -}}\n  ]"
    assert render(text, A="x") == "[x]"
    text = "{{range $k, $v := .params -}}\n{{$k}}: {{$v}}\n{{- end}}\n"
    assert render(text, a="1", b="2") == "a: 1b: 2\n"
    # as in Go, a trim marker needs the blank: `{{-.params.A}}` is not a trimmed field
    assert template_error("a {{-.params.A}}", A="x").startswith(
        "secret template conf.tmpl: unsupported action {{-.params.A}}")


def test_render_comments() -> None:
    assert render("a{{/* note */}}b") == "ab"


def test_render_undefined_param() -> None:
    assert template_error("{{.params.MISSING}}") == (
        "secret template conf.tmpl: param MISSING is not defined")


def test_render_unsupported_actions() -> None:
    for action in ("if .params.A", ".Env.HOME", "printf \"%s\" .params.A", ".params",
                   "template \"x\"", "end", "."):
        assert template_error(f"{{{{{action}}}}}", A="x") == (
            f"secret template conf.tmpl: unsupported action {{{{{action}}}}} (supported: "
            "{{.params.NAME}}, {{range $k, $v := .params}}...{{end}}, {{$k}}, {{$v}})")


def test_render_structure_errors() -> None:
    assert template_error("{{range $k, $v := .params}}x") == (
        "secret template conf.tmpl: range without {{end}}")
    assert template_error("{{$k}}") == "secret template conf.tmpl: undefined variable $k"
    assert template_error("a {{ .params.A") == "secret template conf.tmpl: unclosed action"
