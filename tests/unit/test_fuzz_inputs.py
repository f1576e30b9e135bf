"""Property-based fuzzing (Hypothesis) of every parser that takes a user's or a
repository's text: app paths and globs, source URLs, params, `--copt` and `--cvol`
strings, config files, and the proxy's path resolution.

Two properties everywhere: bad input fails only with orun's own error (an `OrunError`
with a message, which the CLI prints as one `error:` line), never another exception;
and what is accepted keeps its safety promise (an app path has no dot segments, a
bind mount stays inside the allowed folders however it is spelled, a resolved request
path never climbs above the app). CI runs a fixed, derandomised set of examples
(tests/conftest.py loads the profile); `scripts/fuzz` runs many more at random.
"""

from __future__ import annotations

import posixpath
import string
from pathlib import Path
from urllib.parse import unquote

from hypothesis import example, given
from hypothesis import strategies as st

from orun.errors import ConfigError, ContainerConfigError, OrunError, SpecError
from orun.proxy.forward import resolve_rest
from orun.sources.ref import parse_source
from orun.spec.model import ParamSpec
from orun.spec.params import resolve_params
from orun.state.config import parse_config
from orun.state.options import parse_container_options
from orun.state.paths import AppPath, PathGlob, parse_app_path, validate_for_create
from orun.state.volumes import parse_volumes

#: the characters that break parsers: separators, dots, escapes, controls, non-ASCII
_TRICKY = "/:.%*?#\\;~$@ \t\r\n\x00" + "aZ09_-" + "é\u202e\ufeff"
tricky_text = st.text(alphabet=st.sampled_from(_TRICKY), max_size=40) | st.text(max_size=40)
_SEGMENTS = ["", ".", "..", "%2e", "%2E%2e", ".%2e", "a", "b", "%2f", "%5c", "..;", "a;b",
             "\\..", "..\\", "%00", "\x00", "é", "%ff", "~"]
path_like = st.lists(st.sampled_from(_SEGMENTS), max_size=8).map(lambda s: "/".join(s))


def _message(exc: OrunError) -> None:
    assert str(exc).strip(), "an error without a message"
    assert "Traceback" not in str(exc)


@given(tricky_text | path_like.map(lambda p: "/" + p) | path_like.map(lambda p: "x.:" + p))
def test_app_paths_are_parsed_or_refused_with_a_message(text: str) -> None:
    try:
        app_path = parse_app_path(text, "localhost")
        validate_for_create(app_path)
    except OrunError as exc:
        _message(exc)
        return
    path = app_path.path
    assert path.startswith("/") and "//" not in path
    assert not any(seg in (".", "..") for seg in path.split("/"))
    assert not any(c in path for c in "?#% \t\r\n")


@given(tricky_text, st.builds(AppPath, st.sampled_from(["", "a.localhost", "x"]),
                              path_like.map(lambda p: "/" + p)))
def test_globs_are_parsed_or_refused_and_never_fail_to_match(text: str,
                                                             app_path: AppPath) -> None:
    try:
        glob = PathGlob.parse(text, "localhost")
    except OrunError as exc:
        _message(exc)
        return
    assert glob.matches(app_path) in (True, False)


@given(tricky_text | st.sampled_from(["git@h:o/r", "https://h/o/r", "h.tld/o/r", "/abs"])
       .flatmap(lambda base: tricky_text.map(lambda tail: base + tail)),
       st.none() | tricky_text, st.none() | tricky_text)
def test_sources_are_parsed_or_refused_with_a_message(text: str, branch: str | None,
                                                      commit: str | None) -> None:
    try:
        ref = parse_source(text, branch=branch, commit=commit)
    except OrunError as exc:
        _message(exc)
        return
    assert ref.kind in ("none", "local", "git")
    if ref.kind == "local":
        assert Path(ref.location).is_absolute()


@given(st.dictionaries(st.sampled_from(["cpus", "memory", "command.init", "docker.privileged",
                                        "command.add-host", "podman.x", "x", "command."])
                       | tricky_text, tricky_text, max_size=4))
def test_container_options_are_checked_or_refused(copts: dict[str, str]) -> None:
    allowed = {"init": "", "add-host": "regex:^[a-z]+:[0-9.]+$"}
    try:
        options = parse_container_options(copts, allowed)
    except ContainerConfigError as exc:
        _message(exc)
        return
    # nothing outside the allow-list reaches the engine
    assert "Privileged" not in options.host_config


@example([("", "/\x00", ":/data")])  # a NUL byte made the path resolution raise ValueError
@given(st.lists(st.tuples(st.sampled_from(["", "/", "$ORUN_HOME/", "../", "./", "~/"]),
                          path_like, st.sampled_from(["", ":/data", ":/data:ro", ":/d:rw",
                                                      ":/", ":x:y:z", ":/data:bad"])),
                min_size=1, max_size=3))
def test_bind_mounts_stay_in_the_allowed_folders_however_spelled(
        entries: list[tuple[str, str, str]]) -> None:
    root = _volume_tree()
    raw = [prefix + path + rest for prefix, path, rest in entries]
    allowed = [str(root / "allowed")]
    try:
        mounts = parse_volumes(raw, app_id="app1", allowed_mounts=allowed,
                               source_dir=root / "src", app_run_dir=root / "run")
    except ContainerConfigError as exc:
        _message(exc)
        return
    roots = [(root / d).resolve() for d in ("allowed", "src", "run")]
    for mount in mounts:
        if mount.kind == "bind":
            real = Path(mount.source).resolve()
            assert any(real == r or real.is_relative_to(r) for r in roots), (raw, mount)


_TREE: Path | None = None


def _volume_tree() -> Path:
    """Allowed, source and run folders, with symlinks that point out of them."""
    global _TREE
    if _TREE is None:
        import tempfile
        root = Path(tempfile.mkdtemp(prefix="orun-fuzz-"))
        for d in ("allowed/a", "src/a", "run", "outside/b"):
            (root / d).mkdir(parents=True)
        (root / "allowed" / "b").symlink_to(root / "outside")
        (root / "src" / "b").symlink_to("../outside")
        (root / "src" / "~").symlink_to("/etc")
        _TREE = root
    return _TREE


@given(st.dictionaries(st.sampled_from(["n", "flag", "items", "conf", "s"]), tricky_text
                       | st.sampled_from(["1", "-9223372036854775809", "true", "[1]", "{}",
                                          "١٢", "1_0", " 1"]), max_size=5))
def test_params_are_typed_or_refused_with_openruns_wording(values: dict[str, str]) -> None:
    specs = {"n": ParamSpec(type="int", default=0), "flag": ParamSpec(type="bool", default=False),
             "items": ParamSpec(type="list", default=[]), "conf": ParamSpec(type="dict"),
             "s": ParamSpec(type="string", default="")}
    try:
        out = resolve_params(specs, values)
    except SpecError as exc:
        _message(exc)
        assert str(exc).startswith(("error parsing param", "param "))
        return
    assert isinstance(out["n"], int) and isinstance(out["flag"], bool)
    assert isinstance(out["items"], list) and isinstance(out["conf"], dict)


_SECTIONS = ["http", "https", "system", "builder", "app_defaults", "proxy", "limits",
             "security", "log", "apps", "nope"]
_KEYS = ["host", "port", "default_domain", "level", "max_body_mb", "build_args",
         "allowed_mounts", "trusted_proxies", "fast_path", "idle_shutdown_secs", "path"]
_VALUES = st.one_of(st.integers(-70000, 70000), st.floats(allow_nan=True), st.booleans(),
                    st.none(), tricky_text, st.lists(tricky_text, max_size=2),
                    st.dictionaries(tricky_text, tricky_text, max_size=2))


def _yaml(value: object) -> str:
    import json
    return json.dumps(value)  # JSON is YAML


@example("._")  # the YAML loader raised ValueError, not a YAML error
@given(st.one_of(
    tricky_text,
    st.dictionaries(st.sampled_from(_SECTIONS),
                    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3) | _VALUES,
                    max_size=4).map(_yaml)))
def test_config_files_load_or_list_their_problems(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)


@given(path_like.map(lambda p: "/" + p) | st.text(alphabet=string.printable, max_size=30))
def test_a_resolved_request_path_never_climbs_above_the_app(rest: str) -> None:
    resolved = resolve_rest(rest)
    if resolved is None:
        return
    assert resolved == "" or resolved.startswith("/")
    decoded = unquote(resolved).replace("\\", "/")
    assert not posixpath.normpath("/" + decoded).startswith("/.."), (rest, resolved)
    if "\x00" not in rest:  # a raw NUL never gets past the HTTP parsers to here
        assert "\x00" not in decoded, (rest, resolved)
    for seg in decoded.split("/"):
        assert seg.partition(";")[0] not in ("..",), (rest, resolved)
