"""SSH keys that may `git push` to orun: what a key line must look like, its
fingerprint, and what a key's scope lets it push to.

A key is stored as its canonical OpenSSH line (`type base64`, the comment dropped: it
is free text a user pasted) with its SHA256 fingerprint, which is what the SSH server
compares at sign-in and what `orun key list` shows. A scope is `admin` (any app, and a
push may create one) or an app path glob (`/team/*`, `docs.:**`): a push to a path
outside it is refused before any git process runs.
"""

from __future__ import annotations

import re

import asyncssh

from orun.errors import OrunError
from orun.state.paths import AppPath, PathGlob

ADMIN_SCOPE = "admin"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
#: key types a git client offers today (RSA only with at least 2048 bits)
_ALLOWED_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "ssh-rsa", "sk-ssh-ed25519@openssh.com",
                  "sk-ecdsa-sha2-nistp256@openssh.com")
MIN_RSA_BITS = 2048


def name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return (f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit")
    return None


def parse_public_key(text: str) -> tuple[str, str]:
    """(the canonical `type base64` line, its SHA256 fingerprint) of one OpenSSH public
    key line; OrunError saying what is wrong otherwise (a private key included)."""
    if "PRIVATE KEY" in text:
        raise OrunError("that is a private key: give the public key (the .pub file)")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise OrunError("give exactly one public key line (as in ~/.ssh/id_ed25519.pub)"
                        if lines else "no public key given")
    line = lines[0]
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise OrunError(f"not an OpenSSH public key line: {exc}") from None
    algorithm = key.get_algorithm()
    if algorithm not in _ALLOWED_TYPES:
        raise OrunError(f"key type {algorithm} is not accepted (use ssh-ed25519)")
    if algorithm == "ssh-rsa":
        bits = getattr(key.pyca_key, "key_size", 0)
        if bits < MIN_RSA_BITS:
            raise OrunError(f"an RSA key of {bits} bits is too weak (at least "
                            f"{MIN_RSA_BITS}; better ssh-ed25519)")
    canonical = key.export_public_key("openssh").decode().split()[:2]
    return " ".join(canonical), key.get_fingerprint("sha256")


def scope_problem(scope: str, default_domain: str) -> str | None:
    if scope == ADMIN_SCOPE:
        return None
    try:
        PathGlob.parse(scope, default_domain)
    except OrunError as exc:
        return f"invalid key scope {scope!r}: {exc.message} (or use 'admin')"
    if scope.strip().lower() in ("", "all", "*:**"):
        return "a key for every app is an admin key: use --scope admin"
    return None


def scope_allows(scope: str, path: AppPath, default_domain: str) -> bool:
    """May a key of `scope` push to the app at `path`?"""
    if scope == ADMIN_SCOPE:
        return True
    try:
        return PathGlob.parse(scope, default_domain).matches(path)
    except OrunError:
        return False
