"""`--format basic|table|json|jsonl|csv` on every list command, against a real server:
each machine format parses back to the same rows, and the aligned ones have their
columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.conftest import Orun

FORMATS = ("basic", "table", "json", "jsonl", "csv")


async def formats(server: Orun, *args: str) -> dict[str, str]:
    return {fmt: (await server.cli(*args, "--format", fmt)).ok().out for fmt in FORMATS}


def check_machine_formats(out: dict[str, str], key: str,
                          skip: str = "") -> list[dict[str, str]]:
    """json, jsonl and csv list the same rows (leaving out those whose `key` is `skip`);
    returns the csv rows."""
    rows = [r for r in json.loads(out["json"]) if str(r[key.lower()]) != skip]
    assert [r for r in map(json.loads, out["jsonl"].splitlines())
            if str(r[key.lower()]) != skip] == rows
    table = [r for r in csv.DictReader(io.StringIO(out["csv"])) if r[key] != skip]
    assert [r[key] for r in table] == [str(r[key.lower()]) for r in rows]
    return table


def header(text: str, line: int = 0) -> list[str]:
    return text.splitlines()[line].split()


async def test_list_commands_in_every_format(orun: Orun, site: Path) -> None:
    (await orun.cli("app", "create", "--spec", "static", str(site), "/a")).ok()
    (await orun.cli("app", "create", "--spec", "static", str(site), "b.:")).ok()
    (await orun.cli("app", "create", "--spec", "proxy", "--param",
                    "url=http://127.0.0.1:9/x,y", "-", "/p")).ok()
    (await orun.cli("token", "create", "ci")).ok()

    apps = await formats(orun, "app", "list", "-i")
    assert header(apps["basic"]) == ["Name", "Type", "Ver", "Auth", "AppPath"]
    assert ["a", "PROD", "1", "DEFAULT", "/a"] in map(str.split, apps["basic"].splitlines())
    assert header(apps["table"]) == ["Name", "Id", "Type", "Version", "Auth", "AppPath",
                                     "SourceUrl", "Spec", "GitInfo", "State", "CPU%", "Mem"]
    rows = json.loads(apps["json"])
    assert sorted(a["app_path"] for a in rows) == sorted(
        ["/a", "stage.localhost:/a", "b.localhost:/", "stage.b.localhost:/", "/p",
         "stage.localhost:/p"])
    table = list(csv.DictReader(io.StringIO(apps["csv"])))
    assert [r["AppPath"] for r in table] == [a["app_path"] for a in rows]
    assert [r["Id"] for r in table] == [a["id"] for a in rows]
    assert {r["Type"] for r in table} == {"PROD", "STG"}
    assert {(r["Name"], r["SourceUrl"]) for r in table if r["AppPath"] == "b.localhost:/"} \
        == {("b.localhost", str(site))}
    assert [json.loads(line) for line in apps["jsonl"].splitlines()] == rows

    versions = await formats(orun, "version", "list", "/a")
    assert versions["basic"].splitlines()[0].startswith("Versions of /a (app_prd_")
    assert header(versions["table"], 1) == ["Version", "Current", "Created", "Branch",
                                            "Commit", "Spec", "Message"]
    assert check_machine_formats(versions, "Version")[0]["Current"] == "*"

    tokens = await formats(orun, "token", "list")
    assert header(tokens["basic"]) == ["Name", "Scope", "Created", "LastUsed", "Expires"]
    assert check_machine_formats(tokens, "Name")[0]["Scope"] == "admin"

    audit = await formats(orun, "audit", "list", "--app", "/a")
    rows_audit = check_machine_formats(audit, "Action", skip="audit.list")  # adds rows
    assert ("app.create", "/a") in {(r["Action"], r["Target"]) for r in rows_audit}
    assert header(audit["basic"]) == ["Time", "Actor", "Remote", "Action", "Target",
                                      "Outcome"]

    certs = await formats(orun, "cert", "list")
    assert check_machine_formats(certs, "Domain")[0]["Domain"] == "*"
    assert "Serial" in header(certs["table"]) and "Serial" not in header(certs["basic"])

    specs = await formats(orun, "spec", "list")
    spec_rows = check_machine_formats(specs, "Name")
    assert {"static", "proxy", "python-flask"} <= {r["Name"] for r in spec_rows}
    # a description with commas stays one field
    assert any("," in r["Description"] for r in spec_rows)
    assert "| `python-flask` |" in (await orun.cli("spec", "list", "-f", "markdown")).ok().out

    params = await formats(orun, "param", "list", "/p")
    assert params["basic"].splitlines()[1:] == ["  url: http://127.0.0.1:9/x,y"]
    assert check_machine_formats(params, "Name") == [
        {"Name": "url", "Value": "http://127.0.0.1:9/x,y"}]

    bad = await orun.cli("app", "list", "-f", "yaml")
    assert bad.code == 1 and bad.err.startswith("error: argument --format/-f: invalid choice")
