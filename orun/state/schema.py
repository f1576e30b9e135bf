"""A small typed validator: plain data (from YAML or JSON) into frozen dataclasses.

Why not a schema library: the config needs exactly four things (typed fields, nested
sections, defaults, and *every* problem reported by its key path in one pass), and the
dataclasses double as the typed objects the rest of orun reads. Field constraints live in
`field(metadata=...)` next to the field they constrain.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast, get_args, get_origin

T = TypeVar("T")

#: metadata key: a callable returning an error string (or None) for a converted value.
CHECK = "check"


def check(fn: Callable[[Any], str | None]) -> dict[str, Any]:
    """Field metadata that runs `fn` on the converted value."""
    return {CHECK: fn}


def _typename(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """Convert `value` to type `tp`, appending problems; returns None on failure."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
        for candidate in inner:
            scratch: list[str] = []
            result = _convert(candidate, value, path, scratch)
            if not scratch:
                return result
        problems.append(f"{path}: unexpected value {value!r}")
        return None
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            problems.append(f"{path}: must be one of {choices}, got {value!r}")
            return None
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, path, problems)
    if origin in (list, tuple):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {_typename(value)}")
            return None
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, _join(path, i), problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {_typename(value)}")
            return None
        key_tp, val_tp = get_args(tp) or (str, Any)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if key_tp is str and not isinstance(k, str):
                problems.append(f"{_join(path, str(k))}: keys must be strings")
                continue
            out[k] = _convert(val_tp, v, _join(path, str(k)), problems)
        return types.MappingProxyType(out) if origin is Mapping else out
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {_typename(value)}")
            return None
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {_typename(value)}")
            return None
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {_typename(value)}")
            return None
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {_typename(value)}")
            return None
        return value
    raise TypeError(f"schema: unsupported type {tp!r} at {path}")  # programming error


@functools.cache
def _shape(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A dataclass's resolved type hints and its fields, worked out once per class.

    `typing.get_type_hints` evaluates every (string) annotation again on each call; a
    config with a thousand `apps:` entries would pay that a thousand times per read.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return typing.get_type_hints(cls), fields


def build(cls: type[T], data: Any, path: str, problems: list[str]) -> T:
    """Build dataclass `cls` from mapping `data`, collecting every problem found.

    Missing keys take the field default; unknown keys are problems (a typo in a config
    file should never be silently ignored). On problems the returned object is built
    from defaults where values were bad, so callers must check `problems` first.
    """
    if data is None:
        data = {}
    shape_ok = isinstance(data, dict)
    if not shape_ok:
        problems.append(f"{path or 'top level'}: expected a mapping, got {_typename(data)}")
        data = {}
    hints, fields = _shape(cast(type, cls))
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(f"{_join(path, str(key))}: unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        before = len(problems)
        value = _convert(hints[name], data[name], _join(path, name), problems)
        if len(problems) != before:
            continue
        checker = f.metadata.get(CHECK)
        if checker is not None:
            err = checker(value)
            if err:
                problems.append(f"{_join(path, name)}: {err}")
                continue
        kwargs[name] = value
    # a non-mapping was already reported; its "missing keys" would only repeat that
    missing = [] if not shape_ok else [
        n for n, f in fields.items()
        if n not in kwargs and n not in data
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in missing:
        problems.append(f"{_join(path, name)}: required key is missing")
    try:
        return cls(**kwargs)
    except TypeError:
        # Only reachable when required keys had bad values; problems already say why.
        return typing.cast(T, None)
