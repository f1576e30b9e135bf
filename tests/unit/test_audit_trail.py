"""The audit writer: AuthDecision events from the bus become rows, repeated refusals
are folded into one row, and a flood is bounded (dropped and counted). A real SQLite
store and the real bus; no orun process (app auth publishes these events in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orun.bus import EventBus
from orun.events import AuthDecision
from orun.state import audit as audit_module
from orun.state.audit import AuditTrail
from orun.state.store import Store


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[EventBus, AuditTrail, Store]]:
    store = Store(tmp_path / "orun.db")
    await store.open()
    bus = EventBus()
    trail = AuditTrail(store, lambda: 1000, {"app1": "/shop"}.get)  # type: ignore[arg-type]
    trail.start(bus)
    yield bus, trail, store
    await trail.close()
    await bus.close()
    await store.close()


async def test_auth_decisions_become_rows(
        parts: tuple[EventBus, AuditTrail, Store]) -> None:
    bus, trail, store = parts
    bus.publish(AuthDecision("app1", "alice", "10.0.0.5", "system", True))
    for _ in range(3):
        bus.publish(AuthDecision("app1", "mallory", "10.0.0.6", "system", False,
                                 "wrong password"))
    bus.publish(AuthDecision("app1", "", "10.0.0.7", "oidc:google", False, "state mismatch"))
    await bus.drain()
    await trail.drain()
    rows = await store.audit(limit=10)
    by_actor = {r.actor: r for r in rows}
    assert len(rows) == 3
    alice = by_actor["alice"]
    assert (alice.remote, alice.action, alice.target, alice.app_id, alice.outcome) == \
        ("10.0.0.5", "signin.system", "/shop", "app1", "ok")
    mallory = by_actor["mallory"]
    assert mallory.outcome == "refused: wrong password" and mallory.count == 3
    assert by_actor["-"].action == "signin.oidc:google"
    # filtered by app: its path glob, or its id
    assert len(await store.audit(target_glob="/sh*", limit=10)) == 3
    assert len(await store.audit(target_glob="/other", app_ids=("app1",), limit=10)) == 3
    assert await store.audit(target_glob="/other", limit=10) == []


async def test_a_flood_is_bounded_and_counted(
        parts: tuple[EventBus, AuditTrail, Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _bus, trail, store = parts
    monkeypatch.setattr(audit_module, "MAX_PENDING", 5)
    for i in range(20):  # all before the writer runs: the buffer holds 5
        trail.record(f"user{i}", "10.0.0.1", "app.list")
    await trail.drain()
    rows = await store.audit(limit=100)
    assert len(rows) == 6
    assert rows[0].action == "audit.dropped" and rows[0].outcome.startswith("15 rows dropped")


async def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    store = Store(tmp_path / "orun.db")
    await store.open()
    bus = EventBus()
    trail = AuditTrail(store, lambda: 3, lambda _id: "")
    trail.start(bus)
    for i in range(10):
        trail.record("local:0", "unix", "app.list", f"/a{i}")
        await trail.drain()
    rows = await store.audit(limit=100)
    assert [r.target for r in rows] == ["/a9", "/a8", "/a7"]
    await trail.close()
    await bus.close()
    await store.close()
