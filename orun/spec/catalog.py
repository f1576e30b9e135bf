"""Where specs come from: the bundled `specs/` folder, overridden by `$ORUN_HOME/specs`.

A folder in `$ORUN_HOME/specs/NAME` wholly replaces a bundled spec of the same name (no
per-file merge, as in OpenRun) or adds a new one. The catalogue is re-read on each use so
a new custom spec needs no restart.
"""

from __future__ import annotations

from pathlib import Path

from orun.errors import SpecError
from orun.spec.model import SPEC_FILE, Spec, load_spec_dir


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
