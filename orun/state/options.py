"""Container options (`--copt key=value`), checked and turned into Engine API fields.

OpenRun appends allowed flags to a `docker run` command line; orun talks to the Engine
API, so each allowed flag is mapped onto the container-create body instead. Routing
follows OpenRun: `cpus` and `memory` are built in, `command.<flag>` applies to any
engine, `docker.<flag>` / `podman.<flag>` only to that engine, and every flag must be
allowed by `security.allowed_container_args`. Where OpenRun silently drops an unknown
unprefixed key, orun reports it, since a dropped limit is a surprise found in production.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any

from orun.errors import ContainerConfigError

_K8S_FORMAT = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([A-Za-z]*|[eE][-+]?[0-9]+)$")
_K8S_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_DOCKER_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([bkmgt])?b?$", re.IGNORECASE)
_DOCKER_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_DECIMAL_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_IGNORED_KEYS = frozenset({"min_replicas", "max_replicas"})
_ULIMITS = frozenset({"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                      "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"})


def _quantity(value: str) -> Decimal:
    """A Kubernetes quantity (`500m`, `1.5`, `2Gi`, `1e3`) as an exact decimal."""
    m = _QUANTITY.match(value.strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression '{_K8S_FORMAT}'")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return number.scaleb(int(suffix[1:]))
    if suffix not in _K8S_SUFFIXES:
        raise ValueError(f"unknown unit {suffix!r}")
    return number * _K8S_SUFFIXES[suffix]


def parse_cpus(value: str) -> float:
    """CPU cores from `2`, `0.5` or `500m` (Kubernetes quantity syntax, as in OpenRun).

    At least 0.01, the smallest share the Docker daemon accepts."""
    try:
        cpus = _quantity(value)
        if cpus < Decimal("0.01"):
            raise ValueError("must be at least 0.01")
    except (ValueError, InvalidOperation) as e:
        raise ContainerConfigError(f'error parsing cpus value "{value}": {e}') from None
    return float(cpus)


def parse_memory(value: str) -> int:
    """Bytes from `536870912`, Docker units (`512m`, `1gb`, `0.5g`, any case: binary
    multiples) or Kubernetes units (`512Mi`, `1Gi` binary; `500M`, `1G` decimal)."""
    text = value.strip()
    try:
        if text.isdigit():
            size = Decimal(text)
        elif len(text) > 1 and text[-1] in _DECIMAL_UNITS and text[-2].isdigit():
            # `500M` is a Kubernetes decimal quantity, not Docker's 500 MiB
            size = _quantity(text[:-1]) * _DECIMAL_UNITS[text[-1]]
        elif m := _DOCKER_MEMORY.match(text):
            size = Decimal(m.group(1)) * _DOCKER_UNITS[(m.group(2) or "").lower()]
        else:
            size = _quantity(text)
        if size <= 0:
            raise ValueError("must be greater than zero")
    except (ValueError, InvalidOperation) as e:
        raise ContainerConfigError(f'error parsing memory value "{value}": {e}') from None
    return math.ceil(size)


# -- flag mapping -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    """Fragments to merge into a container-create body: `HostConfig` keys and top-level
    (`Config`) keys. List-valued HostConfig keys (`ExtraHosts`, ...) are meant to be
    appended to what the caller already has."""

    host_config: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


class _Invalid(ValueError):
    """A flag value orun cannot map; the message completes `container argument "f" ...`."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _Invalid(f'value "{value}" is not a boolean (true or false)')


def _needs(value: str) -> str:
    if not value.strip():
        raise _Invalid("needs a value")
    return value.strip()


def _items(value: str) -> list[str]:
    items = [v.strip() for v in _needs(value).split(",") if v.strip()]
    if not items:
        raise _Invalid("needs a value")
    return items


def _extra_hosts(value: str) -> list[str]:
    hosts = []
    for item in _items(value):
        sep = min((i for i in (item.find(":"), item.find("=")) if i > 0), default=-1)
        if sep < 0 or sep == len(item) - 1:
            raise _Invalid(f'value "{item}" is not host:ip')
        hosts.append(f"{item[:sep]}:{item[sep + 1:]}")
    return hosts


def _size(value: str) -> int:
    try:
        return parse_memory(_needs(value))
    except ContainerConfigError:
        raise _Invalid(f'value "{value}" is not a size (like 64m or 1g)') from None


def _int(value: str, minimum: int) -> int:
    try:
        number = int(_needs(value))
    except ValueError:
        raise _Invalid(f'value "{value}" is not an integer') from None
    if number < minimum:
        raise _Invalid(f'value "{value}" must be at least {minimum}')
    return number


def _tmpfs(value: str) -> dict[str, str]:
    path, _, opts = _needs(value).partition(":")
    if not PurePosixPath(path).is_absolute():
        raise _Invalid(f'path "{path}" must be absolute')
    return {path: opts}


def _ulimit(value: str) -> dict[str, Any]:
    name, eq, limits = _needs(value).partition("=")
    if not eq or name not in _ULIMITS:
        raise _Invalid(f'value "{value}" is not name=soft[:hard] with a known limit name')
    soft_text, colon, hard_text = limits.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if colon else soft
    except ValueError:
        raise _Invalid(f'value "{value}" has a limit that is not an integer') from None
    if soft > hard >= 0:
        raise _Invalid(f'value "{value}" has a soft limit above the hard limit')
    return {"Name": name, "Soft": soft, "Hard": hard}


def _dns(value: str) -> list[str]:
    for item in (items := _items(value)):
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise _Invalid(f'value "{item}" is not an IP address') from None
    return items


def _security_opt(value: str) -> list[str]:
    opt = _needs(value)
    key, _, profile = opt.partition("=")
    if key == "seccomp" and profile not in ("unconfined", "") and not profile.startswith("{"):
        # The docker CLI reads a profile file; the Engine API wants the JSON itself.
        raise _Invalid(f'value "{value}": use seccomp=unconfined or an inline JSON profile')
    return [opt]


def _workdir(value: str) -> str:
    path = _needs(value)
    if not PurePosixPath(path).is_absolute():
        raise _Invalid(f'value "{value}" must be an absolute path')
    return path


#: flag -> (section, Engine API key, how the value is converted, appended or replaced)
_Spec = tuple[str, str, Callable[[str], Any], bool]
_FLAGS: dict[str, _Spec] = {
    "add-host": ("host", "ExtraHosts", _extra_hosts, True),
    "cap-add": ("host", "CapAdd", _items, True),
    "cap-drop": ("host", "CapDrop", _items, True),
    "cpu-shares": ("host", "CpuShares", lambda v: _int(v, 0), False),
    "cpus": ("host", "NanoCpus", lambda v: round(parse_cpus(_needs(v)) * 1e9), False),
    "dns": ("host", "Dns", _dns, True),
    "group-add": ("host", "GroupAdd", _items, True),
    "init": ("host", "Init", _bool, False),
    "memory": ("host", "Memory", _size, False),
    "memory-reservation": ("host", "MemoryReservation", _size, False),
    "network": ("host", "NetworkMode", _needs, False),
    "pids-limit": ("host", "PidsLimit", lambda v: _int(v, -1), False),
    "privileged": ("host", "Privileged", _bool, False),
    "read-only": ("host", "ReadonlyRootfs", _bool, False),
    "security-opt": ("host", "SecurityOpt", _security_opt, True),
    "shm-size": ("host", "ShmSize", _size, False),
    "tmpfs": ("host", "Tmpfs", _tmpfs, True),
    "ulimit": ("host", "Ulimits", lambda v: [_ulimit(v)], True),
    "hostname": ("config", "Hostname", _needs, False),
    "stop-signal": ("config", "StopSignal", _needs, False),
    "user": ("config", "User", _needs, False),
    "workdir": ("config", "WorkingDir", _workdir, False),
}
SUPPORTED_FLAGS = tuple(sorted(_FLAGS))


def _check_allowed(flag: str, value: str, allowed: Mapping[str, str]) -> None:
    """OpenRun's allow-list rule: key present; "" = valueless; `regex:`; else exact."""
    if flag not in allowed:
        raise ContainerConfigError(f'container argument "{flag}" is not allowed')
    rule = allowed[flag]
    if rule == "":
        if value:
            raise ContainerConfigError(f'container argument "{flag}" does not allow a value')
        return
    if rule.startswith("regex:"):
        try:
            ok = re.search(rule[len("regex:"):], value) is not None
        except re.error as e:
            raise ContainerConfigError(f'security.allowed_container_args: "{flag}" has an '
                                       f"invalid regex: {e}") from None
    else:
        ok = value == rule
    if not ok:
        raise ContainerConfigError(f'container argument "{flag}" value "{value}" is not allowed')


def _apply(options: ContainerOptions, flag: str, value: str) -> None:
    spec = _FLAGS.get(flag)
    if spec is None:
        raise ContainerConfigError(f'container argument "{flag}" is not supported by orun '
                                   f"(supported: {', '.join(SUPPORTED_FLAGS)})")
    section, key, convert, append = spec
    try:
        converted = convert(value)
    except _Invalid as e:
        raise ContainerConfigError(f'container argument "{flag}" {e}') from None
    target = options.host_config if section == "host" else options.config
    if not append:
        target[key] = converted
    elif isinstance(converted, dict):
        target[key] = {**target.get(key, {}), **converted}
    else:
        target[key] = [*target.get(key, []), *converted]


def parse_container_options(
    copts: Mapping[str, str], allowed: Mapping[str, str], engine: str = "docker"
) -> ContainerOptions:
    """Check `copts` and map them to Engine API fields, raising ContainerConfigError.

    Keys are applied in sorted order, so an engine-specific `docker.<flag>` overrides a
    `command.<flag>` for single-valued settings; list settings accumulate.
    """
    engine_name = engine.replace("\\", "/").rsplit("/", 1)[-1]
    options = ContainerOptions()
    for key in sorted(copts):
        value = copts[key]
        if key == "cpus":
            options.host_config["NanoCpus"] = round(parse_cpus(value) * 1e9)
            continue
        if key == "memory":
            options.host_config["Memory"] = parse_memory(value)
            continue
        if key in _IGNORED_KEYS:
            continue  # replica counts only mean something on Kubernetes
        prefix, dot, flag = key.partition(".")
        if not dot or prefix not in ("command", "docker", "podman") or not flag:
            raise ContainerConfigError(
                f'unknown container option "{key}": use cpus, memory, or command.<flag> with '
                "the flag allowed in security.allowed_container_args")
        if prefix != "command" and prefix != engine_name:
            continue
        _check_allowed(flag, value, allowed)
        _apply(options, flag, value)
    return options


__all__ = ["SUPPORTED_FLAGS", "ContainerOptions", "parse_container_options", "parse_cpus",
           "parse_memory"]
