"""App paths (`[domain:]path`), create-time checks, overlap and path globs."""

from __future__ import annotations

import pytest

from orun.errors import AppPathError, OrunError
from orun.state.paths import (
    AppPath,
    PathGlob,
    PathIndex,
    normalize_domain,
    parse_app_path,
    path_ancestors,
    paths_overlap,
    validate_for_create,
)

DEFAULT = "localhost"


# -- parse_app_path ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("/", "", "/"),
        ("/app", "", "/app"),
        ("/a/b/c", "", "/a/b/c"),
        ("/app/", "", "/app"),  # trailing slash trimmed
        ("/app///", "", "/app"),
        ("//", "", "/"),
        ("example.com:/app", "example.com", "/app"),
        ("example.com:/", "example.com", "/"),
        ("example.com:", "example.com", "/"),  # empty path is the domain root
        ("Example.COM:/App", "example.com", "/App"),  # domain lowercased, path kept
        ("localhost:/app", "", "/app"),  # the default domain is stored as ""
        ("127.0.0.1:/app", "", "/app"),  # 127.0.0.1 is localhost
        (":/app", "", "/app"),
        ("counter.:", "counter.localhost", "/"),  # relative to the default domain
        ("counter.:/x/", "counter.localhost", "/x"),
    ],
)
def test_parse_app_path(text: str, domain: str, path: str) -> None:
    assert parse_app_path(text, DEFAULT) == AppPath(domain, path)


def test_parse_app_path_with_other_default_domain() -> None:
    assert parse_app_path("counter.:", "example.org") == AppPath("counter.example.org", "/")
    assert parse_app_path("example.org:/x", "example.org") == AppPath("", "/x")
    # localhost is an ordinary domain when it is not the default one
    assert parse_app_path("localhost:/x", "example.org") == AppPath("localhost", "/x")
    assert parse_app_path("127.0.0.1:/x", "example.org") == AppPath("localhost", "/x")


def test_parse_app_path_too_many_colons() -> None:
    with pytest.raises(AppPathError) as info:
        parse_app_path("a:b:/c", DEFAULT)
    assert str(info.value) == 'invalid app path a:b:/c, expected one ":"'


def test_parse_app_path_domain_with_port_is_rejected() -> None:
    with pytest.raises(AppPathError, match='expected one ":"'):
        parse_app_path("example.com:8080:/x", DEFAULT)


@pytest.mark.parametrize("text", ["app", "example.com:app", "x.:app"])
def test_parse_app_path_must_start_with_slash(text: str) -> None:
    with pytest.raises(AppPathError) as info:
        parse_app_path(text, DEFAULT)
    assert str(info.value) == f'invalid app path {text}, expected path to start with "/"'


def test_relative_domain_needs_a_default_domain() -> None:
    with pytest.raises(AppPathError) as info:
        parse_app_path("counter.:", "")
    assert str(info.value) == "Domain cannot end with '.' since default_domain is not configured"


def test_app_path_error_is_a_user_error() -> None:
    with pytest.raises(OrunError) as info:
        parse_app_path("a:b:c", DEFAULT)
    assert info.value.status == 400


def test_normalize_domain() -> None:
    assert normalize_domain("  Example.Com ", DEFAULT) == "example.com"
    assert normalize_domain("app.", "example.com") == "app.example.com"
    assert normalize_domain("127.0.0.1", DEFAULT) == "localhost"


def test_app_path_str_and_effective_domain() -> None:
    assert str(AppPath("", "/x")) == "/x"
    assert str(AppPath("example.com", "/x")) == "example.com:/x"
    assert AppPath("", "/x").effective_domain("localhost") == "localhost"
    assert AppPath("a.com", "/x").effective_domain("localhost") == "a.com"


def test_str_round_trips_through_parse() -> None:
    for text in ["/x", "example.com:/x", "counter.localhost:/"]:
        parsed = parse_app_path(text, DEFAULT)
        assert str(parsed) == text
        assert parse_app_path(str(parsed), DEFAULT) == parsed


# -- validate_for_create ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/a/..", "path cannot contain '/..'"),
        ("/../a", "path cannot contain '/..'"),
        ("/a/..b", "path cannot contain '/..'"),
        ("/a../b", "path cannot contain '../'"),
        ("/a/./b", "path cannot contain '/./'"),
        ("/a/.", "path cannot end with '/.'"),
        ("/.", "path cannot end with '/.'"),
        ("/x_cl_stage", "last section of path cannot contain _cl_, orun reserved path"),
        ("/a/b_cl_", "last section of path cannot contain _cl_, orun reserved path"),
        ("/_cl_", "last section of path cannot contain _cl_, orun reserved path"),
    ],
)
def test_validate_for_create_rejects(path: str, message: str) -> None:
    with pytest.raises(AppPathError) as info:
        validate_for_create(AppPath("", path))
    assert str(info.value) == message


@pytest.mark.parametrize("path", ["/a//b", "/a?b", "/a#b", "/a%20b", "/a b", "/a\tb"])
def test_validate_for_create_rejects_unsafe_characters(path: str) -> None:
    with pytest.raises(AppPathError):
        validate_for_create(AppPath("", path))


@pytest.mark.parametrize(
    "path", ["/", "/app", "/a/b", "/a.b", "/.well", "/a/.hidden", "/_cl_x/app", "/v1.2/x-y_z"]
)
def test_validate_for_create_accepts(path: str) -> None:
    validate_for_create(AppPath("", path))
    validate_for_create(AppPath("example.com", path))


def test_parsed_path_is_checked_after_trimming() -> None:
    # `/a/./` is trimmed to `/a/.`, which then ends with `/.`
    with pytest.raises(AppPathError) as info:
        validate_for_create(parse_app_path("/a/./", DEFAULT))
    assert str(info.value) == "path cannot end with '/.'"


# -- paths_overlap -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("/a", "/a", True),
        ("/a", "/a/b", True),
        ("/a/b", "/a", True),
        ("/a", "/ab", False),
        ("/ab", "/a", False),
        ("/a/b", "/a/c", False),
        ("/a/b/c", "/a", True),
        ("/", "/anything", True),
        ("/anything", "/", True),
        ("/", "/", True),
        ("/x", "/x_cl_stage", False),
    ],
)
def test_paths_overlap(a: str, b: str, expected: bool) -> None:
    assert paths_overlap(a, b) is expected


# -- PathGlob --------------------------------------------------------------------------

APPS = [
    AppPath("", "/"),
    AppPath("", "/a"),
    AppPath("", "/a/b"),
    AppPath("", "/a/b/c"),
    AppPath("", "/ab"),
    AppPath("", "/x_cl_stage"),
    AppPath("example.com", "/"),
    AppPath("example.com", "/a"),
    AppPath("api.example.com", "/v1"),
    AppPath("counter.localhost", "/"),
]


def matching(glob: str, default_domain: str = DEFAULT) -> list[str]:
    g = PathGlob.parse(glob, default_domain)
    return [str(a) for a in APPS if g.matches(a)]


@pytest.mark.parametrize("glob", ["all", "ALL", "", "  ", "*:**"])
def test_glob_all_matches_everything(glob: str) -> None:
    assert matching(glob) == [str(a) for a in APPS]


def test_path_only_glob_matches_only_default_domain_apps() -> None:
    assert matching("/a") == ["/a"]
    assert matching("/**") == ["/", "/a", "/a/b", "/a/b/c", "/ab", "/x_cl_stage"]
    assert matching("**") == matching("/**")


def test_glob_exact_path_and_trailing_slash() -> None:
    assert matching("/a/b") == ["/a/b"]
    assert matching("/a/b/") == ["/a/b"]
    assert matching("/") == ["/"]


def test_single_star_stays_in_one_segment() -> None:
    assert matching("/*") == ["/", "/a", "/ab", "/x_cl_stage"]
    assert matching("*") == matching("/*")
    assert matching("/a/*") == ["/a/b"]
    assert matching("/a*") == ["/a", "/ab"]
    assert matching("/*/b") == ["/a/b"]


def test_double_star_crosses_segments() -> None:
    assert matching("/a/**") == ["/a", "/a/b", "/a/b/c"]  # doublestar: includes /a itself
    assert matching("/a/**/c") == ["/a/b/c"]
    assert matching("/a/**/b") == ["/a/b"]  # `/**/` matches zero segments
    assert matching("**/c") == ["/a/b/c"]


def test_double_star_inside_a_segment_acts_like_single_star() -> None:
    assert matching("/a**") == ["/a", "/ab"]


def test_question_mark_is_one_character() -> None:
    assert matching("/a?") == ["/ab"]
    assert matching("/a/?") == ["/a/b"]


def test_glob_special_regex_characters_are_literal() -> None:
    g = PathGlob.parse("/a.b", DEFAULT)
    assert g.matches(AppPath("", "/a.b"))
    assert not g.matches(AppPath("", "/axb"))
    assert PathGlob.parse("/a+(b)", DEFAULT).matches(AppPath("", "/a+(b)"))


def test_domain_globs() -> None:
    assert matching("example.com:/a") == ["example.com:/a"]
    assert matching("example.com:**") == ["example.com:/", "example.com:/a"]
    assert matching("*.example.com:**") == ["api.example.com:/v1"]
    assert matching("*example.com:**") == [
        "example.com:/", "example.com:/a", "api.example.com:/v1"
    ]
    assert matching("counter.:") == ["counter.localhost:/"]
    assert matching("Example.COM:/a") == ["example.com:/a"]


def test_domain_star_matches_every_domain_including_default() -> None:
    assert matching("*:/a") == ["/a", "example.com:/a"]
    assert matching("*:/") == ["/", "example.com:/", "counter.localhost:/"]


def test_domain_path_star_means_top_level_apps() -> None:
    # as OpenRun: a path of `*` is `/*`, with or without a domain
    assert matching("example.com:*") == ["example.com:/", "example.com:/a"]
    assert matching("*:*") == [
        "/", "/a", "/ab", "/x_cl_stage", "example.com:/", "example.com:/a",
        "api.example.com:/v1", "counter.localhost:/",
    ]


def test_default_domain_glob_is_the_empty_domain() -> None:
    assert matching("localhost:/a") == ["/a"]
    assert matching("127.0.0.1:/a") == ["/a"]
    assert matching(":/a") == ["/a"]
    # with another default domain, that domain's apps are the ones stored with ""
    assert matching("example.com:/a", default_domain="example.com") == ["/a"]
    assert matching("localhost:/", default_domain="example.com") == []


def test_glob_errors() -> None:
    with pytest.raises(AppPathError) as info:
        PathGlob.parse("a:b:c", DEFAULT)
    assert str(info.value) == 'invalid app path glob a:b:c, expected one ":"'
    with pytest.raises(AppPathError) as info:
        PathGlob.parse("app", DEFAULT)
    assert str(info.value) == 'invalid app path glob app, expected path to start with "/"'
    with pytest.raises(AppPathError, match="default_domain is not configured"):
        PathGlob.parse("x.:/a", "")


# -- PathIndex ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ancestors"),
    [("/", []), ("/a", ["/"]), ("/a/b/c", ["/a/b", "/a", "/"]),
     ("/a//b", ["/a/", "/a", "/"]), ("/a/", ["/a", "/"])],
)
def test_path_ancestors(path: str, ancestors: list[str]) -> None:
    assert list(path_ancestors(path)) == ancestors


def test_path_index_finds_exactly_the_overlapping_paths() -> None:
    """Checked against `paths_overlap` on every pair of a tricky set of paths."""
    paths = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/a/bc", "/a/", "/a//b", "/b", "/b/a",
             "/x_cl_stage", "/x", "/x/y/z", "/a/b/c/d/e"]
    domains = ["", "example.com"]
    index: PathIndex[tuple[str, str]] = PathIndex()
    added: list[tuple[str, str]] = []
    for path in paths:
        for domain in domains:
            index.add(domain, path, (domain, path))
            added.append((domain, path))
    for domain in [*domains, "other.test"]:
        for path in [*paths, "/zzz", "/a/b/c/q"]:
            want = [item for item in added if item[0] == domain
                    and paths_overlap(item[1], path)]
            assert index.overlapping(domain, path) == want, (domain, path)


def test_path_index_keeps_duplicates_in_insertion_order() -> None:
    index: PathIndex[int] = PathIndex()
    for n, path in enumerate(["/a/b", "/a", "/a/b", "/"]):
        index.add("d", path, n)
    assert index.overlapping("d", "/a/b") == [0, 1, 2, 3]
    assert index.overlapping("d", "/a/c") == [1, 3]
    assert index.overlapping("e", "/a") == []
