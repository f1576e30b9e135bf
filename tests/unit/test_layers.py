"""The layering of orun's imports holds (see docs/architecture.md and tests/layering.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.layering import LAYERS, ROOT, check, cycles, import_graph, layer_of


def test_imports_run_one_way_and_form_no_cycles() -> None:
    report = check(import_graph())
    assert report.lines() == []


def test_the_check_fails_when_an_upward_import_comes_back(tmp_path: Path) -> None:
    """A copy of the real tree with one import added from the data layer to the API and
    one from the proxy to the runtime: both are reported, and so is the cycle."""
    shutil.copytree(ROOT / "orun", tmp_path / "orun")
    model = tmp_path / "orun" / "state" / "model.py"
    model.write_text(model.read_text() + "\nfrom orun.api.admin import make_admin_app\n")
    handler = tmp_path / "orun" / "proxy" / "handler.py"
    handler.write_text(handler.read_text() + "\nfrom orun.runtime.runtime import Runtime\n")
    report = check(import_graph(tmp_path))
    assert "orun.state.model (data) -> orun.api.admin (api)" in report.upward
    sibling = "orun.proxy.handler (proxy) -> orun.runtime.runtime (runtime, a sibling)"
    assert sibling in report.upward
    assert any("orun.state.model" in group and "orun.api.admin" in group
               for group in report.cycles)
    assert not report.ok


def test_only_the_cli_entry_imports_the_server() -> None:
    graph = {"orun.api.admin": {"orun.server"}, "orun.cli.main": {"orun.server"},
             "orun.server": set()}
    assert check(graph).upward == [
        "orun.api.admin -> orun.server (only the CLI entry starts the server)"]


def test_layer_lookup_takes_the_longest_prefix() -> None:
    names = [name for name, _ in LAYERS]
    assert names[layer_of("orun.errors")] == "base"
    assert names[layer_of("orun.state.store")] == "data"
    assert names[layer_of("orun.server")] == "entry"
    assert layer_of("elsewhere.module") == -1


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
