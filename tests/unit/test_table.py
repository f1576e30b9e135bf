"""The routing table: Host header to domain, longest-prefix app matching."""

from __future__ import annotations

from typing import Any

import pytest

from orun.proxy.target import Route
from orun.routing.table import EMPTY_TABLE, RouteTable, host_to_domain


class DummyTarget:
    """Stands in for a proxy target; the table never calls it."""

    def __init__(self, name: str) -> None:
        self.name = name


def route(app_id: str, prefix: str, label: str | None = None) -> Route:
    target: Any = DummyTarget(app_id)
    return Route(app_id=app_id, label=label or (prefix or "/"), prefix=prefix, target=target)


def table(*entries: tuple[str, str, str], default_domain: str = "localhost") -> RouteTable:
    """entries: (domain, app path, app id)."""
    routes = [(d, p, route(app_id, "" if p == "/" else p)) for d, p, app_id in entries]
    return RouteTable.build(1, default_domain, routes)


def hit(t: RouteTable, host: str, path: str) -> tuple[str, str] | None:
    found = t.match(host, path)
    return None if found is None else (found[0].app_id, found[1])


# -- host_to_domain --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("example.com", "example.com"),
        ("example.com:8080", "example.com"),
        ("EXAMPLE.com", "example.com"),
        ("Example.Com:443", "example.com"),
        ("example.com.", "example.com"),  # fully qualified form
        ("localhost", "localhost"),
        ("localhost:25222", "localhost"),
        ("127.0.0.1", "localhost"),
        ("127.0.0.1:25222", "localhost"),
        ("[::1]", "localhost"),
        ("[::1]:25222", "localhost"),
        ("[fe80::1]:80", "[fe80::1]"),
        ("[FE80::1]", "[fe80::1]"),
        ("10.0.0.5:80", "10.0.0.5"),
    ],
)
def test_host_to_domain(host: str, domain: str) -> None:
    assert host_to_domain(host, "default.test") == domain


def test_empty_host_is_the_default_domain() -> None:
    assert host_to_domain("", "default.test") == "default.test"
    assert host_to_domain("", "localhost") == "localhost"


# -- RouteTable.match -----------------------------------------------------------------


@pytest.fixture
def routes() -> RouteTable:
    return table(
        ("localhost", "/", "root"),
        ("localhost", "/a", "a"),
        ("localhost", "/a/b", "ab"),
        ("localhost", "/x", "x"),
        ("localhost", "/x_cl_stage", "x-stage"),
        ("example.com", "/", "ex-root"),
        ("example.com", "/api", "ex-api"),
        ("noroot.test", "/app", "noroot-app"),
    )


@pytest.mark.parametrize(
    ("path", "app_id", "rest"),
    [
        ("/a", "a", ""),
        ("/a/", "a", "/"),
        ("/a/page", "a", "/page"),
        ("/a/page/", "a", "/page/"),
        ("/a/b", "ab", ""),
        ("/a/b/", "ab", "/"),
        ("/a/b/c/d", "ab", "/c/d"),
        ("/a/bc", "a", "/bc"),  # /a/b must not match /a/bc
        ("/ab", "root", "/ab"),  # /a must not match /ab
        ("/abc/d", "root", "/abc/d"),
        ("/", "root", "/"),
        ("", "root", ""),
        ("/other/deep/path", "root", "/other/deep/path"),
        ("/x", "x", ""),
        ("/x/y", "x", "/y"),
        ("/x_cl_stage", "x-stage", ""),
        ("/x_cl_stage/y", "x-stage", "/y"),
        ("/x_cl_stagey", "root", "/x_cl_stagey"),
        ("/a//b", "a", "//b"),
    ],
)
def test_longest_prefix_on_segment_boundary(
    routes: RouteTable, path: str, app_id: str, rest: str
) -> None:
    assert hit(routes, "localhost", path) == (app_id, rest)


def test_rest_joined_with_prefix_gives_back_the_path(routes: RouteTable) -> None:
    for path in ["/a", "/a/", "/a/b/c", "/ab", "/", "/x_cl_stage/q/"]:
        found = routes.match("localhost", path)
        assert found is not None
        assert found[0].prefix + found[1] == path


def test_host_variants_reach_the_same_domain(routes: RouteTable) -> None:
    for host in ["localhost", "LOCALHOST:25222", "127.0.0.1:25222", "[::1]:8080", ""]:
        assert hit(routes, host, "/a/q") == ("a", "/q")


def test_domain_apps(routes: RouteTable) -> None:
    assert hit(routes, "example.com", "/api/v1") == ("ex-api", "/v1")
    assert hit(routes, "example.com:8443", "/api") == ("ex-api", "")
    assert hit(routes, "Example.COM", "/a") == ("ex-root", "/a")  # not localhost's /a
    assert hit(routes, "example.com", "/apiv2") == ("ex-root", "/apiv2")


def test_domain_without_root_app_does_not_fall_back(routes: RouteTable) -> None:
    assert hit(routes, "noroot.test", "/app/x") == ("noroot-app", "/x")
    assert hit(routes, "noroot.test", "/other") is None
    assert hit(routes, "noroot.test", "/") is None
    assert hit(routes, "noroot.test", "/ap") is None


def test_unknown_domain_is_no_match(routes: RouteTable) -> None:
    assert hit(routes, "unknown.test", "/a") is None
    assert hit(routes, "unknown.test:80", "/") is None


def test_no_root_app_leaves_other_paths_unmatched() -> None:
    t = table(("localhost", "/a", "a"))
    assert hit(t, "localhost", "/a/x") == ("a", "/x")
    assert hit(t, "localhost", "/b") is None
    assert hit(t, "localhost", "/") is None
    assert hit(t, "localhost", "/ab") is None


def test_non_slash_paths_fall_to_root() -> None:
    t = table(("localhost", "/", "root"), ("localhost", "/a", "a"))
    assert hit(t, "localhost", "*") == ("root", "*")


def test_default_domain_of_the_table_is_used_for_empty_host() -> None:
    t = table(("example.org", "/", "root"), default_domain="example.org")
    assert hit(t, "", "/x") == ("root", "/x")
    assert hit(t, "localhost", "/x") is None


def test_len_and_apps(routes: RouteTable) -> None:
    assert len(routes) == 8
    assert sorted(r.app_id for r in routes.apps()) == sorted(
        ["root", "a", "ab", "x", "x-stage", "ex-root", "ex-api", "noroot-app"]
    )


def test_target_is_returned_untouched(routes: RouteTable) -> None:
    found = routes.match("localhost", "/a")
    assert found is not None
    assert isinstance(found[0].target, DummyTarget)
    assert found[0].target.name == "a"


def test_table_is_read_only(routes: RouteTable) -> None:
    with pytest.raises(TypeError):
        routes.domains["new"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        routes.domains["localhost"]["/new"] = route("n", "/new")  # type: ignore[index]


def test_build_keeps_the_last_route_for_a_duplicate_path() -> None:
    t = RouteTable.build(3, "localhost", [
        ("localhost", "/a", route("first", "/a")),
        ("localhost", "/a", route("second", "/a")),
    ])
    assert t.version == 3
    assert hit(t, "localhost", "/a") == ("second", "")


def test_empty_table_matches_nothing() -> None:
    assert len(EMPTY_TABLE) == 0
    assert EMPTY_TABLE.match("localhost", "/") is None
    assert EMPTY_TABLE.apps() == []


# -- cost with many apps ----------------------------------------------------------------


class CountingPaths(dict[str, Route]):
    """A domain's path map that counts the lookups `match` makes in it."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        CountingPaths.lookups += 1
        return super().get(key, default)


def counted(apps: int) -> RouteTable:
    """A table with `apps` apps at /app<i> plus `apps` domains, on counting maps."""
    paths = CountingPaths({f"/app{i}": route(f"a{i}", f"/app{i}") for i in range(apps)})
    paths["/deep/er"] = route("deep", "/deep/er")
    domains: dict[str, Any] = {"localhost": paths}
    for i in range(apps):
        domains[f"d{i}.test"] = CountingPaths({"/": route(f"d{i}", "")})
    return RouteTable(1, "localhost", domains)


@pytest.mark.parametrize(
    ("host", "path"),
    [("localhost", "/app3/x/y"), ("localhost", "/deep/er/z"), ("d7.test", "/any/where"),
     ("localhost", "/nothing/here"), ("nowhere.test", "/")],
)
def test_a_lookup_costs_the_same_with_10_or_10000_apps(host: str, path: str) -> None:
    """`match` makes one dict lookup per path segment, whatever the number of apps."""
    miss = host == "nowhere.test" or path.startswith("/nothing")
    costs = []
    for apps in (10, 10_000):
        t = counted(apps)
        CountingPaths.lookups = 0
        assert (t.match(host, path) is None) == miss
        costs.append(CountingPaths.lookups)
    assert costs[0] == costs[1] <= path.count("/") + 1
