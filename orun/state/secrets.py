"""orun's own secrets under `$ORUN_HOME`: the admin password hash and the auth key.

- `admin_password`: one line, the scrypt hash of the admin password with its salt and
  parameters (`scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`, base64): never the password.
  scrypt is memory-hard (32 MiB and 0.1-0.4 s of CPU per check at these parameters), so a stolen
  file costs an attacker as much per guess; the proxy caches checks it already made.
- `auth.key`: 32 random bytes, made once: the HMAC key of session cookies and of the
  basic-auth cache. Deleting it signs every session out.

Both files are 0600, written whole to a temporary file and renamed into place, so a
reader sees the old or the new content, never half of it. Blocking: servers call these
through `asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from orun.errors import OrunError

PASSWORD_FILE = "admin_password"
KEY_FILE = "auth.key"
#: the user name `system` auth accepts (as OpenRun's admin user)
ADMIN_USER = "admin"
_LOG2_N, _R, _P = 15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """The encoded scrypt hash of `password`, fresh salt (CPU-heavy: 0.1 s or more)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << _LOG2_N, r=_R,
                            p=_P, maxmem=_MAXMEM, dklen=_DKLEN)
    return f"scrypt${_LOG2_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the encoded hash (False for a malformed one)."""
    try:
        name, log2_n, r, p, salt64, digest64 = encoded.strip().split("$")
        if name != "scrypt":
            return False
        salt, expected = base64.b64decode(salt64), base64.b64decode(digest64)
        n, rr, pp = 1 << int(log2_n), int(r), int(p)
        if not (10 <= int(log2_n) <= 22 and 1 <= rr <= 32 and 1 <= pp <= 16):
            return False
        actual = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=rr, p=pp,
                                maxmem=max(_MAXMEM, 256 * n * rr), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` owner-only (0600) and atomically: a temporary file beside
    it, fsync, rename, so a reader (or a restart after `kill -9`) never sees half a key.
    Shared by every secret orun keeps (password hash, keys, certificates)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def set_admin_password(home: Path, password: str) -> None:
    """Store the hash of `password` as the admin password (the home is made if new)."""
    if not password:
        raise OrunError("the password must not be empty")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(home / PASSWORD_FILE, (hash_password(password) + "\n").encode())


def read_admin_hash(home: Path) -> tuple[str, int] | None:
    """(the encoded hash, the file's mtime in ns), or None when no password is set."""
    path = home / PASSWORD_FILE
    try:
        with open(path, encoding="utf-8") as f:
            info = os.fstat(f.fileno())
            return f.read().strip(), info.st_mtime_ns
    except FileNotFoundError:
        return None


def auth_key(home: Path) -> bytes:
    """The HMAC key of sessions and caches: read, or made once (0600)."""
    path = home / KEY_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # a short or concurrent file: replace it whole
        write_private(path, key)
        return key
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
