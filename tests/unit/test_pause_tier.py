"""Pure rules of the idle pause tier: which timeout applies to which app, what an idle
app is due for, what the housekeeper's tick follows, and how a paused app is shown."""

from __future__ import annotations

from pathlib import Path

from orun.engine.docker import _container_info
from orun.runtime.app import AppRuntime, Instance, Paused
from orun.runtime.housekeeping import idle_action, next_timeout, pause_timeout
from orun.runtime.logs import AppLogs
from orun.state.config import Config, parse_config
from orun.state.model import App, AppKind, AppSettings, AppVersion
from orun.state.paths import AppPath


def app(kind: AppKind = "prod", **conf: str) -> App:
    version = AppVersion(version=3, source_digest="s", spec_digest="d",
                         settings=AppSettings(spec="container", app_config=dict(conf)))
    return App(id=f"app_{kind[:3]}_k", path=AppPath("", "/x"), kind=kind, source="-",
               stage_at="path", linked_id=None, current=version, created=0, updated=0)


def test_the_tier_is_off_by_default_and_set_in_app_defaults() -> None:
    assert Config().app_defaults.idle_pause_secs == 0
    cfg = parse_config("app_defaults: {idle_pause_secs: 30, idle_shutdown_secs: 3600}")
    assert cfg.app_defaults.idle_pause_secs == 30


def test_pause_timeout_per_app() -> None:
    assert pause_timeout(app(), 0, 180) == 0  # off by default
    assert pause_timeout(app(), 30, 180) == 30  # the server's default
    assert pause_timeout(app(**{"container.idle_pause_secs": "5"}), 0, 180) == 5
    assert pause_timeout(app(**{"container.idle_pause_secs": "0"}), 30, 180) == 0
    assert pause_timeout(app(**{"container.idle_pause_secs": "junk"}), 30, 180) == 30
    # a pause that would not come before the stop is no tier
    assert pause_timeout(app(), 180, 180) == 0
    assert pause_timeout(app(), 300, 180) == 0
    # never stopped: paused all the same
    assert pause_timeout(app(), 30, 0) == 30


def test_dev_apps_never_pause_unless_asked() -> None:
    assert pause_timeout(app("dev"), 30, 0) == 0
    assert pause_timeout(app("dev", **{"container.idle_pause_secs": "10"}), 30, 0) == 10


def test_idle_action() -> None:
    def action(idle: float, open_: int = 0, *, paused: bool = False) -> str | None:
        return idle_action(idle, open_, paused=paused, pause=10, shutdown=60)

    assert action(5) is None
    assert action(10) == "pause"
    assert action(30, paused=True) is None  # already paused
    assert action(60) == "stop"  # the stop wins once due, paused or not
    assert action(61, paused=True) == "stop"
    assert action(100, 1) is None  # a request (or stream) in flight
    assert idle_action(100, 0, paused=False, pause=0, shutdown=0) is None  # both off
    assert idle_action(100, 0, paused=False, pause=0, shutdown=60) == "stop"
    assert idle_action(100, 0, paused=False, pause=10, shutdown=0) == "pause"


def test_the_tick_follows_the_next_timeout() -> None:
    assert next_timeout(paused=False, pause=10, shutdown=60) == 10
    assert next_timeout(paused=True, pause=10, shutdown=60) == 60
    assert next_timeout(paused=False, pause=0, shutdown=60) == 60
    assert next_timeout(paused=True, pause=10, shutdown=0) == 0


def instance() -> Instance:
    return Instance(container_id="c" * 64, name="orun-app_prd_k-abc", host_port=32768,
                    identity="abc", version=3, image="orun-k:abc", port=8080,
                    health_path="/", started=0.0)


def test_a_paused_app_shows_its_container(tmp_path: Path) -> None:
    rt = AppRuntime("app_prd_k", "/x", AppLogs(tmp_path, "app_prd_k"))
    inst = instance()
    rt.paused, rt.state = Paused(inst), "paused"
    assert rt.instance is None and rt.current() is inst
    status = rt.status()
    assert status["state"] == "paused"
    assert status["container"] == inst.name and status["version_running"] == 3
    # its names stay hidden from anonymous clients while it is paused too
    assert inst.name not in rt.public_text(f"cannot reach {inst.name} at {inst.upstream}")


def test_engine_reports_paused() -> None:
    info = _container_info({"Id": "x", "Name": "/n", "State": {"Status": "paused"},
                            "Config": {"Labels": {}}})
    assert info.paused and not info.running
