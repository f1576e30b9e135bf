"""Container options (`--copt`): cpus/memory units, the allow-list and Engine API mapping."""

from __future__ import annotations

import pytest

from orun.errors import ContainerConfigError
from orun.state.options import (
    SUPPORTED_FLAGS,
    ContainerOptions,
    parse_container_options,
    parse_cpus,
    parse_memory,
)

K8S_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ALL = dict.fromkeys(SUPPORTED_FLAGS, "regex:.*")


def error(copts: dict[str, str], allowed: dict[str, str] | None = None,
          engine: str = "docker") -> str:
    with pytest.raises(ContainerConfigError) as info:
        parse_container_options(copts, ALL if allowed is None else allowed, engine)
    return info.value.message


def opts(copts: dict[str, str], allowed: dict[str, str] | None = None,
         engine: str = "docker") -> ContainerOptions:
    return parse_container_options(copts, ALL if allowed is None else allowed, engine)


# -- cpus and memory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cpus"),
    [("2", 2.0), ("0.5", 0.5), ("500m", 0.5), ("1500m", 1.5), (".25", 0.25), ("1e0", 1.0),
     (" 3 ", 3.0), ("0.01", 0.01)],
)
def test_parse_cpus(value: str, cpus: float) -> None:
    assert parse_cpus(value) == cpus


def test_parse_cpus_errors() -> None:
    for value in ("x", "", "1.2.3x", "2 cores"):
        with pytest.raises(ContainerConfigError) as info:
            parse_cpus(value)
        assert info.value.message == (
            f"error parsing cpus value \"{value}\": quantities must match the regular "
            f"expression '{K8S_RE}'")
    for value in ("0", "-1", "1m"):
        with pytest.raises(ContainerConfigError) as info:
            parse_cpus(value)
        assert info.value.message == f'error parsing cpus value "{value}": must be at least 0.01'
    with pytest.raises(ContainerConfigError) as info:
        parse_cpus("2Q")
    assert info.value.message == "error parsing cpus value \"2Q\": unknown unit 'Q'"


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1048576", 1048576),
        ("512m", 512 * 2**20),
        ("512M", 512 * 10**6),  # Kubernetes decimal, as documented
        ("500M", 500_000_000),
        ("1g", 2**30),
        ("1G", 10**9),
        ("1gb", 2**30),
        ("1GB", 2**30),
        ("1Gb", 2**30),
        ("0.5g", 2**29),
        ("2k", 2048),
        ("2kb", 2048),
        ("2K", 2000),
        ("100b", 100),
        ("100B", 100),
        ("1t", 2**40),
        ("1T", 10**12),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("1.5Gi", 3 * 2**29),
        ("2Ki", 2048),
        ("1Ti", 2**40),
        ("1e3", 1000),
        ("1k", 1024),
    ],
)
def test_parse_memory(value: str, size: int) -> None:
    assert parse_memory(value) == size


def test_parse_memory_errors() -> None:
    with pytest.raises(ContainerConfigError) as info:
        parse_memory("lots")
    assert info.value.message == (
        f"error parsing memory value \"lots\": quantities must match the regular expression "
        f"'{K8S_RE}'")
    with pytest.raises(ContainerConfigError) as info:
        parse_memory("1Zi")
    assert info.value.message == "error parsing memory value \"1Zi\": unknown unit 'Zi'"
    with pytest.raises(ContainerConfigError) as info:
        parse_memory("0")
    assert info.value.message == 'error parsing memory value "0": must be greater than zero'


def test_builtin_cpus_and_memory() -> None:
    o = parse_container_options({"cpus": "500m", "memory": "512m"}, {})
    assert o.host_config == {"NanoCpus": 500_000_000, "Memory": 512 * 2**20}
    assert o.config == {}


def test_builtin_errors_use_openrun_text() -> None:
    assert error({"cpus": "x"}, {}).startswith('error parsing cpus value "x": ')
    assert error({"memory": "x"}, {}).startswith('error parsing memory value "x": ')


def test_replica_keys_are_ignored() -> None:
    assert parse_container_options({"min_replicas": "1", "max_replicas": "3"}, {}) == (
        ContainerOptions({}, {}))


def test_unknown_unprefixed_key() -> None:
    for key in ("hostname", "cpu-shares", "other.init", "command."):
        assert error({key: "x"}, {}) == (
            f'unknown container option "{key}": use cpus, memory, or command.<flag> with the '
            "flag allowed in security.allowed_container_args")


# -- the allow-list ---------------------------------------------------------------------------


def test_flag_not_allowed() -> None:
    assert error({"command.invalid": ""}, {"init": ""}) == (
        'container argument "invalid" is not allowed')


def test_valueless_flag() -> None:
    assert opts({"command.init": ""}, {"init": ""}).host_config == {"Init": True}
    assert error({"command.init": "true"}, {"init": ""}) == (
        'container argument "init" does not allow a value')


def test_regex_rule_is_unanchored() -> None:
    allowed = {"user": "regex:[0-9]+"}
    assert opts({"command.user": "app1000"}, allowed).config == {"User": "app1000"}
    assert error({"command.user": "app"}, allowed) == (
        'container argument "user" value "app" is not allowed')
    anchored = {"user": "regex:^[0-9]+$"}
    assert error({"command.user": "a1"}, anchored) == (
        'container argument "user" value "a1" is not allowed')


def test_exact_rule() -> None:
    allowed = {"network": "none"}
    assert opts({"command.network": "none"}, allowed).host_config == {"NetworkMode": "none"}
    assert error({"command.network": "host"}, allowed) == (
        'container argument "network" value "host" is not allowed')


def test_invalid_regex_in_config() -> None:
    assert error({"command.user": "x"}, {"user": "regex:("}).startswith(
        'security.allowed_container_args: "user" has an invalid regex: ')


def test_allowed_but_unsupported_flag() -> None:
    assert error({"command.device": "/dev/fuse"}, {"device": "regex:.*"}) == (
        'container argument "device" is not supported by orun (supported: '
        + ", ".join(sorted(SUPPORTED_FLAGS)) + ")")


def test_allowed_check_comes_before_the_support_check() -> None:
    assert error({"command.device": "/dev/fuse"}, {}) == (
        'container argument "device" is not allowed')


# -- engine routing ---------------------------------------------------------------------------


def test_engine_prefixes() -> None:
    copts = {"docker.user": "d", "podman.hostname": "p", "command.workdir": "/w"}
    docker = opts(copts)
    assert docker.config == {"User": "d", "WorkingDir": "/w"}
    podman = opts(copts, engine="podman")
    assert podman.config == {"Hostname": "p", "WorkingDir": "/w"}
    assert opts(copts, engine="/usr/bin/podman").config == podman.config


def test_skipped_engine_flags_are_not_checked() -> None:
    assert opts({"podman.invalid": "x"}, {}, engine="docker") == ContainerOptions({}, {})


def test_engine_specific_overrides_command() -> None:
    o = opts({"command.user": "a", "docker.user": "b", "command.cap-add": "NET_ADMIN",
              "docker.cap-add": "SYS_TIME"})
    assert o.config == {"User": "b"}
    assert o.host_config == {"CapAdd": ["NET_ADMIN", "SYS_TIME"]}


# -- mapping ----------------------------------------------------------------------------------


def test_default_allowed_add_host() -> None:
    o = parse_container_options({"command.add-host": "db:10.0.0.5"},
                                {"add-host": "regex:.*"})
    assert o.host_config == {"ExtraHosts": ["db:10.0.0.5"]}


def test_add_host_forms() -> None:
    o = opts({"command.add-host": "a:1.2.3.4, b=5.6.7.8,c:::1",
              "docker.add-host": "d:host-gateway"})
    assert o.host_config == {"ExtraHosts": ["a:1.2.3.4", "b:5.6.7.8", "c:::1", "d:host-gateway"]}
    assert error({"command.add-host": "nohost"}) == (
        'container argument "add-host" value "nohost" is not host:ip')
    assert error({"command.add-host": ""}) == 'container argument "add-host" needs a value'


@pytest.mark.parametrize(
    ("flag", "value", "section", "expected"),
    [
        ("init", "", "host", {"Init": True}),
        ("init", "false", "host", {"Init": False}),
        ("privileged", "true", "host", {"Privileged": True}),
        ("read-only", "", "host", {"ReadonlyRootfs": True}),
        ("cap-add", "NET_ADMIN,SYS_PTRACE", "host", {"CapAdd": ["NET_ADMIN", "SYS_PTRACE"]}),
        ("cap-drop", "ALL", "host", {"CapDrop": ["ALL"]}),
        ("shm-size", "256m", "host", {"ShmSize": 256 * 2**20}),
        ("shm-size", "1Gi", "host", {"ShmSize": 2**30}),
        ("pids-limit", "100", "host", {"PidsLimit": 100}),
        ("pids-limit", "-1", "host", {"PidsLimit": -1}),
        ("security-opt", "no-new-privileges", "host", {"SecurityOpt": ["no-new-privileges"]}),
        ("security-opt", "seccomp=unconfined", "host", {"SecurityOpt": ["seccomp=unconfined"]}),
        ("tmpfs", "/run", "host", {"Tmpfs": {"/run": ""}}),
        ("tmpfs", "/tmp:rw,size=64m", "host", {"Tmpfs": {"/tmp": "rw,size=64m"}}),
        ("ulimit", "nofile=1024:2048", "host",
         {"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]}),
        ("ulimit", "nproc=512", "host", {"Ulimits": [{"Name": "nproc", "Soft": 512, "Hard": 512}]}),
        ("ulimit", "core=-1", "host", {"Ulimits": [{"Name": "core", "Soft": -1, "Hard": -1}]}),
        ("network", "none", "host", {"NetworkMode": "none"}),
        ("dns", "1.1.1.1,2606:4700::1111", "host", {"Dns": ["1.1.1.1", "2606:4700::1111"]}),
        ("group-add", "audio,1001", "host", {"GroupAdd": ["audio", "1001"]}),
        ("cpus", "1.5", "host", {"NanoCpus": 1_500_000_000}),
        ("memory", "1g", "host", {"Memory": 2**30}),
        ("memory-reservation", "256m", "host", {"MemoryReservation": 256 * 2**20}),
        ("cpu-shares", "512", "host", {"CpuShares": 512}),
        ("user", "1000:1000", "config", {"User": "1000:1000"}),
        ("hostname", "web", "config", {"Hostname": "web"}),
        ("workdir", "/srv/app", "config", {"WorkingDir": "/srv/app"}),
        ("stop-signal", "SIGINT", "config", {"StopSignal": "SIGINT"}),
    ],
)
def test_flag_mapping(flag: str, value: str, section: str, expected: dict[str, object]) -> None:
    o = opts({f"command.{flag}": value})
    assert (o.host_config if section == "host" else o.config) == expected
    assert (o.config if section == "host" else o.host_config) == {}


def test_tmpfs_accumulates() -> None:
    o = opts({"command.tmpfs": "/a", "docker.tmpfs": "/b:size=1m"})
    assert o.host_config == {"Tmpfs": {"/a": "", "/b": "size=1m"}}


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("init", "maybe", 'value "maybe" is not a boolean (true or false)'),
        ("pids-limit", "many", 'value "many" is not an integer'),
        ("pids-limit", "-2", 'value "-2" must be at least -1'),
        ("shm-size", "big", 'value "big" is not a size (like 64m or 1g)'),
        ("tmpfs", "run:size=1m", 'path "run" must be absolute'),
        ("ulimit", "files=1", 'value "files=1" is not name=soft[:hard] with a known limit name'),
        ("ulimit", "nofile", 'value "nofile" is not name=soft[:hard] with a known limit name'),
        ("ulimit", "nofile=a:b", 'value "nofile=a:b" has a limit that is not an integer'),
        ("ulimit", "nofile=10:5", 'value "nofile=10:5" has a soft limit above the hard limit'),
        ("dns", "dns.google", 'value "dns.google" is not an IP address'),
        ("workdir", "app", 'value "app" must be an absolute path'),
        ("user", "", "needs a value"),
        ("cap-add", " , ", "needs a value"),
        ("security-opt", "seccomp=/etc/profile.json",
         'value "seccomp=/etc/profile.json": use seccomp=unconfined or an inline JSON profile'),
    ],
)
def test_flag_value_errors(flag: str, value: str, why: str) -> None:
    assert error({f"command.{flag}": value}) == f'container argument "{flag}" {why}'
