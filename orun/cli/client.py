"""A small synchronous client for the admin API over the unix socket.

The CLI is a short-lived process, so plain `http.client` keeps its start-up fast (no
event loop, no aiohttp import) and its errors simple.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from orun.errors import OrunError
from orun.state.unixpath import usable_socket_path

TIMEOUT_SECS = 600.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float, shown: str) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path
        self._shown = shown

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
            check_server_peer(sock, self._shown)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def check_server_peer(sock: socket.socket, path: str) -> None:
    """Refuse a socket whose server runs as another user, before anything is sent.

    Requests carry params (tokens, passwords in URLs). A socket file proves nothing
    about who listens on it (another user who could write to the run folder can put
    their own there), so the kernel is asked who the peer process is (SO_PEERCRED).
    Our own user and root (an admin's server) are accepted.
    """
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    me = os.geteuid()
    if uid not in (me, 0):
        raise OrunError(
            f"refusing to talk to the server on {path}: it runs as uid {uid}, not as you "
            f"(uid {me}) or root, so it is not your orun; nothing was sent (check who "
            "owns $ORUN_HOME and its run folder)")


class AdminClient:
    def __init__(self, socket_path: Path, timeout: float = TIMEOUT_SECS) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _open(self, method: str, path: str, query: dict[str, Any] | None,
              body: Any) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        url = "/_orun" + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = _UnixConnection(usable_socket_path(self.socket_path), self.timeout,
                               str(self.socket_path))
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, url, body=payload, headers=headers)
            return conn, conn.getresponse()
        except BaseException as exc:
            conn.close()
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            return OrunError(
                f"cannot reach the orun server: no server is listening on {self.socket_path} "
                "(start it with 'orun serve', or set ORUN_HOME to the server's home)"
            )
        if isinstance(exc, TimeoutError):
            return OrunError(f"the orun server did not answer within {self.timeout:g}s")
        if isinstance(exc, OSError):
            return OrunError(f"cannot reach the orun server at {self.socket_path}: "
                             f"{exc.strerror or exc}")
        return exc

    @staticmethod
    def _raise_for(resp: http.client.HTTPResponse, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if resp.status >= 400:
            if isinstance(data, dict) and "message" in data:
                err = OrunError(str(data["message"]), status=resp.status)
                err.detail = str(data.get("detail") or "")
                raise err
            raise OrunError(raw.decode("utf-8", "replace").strip() or f"HTTP {resp.status}",
                            status=resp.status)
        return data

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: Any = None) -> Any:
        conn, resp = self._open(method, path, query, body)
        try:
            raw = resp.read()
        except BaseException as exc:
            raise self._transport_error(exc) from None
        finally:
            conn.close()
        return self._raise_for(resp, raw)

    def stream(self, method: str, path: str, *, query: dict[str, Any] | None = None,
               body: Any = None) -> Iterator[str]:
        """The response body line by line as the server writes it (logs, progress)."""
        conn, resp = self._open(method, path, query, body)
        try:
            if resp.status >= 400:
                self._raise_for(resp, resp.read())
            while True:
                try:
                    line = resp.readline()
                except BaseException as exc:
                    raise self._transport_error(exc) from None
                if not line:
                    return
                yield line.decode("utf-8", "replace").rstrip("\n")
        finally:
            conn.close()
