"""Websocket relay: both handshakes, then a byte tunnel that knows where frames end.

orun answers the client's upgrade only once the upstream accepted its own (orun's
handshake on a raw connection, with the client's subprotocols). From then on bytes pass
unchanged both ways: the client's frames are masked, as the upstream (a server) expects,
and the upstream's are not, as the client expects, so nothing is decoded, unmasked,
validated or re-encoded, and no task runs per websocket. aiohttp's server protocol feeds
the client's bytes to the relay (`set_parser`, as aiohttp's own websocket response
does), the upstream connection is the relay's own asyncio protocol, and each side writes
straight to the other's transport, with flow control both ways. Text, binary, ping,
pong and close frames, close codes and reasons reach the far end exactly as sent; the
endpoints answer pings and check frames themselves (autoping off, as before).

Frame boundaries are followed (headers read, payloads skipped) so orun can speak when it
must, always between two frames, never inside one: 1001 to both ends at shutdown
(`close_all`), 1011 to the client when the upstream connection ends without a close
frame, 1001 to the upstream when the client's does. Nothing is forwarded after a close
frame, and a closing handshake that does not end within `CLOSE_TIMEOUT_SECS` cuts both
connections. Idle websockets are never timed out: no timer runs on an open one.

Why a tunnel: the previous relay of decoded messages (aiohttp's websocket reader and
writer on both sides, an aiohttp client session, two pump tasks) held about 28 KiB and
four tasks per open websocket and copied every message four times
(`scripts/bench_websockets` measures it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic
from typing import Any, cast

from aiohttp import web
from yarl import URL

from orun.errors import OrunError
from orun.proxy.errors import error_response
from orun.proxy.headers import connection_tokens
from orun.proxy.request import ProxyRequest, count_now
from orun.proxy.target import ActivityCounter, Route

#: how long a closing handshake may take before both connections are cut
CLOSE_TIMEOUT_SECS = 5.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: an upstream handshake answer longer than this is refused
_MAX_ANSWER = 64 * 1024
#: upstream bytes held while the client's 101 goes out, before reading from it pauses
_HOLD_LIMIT = 256 * 1024
#: websocket versions a client may ask for (aiohttp's server accepted the same)
_VERSIONS = frozenset({"13", "8", "7"})
_OP_CLOSE = 0x8

_tls_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """The default-verifying TLS context for wss upstreams (made once: it is costly)."""
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode()


def close_frame(code: int, reason: str, *, masked: bool) -> bytes:
    """A close frame with `code` and `reason` (cut to fit 125 bytes on a character
    boundary); `masked` for frames orun sends as a client (to the upstream)."""
    text = reason.encode()[:123].decode(errors="ignore").encode()
    payload = code.to_bytes(2, "big") + text
    if not masked:
        return bytes((0x80 | _OP_CLOSE, len(payload))) + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | _OP_CLOSE, 0x80 | len(payload))) + mask + body


def frame_head(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(header size, payload length, opcode) of the frame starting at `buf[pos]`, or
    (0, 0, 0) when its header is not complete yet."""
    avail = len(buf) - pos
    if avail < 2:
        return 0, 0, 0
    second = buf[pos + 1]
    length = second & 0x7F
    size = 6 if second & 0x80 else 2
    if length == 126:
        size += 2
    elif length == 127:
        size += 8
    if avail < size:
        return 0, 0, 0
    if length == 126:
        length = int.from_bytes(buf[pos + 2:pos + 4], "big")
    elif length == 127:
        length = int.from_bytes(buf[pos + 2:pos + 10], "big")
    return size, length, buf[pos] & 0x0F


class FrameTracker:
    """Where the frames going one way are, in a byte stream passed on as it comes.

    `passable()` says how much of each chunk may go on: all of it, or up to the end of
    a close frame (nothing may follow one), or, once `stop` is set, up to the next frame
    boundary (so orun can put its own close frame there). After either, `done` is set
    and nothing more passes. Payloads are skipped by length, never copied.
    """

    __slots__ = ("closing", "done", "head", "left", "stop")

    def __init__(self) -> None:
        #: payload bytes of the current frame still to come
        self.left = 0
        #: the start of a frame header cut by a read boundary
        self.head = b""
        #: the current frame is a close frame
        self.closing = False
        self.stop = False
        self.done = False

    @property
    def at_boundary(self) -> bool:
        return not self.left and not self.head

    def passable(self, data: bytes) -> int:
        if self.done:
            return 0
        pos, end = 0, len(data)
        while True:
            if self.left:
                if self.left > end - pos:
                    self.left -= end - pos
                    return end
                pos += self.left
                self.left = 0
            if not self.head and (self.closing or self.stop):
                self.done = True
                return pos
            if pos == end:
                return end
            if self.head:
                joined = self.head + data[pos:pos + 14]
                size, length, opcode = frame_head(joined)
                if not size:  # a header is at most 14 bytes: all of `data` went in
                    self.head = joined
                    return end
                pos += size - len(self.head)
                self.head = b""
            else:
                size, length, opcode = frame_head(data, pos)
                if not size:
                    self.head = data[pos:]
                    return end
                pos += size
            self.left = length
            self.closing = opcode == _OP_CLOSE


async def _wake(wake: Callable[[], Awaitable[object]]) -> None:
    """Thaw the paused app before the held frames go on. The thaw is shared with other
    callers (shielded: a relay that ends does not cancel it); when it fails the frames
    go anyway, and the upstream's answer (or its closed socket) says what happened."""
    with contextlib.suppress(OrunError):
        await asyncio.shield(wake())


class HandshakeError(Exception):
    """The upstream did not accept the websocket; `status` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Relay(asyncio.Protocol):
    """One websocket through orun.

    It is the upstream connection's protocol (first the handshake, then frames) and
    the parser aiohttp's server protocol feeds the client's bytes to (`feed_data`,
    `feed_eof`). Both directions are synchronous callbacks; the request's own handler
    task only waits for the end, and for the client to drain when it reads slowly.
    """

    __slots__ = (
        "_activity",
        "_buf",
        "_client",
        "_client_lost",
        "_client_proto",
        "_held",
        "_held_size",
        "_loop",
        "_request_head",
        "_thaw",
        "_thawing",
        "_timer",
        "_to_client",
        "_to_upstream",
        "_up_lost",
        "_up_paused",
        "_upstream",
        "answer",
        "finished",
        "wake",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, request_head: bytes,
                 activity: ActivityCounter | None) -> None:
        self._loop = loop
        self._request_head = request_head
        #: resolved with the upstream's handshake answer; None once it came
        self.answer: asyncio.Future[tuple[int, str, dict[str, str]]] | None = \
            loop.create_future()
        self._buf = b""
        #: upstream bytes that came before the client's side was ready (rarely any)
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._upstream: asyncio.Transport | None = None
        self._client: asyncio.Transport | None = None
        self._client_proto: Any = None
        self._activity = activity
        self._to_upstream = FrameTracker()
        self._to_client = FrameTracker()
        self._up_paused = False
        self._up_lost = False
        self._client_lost = False
        self._timer: asyncio.TimerHandle | None = None
        #: client bytes held while a paused app thaws, and the task thawing it
        self._thawing: list[bytes] | None = None
        self._thaw: asyncio.Task[None] | None = None
        #: what the handler task awaits: set when the relay ended, or when the client
        #: must be drained (then `rearm` makes a new one)
        self.wake: asyncio.Future[None] = loop.create_future()
        self.finished = False

    # -- the upstream connection (asyncio.Protocol) ------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._upstream = cast(asyncio.Transport, transport)
        self._upstream.write(self._request_head)
        self._request_head = b""

    def data_received(self, data: bytes) -> None:
        if self.answer is not None:
            self._read_answer(data)
        elif self._client is None:
            self._hold(data)
        else:
            self._from_upstream(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._up_lost = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionResetError(
                "the upstream closed the connection during the handshake"))
        self.answer = None
        if self._client is not None:
            self._progress()

    def pause_writing(self) -> None:
        # the upstream reads slower than the client sends: stop reading the client
        if self._client is not None and not self._client.is_closing():
            self._client.pause_reading()

    def resume_writing(self) -> None:
        if self._client is not None and not self._client.is_closing():
            self._client.resume_reading()

    def _read_answer(self, data: bytes) -> None:
        assert self.answer is not None
        buf = self._buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._buf = buf
            if len(buf) > _MAX_ANSWER:
                self.answer.set_exception(HandshakeError(
                    502, f"the upstream's handshake answer exceeds {_MAX_ANSWER} bytes"))
                self.answer = None
            return
        self._buf = b""
        lines = buf[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            self.answer.set_exception(HandshakeError(
                502, f"the upstream answered the upgrade with {lines[0][:80]!r}"))
        else:
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.answer.set_result((int(code), reason, headers))
        self.answer = None
        if len(buf) > end + 4:
            self._hold(buf[end + 4:])

    def _hold(self, data: bytes) -> None:
        if self._held is None:
            self._held = []
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > _HOLD_LIMIT and not self._up_paused and self._upstream:
            self._upstream.pause_reading()
            self._up_paused = True

    def _from_upstream(self, data: bytes) -> None:
        if self._activity is not None:
            self._activity.last = monotonic()
        client = self._client
        assert client is not None
        tracker = self._to_client
        n = tracker.passable(data)
        if n and not client.is_closing():
            client.write(data if n == len(data) else data[:n])
            if self._client_proto.writing_paused:
                self._pause_upstream()
        if tracker.done:
            self._progress()

    def _pause_upstream(self) -> None:
        """The client reads slowly: stop reading the upstream, and have the handler
        task wait for the client to drain (then `resume_upstream`)."""
        upstream = self._upstream
        if not self._up_paused and upstream is not None and not upstream.is_closing():
            upstream.pause_reading()
            self._up_paused = True
        if not self.wake.done():
            self.wake.set_result(None)

    def resume_upstream(self) -> None:
        if self._up_paused and self._upstream is not None and not self._upstream.is_closing():
            self._upstream.resume_reading()
        self._up_paused = False

    # -- the client connection (fed by aiohttp's server protocol) -------------------------

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        activity = self._activity
        if activity is not None:
            activity.last = monotonic()
            if activity.wake is not None or self._thawing is not None:
                # the app's container is paused (the idle tier): thaw it first
                self._hold_for_thaw(data, activity.wake)
                return False, b""
        self._to_app(data)
        return False, b""

    def _hold_for_thaw(self, data: bytes, wake: Callable[[], Awaitable[object]] | None) -> None:
        if self._thawing is not None:
            self._thawing.append(data)
            return
        self._thawing = [data]
        if self._client is not None and not self._client.is_closing():
            self._client.pause_reading()
        self._thaw = self._loop.create_task(self._thaw_then_pass(wake),
                                            name="orun.proxy.ws.thaw")

    async def _thaw_then_pass(self, wake: Callable[[], Awaitable[object]] | None) -> None:
        if wake is not None:
            await _wake(wake)
        held, self._thawing = self._thawing or [], None
        self._thaw = None
        for data in held:
            self._to_app(data)
        client = self._client
        if client is not None and not client.is_closing():
            client.resume_reading()

    def _to_app(self, data: bytes) -> None:
        tracker = self._to_upstream
        n = tracker.passable(data)
        upstream = self._upstream
        if n and upstream is not None and not upstream.is_closing():
            upstream.write(data if n == len(data) else data[:n])
        if tracker.done:
            self._progress()

    def feed_eof(self) -> None:
        self._client_lost = True
        self._progress()

    # -- the life of the tunnel ---------------------------------------------------------

    def start(self, client: asyncio.Transport, client_proto: Any) -> None:
        """The client got its 101: pass on what the upstream sent meanwhile, then relay."""
        self._client = client
        self._client_proto = client_proto
        held, self._held, self._held_size = self._held or (), None, 0
        for data in held:
            self._from_upstream(data)
        if self._up_paused and not client_proto.writing_paused:
            self.resume_upstream()  # held too much, but the client took it all
        if self._up_lost:
            self._progress()

    def _progress(self) -> None:
        """After a close frame passed or a connection ended: close what is finished."""
        if self.finished:
            return
        upstream, client = self._upstream, self._client
        if self._client_lost and self._up_lost:
            self._finish()
        elif self._client_lost and self._to_upstream.done and self._to_client.done:
            # the closing handshake is complete: the upstream, a server, ends its
            # connection now (so the wait in TIME_WAIT is its, not orun's), or the timer
            self._arm_timer()
        elif self._client_lost:
            # nobody is left to read the upstream: say so if a frame boundary allows
            if upstream is not None:
                if not self._to_upstream.done and self._to_upstream.at_boundary:
                    upstream.write(close_frame(1001, "client went away", masked=True))
                self._to_upstream.done = True
                upstream.close()
        elif self._up_lost:
            if client is not None:
                if not self._to_client.done and self._to_client.at_boundary:
                    client.write(close_frame(1011, "upstream went away", masked=False))
                self._to_client.done = True
                client.close()
        elif self._to_upstream.done or self._to_client.done:
            # a closing handshake is under way; the upstream ends its connection after
            # it (then orun closes the client's), or the timer cuts both
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(CLOSE_TIMEOUT_SECS, self.abort)

    def _finish(self) -> None:
        self.finished = True
        if self._thaw is not None:
            self._thaw.cancel()
            self._thaw = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.wake.done():
            self.wake.set_result(None)

    def rearm(self) -> None:
        """A new `wake` future, once the handler task took the last one."""
        self.wake = self._loop.create_future()

    def shutdown(self, code: int, reason: str) -> None:
        """Close both ends with `code` (each only between two frames; cut otherwise)."""
        for tracker, transport, masked in ((self._to_client, self._client, False),
                                           (self._to_upstream, self._upstream, True)):
            if transport is None or transport.is_closing():
                continue
            if tracker.done:
                transport.close()
            elif tracker.at_boundary:
                tracker.done = True
                transport.write(close_frame(code, reason, masked=masked))
                transport.close()
            else:
                transport.abort()
        self._arm_timer()

    def abort(self) -> None:
        """Cut both connections now (a closing handshake took too long, or the end)."""
        for transport in (self._upstream, self._client):
            if transport is not None:
                transport.abort()

    def release(self) -> None:
        """The handler is done with this relay (it ended, failed or was cancelled): cut
        what is still open, and let a connection that is closing send its last bytes
        (a close frame), for at most `CLOSE_TIMEOUT_SECS`."""
        if self._thaw is not None:
            self._thaw.cancel()
            self._thaw = None
        if self.finished:
            return
        lingering = False
        for transport in (self._upstream, self._client):
            if transport is None:
                continue
            if transport.is_closing():
                lingering = True
            else:
                transport.abort()
        if lingering:
            self._arm_timer()


def _client_handshake_problem(request: web.BaseRequest) -> str | None:
    """Why the client's upgrade request is not a valid websocket handshake, or None."""
    headers = request.headers
    if "upgrade" not in connection_tokens(headers.get("Connection")):
        return "the Connection header does not name Upgrade"
    version = headers.get("Sec-WebSocket-Version", "")
    if version not in _VERSIONS:
        return f"unsupported Sec-WebSocket-Version {version!r} (13 is)"
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (binascii.Error, ValueError):
        return f"bad Sec-WebSocket-Key {key[:40]!r}"
    return None


def _upgrade_request(upstream: URL, headers: Mapping[str, str], key: str,
                     protocols: list[str]) -> bytes:
    """The upgrade request orun sends upstream, as bytes."""
    lines = [f"GET {upstream.raw_path_qs or '/'} HTTP/1.1"]
    if "Host" not in headers:
        lines.append(f"Host: {upstream.raw_authority}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
              "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _check_answer(status: int, reason: str, headers: dict[str, str], key: str,
                  protocols: list[str]) -> str | None:
    """Validate the upstream's handshake answer; return the chosen subprotocol."""
    if status != 101:
        raise HandshakeError(status if status >= 400 else 502,
                             f"upstream refused the websocket upgrade ({status} {reason})"
                             .rstrip())
    if headers.get("upgrade", "").lower() != "websocket" \
            or "upgrade" not in connection_tokens(headers.get("connection")):
        raise HandshakeError(502, "upstream answered 101 without Upgrade: websocket")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError(502, "upstream answered with a wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-extensions"):
        raise HandshakeError(502, "upstream enabled a websocket extension nobody asked "
                                  f"for ({headers['sec-websocket-extensions'][:60]})")
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    return next((p for p in offered if p and p in protocols), None)


async def _open_upstream(request: web.BaseRequest, route: Route, upstream: URL,
                         headers: Mapping[str, str], connect_timeout: float,
                         activity: ActivityCounter | None,
                         ) -> tuple[_Relay, web.StreamResponse] | web.Response:
    """Connect to the upstream and have it accept the upgrade: the relay and the 101
    for the client, or the error response the client gets instead. (A function of its
    own, so nothing of the handshake stays referenced while the websocket is open.)"""
    protocols = [p.strip() for p in
                 request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    relay = _Relay(loop, _upgrade_request(upstream, headers, key, protocols), activity)
    answer = relay.answer
    assert answer is not None
    tls = upstream.scheme == "https"
    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(
                lambda: relay, upstream.raw_host or "", upstream.port or 80,
                ssl=_tls() if tls else None,
                server_hostname=upstream.raw_host if tls else None)
            status, reason, answer_headers = await answer
        chosen = _check_answer(status, reason, answer_headers, key, protocols)
    except BaseException as exc:
        relay.abort()
        if isinstance(exc, HandshakeError):
            return error_response(request, exc.status, f"app {route.label}: {exc.message}")
        if isinstance(exc, TimeoutError):
            return error_response(request, 504, f"app {route.label}: upstream "
                                  f"{upstream.origin()} did not accept the websocket "
                                  f"within {connect_timeout:g}s")
        if isinstance(exc, ConnectionResetError):
            return error_response(request, 502, f"app {route.label}: websocket upstream "
                                  f"failed: {exc}")
        if isinstance(exc, OSError):
            cause = exc.strerror or str(exc)
            return error_response(request, 502, f"app {route.label}: cannot connect to "
                                  f"upstream {upstream.origin()}: {cause}")
        raise
    response = web.StreamResponse(status=101, headers={
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_key(request.headers["Sec-WebSocket-Key"]),
        **({"Sec-WebSocket-Protocol": chosen} if chosen else {}),
    })
    response.force_close()
    return relay, response


class WebSocketRelays:
    """Starts relays and keeps the open ones, so shutdown can close them cleanly."""

    def __init__(self) -> None:
        self._open: set[_Relay] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def relay(self, request: web.BaseRequest, route: Route, upstream: URL,
                    headers: Mapping[str, str], connect_timeout: float,
                    activity: ActivityCounter | None = None) -> web.StreamResponse:
        """Relay the websocket `request` asks for to `upstream` (its http(s) URL) until
        either end closes it. `headers` are the ones to send upstream, without the
        handshake's own."""
        problem = _client_handshake_problem(request)
        if problem is not None:
            return error_response(request, 400, f"app {route.label}: bad websocket "
                                  f"handshake: {problem}")
        opened = await _open_upstream(request, route, upstream, headers, connect_timeout,
                                      activity)
        if isinstance(opened, web.Response):
            return opened
        relay, response = opened
        self._open.add(relay)
        stats = route.stats
        stats.websockets += 1
        try:
            writer = await response.prepare(request)
            if isinstance(request, ProxyRequest):
                # counted at its 101: the connection ends with the websocket, and with
                # it the handler (aiohttp's end-of-request hook does not run)
                count_now(request, 101)
            client_proto = request.protocol
            client = request.transport
            if writer is None or client is None:
                raise ConnectionResetError("the client went away during the handshake")
            client_proto.keep_alive(False)
            # aiohttp's own websocket response plugs its frame reader in the same way
            client_proto.set_parser(cast(Any, relay))
            relay.start(client, client_proto)
            # (a future awaited in place: no coroutine per websocket besides this one)
            await relay.wake
            while not relay.finished:  # woken to drain the client
                relay.rearm()
                with contextlib.suppress(ConnectionError):  # gone: feed_eof ends it
                    await writer.drain()
                relay.resume_upstream()
                await relay.wake
        finally:
            stats.websockets -= 1
            self._open.discard(relay)
            relay.release()
        return response

    async def close_all(self, code: int, reason: str) -> None:
        """Send every open websocket's ends a close frame with `code`, and wait (at most
        `CLOSE_TIMEOUT_SECS`) for the connections to end."""
        relays = list(self._open)
        for relay in relays:
            relay.shutdown(code, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT_SECS
        while any(not r.finished for r in relays) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for relay in relays:
            relay.abort()
