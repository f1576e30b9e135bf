"""Which engine `system.container_engine` (and DOCKER_HOST) names, remote ones included,
and the config keys of a remote engine."""

from __future__ import annotations

import re

import pytest

from orun.engine.docker import resolve_engine_url
from orun.engine.sshlink import parse_ssh_url
from orun.errors import ConfigError, EngineError
from orun.state.config import parse_config


def test_ssh_urls_parse() -> None:
    t = parse_ssh_url("ssh://deploy@build.example:2222", what="x")
    assert (t.host, t.port, t.user, t.path, t.where) == (
        "build.example", 2222, "deploy", "", "build.example:2222")
    t = parse_ssh_url("ssh://host/run/podman/podman.sock", what="x")
    assert (t.port, t.user, t.path, t.where) == (None, None, "/run/podman/podman.sock", "host:22")


@pytest.mark.parametrize(("url", "message"), [
    ("ssh://", "expected ssh://[user@]host[:port][/path]"),
    ("ssh://host:99999", "invalid port"),
    ("ssh://host?x=1", "no ?query or #fragment allowed"),
])
def test_bad_ssh_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(EngineError, match=re.escape(message)):
        resolve_engine_url(url)


def test_ssh_engine_from_setting_and_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_engine_url("ssh://root@10.0.0.5") == "ssh://root@10.0.0.5"
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@box:2200")
    assert resolve_engine_url("auto") == "ssh://me@box:2200"
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@box:port")
    with pytest.raises(EngineError, match="invalid port"):
        resolve_engine_url("auto")


def test_remote_engine_config_keys() -> None:
    cfg = parse_config("system: {container_engine: 'ssh://a@b', remote_publish_host: "
                       "10.1.2.3, ssh_keepalive_secs: 2}\n")
    assert cfg.system.remote_publish_host == "10.1.2.3"
    assert cfg.system.ssh_keepalive_secs == 2
    assert parse_config("").system.remote_publish_host == ""
    with pytest.raises(ConfigError, match=r"'box\.lan' is not an IP address"):
        parse_config("system: {remote_publish_host: box.lan}\n")
    with pytest.raises(ConfigError, match="must be greater than 0"):
        parse_config("system: {ssh_keepalive_secs: 0}\n")


@pytest.mark.parametrize(("value", "message"), [
    ("ssh://host:99999", "invalid port"),
    ("ssh://", "names no host"),
    ("ftp://x", "is not auto, docker, podman, none"),
    ("dokcer", "is not auto, docker, podman, none"),
    ("ssh://h?x=1", "no ?query or #fragment allowed"),
])
def test_config_check_refuses_bad_engine_settings(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(f"system: {{container_engine: '{value}'}}\n")
    for good in ("auto", "none", "/run/docker.sock", "unix:///run/x.sock", "tcp://h:2375",
                 "ssh://me@h:2222/run/podman/podman.sock"):
        parse_config(f"system: {{container_engine: '{good}'}}\n")


def test_swarm_mode_settings() -> None:
    assert resolve_engine_url("swarm+unix:///run/m.sock") == "unix:///run/m.sock"
    cfg = parse_config("system: {container_engine: swarm}\n"
                       "builder: {registry: '10.0.0.2:5000'}\n")
    assert cfg.builder.registry == "10.0.0.2:5000"
    with pytest.raises(ConfigError, match=r"swarm mode needs builder\.registry"):
        parse_config("system: {container_engine: swarm}\n")
    with pytest.raises(ConfigError, match="swarm mode needs a manager's unix://, tcp:// or"):
        parse_config("system: {container_engine: 'swarm+ftp://m'}\n"
                     "builder: {registry: 'r:5000'}\n")
    parse_config("system: {container_engine: 'swarm+ssh://root@m'}\n"
                 "builder: {registry: 'r:5000'}\n")
    for bad, message in (("http://r:5000", "is not host:port of a registry"),
                         ("r:99999", "invalid port"), ("r:5000/path", "is not host:port")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config(f"builder: {{registry: '{bad}'}}\n")
