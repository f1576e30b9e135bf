"""Go-style single-dash long flags (`-param x`) rewritten for argparse."""

from __future__ import annotations

import argparse

import pytest

from orun.cli.argv import long_flags, normalize_go_flags
from orun.cli.main import build_parser

KNOWN = {"param", "cvol", "spec", "dry-run", "dev", "approve", "format", "branch"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-param", "x=1"], ["--param", "x=1"]),
        (["-param=x=1"], ["--param=x=1"]),
        (["-cvol=a:/b"], ["--cvol=a:/b"]),
        (["-cvol", "a:/b"], ["--cvol", "a:/b"]),
        (["-dry-run"], ["--dry-run"]),
        (["--param", "x"], ["--param", "x"]),  # already long
        (["--param=x"], ["--param=x"]),
        (["-p", "x"], ["-p", "x"]),  # short flags untouched
        (["-d"], ["-d"]),
        (["-"], ["-"]),  # stdin / no-source marker
        (["-unknown", "x"], ["-unknown", "x"]),  # not a known long flag
        (["-pd"], ["-pd"]),  # combined short flags
        (["-5"], ["-5"]),  # negative numbers
        (["-10", "-1.5", "-1e3"], ["-10", "-1.5", "-1e3"]),
        (["-Param"], ["-Param"]),  # flag names are case-sensitive
        (["-", "/app", "-spec", "proxy"], ["-", "/app", "--spec", "proxy"]),
        ([], []),
    ],
)
def test_normalize_go_flags(argv: list[str], expected: list[str]) -> None:
    assert normalize_go_flags(argv, KNOWN) == expected


def test_tokens_after_double_dash_are_untouched() -> None:
    argv = ["-spec", "x", "--", "-param", "-cvol=a", "--"]
    assert normalize_go_flags(argv, KNOWN) == ["--spec", "x", "--", "-param", "-cvol=a", "--"]


def test_input_is_not_modified() -> None:
    argv = ["-param", "x"]
    normalize_go_flags(argv, KNOWN)
    assert argv == ["-param", "x"]


def test_known_accepts_any_iterable() -> None:
    assert normalize_go_flags(["-spec", "s"], iter(["spec"])) == ["--spec", "s"]
    assert normalize_go_flags(("-spec",), ()) == ["-spec"]


def test_long_flags_of_the_orun_parser() -> None:
    flags = long_flags(build_parser())
    for name in ("param", "spec", "cvol", "container-volume", "carg", "container-arg",
                 "copt", "container-option", "conf", "app-config", "branch", "commit",
                 "dev", "approve", "stage-at", "dry-run", "internal", "format", "config",
                 "help", "version"):
        assert name in flags, name
    # only long names, no dashes, no short options
    assert all(not f.startswith("-") for f in flags)
    assert "p" not in flags
    assert "c" not in flags


def test_long_flags_walks_nested_subparsers() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--top")
    sub = parser.add_subparsers()
    a = sub.add_parser("a", add_help=False)
    a.add_argument("--alpha", "-x")
    inner = a.add_subparsers().add_parser("deep", add_help=False)
    inner.add_argument("--deeper")
    assert long_flags(parser) == {"top", "alpha", "deeper"}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(normalize_go_flags(argv, long_flags(parser)))


def test_openrun_style_create_command_parses() -> None:
    args = parse(["app", "create", "-spec", "proxy", "-param", "url=https://example.com",
                  "-cvol=data:/data", "-dry-run", "-", "/ext"])
    assert args.spec == "proxy"
    assert args.param == ["url=https://example.com"]
    assert args.cvol == ["data:/data"]
    assert args.dry_run is True
    assert args.source == "-"
    assert args.path == "/ext"


def test_mixed_styles_parse_the_same() -> None:
    go = parse(["app", "create", "-param", "a=1", "--param", "b=2", "-p", "c=3",
                "./src", "/app"])
    assert go.param == ["a=1", "b=2", "c=3"]


def test_single_dash_format_on_list() -> None:
    assert parse(["app", "list", "-format", "json"]).format == "json"
    assert parse(["app", "list", "-f", "jsonl"]).format == "jsonl"
