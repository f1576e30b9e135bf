"""An in-process event bus with bounded per-subscriber queues.

Publishing never blocks and never fails: each subscriber has its own bounded queue and
its own consumer task, so a slow or failing handler cannot reach the publisher or the
other subscribers. When a subscriber's queue is full the oldest event is dropped and
counted (handlers here are level-triggered: they rebuild state from a full snapshot,
so a dropped event costs at most a late rebuild). `drain()` lets tests wait until every
published event has been handled.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from orun.events import Event

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]
Unsubscribe = Callable[[], None]

log = structlog.get_logger("orun.bus")


class _Subscriber:
    """One handler, its queue and the task that feeds it."""

    def __init__(self, name: str, types: tuple[type[Event], ...],
                 handler: Callable[[Event], Awaitable[None]], maxsize: int) -> None:
        self.name = name
        self.types = types
        self.handler = handler
        self.queue: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.dropped = 0
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=f"orun.bus.{name}")

    def offer(self, event: Event) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
            # not `event=`: that is structlog's own positional argument (the message)
            log.warning("bus_event_dropped", subscriber=self.name,
                        event_type=type(event).__name__)
        self.queue.append(event)
        self.idle.clear()
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                event = self.queue.popleft()
                try:
                    await self.handler(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("bus_handler_failed", subscriber=self.name,
                                  event_type=type(event).__name__)
            self.idle.set()


class EventBus:
    """Fan-out of events to typed subscribers. Owns one task per subscriber."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: list[_Subscriber] = []

    def subscribe(self, name: str, event_types: tuple[type[E], ...],
                  handler: Handler[E]) -> Unsubscribe:
        """Call `handler` for each published event of `event_types`; returns unsubscribe."""
        sub = _Subscriber(name, event_types, handler,  # type: ignore[arg-type]
                          self._queue_size)
        self._subscribers.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                sub.task.cancel()

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Queue `event` for every matching subscriber. Never blocks, never raises."""
        for sub in self._subscribers:
            if isinstance(event, sub.types):
                sub.offer(event)

    async def drain(self) -> None:
        """Wait until every event published so far has been handled (for tests)."""
        while True:
            pending = [s for s in self._subscribers if not s.idle.is_set()]
            if not pending:
                return
            await asyncio.gather(*(s.idle.wait() for s in pending))

    async def close(self) -> None:
        """Cancel every subscriber task and wait for them to end."""
        subs, self._subscribers = self._subscribers, []
        for sub in subs:
            sub.task.cancel()
        await asyncio.gather(*(s.task for s in subs), return_exceptions=True)
