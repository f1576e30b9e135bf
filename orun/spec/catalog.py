"""Where specs come from: the bundled `specs/` folder, overridden by `$ORUN_HOME/specs`.

A folder in `$ORUN_HOME/specs/NAME` wholly replaces a bundled spec of the same name (no
per-file merge, as in OpenRun) or adds a new one. The catalogue is re-read on each use so
a new custom spec needs no restart.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from orun.errors import SpecError
from orun.spec.model import SPEC_FILE, Spec, load_spec_dir

#: what a spec may be called (a folder name, a `--spec` value, a word in a listing)
SPEC_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def bundled_specs_dir() -> Path:
    """The bundled specs: `orun/specs/` inside an installed wheel (package data, so any
    install prefix works: a venv, pipx, `pip install --user`), else the repository's
    top-level `specs/` beside the package (a checkout, or an editable install of one)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "specs"
    if installed.is_dir():
        return installed
    return package.parent / "specs"


class SpecCatalog:
    """Looks up specs by name. Blocking file access: call through `asyncio.to_thread`."""

    def __init__(self, home_specs: Path, bundled: Path | None = None) -> None:
        self.home_specs = home_specs
        self.bundled = bundled or bundled_specs_dir()

    def _dirs(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for root in (self.bundled, self.home_specs):
            if not root.is_dir():
                continue
            for d in sorted(root.iterdir()):
                if d.is_dir() and (d / SPEC_FILE).is_file():
                    found[d.name] = d
        return found

    def names(self) -> list[str]:
        return sorted(self._dirs())

    def get(self, name: str) -> Spec:
        path = self._dirs().get(name)
        if path is None:
            raise SpecError(f"invalid app spec {name}")
        return load_spec_dir(name, path)

    def all(self) -> list[Spec]:
        return [load_spec_dir(n, p) for n, p in sorted(self._dirs().items())]

    def path_of(self, name: str) -> Path:
        path = self._dirs().get(name)
        if path is None:
            raise SpecError(f"invalid app spec {name}")
        return path

    def copy(self, source: str, name: str) -> tuple[Path, bool]:
        """Copy spec `source` to `$ORUN_HOME/specs/<name>` to be edited there; returns
        the new folder and whether it overrides a bundled spec of that name. The
        example command is renamed; nothing else changes."""
        if not SPEC_NAME.match(name) or name == "auto":
            raise SpecError(f"invalid spec name {name!r}: use lower-case letters, digits, "
                            "'-', '_' and '.', starting with a letter or digit")
        origin = self.path_of(source)
        dest = self.home_specs / name
        if dest.exists():
            raise SpecError(f"spec {name} already exists in {dest}")
        overrides = (self.bundled / name / SPEC_FILE).is_file()
        self.home_specs.mkdir(parents=True, exist_ok=True)
        shutil.copytree(origin, dest, symlinks=True)
        spec_file = dest / SPEC_FILE
        text = spec_file.read_text(encoding="utf-8")
        spec_file.write_text(text.replace(f"--spec {source} ", f"--spec {name} "),
                             encoding="utf-8")
        return dest, overrides
