"""How requests are spread over a replicated version's healthy replicas."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import pytest

from orun.runtime.replicas import ReplicaPool


@dataclass
class Load:
    open: int = 0


@dataclass
class Member:
    name: str
    load: Load = field(default_factory=Load)

    @property
    def upstream(self) -> str:
        return f"http://{self.name}:80"


def pool(*names: str) -> tuple[ReplicaPool[Member], list[Member]]:
    members = [Member(n) for n in names]
    p: ReplicaPool[Member] = ReplicaPool(Member("fallback"))
    p.set_members(tuple(members))
    return p, members


def test_idle_replicas_take_turns() -> None:
    p, _ = pool("a", "b", "c")
    assert [p.pick().name for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_the_least_busy_replica_gets_the_request() -> None:
    p, (a, b, c) = pool("a", "b", "c")
    a.load.open, b.load.open, c.load.open = 5, 2, 3
    assert {p.pick().name for _ in range(6)} == {"b"}
    b.load.open = 9
    assert p.pick().name == "c"


def test_concurrent_requests_spread_evenly() -> None:
    """Requests that stay open while more arrive end up one per replica per round."""
    p, members = pool("a", "b", "c", "d")
    for _ in range(40):
        p.pick().load.open += 1
    assert [m.load.open for m in members] == [10, 10, 10, 10]


def test_a_replica_that_leaves_gets_nothing_more() -> None:
    p, (a, _b, c) = pool("a", "b", "c")
    p.set_members((a, c))
    assert collections.Counter(p.pick().name for _ in range(10)) == {"a": 5, "c": 5}


def test_empty_and_single_pools() -> None:
    p, _ = pool()
    assert p.pick().name == "fallback" and len(p) == 0
    p, (a,) = pool("a")
    a.load.open = 3
    assert p.pick() is a and p.open_requests() == 3
    with pytest.raises(AssertionError):
        ReplicaPool[Member]().pick()


def test_a_refusing_replica_is_evicted_unless_it_is_the_last() -> None:
    p, (_a, b) = pool("a", "b")
    assert p.evict("http://a:80") is True and p.members == (b,)
    assert p.evict("http://b:80") is False and p.members == (b,)
