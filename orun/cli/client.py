"""A small synchronous client for the admin API over the unix socket.

The CLI is a short-lived process, so plain `http.client` keeps its start-up fast (no
event loop, no aiohttp import) and its errors simple.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from orun.control.unixpath import usable_socket_path
from orun.errors import OrunError

TIMEOUT_SECS = 600.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class AdminClient:
    def __init__(self, socket_path: Path, timeout: float = TIMEOUT_SECS) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: Any = None) -> Any:
        url = "/_orun" + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = _UnixConnection(usable_socket_path(self.socket_path), self.timeout)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError):
            raise OrunError(
                f"cannot reach the orun server: no server is listening on {self.socket_path} "
                "(start it with 'orun serve', or set ORUN_HOME to the server's home)"
            ) from None
        except TimeoutError:
            raise OrunError(f"the orun server did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise OrunError(f"cannot reach the orun server at {self.socket_path}: "
                            f"{exc.strerror or exc}") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if resp.status >= 400:
            if isinstance(data, dict) and "message" in data:
                raise OrunError(str(data["message"]), status=resp.status)
            raise OrunError(raw.decode("utf-8", "replace").strip() or f"HTTP {resp.status}",
                            status=resp.status)
        return data
