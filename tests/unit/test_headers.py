"""Proxy header rules: hop-by-hop stripping, X-Forwarded-*, Location rewriting."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from orun.proxy.headers import (
    TrustedProxies,
    client_response_headers,
    connection_tokens,
    host_port,
    is_forwarding,
    rewrite_location,
    upstream_request_headers,
)

UNTRUSTED = TrustedProxies.parse([])
LOOPBACK = TrustedProxies.parse(["127.0.0.0/8"])


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


def upstream(pairs: list[tuple[str, str]], **kw: Any) -> dict[str, list[str]]:
    args: dict[str, Any] = {
        "peer": "203.0.113.9", "scheme": "http", "host": "example.com:25222",
        "prefix": "/app", "trusted": UNTRUSTED, "keep_host": False,
    }
    args.update(kw)
    out = upstream_request_headers(raw(*pairs), **args)
    result: dict[str, list[str]] = {}
    for k, v in out.items():
        result.setdefault(k.lower(), []).append(v)
    return result


# -- TrustedProxies ----------------------------------------------------------------------


def test_trusted_proxies() -> None:
    t = TrustedProxies.parse(["10.0.0.0/8", "192.168.1.7", "::1"])
    assert t.trusts("10.1.2.3")
    assert t.trusts("192.168.1.7")
    assert not t.trusts("192.168.1.8")
    assert t.trusts("::1")
    assert not t.trusts("not-an-ip")
    assert not t.trusts("")
    assert not t.trusts(None)
    assert not UNTRUSTED.trusts("127.0.0.1")
    # host bits set are accepted (strict=False)
    assert TrustedProxies.parse(["10.1.2.3/8"]).trusts("10.9.9.9")


def test_client_ip_walks_from_the_right() -> None:
    t = TrustedProxies.parse(["10.0.0.0/8"])
    assert t.client_ip("10.0.0.1", ["1.1.1.1", "2.2.2.2", "10.0.0.2", "10.0.0.1"]) == "2.2.2.2"
    assert t.client_ip("10.0.0.1", ["10.0.0.3", "10.0.0.1"]) == "10.0.0.3"  # all trusted
    assert t.client_ip("10.0.0.1", []) == "10.0.0.1"


# -- upstream_request_headers ----------------------------------------------------------


def test_ordinary_headers_pass_and_keep_their_case_and_order() -> None:
    h = upstream([("Accept", "text/html"), ("X-Custom", "1"), ("x-custom", "2"),
                  ("Cookie", "a=b")])
    assert h["accept"] == ["text/html"]
    assert h["x-custom"] == ["1", "2"]
    assert h["cookie"] == ["a=b"]


@pytest.mark.parametrize(
    "name",
    ["Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
     "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade"],
)
def test_hop_by_hop_headers_are_dropped(name: str) -> None:
    h = upstream([(name, "x"), ("Accept", "*/*")])
    assert name.lower() not in h
    assert h["accept"] == ["*/*"]


def test_headers_named_in_connection_are_dropped() -> None:
    h = upstream([("Connection", "X-Secret, keep-alive"), ("Connection", "x-other"),
                  ("X-Secret", "s"), ("X-Other", "o"), ("X-Kept", "k")])
    assert "x-secret" not in h
    assert "x-other" not in h
    assert h["x-kept"] == ["k"]


def test_connection_tokens() -> None:
    assert connection_tokens(None) == frozenset()
    assert connection_tokens("") == frozenset()
    assert connection_tokens(" Keep-Alive ,, X-A,") == {"keep-alive", "x-a"}


def test_forwarding_headers_from_untrusted_peer_are_replaced() -> None:
    h = upstream([
        ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Host", "evil.test"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Prefix", "/evil"),
        ("X-Real-IP", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"),
    ])
    assert h["x-forwarded-for"] == ["203.0.113.9"]
    assert h["x-real-ip"] == ["203.0.113.9"]
    assert h["x-forwarded-host"] == ["example.com:25222"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-prefix"] == ["/app"]
    assert "forwarded" not in h


def test_forwarding_headers_from_trusted_peer_are_chained() -> None:
    h = upstream(
        [("X-Forwarded-For", "198.51.100.1, 127.0.0.5"), ("X-Forwarded-For", "127.0.0.2"),
         ("X-Forwarded-Host", "public.example"), ("X-Forwarded-Proto", "https"),
         ("X-Real-IP", "1.2.3.4"), ("Forwarded", "for=1.2.3.4"),
         ("X-Forwarded-Prefix", "/outer")],
        peer="127.0.0.1", trusted=LOOPBACK,
    )
    assert h["x-forwarded-for"] == ["198.51.100.1, 127.0.0.5, 127.0.0.2, 127.0.0.1"]
    assert h["x-real-ip"] == ["198.51.100.1"]  # the rightmost untrusted hop
    assert h["x-forwarded-host"] == ["public.example"]
    assert h["x-forwarded-proto"] == ["https"]
    assert h["x-forwarded-prefix"] == ["/app"]
    assert "forwarded" not in h


def test_trusted_peer_without_forwarding_headers() -> None:
    h = upstream([], peer="127.0.0.1", trusted=LOOPBACK, scheme="https")
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["https"]
    assert h["x-forwarded-host"] == ["example.com:25222"]


def test_untrusted_peer_with_trusted_list_configured() -> None:
    h = upstream([("X-Forwarded-For", "6.6.6.6")], peer="203.0.113.9", trusted=LOOPBACK)
    assert h["x-forwarded-for"] == ["203.0.113.9"]
    assert h["x-real-ip"] == ["203.0.113.9"]


def test_forwarding_headers_are_single_valued() -> None:
    h = upstream([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Port", "1")])
    for name in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host",
                 "x-forwarded-port"):
        assert len(h[name]) == 1


FORWARDING_LIKE = [
    "X-Forwarded-Port", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Server",
    "X-Forwarded-Uri", "X-Forwarded", "X_Forwarded_For", "x_forwarded_host",
    "X-Forwarded_Proto", "X_Forwarded-Port", "X-Original-URL", "X-Original-Host",
    "X_Original_URL", "X-Rewrite-URL", "X-Real-IP", "X_Real_IP", "Forwarded",
    "X-Client-IP", "X-Cluster-Client-IP", "True-Client-IP", "CF-Connecting-IP",
    "X-Host", "X-Scheme", "Front-End-Https",
]


@pytest.mark.parametrize("name", FORWARDING_LIKE)
def test_is_forwarding(name: str) -> None:
    assert is_forwarding(name.lower())


@pytest.mark.parametrize("name", ["x-forward", "x-forwardedx", "x-origin", "forwarded-x",
                                  "x-request-id", "x_custom", "accept", "origin"])
def test_is_not_forwarding(name: str) -> None:
    assert not is_forwarding(name)


@pytest.mark.parametrize("name", FORWARDING_LIKE)
def test_forwarding_like_headers_from_untrusted_peer_are_dropped(name: str) -> None:
    h = upstream([(name, "evil"), ("X-Keep", "1")])
    own = {"x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host",
           "x-forwarded-port", "x-forwarded-prefix"}
    assert set(h) == own | {"x-keep"}
    assert all(v != ["evil"] for v in h.values())
    assert h["x-forwarded-port"] == ["25222"]


def test_trusted_peer_other_forwarding_headers_pass_but_not_underscored() -> None:
    h = upstream(
        [("X-Forwarded-Ssl", "on"), ("X-Original-URL", "/o"), ("X-Forwarded-Server", "p"),
         ("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded_Host", "evil"),
         ("X-Real-IP", "6.6.6.6"), ("Forwarded", "for=6.6.6.6")],
        peer="127.0.0.1", trusted=LOOPBACK,
    )
    assert h["x-forwarded-ssl"] == ["on"]
    assert h["x-original-url"] == ["/o"]
    assert h["x-forwarded-server"] == ["p"]
    assert "x_forwarded_for" not in h and "x-forwarded_host" not in h
    assert "forwarded" not in h
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-host"] == ["example.com:25222"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], "25222"),  # the Host's port
        ([("X-Forwarded-Port", "8443")], "8443"),
        ([("X-Forwarded-Port", "x")], "25222"),  # not a port: ignored
        ([("X-Forwarded-Host", "public.example")], "80"),
        ([("X-Forwarded-Host", "public.example"), ("X-Forwarded-Proto", "https")], "443"),
        ([("X-Forwarded-Host", "public.example:8080")], "8080"),
        ([("X-Forwarded-Proto", "HTTPS")], "25222"),
    ],
)
def test_forwarded_port_from_trusted_peer(headers: list[tuple[str, str]],
                                          expected: str) -> None:
    h = upstream(headers, peer="127.0.0.1", trusted=LOOPBACK)
    assert h["x-forwarded-port"] == [expected]


def test_forwarded_port_untrusted_ignores_inbound_and_uses_the_host() -> None:
    inbound = [("X-Forwarded-Port", "1"), ("X-Forwarded-Host", "evil:2")]
    assert upstream(inbound)["x-forwarded-port"] == ["25222"]
    assert upstream(inbound, host="example.com")["x-forwarded-port"] == ["80"]
    assert upstream(inbound, host="example.com", scheme="https")["x-forwarded-port"] == ["443"]
    # no Host header: the caller passes the listener's port
    assert upstream(inbound, host="127.0.0.1", port="25222")["x-forwarded-port"] == ["25222"]


def test_forwarded_port_websocket_too() -> None:
    h = upstream([("X-Forwarded-Port", "1"), ("X-Forwarded-Ssl", "on")], websocket=True,
                 keep_host=True)
    assert h["x-forwarded-port"] == ["25222"]
    assert "x-forwarded-ssl" not in h


@pytest.mark.parametrize(
    ("host", "scheme", "port"),
    [
        ("example.com:25222", "http", "25222"),
        ("example.com", "http", "80"),
        ("example.com", "https", "443"),
        ("[::1]:8080", "http", "8080"),
        ("[::1]", "https", "443"),
        ("example.com:", "http", "80"),
        ("example.com:x", "http", "80"),
        ("example.com:\u0661", "http", "80"),  # a non-ASCII digit is no port
        ("", "http", "80"),
    ],
)
def test_host_port(host: str, scheme: str, port: str) -> None:
    assert host_port(host, scheme) == port


@pytest.mark.parametrize(
    ("host", "forwarded_host"),
    [
        ("example.com:25222", "example.com:25222"),
        ("example.com", "example.com"),
        ("[::1]:8080", "[::1]:8080"),
        ("[2001:db8::1]", "[2001:db8::1]"),
        ("127.0.0.1:25222", "127.0.0.1:25222"),
    ],
)
def test_forwarded_host_is_the_host_as_sent(host: str, forwarded_host: str) -> None:
    """Port kept (OpenRun drops it; apps building absolute URLs need it)."""
    assert upstream([], host=host)["x-forwarded-host"] == [forwarded_host]


def test_forwarded_prefix_only_for_a_prefix() -> None:
    assert "x-forwarded-prefix" not in upstream([], prefix="")
    assert upstream([], prefix="/a/b")["x-forwarded-prefix"] == ["/a/b"]


def test_host_is_dropped_unless_kept() -> None:
    pairs = [("Host", "example.com:25222")]
    assert "host" not in upstream(pairs)
    assert upstream(pairs, keep_host=True)["host"] == ["example.com:25222"]


WS_HANDSHAKE = [
    ("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"), ("Sec-WebSocket-Protocol", "chat"),
    ("Sec-WebSocket-Accept", "a"),
]


def test_websocket_handshake_headers_dropped_for_websockets() -> None:
    pairs = [("Upgrade", "websocket"), ("Connection", "Upgrade"), *WS_HANDSHAKE,
             ("Origin", "http://example.com")]
    h = upstream(pairs, websocket=True, keep_host=True)
    for name, _ in WS_HANDSHAKE:
        assert name.lower() not in h
    assert "upgrade" not in h
    assert "connection" not in h
    assert h["origin"] == ["http://example.com"]


def test_websocket_headers_kept_for_plain_requests() -> None:
    h = upstream(WS_HANDSHAKE)
    assert h["sec-websocket-key"] == ["k"]
    assert h["sec-websocket-protocol"] == ["chat"]


def test_non_ascii_header_values_survive() -> None:
    h = upstream([("X-Name", "caf\xe9")])
    assert h["x-name"] == ["caf\xe9"]


# -- client_response_headers -------------------------------------------------------------

ORIGIN = URL("http://127.0.0.1:9000")


def response(pairs: list[tuple[str, str]], *, upstream_url: URL = ORIGIN, prefix: str = "/app",
             rewrite: bool = True) -> list[tuple[str, str]]:
    out = client_response_headers(pairs, upstream_url=upstream_url, prefix=prefix,
                                  rewrite=rewrite)
    return list(out.items())


def test_response_hop_by_hop_and_connection_listed_dropped() -> None:
    out = response([
        ("Content-Type", "text/plain"), ("Connection", "close, X-Internal"),
        ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"),
        ("X-Internal", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
    ])
    assert out == [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_response_all_connection_headers_count() -> None:
    out = response([("Connection", "X-A"), ("Connection", "X-B"), ("X-A", "1"), ("X-B", "2"),
                    ("X-C", "3")])
    assert out == [("X-C", "3")]


def test_response_location_rewritten() -> None:
    out = response([("Location", "http://127.0.0.1:9000/login?next=%2F")])
    assert out == [("Location", "/app/login?next=%2F")]


def test_response_location_kept_without_rewrite() -> None:
    loc = "http://127.0.0.1:9000/login"
    assert response([("Location", loc)], rewrite=False) == [("Location", loc)]
    assert response([("Location", "/x")], rewrite=False) == [("Location", "/x")]


# -- rewrite_location -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # absolute, to the upstream's own origin: made path-absolute, prefix added
        ("http://127.0.0.1:9000/login", "/app/login"),
        ("http://127.0.0.1:9000/", "/app/"),
        ("http://127.0.0.1:9000", "/app/"),
        ("http://127.0.0.1:9000/a?b=c#frag", "/app/a?b=c#frag"),
        ("http://127.0.0.1:9000/a%20b", "/app/a%20b"),
        ("http://127.0.0.1:9000/app/x", "/app/x"),  # already under the prefix
        # path-absolute: the prefix is added unless already there
        ("/login", "/app/login"),
        ("/", "/app/"),
        ("/?q=1", "/app/?q=1"),
        ("/app", "/app"),
        ("/app/", "/app/"),
        ("/app/x", "/app/x"),
        ("/app?x=1", "/app?x=1"),
        ("/app#top", "/app#top"),
        ("/apple", "/app/apple"),  # /app is not a segment prefix of /apple
        # left alone
        ("login", "login"),
        ("./login", "./login"),
        ("../up", "../up"),
        ("?q=1", "?q=1"),
        ("#frag", "#frag"),
        ("//cdn.example/x", "//cdn.example/x"),  # protocol-relative
        ("http://other.example/x", "http://other.example/x"),  # cross-origin
        ("http://127.0.0.1:9001/x", "http://127.0.0.1:9001/x"),  # other port
        ("https://127.0.0.1:9000/x", "https://127.0.0.1:9000/x"),  # other scheme
        ("mailto:a@b.c", "mailto:a@b.c"),
    ],
)
def test_rewrite_location(location: str, expected: str) -> None:
    assert rewrite_location(location, ORIGIN, "/app") == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://127.0.0.1:9000/x", "/x"),
        ("http://127.0.0.1:9000/", "/"),
        ("/x", "/x"),
        ("x", "x"),
        ("http://other/x", "http://other/x"),
    ],
)
def test_rewrite_location_root_app_has_no_prefix(location: str, expected: str) -> None:
    assert rewrite_location(location, ORIGIN, "") == expected


def test_default_ports_are_the_same_origin() -> None:
    up = URL("https://api.example.com/")
    assert rewrite_location("https://api.example.com:443/x", up, "/ext") == "/ext/x"
    assert rewrite_location("https://API.example.com/x", up, "/ext") == "/ext/x"
    assert rewrite_location("http://api.example.com/x", up, "/ext") == "http://api.example.com/x"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://up.example/base/login", "/ext/login"),
        ("https://up.example/base/", "/ext/"),
        ("https://up.example/base", "/ext/"),
        ("https://up.example/base?x=1", "/ext/?x=1"),
        ("https://up.example/base#top", "/ext/#top"),
        ("https://up.example/basement", "/ext/basement"),  # not under the base path
        ("https://up.example/other", "/ext/other"),
    ],
)
def test_rewrite_location_with_upstream_base_path(location: str, expected: str) -> None:
    for base in ("https://up.example/base", "https://up.example/base/"):
        assert rewrite_location(location, URL(base), "/ext") == expected


def test_rewrite_location_with_bad_absolute_url_is_left_alone() -> None:
    bad = "http://[::1/x"
    assert rewrite_location(bad, ORIGIN, "/app") == bad
