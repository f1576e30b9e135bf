"""The built wheel carries every file of every bundled spec and every module of orun."""

from __future__ import annotations

import zipfile

from orun.spec.catalog import bundled_specs_dir
from tests.packaging import ROOT, built_wheel


def _files(root_name: str, suffix: str = "") -> set[str]:
    root = ROOT / root_name
    return {p.relative_to(root).as_posix() for p in root.rglob("*" + suffix)
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_carries_every_spec_file_and_module() -> None:
    names = zipfile.ZipFile(built_wheel()).namelist()
    in_wheel = {n.removeprefix("orun/specs/") for n in names if n.startswith("orun/specs/")}
    assert in_wheel == _files("specs")
    assert {".dockerignore", "Containerfile"} <= {n.rpartition("/")[2] for n in in_wheel}
    modules = {n.removeprefix("orun/") for n in names
               if n.startswith("orun/") and n.endswith(".py") and "/specs/" not in n}
    assert modules == _files("orun", ".py")
    assert "orun/py.typed" in names
    # nothing is installed outside the package (the old data_files went to share/orun)
    assert not [n for n in names if not n.startswith(("orun/", "orun-"))]


def test_a_checkout_uses_its_own_specs_folder() -> None:
    # (the tests run from a checkout, with an editable install; the wheel's own case is
    # tests/e2e/test_wheel_install.py)
    assert bundled_specs_dir() == ROOT / "specs"
