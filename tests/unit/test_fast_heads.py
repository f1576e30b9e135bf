"""The fast path's byte-level head builders agree with the general ones they shortcut.

The general builders (`upstream_request_headers`, `client_response_headers`) are the
specification; every combination of headers below must come out the same, byte for
byte, from `request_head_bytes` / `response_head_bytes`. Also pins the aiohttp version
the fast path's hand-over to aiohttp was verified against.
"""

from __future__ import annotations

import configparser
import itertools
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from orun.proxy.forward import request_head
from orun.proxy.headers import (
    RequestHeaders,
    TrustedProxies,
    client_response_headers,
    forwarded_lines,
    request_head_bytes,
    response_head_bytes,
    response_head_raw,
    upstream_request_headers,
)

REPO = Path(__file__).resolve().parents[2]

REQUEST_EXTRAS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"User-Agent", b"curl/8"), (b"Accept", b"*/*")],
    [(b"Connection", b"keep-alive")],
    [(b"Connection", b"Close")],
    [(b"Connection", b"x-hop"), (b"X-Hop", b"1")],
    [(b"Keep-Alive", b"300"), (b"TE", b"trailers"), (b"Proxy-Authorization", b"Basic x")],
    [(b"X-Forwarded-For", b"6.6.6.6"), (b"X-Real-IP", b"6.6.6.6")],
    [(b"X_Forwarded_For", b"6.6.6.6"), (b"X-Original-URL", b"/admin")],
    [(b"X_Custom", b"fine"), (b"Forwarded", b"for=1.2.3.4")],
    [(b"close", b"odd"), (b"Connection", b"close")],
    [(b"Cookie", b"a=1"), (b"Cookie", b"b=2"), (b"Content-Length", b"3")],
    [(b"Front-End-Https", b"on"), (b"X-Scheme", b"https"), (b"CF-Connecting-IP", b"1.1.1.1")],
    [(b"X-Orun-User", b"admin"), (b"x_orun_email", b"a@b"), (b"X-Orunner", b"kept")],
]


@pytest.mark.parametrize("extra", REQUEST_EXTRAS)
@pytest.mark.parametrize("keep_host", [False, True])
@pytest.mark.parametrize("prefix", ["", "/app"])
@pytest.mark.parametrize("host", [b"localhost:25222", b"app.example.com", b"[::1]:8080"])
def test_request_head_matches_the_general_builder(
        extra: list[tuple[bytes, bytes]], keep_host: bool, prefix: str, host: bytes) -> None:
    raw = [(b"Host", host), *extra]
    headers = upstream_request_headers(
        raw, peer="10.0.0.7", scheme="http", host=host.decode(), prefix=prefix,
        trusted=TrustedProxies.parse([]), keep_host=keep_host)
    expected = request_head("GET", "/x?y=1", headers, "127.0.0.1:9000", chunked=False)
    block = b"".join(b"\r\n" + n + b": " + v for n, v in raw)
    scanned = RequestHeaders(block)
    assert (scanned.host, scanned.hosts) == (host, 1)
    fast = request_head_bytes(
        b"GET", b"/x?y=1", scanned, None if keep_host else b"127.0.0.1:9000",
        forwarded_lines("10.0.0.7", "http", host.decode(), prefix))
    if fast is None:  # the fast builder declined: the general one is used instead
        assert any(n.lower() in (b"connection", b"close") for n, _ in extra)
        return
    assert fast == expected


RESPONSE_EXTRAS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5")],
    [(b"Connection", b"X-Internal"), (b"X-Internal", b"secret")],
    [(b"Transfer-Encoding", b"chunked"), (b"Trailer", b"X-T"), (b"Upgrade", b"h2c")],
    [(b"Location", b"http://127.0.0.1:9000/base/next")],
    [(b"Location", b"/login?next=/")],
    [(b"Location", b"https://elsewhere.example/x")],
    [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"X-Frame-Options", b"DENY")],
]


@pytest.mark.parametrize("extra", RESPONSE_EXTRAS)
@pytest.mark.parametrize("config_headers", [{}, {"X-Frame-Options": "SAMEORIGIN"}])
@pytest.mark.parametrize("prefix", ["", "/app"])
def test_response_head_matches_the_general_builder(
        extra: list[tuple[bytes, bytes]], config_headers: dict[str, str], prefix: str) -> None:
    raw = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"2"), *extra]
    base = URL("http://127.0.0.1:9000/base")
    general = client_response_headers(
        [(n.decode(), v.decode()) for n, v in raw], upstream_url=base, prefix=prefix,
        rewrite=True)
    general.update(config_headers)
    expected = sorted((k.lower(), v) for k, v in general.items())
    head, chunked = response_head_bytes(
        200, b"OK", raw, base=base, prefix=prefix,
        extra="".join(f"{k}: {v}\r\n" for k, v in config_headers.items()).encode(),
        extra_names=frozenset(k.lower().encode() for k in config_headers),
        body=True, close=False)
    assert not chunked  # it has a Content-Length
    assert _header_set(head) == expected
    # the raw builder (regular expressions over the upstream's bytes) agrees too, and
    # sets HTTP/1.1 whatever version the upstream spoke
    for version in (b"HTTP/1.1", b"HTTP/1.0"):
        raw_head = version + b" 200 OK\r\n" + b"\r\n".join(n + b": " + v for n, v in raw)
        head, chunked = response_head_raw(
            200, raw_head, base=base, prefix=prefix,
            extra="".join(f"{k}: {v}\r\n" for k, v in config_headers.items()).encode(),
            extra_names=frozenset(k.lower().encode() for k in config_headers),
            body=True, close=False)
        assert not chunked
        assert _header_set(head) == expected


def _header_set(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK" and lines[-2:] == ["", ""]
    return sorted((k.lower(), v) for k, _, v in (line.partition(": ") for line in lines[1:-2]))


@pytest.mark.parametrize(("body", "length", "close"),
                         list(itertools.product([True, False], [True, False], [True, False])))
def test_response_framing_lines(body: bool, length: bool, close: bool) -> None:
    raw = [(b"Content-Length", b"5")] if length else [(b"Transfer-Encoding", b"chunked")]
    head, chunked = response_head_bytes(204 if not body else 200, b"X", raw,
                                        base=URL("http://h"), prefix="", extra=b"",
                                        extra_names=frozenset(), body=body, close=close)
    assert chunked == (body and not length)
    assert (b"Transfer-Encoding: chunked\r\n" in head) == chunked
    assert (b"Connection: close\r\n" in head) == close
    assert head.lower().count(b"transfer-encoding") == int(chunked)


def test_aiohttp_is_the_pinned_version() -> None:
    """The fast path hands connections to aiohttp's `web.Server` protocol mid-stream
    (`transport.set_protocol`, then `connection_made` and `data_received` with the
    bytes already read). That was verified against this exact version; a new one must
    be re-verified (tests/e2e/test_fast_path.py) before the pin moves."""
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    pins = [line.strip() for line in setup["options"]["install_requires"].splitlines()
            if line.strip().startswith("aiohttp")]
    assert pins == [f"aiohttp=={aiohttp.__version__}"]


@pytest.mark.parametrize(("base", "strip", "rest", "query", "expected"), [
    ("http://h:9/public", True, "", "", "http://h:9/public"),
    ("http://h:9/public", True, "/a/b", "x=1", "http://h:9/public/a/b?x=1"),
    ("http://h:9/public", False, "/a", "", "http://h:9/public/p/a"),
    ("http://h:9", True, "", "", "http://h:9/"),
    ("http://h:9/", True, "/", "", "http://h:9/"),
    ("http://h:9", False, "", "q", "http://h:9/p?q"),
    ("http://h/x?a=1", True, "", "", "http://h/x?a=1"),
    ("http://h/x?a=1", True, "/y", "b=2", "http://h/x/y?a=1&b=2"),
    ("https://h/deep/er/", True, "/a/../b", "", "https://h/deep/er/b"),
    ("http://h:80/x", True, "/z", "", "http://h/x/z"),
    ("HTTP://H/x", True, "", "", "http://h/x"),
])
def test_proxy_app_upstream_target(base: str, strip: bool, rest: str, query: str,
                                   expected: str) -> None:
    """What a `proxy` app's upstream is asked for: the same on both request paths."""
    from orun.proxy.external import ExternalProxyTarget
    from orun.proxy.target import Route

    target = ExternalProxyTarget.create(None, base, False, {}, strip_app=strip)  # type: ignore[arg-type]
    plan = target.fast(Route("app", "/p", "/p", target), rest, query)
    assert plan is not None
    assert target.origin + plan.target == expected
