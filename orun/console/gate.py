"""Who may use the console: sessions, CSRF tokens, origins and the HTTPS rule.

- A session is a signed cookie (the proxy's `SessionSigner`, HMAC-SHA256 under the
  auth key) naming the actor, the way they signed in (`password` or `token`) and the
  scope, with an expiry. Its app id is `CONSOLE_ID`, which no app has, so an app's
  session cookie is no console session and the other way round. HttpOnly,
  SameSite=Strict, Path=/_orun/console, Secure when served over HTTPS.
- Every action is a POST carrying a CSRF token: an HMAC of the session cookie under
  a key of its own, so it is good for that session only; and the request's Origin (or,
  without one, its Referer) must be the console's own origin.
- A password or cookie must not cross plain HTTP to another machine: a plain HTTP
  request from a non-loopback client is sent to the HTTPS listener (or refused when
  there is none).

Pure logic, no I/O: the pages call it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass

from orun.proxy.auth.identity import Identity
from orun.proxy.auth.session import Session, SessionSigner

PREFIX = "/_orun/console"
COOKIE = "orun_console"
#: the session's app id: no app can have it (app ids start with `app_`)
CONSOLE_ID = "_console"


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who is signed in: `actor` goes into the audit trail; `scope` is admin or read."""

    actor: str
    method: str
    scope: str
    #: the token's name (method `token`): checked on every request, so revoking the
    #: token ends its sessions
    token: str
    expires: float
    #: (method `password`) the password's fingerprint when it was given: a session
    #: whose fingerprint is not the current password's is over
    password: str = ""

    @property
    def may_act(self) -> bool:
        return self.scope == "admin"


class Gate:
    def __init__(self, key: bytes) -> None:
        self._signer = SessionSigner(key)
        self._csrf_key = hashlib.sha256(b"orun console csrf\0" + key).digest()

    def issue(self, method: str, scope: str, token: str, ttl: float,
              now: float | None = None, password: str = "") -> str:
        """A session cookie value for someone who just signed in."""
        now = time.time() if now is None else now
        user = "admin" if method == "password" else token
        identity = Identity(user, password, (scope, token, f"{now:.6f}"))
        return self._signer.make(Session(identity, CONSOLE_ID, method, now + ttl))

    def read(self, value: str, now: float | None = None) -> ConsoleUser | None:
        """The user of a genuine, unexpired session cookie, else None."""
        for method in ("password", "token"):
            session = self._signer.read(value, CONSOLE_ID, method, now)
            if session is None:
                continue
            groups = session.identity.groups
            if len(groups) != 3 or groups[0] not in ("admin", "read"):
                return None
            scope, token, _issued = groups
            actor = f"console:{session.identity.user}"
            return ConsoleUser(actor, method, scope, token, session.expires,
                               session.identity.email)
        return None

    def csrf(self, cookie: str) -> str:
        """The CSRF token of the session in `cookie` (what its forms carry)."""
        return hmac.new(self._csrf_key, cookie.encode("ascii", "replace"),
                        hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str, token: str) -> bool:
        return bool(cookie) and bool(token) and hmac.compare_digest(self.csrf(cookie), token)


def same_origin(origin: str, referer: str, scheme: str, host: str) -> bool:
    """Whether a POST comes from the console's own pages: its Origin header (or, when a
    browser sent none, its Referer) names this scheme and host. Neither: refused."""
    own = f"{scheme}://{host}".lower()
    if origin:
        return origin.lower() == own
    if referer:
        return referer.lower() == own or referer.lower().startswith(own + "/")
    return False


def is_loopback(remote: str) -> bool:
    try:
        return ipaddress.ip_address(remote.partition("%")[0]).is_loopback
    except ValueError:
        return remote == ""  # a unix socket or an in-process test client


def host_name(host: str) -> str:
    """The name part of a Host header (no port, IPv6 brackets kept off)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.partition(":")[0].lower()


def console_host(host: str, default_domain: str, own_domain: str = "") -> bool:
    """The console answers on its own name (`console.domain`) only, when it has one;
    else on the default domain, `localhost` and plain IP addresses (a machine reached
    by its address has no other name), never on the apps' other domains."""
    name = host_name(host)
    if own_domain:
        return name == own_domain.lower()
    if name in (default_domain.lower(), "localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
