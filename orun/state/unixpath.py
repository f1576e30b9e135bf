"""Unix socket paths longer than the kernel's ~107-byte limit.

`$ORUN_HOME` can be deep (CI temp dirs, long home paths). Instead of chdir-ing the
process, a long socket path is reached through an `O_PATH` descriptor of its folder:
`/proc/self/fd/N/orun.sock` is short and resolves to the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

_LIMIT = 100
_dir_fds: dict[str, int] = {}


def usable_socket_path(path: Path) -> str:
    text = str(path)
    if len(text.encode()) <= _LIMIT:
        return text
    folder = str(path.parent)
    fd = _dir_fds.get(folder)
    if fd is None:
        fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        _dir_fds[folder] = fd
    return f"/proc/self/fd/{fd}/{path.name}"
