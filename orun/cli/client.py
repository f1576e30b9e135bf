"""A small synchronous client for the admin API: over the unix socket, or over HTTPS
to a remote orun with an API token (`orun --server https://host:25223`).

The CLI is a short-lived process, so plain `http.client` keeps its start-up fast (no
event loop, no aiohttp import) and its errors simple.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

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


#: where the admin API lives on a remote orun's HTTPS listener
REMOTE_PREFIX = "/_orun/api"


@dataclass(frozen=True, slots=True)
class Remote:
    """A remote orun: its HTTPS URL, the API token, and how to check its certificate."""

    url: str
    token: str
    ca_file: str | None = None
    insecure: bool = False

    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        if parts.scheme != "https":
            raise OrunError(f"--server {self.url}: use an https:// URL (the admin API is "
                            "never served over plain HTTP)")
        if not parts.hostname:
            raise OrunError(f"--server {self.url}: no host name in the URL")
        try:
            port = parts.port or 443
        except ValueError:
            raise OrunError(f"--server {self.url}: invalid port") from None
        return parts.hostname, port

    def tls_context(self) -> ssl.SSLContext:
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise OrunError(f"cannot read the CA file {self.ca_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None


class AdminClient:
    def __init__(self, socket_path: Path, timeout: float = TIMEOUT_SECS,
                 remote: Remote | None = None, via: str = "") -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.remote = remote
        #: how the socket is reached when it is not this machine's (an SSH tunnel's URL)
        self.via = via

    def _connection(self) -> http.client.HTTPConnection:
        if self.remote is None:
            return _UnixConnection(usable_socket_path(self.socket_path), self.timeout,
                                   str(self.socket_path))
        host, port = self.remote.address()
        return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                           context=self.remote.tls_context())

    @property
    def _where(self) -> str:
        return self.remote.url if self.remote is not None else str(self.socket_path)

    def _open(self, method: str, path: str, query: dict[str, Any] | None,
              body: Any) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        url = (REMOTE_PREFIX if self.remote is not None else "/_orun") + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = self._connection()
        headers = {"Accept": "application/json"}
        if self.remote is not None:
            headers["Authorization"] = f"Bearer {self.remote.token}"
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
        if self.remote is not None:
            return self._remote_error(exc)
        if self.via and isinstance(exc, (OSError, http.client.HTTPException)):
            # the tunnel accepted; the far end could not reach orun's socket there
            return OrunError(f"cannot reach the orun server through {self.via}: no server "
                             "answers on its admin socket there (is orun running, and is "
                             "the path its home?)")
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

    def _remote_error(self, exc: BaseException) -> BaseException:
        where = self._where
        if isinstance(exc, ssl.SSLCertVerificationError):
            return OrunError(
                f"cannot verify the TLS certificate of {where}: "
                f"{exc.verify_message or exc.reason} (pass the server's CA with --ca-file "
                "or ORUN_CA_FILE, or --insecure to skip the check)")
        if isinstance(exc, ssl.SSLError):
            return OrunError(f"TLS handshake with {where} failed: {exc.reason or exc}")
        if isinstance(exc, ConnectionRefusedError):
            return OrunError(f"cannot reach the orun server at {where}: connection refused")
        if isinstance(exc, socket.gaierror):
            return OrunError(f"cannot reach the orun server at {where}: unknown host")
        if isinstance(exc, TimeoutError):
            return OrunError(f"the orun server at {where} did not answer within "
                             f"{self.timeout:g}s")
        if isinstance(exc, OSError):
            return OrunError(f"cannot reach the orun server at {where}: "
                             f"{exc.strerror or exc}")
        if isinstance(exc, http.client.HTTPException):
            return OrunError(f"the orun server at {where} broke the connection: "
                             f"{exc.__class__.__name__}")
        return exc

    def _raise_for(self, resp: http.client.HTTPResponse, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if resp.status == 401 and self.remote is not None:
            raise OrunError(f"{self._where} refused the API token (401 unauthorized): it is "
                            "unknown, revoked or expired (set ORUN_TOKEN or --token-file)",
                            status=401)
        not_api = not isinstance(data, dict) if resp.status < 400 else \
            resp.status == 404 and not (isinstance(data, dict) and "code" in data)
        if self.remote is not None and not_api:
            # an app answered: the path is not kept for the admin API there
            raise OrunError(f"{self._where} does not serve the admin API: turn on "
                            "security.admin_over_tcp in its config", status=resp.status)
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
