"""The SQLite store: migrations, round trips, transactions, version history."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from orun.state.model import App, AppSettings, AppVersion
from orun.state.paths import AppPath
from orun.state.store import MIGRATIONS, Store


def make_app(app_id: str, path: str, version: int = 1) -> App:
    settings = AppSettings(spec="static", params={"index": "a.html"}, container_volumes=["v"])
    current = AppVersion(version=version, source_digest="s" * 64, spec_digest="p" * 64,
                         settings=settings, git_commit="c0ffee", created=1.5)
    return App(id=app_id, path=AppPath("", path), kind="prod", source="/src",
               stage_at="domain", linked_id=None, current=current, created=1.0, updated=2.0)


def test_app_json_is_asdict_written_out() -> None:
    """`App.to_json` builds by hand what `dataclasses.asdict` gave (same keys, same
    order, fresh containers), so the store and the API keep their shape."""
    app = dataclasses.replace(make_app("app_prd_a", "/a"), path=AppPath("x.test", "/a"),
                              linked_id="app_stg_a", previous_version=3, origin="config")
    expected = dataclasses.asdict(app)
    expected.update(path="/a", domain="x.test", app_path="x.test:/a")
    data = app.to_json()
    assert data == expected
    assert list(data) == list(expected)
    assert list(data["current"]) == list(expected["current"])
    assert list(data["current"]["settings"]) == list(expected["current"]["settings"])
    data["current"]["settings"]["params"]["index"] = "changed"
    data["current"]["settings"]["container_volumes"].append("w")
    assert app.current.settings.params == {"index": "a.html"}
    assert app.current.settings.container_volumes == ["v"]
    assert App.from_json(app.to_json()) == app


async def test_migrates_new_store_and_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path / "meta" / "orun.db")
    await store.open()
    assert await store.schema_version() == len(MIGRATIONS)
    app = make_app("app_prd_a", "/a")
    await store.save([app], new_versions=True)
    await store.save([app.with_version(make_app("x", "/a", 2).current, 3.0)], new_versions=True)
    await store.close()

    reopened = Store(tmp_path / "meta" / "orun.db")
    await reopened.open()
    (loaded,) = await reopened.load_apps()
    assert loaded.current.version == 2 and loaded.updated == 3.0
    assert loaded.current.settings == app.current.settings
    assert [v.version for v in await reopened.versions("app_prd_a")] == [1, 2]
    mode = sqlite3.connect(tmp_path / "meta" / "orun.db").execute(
        "PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    await reopened.delete(["app_prd_a"])
    assert await reopened.load_apps() == []
    assert await reopened.versions("app_prd_a") == []
    await reopened.close()


async def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "orun.db")
    await store.open()
    await store.save([make_app("app_prd_a", "/a")], new_versions=True)
    # a second app at the same (domain, path) violates the unique index: the whole batch
    # rolls back, including the valid app saved before it in the same call
    with pytest.raises(sqlite3.IntegrityError):
        await store.save([make_app("app_prd_b", "/b"), make_app("app_prd_c", "/a")],
                         new_versions=True)
    assert [a.id for a in await store.load_apps()] == ["app_prd_a"]
    await store.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "orun.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = Store(db)
    with pytest.raises(RuntimeError, match="newer than this orun"):
        await store.open()
    await store.close()
