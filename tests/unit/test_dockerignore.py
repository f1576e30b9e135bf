""".dockerignore rules with Docker's matching semantics."""

from __future__ import annotations

import pytest

from orun.build.dockerignore import IgnoreRules, clean_pattern
from orun.errors import BuildError


def rules(*lines: str) -> IgnoreRules:
    return IgnoreRules.parse("\n".join(lines))


@pytest.mark.parametrize(
    ("pattern", "cleaned"),
    [
        ("/build", "build"),
        ("./build", "build"),
        ("build/", "build"),
        ("a//b", "a/b"),
        ("a/./b", "a/b"),
        ("a/x/../b", "a/b"),
        ("//x", "x"),
        ("/", "/"),
    ],
)
def test_clean_pattern(pattern: str, cleaned: str) -> None:
    assert clean_pattern(pattern) == cleaned


def test_empty_file_ignores_nothing() -> None:
    r = IgnoreRules.parse("")
    assert r.empty
    assert not r.ignored("a.txt")
    assert r.may_contain_included("any")


def test_comments_blank_lines_and_whitespace() -> None:
    r = rules("# a comment", "", "   ", "  *.log  ", "\t# not trimmed before the check")
    assert r.ignored("x.log")
    assert not r.ignored("# a comment")
    # only lines *starting* with # are comments: this one is a pattern "# not ..."
    assert r.ignored("# not trimmed before the check")


def test_bom_is_dropped() -> None:
    assert IgnoreRules.parse("\ufeffsecret.txt\n").ignored("secret.txt")


def test_leading_slash_and_dot_slash_mean_the_root() -> None:
    r = rules("/build", "./dist", "out/")
    for path in ("build", "build/x.o", "dist/app.js", "out", "out/a/b"):
        assert r.ignored(path), path
    assert not r.ignored("src/build")


def test_star_does_not_cross_slash() -> None:
    r = rules("*.pyc")
    assert r.ignored("a.pyc")
    assert not r.ignored("pkg/a.pyc")
    assert rules("*/*.pyc").ignored("pkg/a.pyc")
    assert not rules("*/*.pyc").ignored("pkg/sub/a.pyc")


def test_star_matches_dotfiles() -> None:
    assert rules("*").ignored(".env")
    assert rules(".*").ignored(".env")


def test_double_star_matches_any_depth() -> None:
    r = rules("**/*.pyc")
    for path in ("a.pyc", "pkg/a.pyc", "pkg/sub/deep/a.pyc"):
        assert r.ignored(path), path
    assert not r.ignored("a.py")


def test_double_star_in_the_middle() -> None:
    r = rules("a/**/b")
    for path in ("a/b", "a/x/b", "a/x/y/b", "a/x/b/c"):
        assert r.ignored(path), path
    assert not r.ignored("a/xb")
    assert not r.ignored("c/a/b")


def test_trailing_double_star_matches_below_but_not_the_folder() -> None:
    r = rules("logs/**")
    assert r.ignored("logs/a")
    assert r.ignored("logs/a/b.txt")
    assert not r.ignored("logs")


def test_question_mark_and_classes() -> None:
    r = rules("file?.txt", "[a-c].md", "[^x]y.cfg")
    assert r.ignored("file1.txt")
    assert not r.ignored("file12.txt")
    assert not r.ignored("file/.txt")
    assert r.ignored("b.md")
    assert not r.ignored("d.md")
    assert r.ignored("ay.cfg")
    assert not r.ignored("xy.cfg")


def test_class_with_literal_bracket_and_dash() -> None:
    r = rules("[]a].txt", "[-z]q")
    assert r.ignored("].txt")
    assert r.ignored("a.txt")
    assert r.ignored("-q")
    assert r.ignored("zq")
    assert not r.ignored("mq")


def test_backslash_escapes() -> None:
    r = rules(r"\*.txt", r"a\?b")
    assert r.ignored("*.txt")
    assert not r.ignored("x.txt")
    assert r.ignored("a?b")
    assert not r.ignored("axb")


def test_regex_characters_are_literal() -> None:
    r = rules("a.b", "c+(d)", "$x{y}|z")
    assert r.ignored("a.b")
    assert not r.ignored("axb")
    assert r.ignored("c+(d)")
    assert r.ignored("$x{y}|z")


def test_a_directory_pattern_excludes_everything_below() -> None:
    r = rules("node_modules")
    assert r.ignored("node_modules")
    assert r.ignored("node_modules/react/index.js")
    assert not r.ignored("src/node_modules_x.js")


def test_exceptions_and_last_match_wins() -> None:
    assert not rules("*.md", "!README.md").ignored("README.md")
    assert rules("*.md", "!README.md").ignored("CHANGES.md")
    assert rules("!README.md", "*.md").ignored("README.md")
    assert rules("*.md", "!README.md", "README.md").ignored("README.md")
    assert not rules("!a").ignored("a")


def test_exception_inside_an_ignored_folder() -> None:
    r = rules("docs", "!docs/keep.md")
    assert not r.ignored("docs/keep.md")
    assert r.ignored("docs/other.md")
    assert r.ignored("docs")
    # an exception for a folder re-includes everything below it
    r = rules("docs", "!docs/api")
    assert not r.ignored("docs/api/index.html")
    assert r.ignored("docs/guide.md")


def test_exception_with_surrounding_spaces() -> None:
    assert not rules("*", "!  src  ").ignored("src/main.py")


def test_lone_exclamation_mark_is_an_error() -> None:
    with pytest.raises(BuildError) as info:
        rules("!")
    assert info.value.message == 'invalid .dockerignore: illegal exclusion pattern: "!"'


def test_unterminated_class_is_an_error() -> None:
    with pytest.raises(BuildError) as info:
        rules("a[bc")
    assert info.value.message == (
        "invalid .dockerignore pattern 'a[bc': unterminated character class")


def test_may_contain_included_without_exceptions() -> None:
    r = rules("node_modules", "*.log")
    assert not r.may_contain_included("node_modules")
    assert not r.may_contain_included("node_modules/react")
    assert r.may_contain_included("src")


def test_may_contain_included_with_exceptions() -> None:
    r = rules("docs", "!docs/api/*.html")
    assert r.may_contain_included("docs")
    assert r.may_contain_included("docs/api")
    assert not r.may_contain_included("docs/guide")
    assert not r.may_contain_included("docs/api/v1")  # *.html names files, not folders


def test_may_contain_included_with_double_star_exception() -> None:
    r = rules("vendor", "!**/LICENSE")
    assert r.may_contain_included("vendor")
    assert r.may_contain_included("vendor/a/b")


def test_may_contain_included_when_an_exception_names_an_ancestor() -> None:
    r = rules("*", "!src", "src/tmp")
    assert r.ignored("src/tmp/x")
    assert r.may_contain_included("src/tmp")  # conservative: !src matches above it
    assert not r.may_contain_included("build")


def test_may_contain_included_agrees_with_ignored() -> None:
    """Whenever a folder is reported skippable, nothing below it is included."""
    r = rules("a", "!a/b/c*", "x/**/y", "!x/keep")
    paths = ["a/b/c1", "a/b/d", "a/e/c1", "x/m/y/z", "x/keep/y/q", "x/m/n"]
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if not r.may_contain_included(folder):
                assert r.ignored(path), (folder, path)
