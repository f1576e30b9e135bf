"""Specs: param checking with OpenRun's messages, the spec.yaml model, the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orun.errors import SpecError
from orun.runtime.plan import merged_build_args
from orun.spec import (
    ParamSpec,
    RoutingSpec,
    SpecCatalog,
    env_value,
    load_spec_dir,
    resolve_params,
)
from orun.state.config import BuilderConfig, Config

# -- resolve_params -------------------------------------------------------------------


def resolve(specs: dict[str, ParamSpec], values: dict[str, str]) -> dict[str, Any]:
    return resolve_params(specs, values)


def error(specs: dict[str, ParamSpec], values: dict[str, str]) -> str:
    with pytest.raises(SpecError) as info:
        resolve_params(specs, values)
    return str(info.value)


def test_missing_required_param() -> None:
    specs = {"url": ParamSpec(type="string", required=True)}
    assert error(specs, {}) == "param url is a required param, a value has to be provided"


def test_param_without_default_is_required() -> None:
    specs = {"url": ParamSpec()}
    assert specs["url"].is_required
    assert error(specs, {}) == "param url is a required param, a value has to be provided"


def test_required_string_cannot_be_empty() -> None:
    specs = {"index": ParamSpec(type="string", required=True)}
    assert error(specs, {"index": ""}) == (
        "param index is a required param, value cannot be empty"
    )


def test_optional_string_can_be_empty() -> None:
    specs = {"index": ParamSpec(type="string", default="index.html")}
    assert resolve(specs, {"index": ""}) == {"index": ""}


def test_required_but_whitespace_string_is_kept() -> None:
    specs = {"name": ParamSpec(type="string", required=True)}
    assert resolve(specs, {"name": " "}) == {"name": " "}


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", 0), ("42", 42), ("-7", -7), ("+7", 7), ("007", 7),
     ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -(2**63))],
)
def test_int_params(raw: str, value: int) -> None:
    specs = {"port": ParamSpec(type="int", default=1)}
    assert resolve(specs, {"port": raw}) == {"port": value}


@pytest.mark.parametrize(
    "raw",
    ["", "x", "1.5", "1e3", " 5", "5 ", "1_000", "0x10", "\u0665", "--1",
     "9223372036854775808", "5\n"],
)
def test_int_param_errors(raw: str) -> None:
    specs = {"port": ParamSpec(type="int", default=1)}
    assert error(specs, {"port": raw}) == "error parsing param port: param port is not an int"


@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true_values(raw: str) -> None:
    specs = {"flag": ParamSpec(type="bool", default=False)}
    assert resolve(specs, {"flag": raw}) == {"flag": True}


@pytest.mark.parametrize("raw", ["0", "f", "F", "FALSE", "false", "False"])
def test_bool_false_values(raw: str) -> None:
    specs = {"flag": ParamSpec(type="bool", default=True)}
    assert resolve(specs, {"flag": raw}) == {"flag": False}


@pytest.mark.parametrize("raw", ["", "yes", "no", "on", "tRUE", "2", " true", "y"])
def test_bool_param_errors(raw: str) -> None:
    specs = {"flag": ParamSpec(type="bool", default=False)}
    assert error(specs, {"flag": raw}) == "error parsing param flag: param flag is not a boolean"


def test_dict_params() -> None:
    specs = {"h": ParamSpec(type="dict", default={})}
    assert resolve(specs, {"h": '{"a": "1", "b": [2]}'}) == {"h": {"a": "1", "b": [2]}}
    assert resolve(specs, {"h": "{}"}) == {"h": {}}


@pytest.mark.parametrize("raw", ["", "[]", "1", '"x"', "{bad", "{'a': 1}"])
def test_dict_param_errors(raw: str) -> None:
    specs = {"h": ParamSpec(type="dict", default={})}
    assert error(specs, {"h": raw}) == "error parsing param h: param h is not a json dict"


def test_list_params() -> None:
    specs = {"l": ParamSpec(type="list", default=[])}
    assert resolve(specs, {"l": '[1, "a", {"b": null}]'}) == {"l": [1, "a", {"b": None}]}
    assert resolve(specs, {"l": "[]"}) == {"l": []}


@pytest.mark.parametrize("raw", ["", "{}", "1", "[1,", "a,b"])
def test_list_param_errors(raw: str) -> None:
    specs = {"l": ParamSpec(type="list", default=[])}
    assert error(specs, {"l": raw}) == "error parsing param l: param l is not a json list"


def test_defaults_are_used_when_no_value() -> None:
    specs = {
        "s": ParamSpec(type="string", default="x"),
        "i": ParamSpec(type="int", default=5),
        "b": ParamSpec(type="bool", default=True),
        "d": ParamSpec(type="dict", default={"k": "v"}),
        "l": ParamSpec(type="list", default=[1]),
    }
    assert resolve(specs, {}) == {"s": "x", "i": 5, "b": True, "d": {"k": "v"}, "l": [1]}


def test_optional_params_without_default_get_zero_values() -> None:
    specs = {
        "s": ParamSpec(type="string", required=False),
        "i": ParamSpec(type="int", required=False),
        "b": ParamSpec(type="bool", required=False),
        "d": ParamSpec(type="dict", required=False),
        "l": ParamSpec(type="list", required=False),
    }
    assert resolve(specs, {}) == {"s": "", "i": 0, "b": False, "d": {}, "l": []}


def test_zero_values_are_fresh_objects() -> None:
    specs = {"d": ParamSpec(type="dict", required=False)}
    first = resolve(specs, {})["d"]
    first["x"] = 1
    assert resolve(specs, {}) == {"d": {}}


def test_required_param_with_explicit_false_and_default() -> None:
    p = ParamSpec(type="int", default=3, required=False)
    assert not p.is_required
    assert resolve({"n": p}, {}) == {"n": 3}


def test_undeclared_params_pass_through_as_strings() -> None:
    specs = {"url": ParamSpec(required=True)}
    assert resolve(specs, {"url": "http://x", "extra": "1", "empty": ""}) == {
        "url": "http://x", "extra": "1", "empty": ""
    }
    assert resolve({}, {"a": "b"}) == {"a": "b"}


def test_first_problem_in_spec_order_is_reported() -> None:
    specs = {"a": ParamSpec(type="int", default=0), "b": ParamSpec(required=True)}
    assert error(specs, {"a": "x"}) == "error parsing param a: param a is not an int"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (-1, "-1"),
        ("plain", "plain"),
        ("", ""),
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([], "[]"),
        ({}, "{}"),
        (["x", None], '["x",null]'),
    ],
)
def test_env_value(value: Any, text: str) -> None:
    assert env_value(value) == text


# -- load_spec_dir --------------------------------------------------------------------


def write_spec(folder: Path, yaml_text: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(yaml_text, encoding="utf-8")
    for rel, content in (files or {}).items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return folder


VALID = """\
description: A test spec
kind: proxy
params:
  url: {type: string, required: true, description: Where to}
  retries: {type: int, default: 3}
  debug: {type: bool, default: false}
  headers: {type: dict, default: {}}
  hosts: {type: list, default: [a, b]}
  title: {default: Hello}
routing:
  strip_app: false
  redirect_bare_path: true
container:
  port: 8080
  health: /healthz
  build_args: {A: "1"}
"""


def test_load_valid_spec(tmp_path: Path) -> None:
    folder = write_spec(tmp_path / "mine", VALID, {
        "index.html": "<p>hi</p>",
        "sub/dir/app.js": "x",
        "__pycache__/junk.pyc": "junk",
    })
    spec = load_spec_dir("mine", folder)
    assert spec.name == "mine"
    assert spec.path == folder
    assert spec.description == "A test spec"
    assert spec.kind == "proxy"
    assert list(spec.params) == ["url", "retries", "debug", "headers", "hosts", "title"]
    assert spec.params["url"] == ParamSpec(type="string", default=None, required=True,
                                           description="Where to")
    assert spec.params["url"].is_required
    assert spec.params["retries"] == ParamSpec(type="int", default=3)
    assert not spec.params["retries"].is_required
    assert spec.params["hosts"].default == ["a", "b"]
    assert spec.params["title"].type == "string"
    assert spec.routing == RoutingSpec(strip_app=False, redirect_bare_path=True,
                                       path_routing=True)
    assert spec.container.port == 8080
    assert spec.container.health == "/healthz"
    assert spec.container.build_args == {"A": "1"}
    # template files: everything but spec.yaml (and caches), sorted, relative
    assert spec.files == ("index.html", "sub/dir/app.js")


def test_loads_of_the_same_text_share_no_mutable_parts(tmp_path: Path) -> None:
    """The parse of a spec.yaml text is cached; every load still gets its own objects,
    and a changed file (or another folder with it) is read again."""
    first = load_spec_dir("mine", write_spec(tmp_path / "one", VALID, {"a.txt": "a"}))
    first.params["hosts"].default.append("c")
    first.container.build_args["A"] = "changed"
    second = load_spec_dir("mine", write_spec(tmp_path / "two", VALID))
    assert second.params["hosts"].default == ["a", "b"]
    assert second.container.build_args == {"A": "1"}
    assert second.path == tmp_path / "two" and second.files == ()
    write_spec(tmp_path / "two", VALID.replace("A test spec", "Changed"))
    assert load_spec_dir("mine", tmp_path / "two").description == "Changed"


def test_spec_to_json(tmp_path: Path) -> None:
    spec = load_spec_dir("mine", write_spec(tmp_path / "mine", VALID, {"a.txt": "a"}))
    data = spec.to_json()
    assert data["name"] == "mine"
    assert data["kind"] == "proxy"
    assert data["params"]["url"] == {"type": "string", "default": None, "required": True,
                                     "description": "Where to"}
    assert data["params"]["retries"]["required"] is False
    assert data["routing"] == {"strip_app": False, "redirect_bare_path": True,
                               "path_routing": True, "static_from_disk": False}
    assert data["files"] == ["a.txt"]


def test_minimal_spec_uses_defaults(tmp_path: Path) -> None:
    spec = load_spec_dir("empty", write_spec(tmp_path / "empty", ""))
    assert spec.description == ""
    assert spec.kind == "container"
    assert spec.params == {}
    assert spec.routing == RoutingSpec()
    assert spec.files == ()


def test_param_with_null_body_is_a_required_string(tmp_path: Path) -> None:
    spec = load_spec_dir("s", write_spec(tmp_path / "s", "kind: static\nparams:\n  name:\n"))
    assert spec.params["name"] == ParamSpec()
    assert spec.params["name"].is_required


def load_error(tmp_path: Path, yaml_text: str, name: str = "bad") -> str:
    folder = write_spec(tmp_path / name, yaml_text)
    with pytest.raises(SpecError) as info:
        load_spec_dir(name, folder)
    return str(info.value)


def test_bad_yaml(tmp_path: Path) -> None:
    message = load_error(tmp_path, "kind: [static\n")
    assert message.startswith("spec bad: ")
    assert "spec.yaml is not valid YAML" in message


def test_duplicate_key_is_bad_yaml(tmp_path: Path) -> None:
    assert "is not valid YAML" in load_error(tmp_path, "kind: static\nkind: proxy\n")


def test_unknown_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, "kind: static\nkinds: proxy\n")
    assert message.startswith("spec bad (")
    assert "is invalid: " in message
    assert ("kinds: unknown key (known keys: container, description, dev, example, kind, "
            "params, routing)") in message


def test_unknown_nested_keys_are_reported_with_their_path(tmp_path: Path) -> None:
    message = load_error(tmp_path, "routing: {strip: true}\nparams: {p: {typ: int}}\n")
    assert "routing.strip: unknown key" in message
    assert "params.p.typ: unknown key" in message


def test_bad_kind_and_param_type(tmp_path: Path) -> None:
    message = load_error(tmp_path, "kind: lambda\nparams: {p: {type: float}}\n")
    assert "kind: must be one of 'static', 'proxy', 'container', got 'lambda'" in message
    assert "params.p.type: must be one of" in message


@pytest.mark.parametrize(
    ("param", "shown"),
    [
        ("{type: int, default: x}", '"x"'),
        ("{type: int, default: true}", "true"),
        ("{type: int, default: 1.5}", "1.5"),
        ("{type: string, default: 5}", "5"),
        ("{type: bool, default: 'yes'}", '"yes"'),
        ("{type: bool, default: 1}", "1"),
        ("{type: dict, default: []}", "[]"),
        ("{type: list, default: {}}", "{}"),
    ],
)
def test_default_of_wrong_type(tmp_path: Path, param: str, shown: str) -> None:
    message = load_error(tmp_path, f"params:\n  p: {param}\n")
    assert "params.p: param p is of type" in message
    assert "but default value is not a " in message
    assert message.endswith(shown)


def test_param_name_with_space(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'params:\n  "a b": {default: x}\n')
    assert 'param name "a b" has spaces' in message


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    assert "top level: expected a mapping, got a list" in load_error(tmp_path, "- a\n- b\n")


def test_missing_spec_yaml(tmp_path: Path) -> None:
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(SpecError) as info:
        load_spec_dir("nothing", folder)
    assert str(info.value) == f"spec nothing has no spec.yaml in {folder}"


def test_spec_yaml_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "spec.yaml").write_bytes(b"description: caf\xe9\n")
    with pytest.raises(SpecError, match="is not UTF-8 text"):
        load_spec_dir("latin", folder)


# -- SpecCatalog ----------------------------------------------------------------------

REPO_SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_bundled_specs_all_load(tmp_path: Path) -> None:
    catalog = SpecCatalog(tmp_path / "none")
    names = catalog.names()
    assert {"static", "static_single", "proxy"} <= set(names)
    assert catalog.bundled == REPO_SPECS
    specs = catalog.all()
    assert [s.name for s in specs] == names
    for spec in specs:
        assert spec.description, spec.name
        for pname, p in spec.params.items():
            assert p.description, f"{spec.name}.{pname}"


def test_bundled_spec_contents(tmp_path: Path) -> None:
    catalog = SpecCatalog(tmp_path / "none")
    proxy = catalog.get("proxy")
    assert proxy.kind == "proxy"
    assert proxy.params["url"].is_required
    assert proxy.params["preserve_host"].default is False
    assert resolve_params(proxy.params, {"url": "http://x"})["response_headers"] == {}
    with pytest.raises(SpecError, match="param url is a required param"):
        resolve_params(proxy.params, {})

    static = catalog.get("static")
    assert static.kind == "static"
    assert not static.params["index"].is_required
    assert static.routing.redirect_bare_path

    single = catalog.get("static_single")
    assert single.kind == "static"
    assert single.params["index"].is_required
    assert single.params["single_file"].default is True


def test_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        SpecCatalog(tmp_path / "none").get("nope")
    assert str(info.value) == "invalid app spec nope"


def test_home_spec_overrides_bundled_wholly(tmp_path: Path) -> None:
    home = tmp_path / "specs"
    write_spec(home / "static", "description: my static\nkind: static\n", {"extra.txt": "x"})
    catalog = SpecCatalog(home)
    spec = catalog.get("static")
    assert spec.description == "my static"
    assert spec.path == home / "static"
    assert spec.params == {}  # no merge with the bundled spec's params
    assert spec.files == ("extra.txt",)
    assert catalog.names().count("static") == 1
    # other bundled specs are still there
    assert catalog.get("proxy").path == REPO_SPECS / "proxy"


def test_home_spec_adds_new_names_and_is_read_on_each_use(tmp_path: Path) -> None:
    home = tmp_path / "specs"
    catalog = SpecCatalog(home)
    assert "custom" not in catalog.names()
    write_spec(home / "custom", "description: c\n")
    assert "custom" in catalog.names()
    assert catalog.get("custom").kind == "container"


def test_folders_without_spec_yaml_are_ignored(tmp_path: Path) -> None:
    home = tmp_path / "specs"
    (home / "notaspec").mkdir(parents=True)
    (home / "file.yaml").write_text("x: 1")
    names = SpecCatalog(home).names()
    assert "notaspec" not in names
    assert "file.yaml" not in names


def test_bundled_dir_can_be_given(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    write_spec(bundled / "only", "description: only\n")
    catalog = SpecCatalog(tmp_path / "none", bundled=bundled)
    assert catalog.names() == ["only"]


def test_broken_home_spec_is_an_error_only_when_used(tmp_path: Path) -> None:
    home = tmp_path / "specs"
    write_spec(home / "broken", "kind: [\n")
    catalog = SpecCatalog(home)
    assert "broken" in catalog.names()
    assert catalog.get("static").kind == "static"
    with pytest.raises(SpecError, match="spec broken"):
        catalog.get("broken")


def test_param_build_args(tmp_path: Path) -> None:
    """`container.param_build_args` feeds params into the build (image-cmd builds FROM its
    `image` param): the params the app set, after the server's build args (a param's
    default does not override them), before the app's --carg; it must name a declared
    param."""
    text = ("description: x\nkind: container\nparams:\n  image: {type: string, required: true,"
            " description: d}\ncontainer:\n  build_args: {IMAGE: base, OTHER: o}\n"
            "  param_build_args: {IMAGE: image}\n")
    spec = load_spec_dir("pb", write_spec(tmp_path / "ok", text))
    config = Config()
    assert merged_build_args(spec, config, {}, {"image": "mine:1"}) == \
        {"IMAGE": "mine:1", "OTHER": "o"}
    assert merged_build_args(spec, config, {"IMAGE": "carg"}, {"image": "mine:1"})["IMAGE"] \
        == "carg"
    assert merged_build_args(spec, config, {}, {"image": ""})["IMAGE"] == "base"
    assert merged_build_args(spec, config, {}, {})["IMAGE"] == "base"
    server = Config(builder=BuilderConfig(build_args={"IMAGE": "server"}))
    assert merged_build_args(spec, server, {}, {})["IMAGE"] == "server"
    assert merged_build_args(spec, server, {}, {"image": "mine:1"})["IMAGE"] == "mine:1"
    with pytest.raises(SpecError, match=r"container.param_build_args.IMAGE: no param img"):
        load_spec_dir("bad", write_spec(tmp_path / "bad",
                                        text.replace("{IMAGE: image}", "{IMAGE: img}")))
