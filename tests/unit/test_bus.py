"""The in-process event bus: typed fan-out, isolation of handlers, bounded queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from orun.bus import EventBus
from orun.events import AppsChanged, Event, RoutesSwapped


@dataclass(frozen=True, slots=True)
class Ping(Event):
    n: int


@dataclass(frozen=True, slots=True)
class SubPing(Ping):
    """A subclass: subscribers to Ping get it too."""


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    yield b
    await b.close()


async def test_events_are_delivered_by_type(bus: EventBus) -> None:
    apps, routes, both = Recorder(), Recorder(), Recorder()
    bus.subscribe("apps", (AppsChanged,), apps)
    bus.subscribe("routes", (RoutesSwapped,), routes)
    bus.subscribe("both", (AppsChanged, RoutesSwapped), both)

    e1 = AppsChanged(("a1",), "created")
    e2 = RoutesSwapped(version=2, count=1)
    bus.publish(e1)
    bus.publish(e2)
    bus.publish(Ping(1))  # nobody listens for Ping
    await bus.drain()

    assert apps.events == [e1]
    assert routes.events == [e2]
    assert both.events == [e1, e2]


async def test_subscribing_to_a_base_class_gets_subclasses(bus: EventBus) -> None:
    pings, everything = Recorder(), Recorder()
    bus.subscribe("pings", (Ping,), pings)
    bus.subscribe("all", (Event,), everything)
    bus.publish(SubPing(1))
    bus.publish(Ping(2))
    bus.publish(RoutesSwapped(1, 0))
    await bus.drain()
    assert pings.events == [SubPing(1), Ping(2)]
    assert len(everything.events) == 3


async def test_events_arrive_in_publish_order(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe("rec", (Ping,), rec)
    for i in range(50):
        bus.publish(Ping(i))
    await bus.drain()
    assert rec.events == [Ping(i) for i in range(50)]


async def test_publish_without_subscribers_is_a_no_op(bus: EventBus) -> None:
    bus.publish(Ping(1))
    await bus.drain()


async def test_failing_handler_is_isolated(bus: EventBus) -> None:
    seen: list[int] = []
    other = Recorder()

    async def flaky(event: Ping) -> None:
        seen.append(event.n)
        if event.n % 2 == 0:
            raise RuntimeError(f"boom {event.n}")

    bus.subscribe("flaky", (Ping,), flaky)
    bus.subscribe("other", (Ping,), other)
    for i in range(4):
        bus.publish(Ping(i))  # never raises, even though the handler does
    await bus.drain()

    assert seen == [0, 1, 2, 3]  # later events still reach the failing subscriber
    assert other.events == [Ping(i) for i in range(4)]

    bus.publish(Ping(10))  # and it keeps working afterwards
    await bus.drain()
    assert seen[-1] == 10


async def test_handler_raising_synchronously_inside_coroutine_is_isolated(
    bus: EventBus,
) -> None:
    other = Recorder()

    async def broken(event: Ping) -> None:
        raise ValueError("bad")

    bus.subscribe("broken", (Ping,), broken)
    bus.subscribe("other", (Ping,), other)
    bus.publish(Ping(1))
    await bus.drain()
    assert other.events == [Ping(1)]


async def test_slow_subscriber_does_not_block_others(bus: EventBus) -> None:
    release = asyncio.Event()
    fast = Recorder()

    async def slow(event: Ping) -> None:
        await release.wait()

    bus.subscribe("slow", (Ping,), slow)
    bus.subscribe("fast", (Ping,), fast)
    bus.publish(Ping(1))
    bus.publish(Ping(2))
    await wait_for(lambda: len(fast.events) == 2)
    release.set()
    await bus.drain()


async def test_unsubscribe_stops_delivery(bus: EventBus) -> None:
    rec, stays = Recorder(), Recorder()
    unsubscribe = bus.subscribe("rec", (Ping,), rec)
    bus.subscribe("stays", (Ping,), stays)
    bus.publish(Ping(1))
    await bus.drain()
    unsubscribe()
    bus.publish(Ping(2))
    await bus.drain()
    assert rec.events == [Ping(1)]
    assert stays.events == [Ping(1), Ping(2)]
    unsubscribe()  # a second call is harmless


def _stuck_handler() -> tuple[Any, asyncio.Event, asyncio.Event]:
    """A handler that blocks until cancelled, and events saying it started/was cancelled."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(event: Ping) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return stuck, started, cancelled


async def test_unsubscribe_while_handler_blocked_does_not_hang_drain(bus: EventBus) -> None:
    stuck, started, cancelled = _stuck_handler()

    unsubscribe = bus.subscribe("stuck", (Ping,), stuck)
    bus.publish(Ping(1))
    await started.wait()
    unsubscribe()
    async with asyncio.timeout(2):
        await bus.drain()
        await cancelled.wait()


async def test_full_queue_drops_the_oldest_events() -> None:
    bus = EventBus(queue_size=2)
    started = asyncio.Event()
    release = asyncio.Event()
    handled: list[int] = []

    async def blocked(event: Ping) -> None:
        started.set()
        await release.wait()
        handled.append(event.n)

    bus.subscribe("blocked", (Ping,), blocked)
    try:
        bus.publish(Ping(1))
        await started.wait()  # event 1 is out of the queue, inside the handler
        for n in (2, 3, 4, 5):
            bus.publish(Ping(n))  # the queue holds 2: 2 and 3 are dropped
        release.set()
        async with asyncio.timeout(2):
            await bus.drain()
        assert handled == [1, 4, 5]
    finally:
        await bus.close()


async def test_queue_limit_is_per_subscriber() -> None:
    bus = EventBus(queue_size=1)
    started = asyncio.Event()
    release = asyncio.Event()
    fast = Recorder()

    async def blocked(event: Ping) -> None:
        started.set()
        await release.wait()

    bus.subscribe("blocked", (Ping,), blocked)
    bus.subscribe("fast", (Ping,), fast)
    try:
        bus.publish(Ping(1))
        await started.wait()
        def handled(count: int) -> Callable[[], bool]:
            return lambda: len(fast.events) == count

        for n in range(2, 6):
            bus.publish(Ping(n))
            await wait_for(handled(n))
        assert fast.events == [Ping(n) for n in range(1, 6)]  # nothing dropped for "fast"
        release.set()
        await bus.drain()
    finally:
        await bus.close()


async def test_drain_waits_for_handling(bus: EventBus) -> None:
    done: list[int] = []

    async def slowish(event: Ping) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        done.append(event.n)

    bus.subscribe("slowish", (Ping,), slowish)
    bus.publish(Ping(1))
    bus.publish(Ping(2))
    assert done == []
    await bus.drain()
    assert done == [1, 2]


async def test_drain_covers_events_published_by_handlers(bus: EventBus) -> None:
    rec = Recorder()

    async def relay(event: AppsChanged) -> None:
        await asyncio.sleep(0)
        bus.publish(RoutesSwapped(version=len(event.app_ids), count=0))

    bus.subscribe("relay", (AppsChanged,), relay)
    bus.subscribe("rec", (RoutesSwapped,), rec)
    bus.publish(AppsChanged(("a", "b"), "test"))
    await bus.drain()
    assert rec.events == [RoutesSwapped(version=2, count=0)]


async def test_drain_with_blocked_handler_waits() -> None:
    bus = EventBus()
    release = asyncio.Event()

    async def blocked(event: Ping) -> None:
        await release.wait()

    bus.subscribe("blocked", (Ping,), blocked)
    try:
        bus.publish(Ping(1))
        drain = asyncio.create_task(bus.drain())
        await asyncio.sleep(0.01)
        assert not drain.done()
        release.set()
        async with asyncio.timeout(2):
            await drain
    finally:
        await bus.close()


async def test_close_cancels_subscriber_tasks() -> None:
    bus = EventBus()
    stuck, started, cancelled = _stuck_handler()
    rec = Recorder()

    bus.subscribe("stuck", (Ping,), stuck)
    bus.subscribe("idle", (Ping,), rec)
    bus.publish(Ping(1))
    await started.wait()
    async with asyncio.timeout(2):
        await bus.close()
    assert cancelled.is_set()

    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("orun.bus.")]
    assert tasks == []

    bus.publish(Ping(2))  # after close: nobody is subscribed, nothing happens
    await bus.drain()
    assert rec.events == [Ping(1)]


async def test_events_are_immutable() -> None:
    event = AppsChanged(("a",), "created")
    with pytest.raises(AttributeError):
        event.reason = "changed"  # type: ignore[misc]
