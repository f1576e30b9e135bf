"""Container file facts (port, volumes, base images, ARGs) and the BuildKit-feature lint."""

from __future__ import annotations

import pytest

from orun.build.dockerfile import (
    ContainerfileInfo,
    expand_word,
    forbidden_features,
    parse_containerfile,
    split_words,
)


def port(text: str, **build_args: str) -> int | None:
    return parse_containerfile(text, build_args).exposed_port


# -- words and expansion ------------------------------------------------------------------


def test_split_words_keeps_quotes_and_escapes() -> None:
    assert split_words('a "b c"  \'d e\' f\\ g') == ["a", '"b c"', "'d e'", "f\\ g"]
    assert split_words("  ") == []


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "1"),
        ("${A}", "1"),
        ("x${A}y", "x1y"),
        ("${UNSET:-8000}", "8000"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:+set}", "set"),
        ("${UNSET:+set}", ""),
        ("${UNSET:-${A}}", "1"),
        ('"$A b"', "1 b"),
        ("'$A'", "$A"),
        ("\\$A", "$A"),
        ("$", "$"),
        ("$-", "$-"),
        ('"a\\"b"', 'a"b'),
    ],
)
def test_expand_word(word: str, expected: str) -> None:
    values = {"A": "1", "EMPTY": ""}
    assert expand_word(word, values.get) == expected


def test_expand_word_reports_missing_names() -> None:
    missing: list[str] = []
    values: dict[str, str] = {}
    assert expand_word("$X-${Y}-${Z:-z}", values.get, "\\", missing) == "--z"
    assert missing == ["X", "Y"]


# -- EXPOSE ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("EXPOSE 8000", 8000),
        ("EXPOSE 8000/tcp", 8000),
        ("EXPOSE 8000/UDP", 8000),
        ("EXPOSE 8000 9000", 8000),
        ("EXPOSE 8000-8010", 8000),
        ("expose 5000", 5000),
        ("Expose 5000", 5000),
        ("EXPOSE 0", None),
        ("EXPOSE 70000", None),
        ("EXPOSE http", None),
        ("EXPOSE 80/xyz", None),
        ("EXPOSE", None),
    ],
)
def test_expose_forms(line: str, expected: int | None) -> None:
    assert port(f"FROM python\n{line}\n") == expected


def test_no_expose() -> None:
    assert port("FROM python\nCMD run\n") is None


def test_last_expose_in_any_stage_wins() -> None:
    text = "FROM a AS one\nEXPOSE 1000\nFROM b\nEXPOSE 2000\nFROM c AS three\nRUN x\n"
    assert port(text) == 2000


def test_last_expose_wins_even_when_unresolvable() -> None:
    assert port("FROM a\nEXPOSE 8000\nEXPOSE $NOPE\n") is None


def test_expose_from_stage_arg_default_and_build_arg() -> None:
    text = "FROM python\nARG PORT=8000\nEXPOSE $PORT\n"
    assert port(text) == 8000
    assert port(text, PORT="5000") == 5000
    assert port("FROM python\nARG PORT\nEXPOSE ${PORT}\n", PORT="7000") == 7000


def test_expose_with_default_in_the_reference() -> None:
    assert port("FROM python\nEXPOSE ${PORT:-8000}\n") == 8000
    assert port("FROM python\nARG PORT\nEXPOSE ${PORT:-8000}/tcp\n", PORT="9000") == 9000


def test_expose_from_env() -> None:
    assert port("FROM python\nENV PORT=8080\nEXPOSE $PORT\n") == 8080
    assert port("FROM python\nENV PORT 8081\nEXPOSE $PORT\n") == 8081


def test_env_beats_arg_as_in_docker() -> None:
    text = "FROM python\nARG PORT=8000\nENV PORT=9000\nEXPOSE $PORT\n"
    assert port(text, PORT="5000") == 9000


def test_env_built_from_arg() -> None:
    text = "FROM python\nARG PORT=8000\nENV PORT=${PORT}\nEXPOSE $PORT\n"
    assert port(text) == 8000
    assert port(text, PORT="5000") == 5000


def test_env_after_expose_does_not_count() -> None:
    assert port("FROM python\nEXPOSE $PORT\nENV PORT=8000\n") is None


def test_env_is_inherited_from_the_parent_stage_only() -> None:
    text = "FROM a AS base\nENV PORT=3000\nFROM base\nEXPOSE $PORT\n"
    assert port(text) == 3000
    text = "FROM a AS base\nENV PORT=3000\nFROM b\nEXPOSE $PORT\n"
    assert port(text) is None


def test_global_arg_needs_redeclaring_unless_it_is_the_only_value() -> None:
    # Docker: a global ARG is not visible in the stage, so the inline default applies
    assert port("ARG PORT=8000\nFROM python\nEXPOSE ${PORT:-9000}\n") == 9000
    # ...but where Docker would have nothing, the global ARG is used
    assert port("ARG PORT=8000\nFROM python\nEXPOSE $PORT\n") == 8000
    assert port("ARG PORT=8000\nFROM python\nARG PORT\nEXPOSE $PORT\n", PORT="4000") == 4000


def test_undeclared_build_arg_is_a_last_resort() -> None:
    assert port("FROM python\nEXPOSE $PORT\n", PORT="6000") == 6000
    assert port("FROM python\nEXPOSE $PORT\n") is None


def test_expose_inside_heredoc_is_not_an_instruction() -> None:
    text = "FROM a\nEXPOSE 8000\nRUN <<EOF\nEXPOSE 1234\nEOF\n"
    assert port(text) == 8000
    text = "FROM a\nEXPOSE 8000\nRUN <<-END\n\tEXPOSE 1234\n\tEND\n"
    assert port(text) == 8000


# -- tokenising -------------------------------------------------------------------------------


def test_comments_and_continuations() -> None:
    text = (
        "# leading comment\n"
        "FROM python:3.11 \\\n"
        "  AS app\n"
        "RUN pip install \\\n"
        "  # a comment inside the continuation\n"
        "\n"
        "  flask\n"
        "   # indented comment\n"
        "EXPOSE \\\n"
        "  8000\n"
    )
    info = parse_containerfile(text)
    assert info.exposed_port == 8000
    assert info.base_images == ("python:3.11",)


def test_escape_directive() -> None:
    text = "# escape=`\nFROM mcr/windows\nEXPOSE `\n  7000\n"
    assert port(text) == 7000


def test_crlf_line_endings() -> None:
    assert port("FROM a\r\nEXPOSE 8000\r\n") == 8000


# -- VOLUME -------------------------------------------------------------------------------------


def test_volume_json_and_shell_forms() -> None:
    text = (
        'FROM a\nVOLUME ["/a", "/b"]\nvolume /c /d\nVOLUME /a\n'
        "ARG DATA=/data\nVOLUME $DATA\nVOLUME [\"/e\" \n"
    )
    info = parse_containerfile(text)
    # malformed JSON falls back to the shell form, as in Docker (quotes removed)
    assert info.volumes == ("/a", "/b", "/c", "/d", "/data", "[/e")


def test_volumes_from_all_stages() -> None:
    info = parse_containerfile("FROM a AS b\nVOLUME /x\nFROM c\nVOLUME /y\n")
    assert info.volumes == ("/x", "/y")


# -- FROM and ARG -------------------------------------------------------------------------------


def test_base_images_with_stages_scratch_and_args() -> None:
    text = (
        "ARG BASE=python\n"
        "ARG TAG=3.11-slim\n"
        "FROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Builder\n"
        "FROM node:20 as web\n"
        "FROM builder\n"
        "FROM scratch\n"
        "FROM WEB AS final\n"
        "FROM python:3.11-slim\n"
    )
    info = parse_containerfile(text)
    assert info.base_images == ("python:3.11-slim", "node:20")
    info = parse_containerfile(text, {"TAG": "3.12"})
    assert info.base_images == ("python:3.12", "node:20", "python:3.11-slim")


def test_from_ignores_undeclared_build_args() -> None:
    info = parse_containerfile("FROM img:${TAG:-1}\n", {"TAG": "2"})
    assert info.base_images == ("img:1",)


def test_global_args() -> None:
    text = (
        'ARG A=1 B\nARG C="two words"\nARG D=${A}x\nFROM img\nARG INSTAGE=3\n'
    )
    info = parse_containerfile(text, {"A": "9"})
    assert info.args == {"A": "1", "B": None, "C": "two words", "D": "1x"}


def test_empty_file() -> None:
    assert parse_containerfile("") == ContainerfileInfo(None, (), (), {})


# -- forbidden_features -----------------------------------------------------------------------


def test_forbidden_none_for_a_classic_file() -> None:
    text = "FROM python\nRUN pip install flask\nCOPY --from=build /a /b\nCOPY --chown=1:1 . .\n"
    assert forbidden_features(text) == []


def test_forbidden_syntax_directive() -> None:
    assert forbidden_features("# syntax=docker/dockerfile:1\nFROM a\n") == [
        "line 1: the '# syntax=docker/dockerfile:1' parser directive needs BuildKit"]
    assert forbidden_features("#Syntax = docker/dockerfile:1.4\nFROM a\n") == [
        "line 1: the '# syntax=docker/dockerfile:1.4' parser directive needs BuildKit"]


def test_syntax_comment_after_the_top_is_just_a_comment() -> None:
    assert forbidden_features("FROM a\n# syntax=docker/dockerfile:1\n") == []
    assert forbidden_features("# hello\n# syntax=docker/dockerfile:1\nFROM a\n") == []
    assert forbidden_features("# foo=bar\n# syntax=docker/dockerfile:1\nFROM a\n") == []
    assert forbidden_features("# escape=`\n# syntax=docker/dockerfile:1\nFROM a\n") == [
        "line 2: the '# syntax=docker/dockerfile:1' parser directive needs BuildKit"]


def test_forbidden_run_mount() -> None:
    text = "FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n"
    assert forbidden_features(text) == ["line 2: RUN --mount needs BuildKit"]
    text = "FROM a\nrun --network=none --security=insecure make\n"
    assert forbidden_features(text) == ["line 2: RUN --network needs BuildKit",
                                        "line 2: RUN --security needs BuildKit"]


def test_forbidden_copy_and_add_link() -> None:
    text = "FROM a\nCOPY --link . /app\nADD --link x /y\nADD --checksum=sha256:0 u /z\n"
    assert forbidden_features(text) == [
        "line 2: COPY --link needs BuildKit",
        "line 3: ADD --link needs BuildKit",
        "line 4: ADD --checksum needs BuildKit",
    ]


def test_forbidden_heredocs() -> None:
    text = "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN python3 <<'PY'\nprint(1)\nPY\nRUN echo $((1<<2))\n"
    assert forbidden_features(text) == [
        "line 2: RUN with a heredoc (<<EOF) needs BuildKit",
        "line 5: RUN with a heredoc (<<PY) needs BuildKit",
    ]


def test_forbidden_reports_the_first_line_of_a_continued_instruction() -> None:
    text = "FROM a\nRUN \\\n  --mount=type=secret,id=x \\\n  cat /run/secrets/x\n"
    assert forbidden_features(text) == ["line 2: RUN --mount needs BuildKit"]
