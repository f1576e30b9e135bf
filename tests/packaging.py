"""Build orun's wheel once per test session (the wheel tests share it).

It is built from a copy of the checkout's files (tracked and new, not ignored ones), so
a stale `build/` folder or a local `.venv` never leaks into what is tested.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_OUT = tempfile.TemporaryDirectory(prefix="orun-wheel-")


def source_files() -> list[str]:
    """The checkout's files as git sees them (deleted ones left out)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


@functools.cache
def built_wheel() -> Path:
    """The wheel `pip wheel` makes from this checkout (what a user's pip or pipx builds)."""
    work = Path(_OUT.name)
    src = work / "src"
    for name in source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
         str(work / "dist"), str(src)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (work / "dist").glob("orun-*.whl")
    return wheel
