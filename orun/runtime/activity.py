"""Traffic accounting for idle shutdown, kept as cheap as an attribute write."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class Activity:
    """When an app last saw traffic, and how many plain requests are open now.

    Websocket relays and streamed bodies `touch()` it as frames and chunks pass, so a
    long-lived connection with traffic keeps the app awake and a silent one does not.
    While the app's container is paused (the idle pause tier), `wake` is set: a frame on
    a websocket that stayed open calls it to thaw the container before passing the frame
    on (plain requests find no serving instance and take the cold path instead).
    """

    __slots__ = ("last", "open", "requests", "wake")

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.open = 0
        #: plain requests ever started (the console derives requests/min from it)
        self.requests = 0
        self.wake: Callable[[], Awaitable[object]] | None = None

    def touch(self) -> None:
        self.last = time.monotonic()
