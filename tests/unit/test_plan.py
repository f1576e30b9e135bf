"""Container plans: env, port, health path, image naming and identity, from real spec
folders and real source folders (no engine involved)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orun.engine.labels import LABEL_APP_ID, LABEL_HOME
from orun.errors import ContainerConfigError
from orun.runtime.plan import ContainerPlan, PlanInputs, image_repository, plan_container
from orun.spec import load_spec_dir
from orun.spec.catalog import bundled_specs_dir
from orun.state.config import BuilderConfig, Config, SecurityConfig
from orun.state.model import App, AppSettings, AppVersion
from orun.state.paths import AppPath

SPECS = bundled_specs_dir()
KEY = "k" * 27


def make_app(spec: str, path: str = "/x", domain: str = "", **settings: object) -> App:
    version = AppVersion(version=3, source_digest="s", spec_digest="d",
                         settings=AppSettings(spec=spec, **settings))  # type: ignore[arg-type]
    return App(id=f"app_prd_{KEY}", path=AppPath(domain, path), kind="prod", source=".",
               stage_at="path", linked_id=None, current=version, created=0, updated=0)


def plan(app: App, source: Path | None, config: Config | None = None,
         home: Path = Path("/home/orun")) -> ContainerPlan:
    spec = load_spec_dir(app.spec, SPECS / app.spec)
    return plan_container(PlanInputs(
        app=app, spec=spec, source_dir=source, spec_dir=SPECS / app.spec,
        config=config or Config(), home=home, app_url="http://localhost:25222" + app.path.path,
        engine_kind="docker"))


@pytest.fixture
def flask_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    return src


def test_flask_env_port_and_labels(flask_src: Path) -> None:
    p = plan(make_app("python-flask", params={"greeting": "hi", "secrets": "[]"}), flask_src)
    assert p.port == 5000
    assert p.env["PORT"] == "5000" and p.env["port"] == "5000"
    assert p.env["greeting"] == "hi" and p.env["app_name"] == "Flask App"
    assert p.env["preserve_host"] == "false"
    assert "secrets" not in p.env
    assert p.env["CL_APP_PATH"] == "/x"
    assert p.env["CL_APP_URL"] == "http://localhost:25222/x"
    assert p.health_path == "/"
    assert p.labels[LABEL_HOME] == "/home/orun" and p.labels[LABEL_APP_ID] == f"app_prd_{KEY}"
    assert p.image.startswith(f"orun-{KEY}:") and p.build is not None
    assert p.build.build_args["PYTHON_IMAGE"] == "python:3.12-slim"
    assert p.name == f"orun-app_prd_{KEY}-{p.identity[:12]}"
    body = p.create_body("docker")
    assert body["HostConfig"]["PortBindings"] == {"5000/tcp": [{"HostIp": "127.0.0.1",
                                                                "HostPort": ""}]}
    assert "host.docker.internal:host-gateway" in body["HostConfig"]["ExtraHosts"]
    assert "ExtraHosts" not in p.create_body("podman")["HostConfig"]
    # a remote engine's containers reached directly publish on its remote_publish_host
    assert p.create_body("docker", "", "10.0.0.5")["HostConfig"]["PortBindings"] == {
        "5000/tcp": [{"HostIp": "10.0.0.5", "HostPort": ""}]}
    assert "greeting=hi" in body["Env"]
    # no capabilities for a non-root image; a root image keeps the step-down set
    hardened = p.create_body("docker", "app")["HostConfig"]
    assert hardened["CapDrop"] == ["ALL"] and hardened["CapAdd"] == []
    assert hardened["SecurityOpt"] == ["no-new-privileges"]
    assert p.create_body("docker", "")["HostConfig"]["CapAdd"] == ["CHOWN", "DAC_OVERRIDE",
                                                                  "FOWNER", "KILL", "SETGID",
                                                                  "SETUID"]


def test_root_app_has_empty_app_path(flask_src: Path) -> None:
    p = plan(make_app("python-flask", path="/", domain="fl.localhost"), flask_src)
    assert p.env["CL_APP_PATH"] == ""


def test_identity_follows_env_but_image_does_not(flask_src: Path) -> None:
    a = plan(make_app("python-flask", params={"greeting": "a"}), flask_src)
    b = plan(make_app("python-flask", params={"greeting": "b"}), flask_src)
    assert a.image == b.image and a.identity != b.identity
    (flask_src / "app.py").write_text("changed\n")
    c = plan(make_app("python-flask", params={"greeting": "a"}), flask_src)
    assert c.image != a.image


def test_build_arg_precedence(flask_src: Path) -> None:
    config = Config(builder=BuilderConfig(build_args={"PYTHON_IMAGE": "mirror/python:3.12",
                                                      "EXTRA": "server"}))
    p = plan(make_app("python-flask"), flask_src, config)
    assert p.build is not None and p.build.build_args["PYTHON_IMAGE"] == "mirror/python:3.12"
    p2 = plan(make_app("python-flask", container_args={"PYTHON_IMAGE": "app/python:1"}),
              flask_src, config)
    assert p2.build is not None
    assert p2.build.build_args == {"PYTHON_IMAGE": "app/python:1", "EXTRA": "server"}
    assert p2.image != p.image  # build args are build inputs


def test_port_from_expose_then_param(tmp_path: Path) -> None:
    src = tmp_path / "svc"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM x\nEXPOSE 7000\n")
    assert plan(make_app("container"), src).port == 7000
    assert plan(make_app("container", params={"port": "7100"}), src).port == 7100
    (src / "Dockerfile").write_text("FROM x\n")
    with pytest.raises(ContainerConfigError, match="port not specified"):
        plan(make_app("container"), src)


def test_no_container_file(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    with pytest.raises(Exception, match="no container file found"):
        plan(make_app("container"), src)


def test_image_spec_needs_no_build() -> None:
    p = plan(make_app("image", params={"image": "nginx:1.27", "port": "80"}), None)
    assert p.build is None and p.image == "nginx:1.27" and p.port == 80


def test_wsgi_keeps_the_path_so_health_is_under_it(tmp_path: Path) -> None:
    src = tmp_path / "w"
    src.mkdir()
    (src / "app.py").write_text("app = None\n")
    p = plan(make_app("python-wsgi", path="/w"), src)
    assert p.port == 8000 and p.health_path == "/w/"
    conf = plan(make_app("python-wsgi", path="/w",
                         app_config={"container.health_url": "/healthz"}), src)
    assert conf.health_path == "/w/healthz"


def test_volumes_options_and_secrets(tmp_path: Path) -> None:
    src = tmp_path / "svc"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM x\nEXPOSE 80\nVOLUME /cache\n")
    (src / "conf.tmpl").write_text("name={{.params.app_name}}\n")
    home = tmp_path / "home"
    config = Config(security=SecurityConfig(allowed_container_args={"init": ""}))
    app = make_app("container", container_volumes=["data:/data",
                                                   "cl_secret:./conf.tmpl:/etc/conf"],
                   container_options={"memory": "64m", "docker.init": ""})
    p = plan(app, src, config, home)
    kinds = {m.target: m.kind for m in p.mounts}
    assert kinds == {"/cache": "volume", "/data": "volume", "/etc/conf": "bind"}
    secret = next(m for m in p.mounts if m.target == "/etc/conf")
    assert secret.read_only and secret.source.startswith(str(home / "run" / "app"))
    assert p.secret_files == {secret.source: "name=App\n"}
    body = p.create_body("docker")
    assert body["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert body["HostConfig"]["Init"] is True
    other = plan(replace(app, current=replace(app.current, settings=replace(
        app.current.settings, params={"app_name": "Other"}))), src, config, home)
    assert other.identity != p.identity  # rendered secrets are part of the identity


def test_image_repository_is_shared_by_prod_and_stage() -> None:
    assert image_repository(f"app_prd_{KEY}") == image_repository(f"app_stg_{KEY}")
