"""Dev mode logic: what an edit leads to, what the watcher ignores, and how a dev app's
container is planned (image from dependency files only, live source mounted)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from watchfiles import Change

from orun.build.context import compose
from orun.build.dockerfile import parse_containerfile
from orun.errors import ContainerConfigError
from orun.runtime.dev import _lasting
from orun.runtime.devsettings import (
    DevSettings,
    WatchFilter,
    decide,
    dev_settings,
)
from orun.runtime.housekeeping import idle_timeout
from orun.runtime.plan import ContainerPlan, PlanInputs, plan_container
from orun.spec import load_spec_dir
from orun.spec.catalog import bundled_specs_dir
from orun.state.config import Config
from orun.state.model import App, AppSettings, AppVersion
from orun.state.paths import AppPath

SPECS = bundled_specs_dir()
KEY = "d" * 27


def settings(reload: str = "restart", **kw: object) -> DevSettings:
    base: dict[str, object] = {
        "source": Path("/src"), "reload": reload,
        "dependency_files": ("requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock",
                             "go.mod"),
        "dir": "", "ignore": ()}
    base.update(kw)
    return DevSettings(**base)  # type: ignore[arg-type]


# -- what an edit leads to ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "restart", "recreate"])
def test_a_code_edit_does_what_the_reload_mode_says(mode: str) -> None:
    d = decide({"app.py"}, settings(mode), running=True)
    assert d.action == mode
    assert d.image_files == ()


def test_restart_and_none_differ_only_in_the_action_and_message() -> None:
    restart = decide({"app.py"}, settings("restart"), running=True)
    none = decide({"app.py"}, settings("none"), running=True)
    assert (restart.action, none.action) == ("restart", "none")
    assert restart.describe() == "app.py → restart"
    assert none.describe() == "app.py → nothing to do (the app reloads by itself)"


@pytest.mark.parametrize("mode", ["none", "restart", "recreate", "rebuild"])
@pytest.mark.parametrize("dep", ["requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock",
                                 "go.mod", "Containerfile", "Dockerfile", ".dockerignore"])
def test_a_dependency_or_container_file_edit_rebuilds(mode: str, dep: str) -> None:
    d = decide({"app.py", dep}, settings(mode), running=True)
    assert d.action == "rebuild"
    assert d.image_files == (dep,)
    assert d.describe() == f"{dep} (+1 more) → rebuild"  # the one that matters first


def test_rebuild_mode_rebuilds_on_any_edit() -> None:
    assert decide({"main.go"}, settings("rebuild"), running=True).action == "rebuild"


def test_a_dependency_file_in_a_subfolder_is_just_code() -> None:
    d = decide({"lib/requirements.txt"}, settings("restart"), running=True)
    assert d.action == "restart"


def test_a_spec_may_list_its_own_dependency_files() -> None:
    s = settings("restart", dependency_files=("package.json",))
    assert decide({"package.json"}, s, running=True).action == "rebuild"
    assert decide({"requirements.txt"}, s, running=True).action == "restart"


def test_an_app_that_is_not_running_picks_edits_up_at_its_next_start() -> None:
    d = decide({"requirements.txt"}, settings("restart"), running=False)
    assert d.action == "later"
    assert d.describe() == ("requirements.txt → picked up at the next start (the app is not "
                            "running)")


def test_many_files_are_summarised() -> None:
    d = decide({f"m{i}.py" for i in range(5)}, settings("restart"), running=True)
    assert d.describe() == "m0.py, m1.py, m2.py (+2 more) → restart"


# -- what the watcher ignores ---------------------------------------------------------------


def test_watch_filter(tmp_path: Path) -> None:
    root = tmp_path / ".cache" / "proj"  # a hidden folder above the source is no reason
    f = WatchFilter(root, ["data/*", "*.csv"])
    seen = [rel for rel in (
        "app.py", "templates/index.html", "requirements.txt", ".env",
        ".git/index", "__pycache__/app.cpython-311.pyc", "pkg/__pycache__/x.pyc", "x.pyc",
        "node_modules/a/b.js", ".venv/bin/python", "venv/lib/x.py", ".mypy_cache/x",
        "app.py.swp", ".app.py.swp", "app.py~", "app.db", "app.db-journal", "server.log",
        "data/upload.bin", "out.csv", "pkg.egg-info/PKG-INFO", ".sesskey",
    ) if f(Change.modified, str(root / rel))]
    assert seen == ["app.py", "templates/index.html", "requirements.txt", ".env"]
    assert not f(Change.modified, str(root))
    assert not f(Change.modified, str(tmp_path / "elsewhere.py"))


# -- settings ------------------------------------------------------------------------------


def dev_app(spec: str, source: Path, **conf: str) -> App:
    version = AppVersion(version=0, source_digest="s", spec_digest="d",
                         settings=AppSettings(spec=spec, app_config=dict(conf)))
    return App(id=f"app_dev_{KEY}", path=AppPath("", "/dev"), kind="dev", source=str(source),
               stage_at="path", linked_id=None, current=version, created=0, updated=0)


def test_settings_come_from_the_spec_and_conf(tmp_path: Path) -> None:
    flask = load_spec_dir("python-flask", SPECS / "python-flask")
    s = dev_settings(dev_app("python-flask", tmp_path), flask)
    assert (s.source, s.reload, s.dir, s.mounted) == (tmp_path, "restart", "", True)
    assert "requirements.txt" in s.dependency_files and "Containerfile" in s.image_files
    s = dev_settings(dev_app("python-flask", tmp_path, **{
        "dev.reload": "none", "dev.dir": "/srv", "dev.ignore": "data/*, *.csv"}), flask)
    assert (s.reload, s.dir, s.ignore) == ("none", "/srv", ("data/*", "*.csv"))
    with pytest.raises(ContainerConfigError, match=r"dev.reload=sometimes: must be one of"):
        dev_settings(dev_app("python-flask", tmp_path, **{"dev.reload": "sometimes"}), flask)
    with pytest.raises(ContainerConfigError, match=r"dev.dir=app: must be an absolute path"):
        dev_settings(dev_app("python-flask", tmp_path, **{"dev.dir": "app"}), flask)


def test_bundled_specs_reload_modes() -> None:
    modes = {p.name: load_spec_dir(p.name, p).dev.reload for p in SPECS.iterdir()
             if (p / "Containerfile").is_file() or p.name == "container"}
    assert modes["python-streamlit"] == "none"
    assert modes["python-flask"] == modes["python-gradio"] == modes["python-asgi"] == "restart"
    assert modes["go"] == modes["python-reflex"] == modes["container"] == "rebuild"


def test_dev_apps_never_idle_stop_unless_asked(tmp_path: Path) -> None:
    assert idle_timeout(dev_app("python-flask", tmp_path), 180) == 0
    conf = {"container.idle_shutdown_secs": "30"}
    assert idle_timeout(dev_app("python-flask", tmp_path, **conf), 180) == 30


# -- planning ------------------------------------------------------------------------------


def plan(app: App, home: Path = Path("/home/orun")) -> ContainerPlan:
    spec = load_spec_dir(app.spec, SPECS / app.spec)
    return plan_container(PlanInputs(
        app=app, spec=spec, source_dir=Path("/nonexistent/snapshot"),
        spec_dir=SPECS / app.spec, config=Config(), home=home,
        app_url="http://localhost:25222/dev", engine_kind="docker"))


@pytest.fixture
def flask_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "templates").mkdir(parents=True)
    (src / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (src / "templates" / "index.html").write_text("<p>hi</p>")
    (src / "requirements.txt").write_text("flask\n")
    return src


def test_a_dev_image_holds_dependency_files_and_the_source_is_mounted(flask_src: Path) -> None:
    p = plan(dev_app("python-flask", flask_src))
    assert p.build is not None
    files = dict(p.build.context.files)
    assert files["requirements.txt"] == flask_src / "requirements.txt"  # the source's
    assert "Containerfile" in files and ".dockerignore" in files  # the spec's
    assert "app.py" not in files and "templates/index.html" not in files
    assert p.mounts[0].kind == "bind"
    assert (p.mounts[0].source, p.mounts[0].target) == (str(flask_src), "/app")
    assert {"Type": "bind", "Source": str(flask_src), "Target": "/app", "ReadOnly": False} \
        in p.create_body("docker")["HostConfig"]["Mounts"]


def test_a_code_edit_keeps_image_and_container_a_dependency_edit_changes_both(
        flask_src: Path) -> None:
    app = dev_app("python-flask", flask_src)
    before = plan(app)
    (flask_src / "app.py").write_text("# edited\n")
    (flask_src / "new_module.py").write_text("x = 1\n")
    after_code = plan(app)
    assert (after_code.image, after_code.identity) == (before.image, before.identity)
    (flask_src / "requirements.txt").write_text("flask\nrequests\n")
    after_deps = plan(app)
    assert after_deps.image != before.image and after_deps.identity != before.identity


def test_a_dev_app_without_requirements_uses_the_spec_ones(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("x = 1\n")
    p = plan(dev_app("python-flask", src))
    assert p.build is not None
    assert dict(p.build.context.files)["requirements.txt"] == \
        SPECS / "python-flask" / "requirements.txt"


def test_rebuild_mode_builds_the_whole_source_and_mounts_nothing(tmp_path: Path) -> None:
    src = tmp_path / "goapp"
    src.mkdir()
    (src / "go.mod").write_text("module x\n\ngo 1.19\n")
    (src / "main.go").write_text("package main\nfunc main() {}\n")
    app = _with_params(dev_app("go", src), {"port": "8080"})
    p = plan(app)
    assert p.build is not None and "main.go" in dict(p.build.context.files)
    assert not any(m.kind == "bind" for m in p.mounts)
    before = p.image
    (src / "main.go").write_text("package main\nfunc main() { println() }\n")
    assert plan(app).image != before


def _with_params(app: App, params: dict[str, str]) -> App:
    return replace(app, current=replace(app.current, settings=replace(
        app.current.settings, params=params)))


def test_dev_dir_overrides_the_workdir_and_its_absence_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "svc"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM busybox\nEXPOSE 8080\nCMD httpd -f\n")
    (src / "index.html").write_text("hi")
    app = dev_app("container", src, **{"dev.reload": "restart"})
    with pytest.raises(ContainerConfigError, match=r"final stage of Dockerfile sets no "
                       r"WORKDIR; add one, or name the folder with --conf dev.dir=/path"):
        plan(app)
    p = plan(dev_app("container", src, **{"dev.reload": "restart", "dev.dir": "/www"}))
    assert [(m.source, m.target) for m in p.mounts if m.kind == "bind"] == [(str(src), "/www")]
    assert p.build is not None and "index.html" not in dict(p.build.context.files)


# -- building blocks -------------------------------------------------------------------------


def test_compose_source_only_takes_just_those_source_files(tmp_path: Path) -> None:
    src, spec = tmp_path / "src", tmp_path / "spec"
    (src / "pkg").mkdir(parents=True)
    spec.mkdir()
    for name in ("app.py", "requirements.txt", "pkg/requirements.txt", "Containerfile"):
        (src / name).write_text(name)
    (spec / "Containerfile").write_text("FROM x\n")
    (spec / "helper.py").write_text("spec")
    (spec / "pyproject.toml").write_text("spec")
    ctx = compose(src, spec, source_only=["requirements.txt", "pyproject.toml", "../etc/passwd",
                                          "missing.lock"])
    assert {a: p.parent.name for a, p in ctx.files} == {
        "Containerfile": "src", "requirements.txt": "src", "helper.py": "spec",
        "pyproject.toml": "spec"}


def test_final_stage_workdir() -> None:
    assert parse_containerfile("FROM x\nWORKDIR /app\n").workdir == "/app"
    assert parse_containerfile("FROM x AS b\nWORKDIR /a\nWORKDIR b\nFROM b\nRUN x\n"
                               ).workdir == "/a/b"
    assert parse_containerfile("FROM x AS b\nWORKDIR /a\nFROM y\n").workdir is None
    assert parse_containerfile("FROM x\nWORKDIR rel\n").workdir is None
    assert parse_containerfile("FROM x\nARG D=/srv\nWORKDIR $D/www\n").workdir == "/srv/www"
    assert parse_containerfile("FROM x\nWORKDIR $UNSET/www\n").workdir is None
    assert parse_containerfile("ARG W=/w\nFROM x\nARG W\nWORKDIR ${W}\n", {"W": "/z"}
                               ).workdir == "/z"


def test_files_that_came_and_went_within_a_batch_are_no_change(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x")
    changes = {
        "app.py": {Change.added, Change.deleted},  # an editor's delete-and-recreate save
        "sedX1a2b": {Change.added, Change.deleted},  # `sed -i`'s temporary file
        "gone.py": {Change.deleted},
        "new.py": {Change.added},
    }
    assert _lasting(tmp_path, changes) == {"app.py", "gone.py", "new.py"}
