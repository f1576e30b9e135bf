"""Server config: YAML into frozen dataclasses, every problem reported by key path."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from orun.errors import ConfigError
from orun.state.config import (
    DEFAULT_HTTP_PORT,
    Config,
    ConfigFile,
    DeclaredApp,
    parse_config,
    read_config_file,
)
from orun.state.schema import build, check


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# -- defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "{}", "---\n", "~"])
def test_empty_config_is_all_defaults(text: str) -> None:
    assert parse_config(text) == Config()


def test_default_values() -> None:
    c = Config()
    assert c.http.host == "127.0.0.1"
    assert c.http.port == DEFAULT_HTTP_PORT
    assert c.http.enabled
    assert (c.https.host, c.https.port) == ("127.0.0.1", 25223) and c.https.enabled
    assert c.system.default_domain == "localhost"
    assert c.system.shutdown_timeout_secs == 10.0
    assert c.builder.max_concurrent_builds == 1
    assert c.app_defaults.idle_shutdown_secs == 180
    assert c.proxy.read_timeout_secs == 180.0
    assert c.security.trusted_proxies == []
    assert c.log.level == "info"
    assert c.log.format == "auto"
    assert c.log.access_log is True
    assert c.apps == []


def test_config_is_frozen() -> None:
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.http = c.http  # type: ignore[misc]


def test_empty_sections_are_defaults() -> None:
    assert parse_config("http:\nsystem: {}\nlog:\n") == Config()


# -- valid values -------------------------------------------------------------------------


def test_full_config() -> None:
    c = parse_config("""
http: {host: 0.0.0.0, port: 8080}
https: {port: 0}
system:
  default_domain: example.com
  shutdown_timeout_secs: 0
builder:
  build_args: {GOPROXY: direct}
  max_concurrent_builds: 4
app_defaults: {idle_shutdown_secs: 0, health_timeout_secs: 2}
proxy: {connect_timeout_secs: 1.5, read_timeout_secs: 60}
security:
  trusted_proxies: [127.0.0.1, 10.0.0.0/8, "::1", "fd00::/8"]
  allowed_mounts: [/data]
log: {level: debug, format: json, access_log: false}
apps:
  - {path: /x, source: ./x, spec: static, params: {port: 8080, debug: true}}
""")
    assert c.http.host == "0.0.0.0"
    assert c.http.port == 8080
    assert c.https.port == 0 and c.https.enabled
    assert c.system.default_domain == "example.com"
    assert c.system.shutdown_timeout_secs == 0.0
    assert c.builder.build_args == {"GOPROXY": "direct"}
    assert c.builder.max_concurrent_builds == 4
    assert c.app_defaults.idle_shutdown_secs == 0
    assert c.app_defaults.health_timeout_secs == 2.0
    assert isinstance(c.app_defaults.health_timeout_secs, float)  # int accepted as float
    assert c.proxy.connect_timeout_secs == 1.5
    assert c.security.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]
    assert c.security.allowed_mounts == ["/data"]
    assert c.log.level == "debug"
    assert c.log.format == "json"
    assert c.log.access_log is False
    assert c.apps == [DeclaredApp(path="/x", source="./x", spec="static",
                                  params={"port": 8080, "debug": True})]


def test_negative_port_disables_listener() -> None:
    c = parse_config("http: {port: -1}")
    assert not c.http.enabled


def test_partial_section_keeps_other_defaults() -> None:
    c = parse_config("http: {port: 9000}\n")
    assert c.http.host == "127.0.0.1"
    assert c.system == Config().system


# -- problems -----------------------------------------------------------------------------


def test_wrong_type_is_reported_by_key_path() -> None:
    assert one_problem('http: {port: "8080"}') == "http.port: expected an integer, got a string"


def test_message_mentions_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("http: {port: x}", source="orun.yaml")
    assert str(info.value) == "invalid orun.yaml: http.port: expected an integer, got a string"


def test_every_problem_reported_at_once() -> None:
    text = """
http: {prot: 80, port: "x"}
system: {default_domain: Example.COM, shutdown_timeout_secs: -1}
log: {level: verbose, access_log: "yes"}
proxy: {read_timeout_secs: 0}
builder: {max_concurrent_builds: 0}
bogus: 1
"""
    found = problems(text)
    assert "http.prot: unknown key (known keys: host, port, redirect_to_https)" in found
    assert "http.port: expected an integer, got a string" in found
    assert ("system.default_domain: 'Example.COM' is not a valid domain name "
            "(lowercase, no port, no path)") in found
    assert "system.shutdown_timeout_secs: must be 0 or more" in found
    assert ("log.level: must be one of 'debug', 'info', 'warning', 'error', "
            "got 'verbose'") in found
    assert "log.access_log: expected a boolean, got a string" in found
    assert "proxy.read_timeout_secs: must be greater than 0" in found
    assert "builder.max_concurrent_builds: must be greater than 0" in found
    assert any(p.startswith("bogus: unknown key (known keys: app_defaults, apps, auth, builder,")
               for p in found)
    assert len(found) == 9

    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert message.startswith("invalid config:\n  ")
    for p in found:
        assert f"\n  {p}" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("http: {port: true}", "http.port: expected an integer, got a boolean"),
        ("http: {port: 1.5}", "http.port: expected an integer, got a number"),
        ("http: {port: null}", "http.port: expected an integer, got null"),
        ("http: {port: [1]}", "http.port: expected an integer, got a list"),
        ("http: {port: 70000}",
         "http.port: must be at most 65535 (0 = random, negative = off)"),
        ("http: 8080", "http: expected a mapping, got an integer"),
        ("http: [a]", "http: expected a mapping, got a list"),
        ("http: {host: 1}", "http.host: expected a string, got an integer"),
        ("proxy: {read_timeout_secs: true}",
         "proxy.read_timeout_secs: expected a number, got a boolean"),
        ("proxy: {read_timeout_secs: '5'}",
         "proxy.read_timeout_secs: expected a number, got a string"),
        ("log: {format: JSON}",
         "log.format: must be one of 'auto', 'console', 'json', got 'JSON'"),
        ("log: {access_log: 1}", "log.access_log: expected a boolean, got an integer"),
        ("security: {trusted_proxies: 10.0.0.0/8}",
         "security.trusted_proxies: expected a list, got a string"),
        ("security: {trusted_proxies: [10.0.0.0/33]}",
         "security.trusted_proxies: '10.0.0.0/33' is not an IP address or CIDR network"),
        ("security: {trusted_proxies: [localhost]}",
         "security.trusted_proxies: 'localhost' is not an IP address or CIDR network"),
        ("security: {trusted_proxies: [10.0.0.1, 5]}",
         "security.trusted_proxies[1]: expected a string, got an integer"),
        ("builder: {build_args: {A: 1}}",
         "builder.build_args.A: expected a string, got an integer"),
        ("builder: {build_args: [A]}", "builder.build_args: expected a mapping, got a list"),
        ("builder: {build_args: {1: a}}", "builder.build_args.1: keys must be strings"),
        ("system: {default_domain: 'a.com:80'}",
         "system.default_domain: 'a.com:80' is not a valid domain name "
         "(lowercase, no port, no path)"),
        ("system: {default_domain: 'a.com/x'}",
         "system.default_domain: 'a.com/x' is not a valid domain name "
         "(lowercase, no port, no path)"),
        ("apps: {a: 1}", "apps: expected a list, got a mapping"),
        ("apps: [1]", "apps[0]: expected a mapping, got an integer"),
    ],
)
def test_single_problems(text: str, problem: str) -> None:
    assert one_problem(text) == problem


@pytest.mark.parametrize("text", ["[1, 2]", "just a string", "42"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    found = one_problem(text)
    assert found.startswith("top level: expected a mapping, got ")


def test_unknown_top_level_key_lists_known_keys() -> None:
    assert one_problem("htp: {}") == (
        "htp: unknown key (known keys: app_defaults, apps, auth, builder, console, http, https, "
        "limits, log, metrics, proxy, security, ssh, system)"
    )


def test_yaml_syntax_error_has_line_and_column() -> None:
    found = one_problem("http:\n  port: [8080\nlog: {}\n")
    assert found.startswith("YAML syntax error (line ")
    assert ", column " in found


def test_yaml_syntax_error_position() -> None:
    found = one_problem("http: {port: 1}\nlog: {level: info\n")
    assert found.startswith("YAML syntax error (line 3, column 1): ")


def test_duplicate_keys_are_an_error() -> None:
    assert one_problem("http: {port: 1}\nhttp: {port: 2}\n").startswith("YAML syntax error")


# -- read_config_file -----------------------------------------------------------------------


def test_missing_optional_file_is_defaults(tmp_path: Path) -> None:
    assert read_config_file(tmp_path / "orun.yaml", required=False) == Config()


def test_missing_required_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        read_config_file(path, required=True)
    assert info.value.problems == [f"config file {path} does not exist"]
    assert str(info.value) == f"invalid {path}: config file {path} does not exist"


def test_read_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "orun.yaml"
    path.write_text("http: {port: 0}\n", encoding="utf-8")
    assert read_config_file(path, required=True).http.port == 0
    assert read_config_file(path, required=False).http.port == 0


def test_read_invalid_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "orun.yaml"
    path.write_text("http: {port: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_config_file(path, required=False)
    assert str(info.value) == f"invalid {path}: http.port: expected an integer, got a string"


def test_unreadable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_config_file(tmp_path, required=False)  # a directory
    assert info.value.problems[0].startswith(f"cannot read {tmp_path}: ")


# -- ConfigFile: the server's file, parsed once per text --------------------------------------


def test_config_file_parses_an_unchanged_text_once(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import orun.state.config as config_module

    parses: list[str] = []

    def counting_parse(text: str, *, source: str = "config") -> Config:
        parses.append(text)
        return parse_config(text, source=source)

    monkeypatch.setattr(config_module, "parse_config", counting_parse)
    path = tmp_path / "orun.yaml"
    text = "http: {port: 0}\napps:\n" + "".join(
        f"  - {{path: /a{i}, source: '-', spec: proxy, params: {{url: 'http://h'}}}}\n"
        for i in range(50))
    path.write_text(text)
    file = ConfigFile(path, required=True)
    first = file.read()
    assert len(first.apps) == 50
    assert file.read() is first and file.read() is first  # unchanged: no parse at all
    assert len(parses) == 1

    path.write_text(text + "# a comment\n")  # another text: parsed, equal config
    second = file.read()
    assert second == first and len(parses) == 2
    path.write_text("http: {port: x}\n")  # a bad edit raises, and caches nothing
    with pytest.raises(ConfigError):
        file.read()
    assert len(parses) == 3
    path.write_text(text + "# a comment\n")  # back to the last good text: cached
    assert file.read() is second and len(parses) == 3
    path.write_text(text)
    assert file.read() == first and len(parses) == 4


def test_config_file_missing(tmp_path: Path) -> None:
    assert ConfigFile(tmp_path / "orun.yaml", required=False).read() == Config()
    with pytest.raises(ConfigError):
        ConfigFile(tmp_path / "orun.yaml", required=True).read()


# -- the schema builder on its own ---------------------------------------------------------


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else "must be even"


@dataclass(frozen=True)
class Inner:
    name: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    inner: Inner
    count: int = field(default=0, metadata=check(_even))
    maybe: int | None = None
    either: int | str = 0
    mode: Literal["a", "b"] = "a"
    anything: Any = None
    ratio: float = 1.0


def build_outer(data: Any) -> tuple[Outer, list[str]]:
    found: list[str] = []
    return build(Outer, data, "", found), found


def test_build_valid() -> None:
    obj, found = build_outer({"inner": {"name": "n", "tags": ["x", "y"]}, "count": 2,
                              "maybe": None, "either": "s", "anything": {"k": [1]},
                              "ratio": 3})
    assert found == []
    assert obj == Outer(Inner("n", ("x", "y")), 2, None, "s", "a", {"k": [1]}, 3.0)


def test_build_required_key_missing() -> None:
    _, found = build_outer({})
    assert found == ["inner: required key is missing"]
    _, found = build_outer({"inner": {}})
    assert found == ["inner.name: required key is missing"]


def test_build_check_and_union_problems() -> None:
    _, found = build_outer({"inner": {"name": "n", "tags": [1]}, "count": 3, "either": [1],
                            "maybe": "x"})
    assert "inner.tags[0]: expected a string, got an integer" in found
    assert "count: must be even" in found
    assert "either: unexpected value [1]" in found
    assert "maybe: expected an integer, got a string" in found


def test_build_bad_required_value_returns_none_but_reports() -> None:
    obj, found = build_outer({"inner": "nope"})
    assert found == ["inner: expected a mapping, got a string"]
    assert obj is None


def test_build_unsupported_type_is_a_programming_error() -> None:
    @dataclass
    class Weird:
        x: set[int] = field(default_factory=set)

    with pytest.raises(TypeError, match="unsupported type"):
        build(Weird, {"x": [1]}, "", [])


def test_auth_config_is_checked() -> None:
    from orun.state.config import parse_config as parse

    good = parse("security: {app_default_auth_type: 'forward:gate'}\n"
                 "auth:\n  forward: {gate: {url: 'http://127.0.0.1:9/check', "
                 "copy_headers: [Remote-User]}}\n"
                 "  oidc: {corp: {issuer: 'https://id.example.test', client_id: orun}}\n")
    assert good.auth.forward["gate"].copy_headers == ["Remote-User"]
    assert good.auth.oidc["corp"].scopes == ["openid", "email", "profile"]
    cases = {
        "auth: {forward: {gate: {url: 'ftp://x'}}}":
            "auth.forward.gate.url: 'ftp://x' is not an http(s) URL with a host",
        "auth: {forward: {gate: {url: 'http://u:p@x/'}}}":
            "auth.forward.gate.url: credentials do not belong in the URL",
        "auth: {oidc: {corp: {issuer: 'https://i', client_id: c, scope: [x]}}}":
            "auth.oidc.corp.scope: unknown key",
        "auth: {oidc: {corp: {issuer: 'https://i'}}}":
            "auth.oidc.corp.client_id: required key is missing",
        "auth: {forward: {'bad name': {url: 'http://x/'}}}":
            "auth.forward: 'bad name' is not a valid provider name",
        "security: {app_default_auth_type: 'oidc:nope'}":
            "security.app_default_auth_type: unknown OIDC provider 'nope'",
        "security: {app_default_auth_type: default}":
            "security.app_default_auth_type: must name an auth type",
        "security: {app_default_auth_type: 'what:ever'}":
            "security.app_default_auth_type: invalid auth type 'what:ever'",
    }
    for text, problem in cases.items():
        with pytest.raises(ConfigError) as err:
            parse(text)
        assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
