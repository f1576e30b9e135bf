"""The list formatter: every format parses back to the rows it was given."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from orun.cli.main import _APP_BASIC, _APP_TABLE
from orun.cli.output import FORMATS, Column, emit, size

ROWS = [{"name": 'tricky, "quoted"\nname', "n": 1}, {"name": "plain", "n": 22}]
TABLE = (Column("Name", lambda r: r["name"]), Column("N", lambda r: str(r["n"])))


def render(fmt: str, rows: list[dict[str, Any]], *columns: Any, **kw: Any) -> str:
    out = io.StringIO()
    emit(fmt, rows, *columns, out=out, **kw)
    return out.getvalue()


def test_csv_quotes_and_parses_back() -> None:
    parsed = list(csv.reader(io.StringIO(render("csv", ROWS, TABLE))))
    assert parsed == [["Name", "N"], ['tricky, "quoted"\nname', "1"], ["plain", "22"]]


def test_json_and_jsonl_are_the_rows() -> None:
    assert json.loads(render("json", ROWS, TABLE)) == ROWS
    assert [json.loads(ln) for ln in render("jsonl", ROWS, TABLE).splitlines()] == ROWS
    assert json.loads(render("json", [], TABLE)) == []
    assert render("jsonl", [], TABLE) == ""


def test_aligned_formats_pad_columns_and_show_the_title() -> None:
    rows = [{"name": "a", "n": 1}, {"name": "longer", "n": 333}]
    text = render("table", rows, TABLE, title="Things:")
    assert text.splitlines() == ["Things:", "Name    N", "a       1", "longer  333"]
    basic = render("basic", rows, TABLE, (TABLE[1],))
    assert basic.splitlines() == ["N", "1", "333"]
    assert "Things" not in render("csv", rows, TABLE, title="Things:")


def test_sizes() -> None:
    assert [size(n) for n in (None, 0, 512, 2048, 5 * 2**20 + 2**19, 3 * 2**30)] == \
        ["-", "0B", "512B", "2.0KiB", "5.5MiB", "3.0GiB"]


APP: dict[str, Any] = {
    "id": "app_prd_x", "path": "/docs", "domain": "", "kind": "prod", "source": "/srv/site",
    "app_path": "/docs", "staged_changes": True,
    "current": {"version": 3, "git_branch": "main", "git_commit": "0123456789abcdef0123456",
                "settings": {"spec": "python-flask", "auth": "", "branch": "", "commit": ""}},
    "runtime": {"state": "running"},
    "resources": {"cpu_percent": 12.345, "memory_bytes": 50 * 2**20,
                  "memory_limit_bytes": 2**30, "sampled_at": 1.0},
}


@pytest.mark.parametrize("resources", [APP["resources"], None])
def test_app_columns(resources: dict[str, Any] | None) -> None:
    app = {**APP, "resources": resources}
    header, row = render("basic", [app], _APP_TABLE, _APP_BASIC).splitlines()
    assert header.split() == ["Name", "Type", "Ver", "Auth", "AppPath"]
    assert row.split() == ["docs", "PROD*", "3", "DEFAULT", "/docs"]
    (cells,) = list(csv.DictReader(io.StringIO(render("csv", [app], _APP_TABLE))))
    assert list(cells) == ["Name", "Id", "Type", "Version", "Auth", "AppPath", "SourceUrl",
                           "Spec", "GitInfo", "State", "CPU%", "Mem"]
    assert cells["GitInfo"] == "main:0123456789abcdef0123"
    assert (cells["CPU%"], cells["Mem"]) == (("12.3", "50.0MiB") if resources else ("-", "-"))
    root = {**app, "path": "/", "domain": "svc.localhost", "kind": "stage"}
    assert render("basic", [root], _APP_TABLE, _APP_BASIC).splitlines()[1].split()[:2] == \
        ["svc.localhost", "STG"]


def test_every_format_is_known() -> None:
    assert FORMATS == ("basic", "table", "json", "jsonl", "csv")
