"""The healthy replicas of a replicated app version, and which one takes a request.

A Swarm service runs an app version as several tasks on several nodes; each healthy task
is an `Instance` of its own (its own address, its own count of open requests). The proxy
asks `ReplicaPool.pick()` on every request: the member with the fewest requests open, the
ties taken in turn, so a quiet app spreads its requests evenly and a busy one sends each
to the replica that is keeping up best. A websocket is one long request on the member it
was given; it counts there until it closes.

The runtime (orun/runtime/swarmtracker.py) changes `members` as tasks come and go; the
proxy only reads it. An empty pool means no replica is healthy: `pick()` then returns the
fallback (the instance the pool belongs to), whose requests fail or wait for a start.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class _Load(Protocol):
    open: int


class _Member(Protocol):
    @property
    def load(self) -> _Load: ...

    @property
    def upstream(self) -> str: ...


M = TypeVar("M", bound=_Member)


class ReplicaPool(Generic[M]):
    """The members requests are spread over; read on the hot path, written by the runtime.
    Generic over the member type (the runtime's `Instance`)."""

    __slots__ = ("_next", "fallback", "members")

    def __init__(self, fallback: M | None = None) -> None:
        #: the healthy replicas, in a stable order (by task id)
        self.members: tuple[M, ...] = ()
        #: what `pick` returns while no member is healthy
        self.fallback = fallback
        self._next = 0

    def pick(self) -> M:
        members = self.members
        count = len(members)
        if count == 0:
            assert self.fallback is not None, "a pool without members has a fallback"
            return self.fallback
        if count == 1:
            return members[0]
        start = self._next % count
        self._next = start + 1
        best = members[start]
        best_open = best.load.open
        if best_open:
            for offset in range(1, count):
                member = members[(start + offset) % count]
                if member.load.open < best_open:
                    best, best_open = member, member.load.open
                    if not best_open:
                        break
        return best

    def evict(self, upstream: str) -> bool:
        """Take the member at `upstream` out (it refused a connection; the tracker puts it
        back once its health check passes). False when no other member is left."""
        members = tuple(m for m in self.members if m.upstream != upstream)
        if members:
            self.members = members
            return True
        return False

    def open_requests(self) -> int:
        """Requests (and websockets) open on any member: what a drain waits for."""
        return sum(member.load.open for member in self.members)

    def set_members(self, members: tuple[M, ...]) -> None:
        self.members = members

    def __len__(self) -> int:
        return len(self.members)


__all__ = ["ReplicaPool"]
