"""A container app version as the proxy sees it: the runtime's side of the proxy's
`Backend` interface (orun/proxy/target.py), matched by structure, not by import.

Routing's target factory asks `Runtime.backend(app)` for one per routed version. The
proxy reads `live.instance` and `live.activity` on every request (plain attributes of
the app's `AppRuntime`); everything else here is the cold path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from orun.runtime.app import AppRuntime, version_key
from orun.state.model import App


class AppBackend:
    __slots__ = ("_app", "_ensure", "_request_wait", "_status", "live")

    def __init__(self, live: AppRuntime, app: App, *,
                 ensure: Callable[[App], asyncio.Future[Any]],
                 request_wait: Callable[[], float],
                 public_status: Callable[[str], dict[str, object]]) -> None:
        self.live = live
        self._app = app
        self._ensure = ensure
        self._request_wait = request_wait
        self._status = public_status

    @property
    def state(self) -> str:
        return self.live.state

    def ensure(self) -> asyncio.Future[Any]:
        return self._ensure(self._app)

    def request_wait(self) -> float:
        return self._request_wait()

    def busy(self) -> bool:
        operation = self.live.operation
        return operation is not None and not operation.done()

    def reported_failure(self) -> str | None:
        live = self.live
        if not self.busy() and live.state == "failed" \
                and live.failed_version == version_key(self._app):
            return self.failure()
        return None

    def failure(self) -> str:
        live = self.live
        return live.error + ("\n" + live.error_detail if live.error_detail else "")

    def progress_lines(self) -> Sequence[str]:
        return tuple(self.live.progress.lines)

    def subscribe(self) -> asyncio.Queue[str | None]:
        return self.live.progress.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self.live.progress.unsubscribe(queue)

    def public_text(self, text: str) -> str:
        return self.live.public_text(text)

    def public_status(self) -> dict[str, object]:
        return self._status(self._app.id)


__all__ = ["AppBackend"]
