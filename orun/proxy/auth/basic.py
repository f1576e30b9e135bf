"""`system` auth: HTTP basic auth as orun's admin user.

The password's scrypt hash lives in `$ORUN_HOME/admin_password` (`orun password` writes
it; orun/state/secrets.py). scrypt costs a tenth of a second of CPU, so:

- a check runs in a thread (`asyncio.to_thread`), never on the event loop;
- a verified `Authorization` value is remembered by its HMAC (keyed with the auth key,
  so the cache holds nothing a password can be recovered from), and a repeated request
  costs one HMAC and a dict lookup; the cache is dropped when the password file changes
  (its mtime is looked at, in a thread, at most once a second);
- failed attempts are counted per client address: past `auth.max_failures_per_minute`
  in a minute the address gets 429 with Retry-After until the minute is over, so
  guessing is slow and cannot keep the CPU busy with scrypt. An attempt counts as a
  failure from the moment it is checked (and is forgiven when it succeeds), so a burst
  of parallel guesses is limited too; at most `MAX_VERIFYING` checks run at once, so
  they never take every worker thread the rest of orun uses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orun.state.secrets import ADMIN_USER, read_admin_hash, verify_password

CACHE_SIZE = 1024
MAX_VERIFYING = 2
STAT_INTERVAL = 1.0
WINDOW_SECS = 60.0


@dataclass(frozen=True, slots=True)
class BasicResult:
    """The outcome of one check: a user, or why not (`limited`: too many failures)."""

    user: str | None
    reason: str = ""
    #: this credential was verified just now (a sign-in), not taken from the cache
    fresh: bool = False
    retry_after: int = 0


class FailureLimiter:
    """Failed attempts per client address over a sliding minute."""

    def __init__(self, limit: Callable[[], int], clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._failures: dict[str, list[float]] = {}

    def _recent(self, remote: str) -> list[float]:
        now = self._clock()
        times = [t for t in self._failures.get(remote, ()) if now - t < WINDOW_SECS]
        if times:
            self._failures[remote] = times
        else:
            self._failures.pop(remote, None)
        return times

    def blocked_for(self, remote: str) -> int:
        """Seconds this address must wait (0: it may try)."""
        times = self._recent(remote)
        if len(times) < self._limit():
            return 0
        return max(1, int(WINDOW_SECS - (self._clock() - times[0])) + 1)

    def forgive(self, remote: str) -> None:
        """Take back the last failure counted for `remote` (the attempt succeeded)."""
        times = self._failures.get(remote)
        if times:
            times.pop()

    def fail(self, remote: str) -> None:
        if len(self._failures) > 10_000:  # bounded: forget the quietest addresses
            for key in list(self._failures)[:5_000]:
                del self._failures[key]
        self._failures.setdefault(remote, []).append(self._clock())


class SystemAuth:
    def __init__(self, home: Path, key: bytes, limit: Callable[[], int]) -> None:
        self._home = home
        self._key = key
        self._hash: str | None = None
        self._mtime: int | None = None
        self._checked = -1e9
        self._refresh_lock = asyncio.Lock()
        #: HMAC of an Authorization value -> the user it was verified as
        self._cache: dict[bytes, str] = {}
        self.limiter = FailureLimiter(limit, time.monotonic)
        self._verifying = asyncio.Semaphore(MAX_VERIFYING)

    async def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < STAT_INTERVAL:
            return
        async with self._refresh_lock:
            if time.monotonic() - self._checked < STAT_INTERVAL:
                return
            found = await asyncio.to_thread(read_admin_hash, self._home)
            self._checked = time.monotonic()
            encoded, mtime = found if found is not None else (None, None)
            if mtime != self._mtime or encoded != self._hash:
                self._hash, self._mtime = encoded, mtime
                self._cache.clear()

    async def fingerprint(self) -> str:
        """A keyed digest of the current admin password hash ("" when none is set):
        sessions made by signing in with the password carry it, so changing the
        password (`orun password`) ends them."""
        await self._refresh()
        if self._hash is None:
            return ""
        return hmac.new(self._key, b"password\0" + self._hash.encode(),
                        hashlib.sha256).hexdigest()[:32]

    async def check(self, authorization: str, remote: str) -> BasicResult:
        await self._refresh()
        if self._hash is None:
            return BasicResult(None, "no admin password is set (run `orun password`)")
        if not authorization:
            return BasicResult(None, "no credentials")
        digest = hmac.new(self._key, authorization.encode("latin-1", "replace"),
                          hashlib.sha256).digest()
        user = self._cache.get(digest)
        if user is not None:
            return BasicResult(user)
        wait = self.limiter.blocked_for(remote)
        if wait:
            return BasicResult(None, "too many failed attempts", retry_after=wait)
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            self.limiter.fail(remote)
            return BasicResult(None, "not basic auth")
        try:
            name, sep, password = base64.b64decode(value.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            self.limiter.fail(remote)
            return BasicResult(None, "malformed credentials")
        encoded = self._hash
        self.limiter.fail(remote)  # until it is known to be right
        ok = False
        if sep and name == ADMIN_USER:
            async with self._verifying:
                ok = await asyncio.to_thread(verify_password, password, encoded)
        if not ok:
            return BasicResult(None, "wrong user or password")
        self.limiter.forgive(remote)
        if encoded != self._hash:  # the password changed while this one was checked
            return BasicResult(None, "the password changed")
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = name
        return BasicResult(name, fresh=True)
