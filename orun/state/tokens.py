"""API tokens: how they look, how they are kept.

A token is `orun_` followed by 32 random bytes (urlsafe base64): the prefix lets
secret scanners and people recognise it, the random part makes guessing hopeless, so a
plain sha256 of it is a safe thing to store (no salt or slow hash is needed for a
secret with 256 bits of entropy; they exist for low-entropy passwords). The token text
itself is shown once, when it is made, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "orun_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_token() -> tuple[str, str]:
    """(the token text, its hash)."""
    text = PREFIX + secrets.token_urlsafe(32)
    return text, token_hash(text)


def token_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a token, or None."""
    if not _NAME.fullmatch(name):
        return (f"invalid token name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
    return None
