"""The audit trail: one store row per admin operation, sign-in and refusal.

`record()` never blocks and never grows without limit: rows wait in a bounded buffer
and one writer task hands them to the store's thread in batches. A refusal that repeats
(same actor, address, app and reason) while it waits is folded into the waiting row's
count, and when the buffer is full new rows are dropped and counted; the count is
written as an `audit.dropped` row once there is room again. Rows hold who, from where,
what and how it went, never a request body, a param value, a password or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from orun.bus import EventBus, Unsubscribe
from orun.events import AuthDecision
from orun.state.records import AuditRow
from orun.state.store import Store

log = structlog.get_logger("orun.audit")

#: rows waiting for the writer at most; beyond it rows are dropped and counted
MAX_PENDING = 10_000
#: the writer waits this long after a row arrives, to write a batch in one transaction
BATCH_DELAY_SECS = 0.05


class AuditTrail:
    """Owns the writer task and the bus subscription; `start()`/`close()` bracket them."""

    def __init__(self, store: Store, keep_rows: Callable[[], int],
                 app_path: Callable[[str], str]) -> None:
        self._store = store
        self._keep_rows = keep_rows
        self._app_path = app_path
        self._pending: list[AuditRow] = []
        #: waiting refusal rows by what makes two of them the same, for coalescing
        self._repeats: dict[tuple[str, str, str, str, str], int] = {}
        self.dropped = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None

    def start(self, bus: EventBus) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="orun.audit.writer")
        self._unsubscribe = bus.subscribe("audit", (AuthDecision,), self._on_auth)

    async def close(self) -> None:
        """Stop listening, write what waits, stop the writer."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        with contextlib.suppress(Exception):
            await self._flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def record(self, actor: str, remote: str, action: str, target: str = "",
               app_id: str = "", outcome: str = "ok", *, coalesce: bool = False) -> None:
        """Queue one row (never blocks; see the module docstring for the bounds)."""
        key = (actor, remote, action, app_id, outcome)
        if coalesce and key in self._repeats:
            at = self._repeats[key]
            row = self._pending[at]
            self._pending[at] = AuditRow(row.time, row.actor, row.remote, row.action,
                                         row.target, row.app_id, row.outcome, row.count + 1)
            return
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        if coalesce:
            self._repeats[key] = len(self._pending)
        self._pending.append(AuditRow(time.time(), actor[:200], remote[:100], action[:100],
                                      target[:300], app_id, outcome[:500]))
        self._idle.clear()
        self._wakeup.set()

    async def _on_auth(self, event: AuthDecision) -> None:
        target = self._app_path(event.app_id)
        if event.allowed:
            self.record(event.user or "-", event.remote, f"signin.{event.method}", target,
                        event.app_id)
        else:
            self.record(event.user or "-", event.remote, f"signin.{event.method}", target,
                        event.app_id, f"refused: {event.reason or 'no reason given'}",
                        coalesce=True)

    async def drain(self) -> None:
        """Wait until every row recorded so far is in the store (tests, shutdown)."""
        await self._idle.wait()

    async def _write_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(BATCH_DELAY_SECS)
            self._wakeup.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit_write_failed")

    async def _flush(self) -> None:
        batch, self._pending, self._repeats = self._pending, [], {}
        if self.dropped:
            batch.append(AuditRow(time.time(), "orun", "", "audit.dropped", "", "",
                                  f"{self.dropped} rows dropped: too many at once"))
            log.warning("audit_rows_dropped", count=self.dropped)
            self.dropped = 0
        try:
            if batch:
                await self._store.add_audit(batch, self._keep_rows())
        finally:
            if not self._pending:
                self._idle.set()
