"""Websocket relay: client <-> upstream, both directions, frames passed as they come.

Text, binary, ping and pong frames are relayed (autoping is off on both sides, so the
far end answers pings itself and latency checks stay honest), and the close code and
reason of whichever side closes first reach the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic

import aiohttp
import structlog
from aiohttp import WSMsgType, web
from yarl import URL

from orun.errors import OrunError
from orun.proxy.errors import error_response
from orun.proxy.target import ActivityCounter, Route

log = structlog.get_logger("orun.proxy.ws")

_WS = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
#: codes that must not be sent in a close frame, and what the other side gets instead
_UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}


async def _pump(src: _WS, dst: _WS, activity: ActivityCounter | None, *,
                to_app: bool = False) -> tuple[int, str]:
    """Copy frames from `src` to `dst` until `src` closes; return its close code/reason.
    `to_app`: `dst` is the app, and a frame for it while it is paused (the websocket
    stayed open while the app went idle) thaws it first."""
    while True:
        msg = await src.receive()
        if activity is not None:
            activity.last = monotonic()
            if to_app and activity.wake is not None:
                await _wake(activity.wake)
        kind = msg.type
        if kind is WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif kind is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif kind is WSMsgType.PING:
            await dst.ping(msg.data)
        elif kind is WSMsgType.PONG:
            await dst.pong(msg.data)
        elif kind is WSMsgType.CLOSE:
            return int(msg.data or 1005), str(msg.extra or "")
        else:  # CLOSING, CLOSED, ERROR: the connection went away without a close frame
            return 1006, ""


async def _wake(wake: Callable[[], Awaitable[object]]) -> None:
    """Thaw the paused app before the frame is sent. The thaw is shared with other
    callers (shielded: a relay that ends does not cancel it); when it fails the frame
    is sent anyway, and the upstream's answer (or its closed socket) says what happened."""
    with contextlib.suppress(OrunError):
        await asyncio.shield(wake())


class _Relay:
    def __init__(self, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse,
                 activity: ActivityCounter | None) -> None:
        self.client = client
        self.upstream = upstream
        self.activity = activity
        self.tasks: tuple[asyncio.Task[tuple[int, str]], ...] = ()

    async def run(self) -> None:
        to_upstream = asyncio.create_task(_pump(self.client, self.upstream, self.activity,
                                                to_app=True))
        to_client = asyncio.create_task(_pump(self.upstream, self.client, self.activity))
        self.tasks = (to_upstream, to_client)
        try:
            done, _pending = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        first = to_upstream if to_upstream in done else to_client
        if first.cancelled():  # shutdown() closed both ends already
            return
        closer, other = ((self.client, self.upstream) if first is to_upstream
                         else (self.upstream, self.client))
        try:
            code, reason = first.result()
        except (ConnectionError, aiohttp.ClientError) as exc:
            code, reason = 1011, f"relay failed: {exc}"[:120]
        await _close(other, _UNSENDABLE.get(code, code), reason)
        await _close(closer, 1000, "")

    async def shutdown(self, code: int, reason: str) -> None:
        for task in self.tasks:
            task.cancel()
        await _close(self.client, code, reason)
        await _close(self.upstream, code, reason)


async def _close(ws: _WS, code: int, reason: str) -> None:
    if ws.closed:
        return
    with contextlib.suppress(TimeoutError, ConnectionError, aiohttp.ClientError, RuntimeError):
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()[:120]), 5)


class WebSocketRelays:
    """Starts relays and keeps the open ones, so shutdown can close them cleanly."""

    def __init__(self) -> None:
        self._open: set[_Relay] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def relay(self, request: web.BaseRequest, route: Route, upstream: URL,
                    headers: Mapping[str, str], session: aiohttp.ClientSession,
                    connect_timeout: float,
                    activity: ActivityCounter | None = None) -> web.StreamResponse:
        protocols = [p.strip() for p in
                     request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        ws_url = upstream.with_scheme("wss" if upstream.scheme == "https" else "ws")
        try:
            async with asyncio.timeout(connect_timeout):
                up = await session.ws_connect(
                    ws_url, headers=headers, protocols=protocols, autoclose=False,
                    autoping=False, max_msg_size=0, compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status if exc.status >= 400 else 502
            return error_response(request, status,
                                  f"app {route.label}: upstream refused the websocket "
                                  f"upgrade ({exc.status} {exc.message})")
        except TimeoutError:
            return error_response(request, 504, f"app {route.label}: upstream "
                                  f"{upstream.origin()} did not accept the websocket "
                                  f"within {connect_timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error.strerror or str(exc.os_error)
            return error_response(request, 502, f"app {route.label}: cannot connect to "
                                  f"upstream {upstream.origin()}: {cause}")
        except aiohttp.ClientError as exc:
            return error_response(request, 502,
                                  f"app {route.label}: websocket upstream failed: {exc}")
        client = web.WebSocketResponse(
            protocols=(up.protocol,) if up.protocol else (), autoclose=False,
            autoping=False, max_msg_size=0, compress=False,
        )
        try:
            await client.prepare(request)
        except BaseException:
            await up.close()
            raise
        relay = _Relay(client, up, activity)
        self._open.add(relay)
        try:
            await relay.run()
        finally:
            self._open.discard(relay)
            if not up.closed:
                await up.close()
        return client

    async def close_all(self, code: int, reason: str) -> None:
        relays, self._open = list(self._open), set()
        await asyncio.gather(*(r.shutdown(code, reason) for r in relays),
                             return_exceptions=True)
