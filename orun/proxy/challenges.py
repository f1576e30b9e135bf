"""The http-01 answers to ACME challenges being validated now, read by the listeners.

Why here: the HTTP listener must answer `/.well-known/acme-challenge/<token>` before any
app routing or HTTPS redirect. The ACME manager (orun/certs/) fills this table while a
validation is in flight and empties it after; the proxy only reads it. (tls-alpn-01
answers are certificates: `Certificates.set_alpn_challenge` in tls.py.)
"""

from __future__ import annotations

#: the path prefix of HTTP-01 challenge requests (RFC 8555, section 8.3)
HTTP01_PREFIX = "/.well-known/acme-challenge/"


class Challenges:
    """Token -> key authorization (http-01). (tls-alpn-01 answers live in
    `Certificates`, which owns the listener's handshakes.)"""

    def __init__(self) -> None:
        self.http: dict[str, str] = {}

    def http_answer(self, path: str) -> str | None:
        """The body to answer an http-01 request for `path` with, else None (the
        request then goes on to the apps as any other)."""
        if not self.http or not path.startswith(HTTP01_PREFIX):
            return None
        return self.http.get(path[len(HTTP01_PREFIX):])


__all__ = ["HTTP01_PREFIX", "Challenges"]
