"""read_confined: a file under a folder, never through a symlink at any level."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from orun.sources.confined import NotConfined, read_confined


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file.txt").write_text("inside")
    (tmp_path / "outside.txt").write_text("host secret")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "file.txt").write_text("host secret")
    return root


def test_reads_a_file_inside(root: Path) -> None:
    assert read_confined(root, "sub/file.txt") == b"inside"
    assert read_confined(root, "./sub//file.txt") == b"inside"


def test_a_symlinked_file_is_refused(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "outside.txt")
    with pytest.raises(NotConfined) as exc:
        read_confined(root, "link.txt")
    assert exc.value.errno == errno.ELOOP


def test_a_link_to_a_file_inside_is_refused_too(root: Path) -> None:
    (root / "again.txt").symlink_to(root / "sub" / "file.txt")
    with pytest.raises(NotConfined):
        read_confined(root, "again.txt")


def test_a_symlinked_folder_is_refused(root: Path) -> None:
    (root / "dir").symlink_to(root.parent / "outdir")
    with pytest.raises(NotConfined):
        read_confined(root, "dir/file.txt")


@pytest.mark.parametrize("rel", ["../outside.txt", "sub/../../outside.txt", "", "."])
def test_dot_dot_and_empty_are_refused(root: Path, rel: str) -> None:
    with pytest.raises(NotConfined):
        read_confined(root, rel)


def test_missing_and_special_files(root: Path) -> None:
    with pytest.raises(NotConfined) as exc:
        read_confined(root, "nope.txt")
    assert exc.value.errno == errno.ENOENT
    os.mkfifo(root / "pipe")
    with pytest.raises(NotConfined):
        read_confined(root, "pipe")  # opened non-blocking, refused as not a regular file
    with pytest.raises(NotConfined):
        read_confined(root, "sub")


def test_size_limit(root: Path) -> None:
    (root / "big").write_bytes(b"x" * 100)
    with pytest.raises(NotConfined) as exc:
        read_confined(root, "big", limit=10)
    assert exc.value.errno == errno.EFBIG
