"""Read a file inside a folder without ever following a symlink out of it.

Snapshots hold no symlinks (the copier replaces in-tree links by what they point at),
so a symlink found in one later is tampering: a container that could write into the
source, or another user. Resolving a path and checking the result is racy (the link can
be swapped between check and open); instead every component is opened relative to its
parent's descriptor with `O_NOFOLLOW`, so the kernel refuses a link at any level and
what is read is exactly the file under the folder.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class NotConfined(OSError):
    """The path is missing, leaves the folder, passes through a symlink or is no file."""


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise NotConfined(errno.EINVAL, f"{rel}: not a path inside the folder")
    return parts


def read_confined(root: Path, rel: str, *, limit: int = 16 << 20) -> bytes:
    """The bytes of the regular file `root/rel`, refusing symlinks at every step.

    `root` itself is trusted (it may be reached through links); everything below it
    is not. Raises `NotConfined` (an OSError) for a missing file, a symlink, a
    non-regular file, `..` in `rel`, or a file larger than `limit`. Blocking.
    """
    parts = _parts(rel)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotConfined(exc.errno, f"{root}: {exc.strerror}") from None
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise NotConfined(exc.errno, _why(rel, exc)) from None
            os.close(fd)
            fd = child
        try:
            file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise NotConfined(exc.errno, _why(rel, exc)) from None
    finally:
        os.close(fd)
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotConfined(errno.EINVAL, f"{rel}: not a regular file")
        if info.st_size > limit:
            raise NotConfined(errno.EFBIG, f"{rel}: larger than {limit} bytes")
        os.set_blocking(file_fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(file_fd, 1 << 16)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(file_fd)
    if size > limit:
        raise NotConfined(errno.EFBIG, f"{rel}: larger than {limit} bytes")
    return b"".join(chunks)


def _why(rel: str, exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return f"{rel}: a symlink (or no folder) where a folder or file should be"
    if exc.errno == errno.ENOENT:
        return f"{rel}: not found"
    return f"{rel}: {exc.strerror}"


__all__ = ["NotConfined", "read_confined"]
