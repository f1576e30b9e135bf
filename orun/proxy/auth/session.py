"""Signed session cookies: who signed in to which app, until when.

A cookie is `<payload>.<signature>`, both base64url: the payload is compact JSON (user,
email, groups, app id, provider, expiry) and the signature its HMAC-SHA256 under the
auth key (`$ORUN_HOME/auth.key`). Nothing is kept server-side, so sessions survive a
restart; the key's deletion (or rotation) signs everyone out. A cookie names its app, so
one app's session is no good on another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from orun.proxy.auth.identity import Identity

COOKIE = "orun_session"
#: what a browser would send at most; a larger value is refused unread
MAX_COOKIE = 3800


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    app_id: str
    provider: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"orun session\0" + key).digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def make(self, session: Session) -> str:
        ident = session.identity
        data = {"u": ident.user, "e": ident.email, "g": list(ident.groups),
                "a": session.app_id, "p": session.provider, "x": int(session.expires)}
        payload = _b64(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def read(self, value: str, app_id: str, provider: str,
             now: float | None = None) -> Session | None:
        """The session in `value` when it is genuine, for this app and provider, and
        not expired; else None."""
        if not value or len(value) > MAX_COOKIE:
            return None
        payload, sep, signature = value.partition(".")
        if not sep or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(Identity(str(data["u"]), str(data["e"]),
                                       tuple(str(g) for g in data["g"])),
                              str(data["a"]), str(data["p"]), float(data["x"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.app_id != app_id or session.provider != provider:
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session
