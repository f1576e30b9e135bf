"""Traffic accounting for idle shutdown, kept as cheap as an attribute write."""

from __future__ import annotations

import time


class Activity:
    """When an app last saw traffic, and how many plain requests are open now.

    Websocket relays and streamed bodies `touch()` it as frames and chunks pass, so a
    long-lived connection with traffic keeps the app awake and a silent one does not.
    """

    __slots__ = ("last", "open")

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.open = 0

    def touch(self) -> None:
        self.last = time.monotonic()
