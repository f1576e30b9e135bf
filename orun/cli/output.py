"""How the list commands print their rows: `--format basic|table|json|jsonl|csv`.

One place for every listing (apps, versions, tokens, audit rows, certificates, specs,
params), so each command only says which columns it has:

- `basic`: the few columns a person scans, aligned, with a header line;
- `table`: every column (`basic`'s and more), aligned;
- `csv`: the table's columns, quoted by the csv module (a value may hold commas, quotes
  or newlines), with a header row;
- `json`: the rows as the server sent them, pretty-printed as one array;
- `jsonl`: one compact JSON object per line (for `jq`, `grep`, streaming readers).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("basic", "table", "json", "jsonl", "csv")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """A header and how a row's cell is made (always text; "-" for nothing)."""

    header: str
    cell: Callable[[Row], str]


def add_format_option(parser: argparse.ArgumentParser, *extra: str,
                      default: str = "basic") -> None:
    """The `--format/-f` option of a list command (`extra`: formats of its own)."""
    parser.add_argument("--format", "-f", choices=(*FORMATS, *extra), default=default,
                        help="basic (default), table (all columns), json, jsonl or csv")


def emit(fmt: str, rows: Sequence[Row], table: Sequence[Column],
         basic: Sequence[Column] | None = None, *, title: str = "",
         out: TextIO | None = None) -> None:
    """Print `rows` in format `fmt`. `basic` defaults to the table's columns; `title`
    is a line printed above the aligned formats only (never inside machine formats)."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(list(rows), indent=2) + "\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.header for c in table])
        writer.writerows([c.cell(row) for c in table] for row in rows)
    else:
        if title:
            out.write(title + "\n")
        columns = basic if fmt == "basic" and basic is not None else table
        out.write(aligned([c.header for c in columns],
                          [[c.cell(row) for c in columns] for row in rows]))


def aligned(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, the last one unpadded."""
    lines = [header, *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for line in lines:
        padded = [value.ljust(width) for value, width in zip(line[:-1], widths, strict=False)]
        text.append("  ".join([*padded, line[-1]]).rstrip() if line else "")
    return "\n".join(text) + "\n"


def text(value: Any) -> str:
    """A cell: "-" for a missing or empty value."""
    if value is None or value == "":
        return "-"
    return str(value)


def size(n: int | None) -> str:
    """Bytes for a person: 512B, 12.3MiB, 1.5GiB ("-" for none)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
