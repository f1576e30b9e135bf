"""Param values: checked against a spec at create time, typed, and rendered as env.

Values arrive as strings (`--param k=v`); messages match OpenRun's, because users and
scripts match on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orun.errors import SpecError
from orun.spec.model import ParamSpec

_ATOI = re.compile(r"[+-]?[0-9]+")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _parse(name: str, spec: ParamSpec, raw: str) -> Any:
    if spec.type == "string":
        return raw
    if spec.type == "int":
        # Go's strconv.Atoi: optional sign and ASCII digits only (no spaces, no `_`,
        # no non-ASCII digits, which Python's int() would all accept), within int64.
        value = int(raw) if _ATOI.fullmatch(raw) else None
        if value is None or not -(2**63) <= value < 2**63:
            raise SpecError(f"error parsing param {name}: param {name} is not an int")
        return value
    if spec.type == "bool":
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise SpecError(f"error parsing param {name}: param {name} is not a boolean")
    want, label = (dict, "dict") if spec.type == "dict" else (list, "list")
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, want):
        raise SpecError(f"error parsing param {name}: param {name} is not a json {label}")
    return value


def _zero(spec: ParamSpec) -> Any:
    return {"string": "", "int": 0, "bool": False, "list": [], "dict": {}}[spec.type]


def resolve_params(specs: Mapping[str, ParamSpec], values: Mapping[str, str]) -> dict[str, Any]:
    """Effective typed params: defaults, overridden by `values`; undeclared values pass.

    Raises `SpecError` with OpenRun's wording for a missing required param or a value
    that does not parse.
    """
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in values:
            raw = values[name]
            if spec.is_required and spec.type == "string" and raw == "":
                raise SpecError(f"param {name} is a required param, value cannot be empty")
            out[name] = _parse(name, spec, raw)
        elif spec.is_required:
            raise SpecError(f"param {name} is a required param, a value has to be provided")
        else:
            out[name] = spec.default if spec.default is not None else _zero(spec)
    for name, raw in values.items():
        if name not in specs:
            out[name] = raw
    return out


def env_value(value: Any) -> str:
    """Render a typed param as an env var value: ints as digits, bools as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
