"""Request paths the proxy forwards: dot segments, absolute-form request targets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from orun.proxy.container import ContainerTarget
from orun.proxy.forward import resolve_rest
from orun.proxy.handler import same_authority, target_authority
from orun.proxy.target import Route

# -- resolve_rest: the path after the app prefix, as an upstream will see it ------------


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("", ""),
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/app.js", "/app.js"),
        ("/a/b.min.js", "/a/b.min.js"),
        ("/.well-known/x", "/.well-known/x"),
        ("/.hidden", "/.hidden"),
        ("/...", "/..."),
        ("/a..", "/a.."),
        ("/..a", "/..a"),
        ("/a%20b", "/a%20b"),
        ("/a%2Fb", "/a%2Fb"),  # an encoded slash alone is data: kept as sent
        ("/a%2fb/c", "/a%2fb/c"),
        ("/%252e%252e/x", "/%252e%252e/x"),  # decodes to %2e%2e once upstream: data
        ("/a;b", "/a;b"),
        ("/a//b", "/a//b"),
        # dot segments inside the app are resolved (RFC 3986 5.2.4)
        ("/a/../b", "/b"),
        ("/a/./b", "/a/b"),
        ("/./a", "/a"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/./", "/a/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e./b", "/b"),
        ("/a/%2e/b", "/a/b"),
        ("/a//../b", "/a/b"),
        ("/a/b/../../c%20d", "/c%20d"),
    ],
)
def test_resolve_rest(rest: str, expected: str) -> None:
    assert resolve_rest(rest) == expected


@pytest.mark.parametrize(
    "rest",
    [
        "/..",
        "/../x",
        "/a/../../x",
        "/./../x",
        "/%2e%2e",
        "/%2e%2e/x",
        "/%2E%2E/x",
        "/.%2E/x",
        "/%2e./x",
        # dot segments an upstream finds after decoding slashes or splitting further
        "/..%2fx",
        "/..%2Fx",
        "/%2e%2e%2fx",
        "/a%2f..%2fx",  # even when it would stay inside: refused, not guessed
        "/a%2f..",
        "/..%5cx",
        "/..\\x",
        "/a\\..\\..\\x",
        "/..;/x",
        "/..;jsessionid=1/x",
        "/a/..;/b",
        "/.;/x",
        "/%2e%2e;/x",
        # not a path at all
        "x",
        "http://h/x",
        "*",
    ],
)
def test_resolve_rest_refuses(rest: str) -> None:
    assert resolve_rest(rest) is None


# -- absolute-form request targets -----------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://h/x?q=1", ("http", "h", "/x?q=1")),
        ("HTTP://H:8080/x", ("http", "H:8080", "/x")),
        ("https://h", ("https", "h", "/")),
        ("http://h?q=1", ("http", "h", "/?q=1")),
        ("http://h/a#frag", ("http", "h", "/a")),
        ("http://[::1]:80/a", ("http", "[::1]:80", "/a")),
        ("http://user@h/a", ("http", "user@h", "/a")),
        ("http:///a", ("http", "", "/a")),
        ("ftp://h/x", None),
        ("*", None),
        ("h:443", None),
        ("/x", None),
    ],
)
def test_target_authority(target: str, expected: tuple[str, str, str] | None) -> None:
    assert target_authority(target) == expected


@pytest.mark.parametrize(
    ("authority", "host", "scheme", "same"),
    [
        ("app.localhost:8080", "app.localhost:8080", "http", True),
        ("APP.localhost:8080", "app.LOCALHOST:8080", "http", True),
        ("h:80", "h", "http", True),
        ("h", "h:80", "http", True),
        ("h:443", "h", "https", True),
        ("h:443", "h", "http", False),
        ("attacker.example", "app.localhost", "http", False),
        ("h:8080", "h", "http", False),
        ("user@h", "h", "http", False),
        ("h", "", "http", False),
        ("", "", "http", True),  # the caller refuses an empty authority itself
    ],
)
def test_same_authority(authority: str, host: str, scheme: str, same: bool) -> None:
    assert same_authority(authority, host, scheme) is same


# -- the container target resolves the rest path the same way ---------------------------


class _Forwarder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def forward(self, request: Any, route: Route, upstream: URL,
                      **_: Any) -> web.StreamResponse:
        self.sent.append(str(upstream))
        return web.Response(text="ok")


def _container(strip_app: bool) -> tuple[ContainerTarget, _Forwarder, Route]:
    forwarder = _Forwarder()
    instance = SimpleNamespace(upstream="http://127.0.0.1:9", base=URL("http://127.0.0.1:9"),
                               load=SimpleNamespace(open=0), replicas=None)
    rt = SimpleNamespace(instance=instance, activity=SimpleNamespace(open=0, last=0.0, requests=0))
    target = ContainerTarget(cast(Any, forwarder), cast(Any, None), cast(Any, rt),
                             strip_app=strip_app, preserve_host=False,
                             redirect_bare_path=True)
    return target, forwarder, Route("app_1", "/x", "/x", target)


@pytest.mark.parametrize("strip_app", [True, False])
async def test_container_target_refuses_paths_leaving_the_app(strip_app: bool) -> None:
    target, forwarder, route = _container(strip_app)
    for rest in ("/../admin", "/%2e%2e/admin", "/..%2fadmin", "/a/../../admin"):
        request = make_mocked_request("GET", "/x" + rest, headers={"Accept": "text/plain"})
        resp = await target.serve(request, route, rest)
        assert resp.status == 400
        assert isinstance(resp, web.Response) and "/x" in (resp.text or "")
    assert forwarder.sent == []


@pytest.mark.parametrize(("strip_app", "expected"), [
    (True, "http://127.0.0.1:9/b?q=1"), (False, "http://127.0.0.1:9/x/b?q=1"),
])
async def test_container_target_forwards_the_resolved_path(strip_app: bool,
                                                           expected: str) -> None:
    target, forwarder, route = _container(strip_app)
    request = make_mocked_request("GET", "/x/a/%2e%2e/b?q=1")
    resp = await target.serve(request, route, "/a/%2e%2e/b")
    assert resp.status == 200
    assert forwarder.sent == [expected]
