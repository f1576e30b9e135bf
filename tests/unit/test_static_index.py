"""FileIndex.scan decides what a static app can ever serve: no dotfiles (unless asked),
`.well-known/` at the top, no symlinks; the source wins over the spec overlay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orun.proxy.static import FileIndex, pick_index


def write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel in ("index.html", "a/b/c.txt", ".env", ".htpasswd", "sub/.secret",
                "sub/ok.txt", ".git/config", ".hidden/inner.txt", ".well-known/security.txt",
                ".well-known/acme-challenge/tok", ".well-known/.private",
                "sub/.well-known/x.txt", "..dots", "dot.in.name.txt"):
        write(root, rel)
    return root


def test_dotfiles_are_left_out_except_top_well_known(source: Path) -> None:
    index = FileIndex.scan(source)
    assert set(index.files) == {
        "index.html", "a/b/c.txt", "sub/ok.txt", "dot.in.name.txt",
        ".well-known/security.txt", ".well-known/acme-challenge/tok",
    }
    assert index.dirs == {"a", "a/b", "sub", ".well-known", ".well-known/acme-challenge"}
    assert index.files["a/b/c.txt"] == source / "a" / "b" / "c.txt"


def test_dotfiles_opt_in_indexes_everything(source: Path) -> None:
    index = FileIndex.scan(source, dotfiles=True)
    assert {".env", ".htpasswd", "sub/.secret", ".git/config", ".hidden/inner.txt",
            ".well-known/.private", "sub/.well-known/x.txt", "..dots"} <= set(index.files)
    assert {".git", ".hidden", "sub/.well-known"} <= index.dirs


def test_symlinks_are_never_indexed(tmp_path: Path) -> None:
    root = tmp_path / "src"
    outside = tmp_path / "outside"
    write(root, "index.html")
    write(root, "sub/real.txt")
    write(outside, "secret.txt")
    write(outside, "dir/x.txt")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "linked").symlink_to(outside / "dir")
    (root / "sub" / "inner.html").symlink_to("../index.html")  # inside the tree: still no
    (root / "sub-alias").symlink_to("sub")
    (root / "dangling").symlink_to(root / "missing")
    os.mkfifo(root / "fifo")
    for dotfiles in (False, True):
        index = FileIndex.scan(root, dotfiles=dotfiles)
        assert set(index.files) == {"index.html", "sub/real.txt"}
        assert index.dirs == {"sub"}


def test_overlay_fills_gaps_with_the_same_rules(tmp_path: Path) -> None:
    source, overlay = tmp_path / "src", tmp_path / "spec"
    write(source, "index.html", "source")
    write(overlay, "index.html", "overlay")
    write(overlay, "spec.yaml")
    write(overlay, "extra.css")
    write(overlay, ".env")
    write(overlay, ".well-known/x")
    (overlay / "link.html").symlink_to(tmp_path / "src" / "index.html")
    index = FileIndex.scan(source, overlay, frozenset({"spec.yaml"}))
    assert set(index.files) == {"index.html", "extra.css", ".well-known/x"}
    assert index.files["index.html"] == source / "index.html"  # the source wins
    assert ".env" in FileIndex.scan(source, overlay, frozenset({"spec.yaml"}),
                                    dotfiles=True).files


def test_missing_roots_and_index_pick(tmp_path: Path) -> None:
    empty = FileIndex.scan(tmp_path / "nope", None)
    assert empty.files == {} and empty.dirs == frozenset()
    write(tmp_path / "s", "index.htm")
    write(tmp_path / "s", ".index.html")
    index = FileIndex.scan(tmp_path / "s")
    assert pick_index(index, "") == "index.htm"
    assert pick_index(index, "/.index.html") == ".index.html"
    assert ".index.html" not in index.files  # named, but still never served
