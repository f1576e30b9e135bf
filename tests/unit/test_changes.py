"""Pure logic of staged changes: settings edits (`app update`, `param update`) and the
declared-app helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from orun.control.changes import settings_edit
from orun.control.declared import desired_settings, resolve_source
from orun.errors import OrunError
from orun.state.config import DeclaredApp
from orun.state.model import App, AppSettings, AppVersion
from orun.state.paths import AppPath

BASE = AppSettings(spec="python-flask", params={"a": "1", "b": "2"},
                   container_args={"X": "1"}, container_options={"memory": "256m"},
                   container_volumes=["/data"], app_config={"k": "v"})


def test_param_update_sets_unquotes_and_deletes() -> None:
    assert settings_edit("param", ["c", " '3' "])(BASE).params == {"a": "1", "b": "2", "c": "3"}
    assert settings_edit("param", ["a", '"x y"'])(BASE).params == {"a": "x y", "b": "2"}
    assert settings_edit("param", ["a", "-"])(BASE).params == {"b": "2"}
    assert settings_edit("param", ["zz", "-"])(BASE).params == BASE.params  # no such key
    assert BASE.params == {"a": "1", "b": "2"}  # settings are never changed in place


@pytest.mark.parametrize(("kind", "field"), [
    ("copt", "container_options"), ("container-option", "container_options"),
    ("carg", "container_args"), ("container-arg", "container_args"),
    ("conf", "app_config"), ("app-config", "app_config"),
])
def test_key_value_updates(kind: str, field: str) -> None:
    edited = settings_edit(kind, ["new=1", "k2=a=b"])(BASE)
    assert getattr(edited, field) == {**getattr(BASE, field), "new": "1", "k2": "a=b"}
    first_key = next(iter(getattr(BASE, field)))
    assert first_key not in getattr(settings_edit(kind, [f"{first_key}=-"])(BASE), field)


def test_key_value_update_needs_key_and_value() -> None:
    with pytest.raises(OrunError, match="invalid container_options memory, need key=value"):
        settings_edit("copt", ["memory"])
    with pytest.raises(OrunError, match="invalid container_args =1, need key=value"):
        settings_edit("carg", ["=1"])
    with pytest.raises(OrunError, match="requires at least two arguments"):
        settings_edit("conf", [])


def test_cvol_replaces_the_list_and_spec_names_one_spec() -> None:
    assert settings_edit("cvol", ["a:/a", "/b"])(BASE).container_volumes == ["a:/a", "/b"]
    assert settings_edit("cvol", ["-"])(BASE).container_volumes == []
    with pytest.raises(OrunError, match="cannot start with --"):
        settings_edit("cvol", ["--dev"])
    assert settings_edit("spec", ["python-wsgi"])(BASE).spec == "python-wsgi"
    for bad in ([], ["-"], ["a", "b"], [" "]):
        with pytest.raises(OrunError, match="needs one spec name"):
            settings_edit("spec", bad)


def test_unknown_update_kind() -> None:
    with pytest.raises(OrunError, match="unknown update 'bindings'"):
        settings_edit("bindings", ["x"])


def test_auth_update_is_stored_canonical() -> None:
    assert settings_edit("auth", ["system"])(BASE).auth == "system"
    assert settings_edit("auth", ["github"])(BASE).auth == "oidc:github"
    assert settings_edit("auth", ["default"])(BASE).auth == ""
    assert settings_edit("auth", ["forward:gate"])(BASE).auth == "forward:gate"
    with pytest.raises(OrunError, match="invalid auth type 'bogus:x'"):
        settings_edit("auth", ["bogus:x"])
    with pytest.raises(OrunError, match="requires two arguments"):
        settings_edit("auth", ["a", "b"])


def test_declared_entry_settings_stringify_yaml_scalars() -> None:
    entry = DeclaredApp(path="/x", source="-", spec="proxy",
                        params={"port": 8080, "debug": True, "off": False, "url": "http://a"},
                        copts={"cpus": 0.5}, cvols=["/d"], conf={"n": 1}, branch="b")
    settings = desired_settings(entry)
    assert settings.params == {"port": "8080", "debug": "true", "off": "false",
                               "url": "http://a"}
    assert settings.container_options == {"cpus": "0.5"}
    assert settings.app_config == {"n": "1"}
    assert settings.container_volumes == ["/d"] and settings.branch == "b"


def test_declared_relative_sources_start_at_the_config_folder(tmp_path: Path) -> None:
    assert resolve_source("site", tmp_path) == str(tmp_path / "site")
    assert resolve_source("../other", tmp_path / "home") == str(tmp_path / "other")
    assert resolve_source("/abs/dir", tmp_path) == "/abs/dir"
    assert resolve_source("-", tmp_path) == "-"
    for git in ("https://git.example.com/a/b.git", "file:///srv/repo", "git@host:a/b"):
        assert resolve_source(git, tmp_path) == git


def test_with_version_remembers_the_previous_one() -> None:
    v1 = AppVersion(version=1, source_digest="s", spec_digest="p", settings=BASE)
    v2 = AppVersion(version=2, source_digest="s2", spec_digest="p", settings=BASE)
    app = App(id="app_prd_x", path=AppPath("", "/x"), kind="prod", source="-",
              stage_at="path", linked_id=None, current=v1, created=0, updated=0)
    moved = app.with_version(v2, 5.0)
    assert (moved.current.version, moved.previous_version, moved.updated) == (2, 1, 5.0)
    # a new version under the same number (a dev app) keeps what revert returns to
    same = moved.with_version(AppVersion(version=2, source_digest="s3", spec_digest="p",
                                         settings=BASE), 6.0)
    assert same.previous_version == 1
    assert App.from_json(moved.to_json()) == moved
