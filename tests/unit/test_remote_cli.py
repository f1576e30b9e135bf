"""Pure parts of remote admin: `--since`, `--server` URLs, token names and format."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from orun.cli.client import Remote
from orun.cli.main import parse_since
from orun.errors import OrunError
from orun.state.tokens import PREFIX, name_problem, new_token, token_hash


@pytest.mark.parametrize(("text", "back"), [("90s", 90), ("30m", 1800), ("2h", 7200),
                                            ("7d", 7 * 86400), ("1w", 604800)])
def test_since_durations(text: str, back: int) -> None:
    assert parse_since(text, 1_000_000.0) == 1_000_000.0 - back


def test_since_times_and_nonsense() -> None:
    assert parse_since("2026-12-01T10:00", 0) == datetime(2026, 12, 1, 10, 0).timestamp()
    assert parse_since("2026-12-01T10:00+00:00", 0) == 1796119200.0
    for bad in ("", "m", "5y", "yesterday", "-3h"):
        with pytest.raises(OrunError, match="invalid --since"):
            parse_since(bad, 0)


def test_server_urls() -> None:
    assert Remote("https://h.example:8443", "t").address() == ("h.example", 8443)
    assert Remote("https://h.example", "t").address() == ("h.example", 443)
    with pytest.raises(OrunError, match="https://"):
        Remote("http://h.example:25222", "t").address()
    with pytest.raises(OrunError, match="no host"):
        Remote("https://:25223", "t").address()
    with pytest.raises(OrunError, match="invalid port"):
        Remote("https://h:port", "t").address()
    with pytest.raises(OrunError, match="cannot read the CA file"):
        Remote("https://h", "t", ca_file="/nonexistent/ca.pem").tls_context()


def test_tokens_are_long_random_and_stored_as_sha256() -> None:
    text, digest = new_token()
    other, _ = new_token()
    assert text.startswith(PREFIX) and len(text) == len(PREFIX) + 43 and text != other
    assert digest == token_hash(text) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", ["ci", "laptop-1", "a.b_c", "x" * 64])
def test_good_token_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-x", "has space", "x" * 65, "ünï", "a/b"])
def test_bad_token_names(name: str) -> None:
    assert name_problem(name) is not None
