"""The one packaging fact setup.cfg cannot state (everything else lives there).

The repository's top-level `specs/` folder is the single source of the bundled specs; the
wheel carries it as package data at `orun/specs/`, so an installed orun (pip, pipx,
`--user`, any prefix) finds them next to its own code. `packages = find:` in setup.cfg
cannot add a package that lives outside `orun/`, hence this mapping. Which spec files go
in is said in setup.cfg's `[options.package_data]` (dotfiles such as `.dockerignore`
included); tests/unit/test_wheel.py compares the built wheel with `specs/`.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["orun", "orun.*"]), "orun.specs"],
    package_dir={"orun.specs": "specs"},
)
