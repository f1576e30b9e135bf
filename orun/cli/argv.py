"""Argument-vector fixes so OpenRun's documented commands work as written.

OpenRun's CLI (Go) accepts single-dash long flags (`-param url=...`, `-cvol a:/b`);
argparse does not, so known long flags written with one dash get a second one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence


def long_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every `--name` any (sub)parser accepts, without the dashes."""
    names: set[str] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            for opt in action.option_strings:
                if opt.startswith("--"):
                    names.add(opt[2:])
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return names


def normalize_go_flags(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """`-param x` -> `--param x`, `-cvol=a` -> `--cvol=a`; short flags stay as they are."""
    known = set(known)
    out: list[str] = []
    rest = False
    for tok in argv:
        if rest or tok == "--":
            rest = True
            out.append(tok)
            continue
        if tok.startswith("-") and not tok.startswith("--") and len(tok) > 2:
            name = tok[1:].split("=", 1)[0]
            if name in known:
                tok = "-" + tok
        out.append(tok)
    return out
