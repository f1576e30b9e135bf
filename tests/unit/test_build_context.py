"""Build context composition (source over spec), .dockerignore, digest and tar output."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orun.build.context import CONTAINERFILE_NAMES, BuildContext, compose
from orun.errors import BuildError


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    return d


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    d = tmp_path / "spec"
    d.mkdir()
    return d


def names(ctx: BuildContext) -> list[str]:
    return [arc for arc, _ in ctx.files]


def content(ctx: BuildContext, arcname: str) -> str:
    return dict(ctx.files)[arcname].read_text()


# -- overlay ------------------------------------------------------------------------------


def test_names() -> None:
    assert CONTAINERFILE_NAMES == ("Containerfile", "Dockerfile")


def test_source_and_spec_are_merged_and_source_wins(src: Path, spec: Path) -> None:
    write(src, {"app.py": "src app", "requirements.txt": "src reqs", "pkg/mod.py": "m"})
    write(spec, {"Containerfile": "FROM python\nEXPOSE 5000\n", "requirements.txt": "flask",
                 "spec.yaml": "kind: container", "conf/gunicorn.py": "g", "pkg/extra.py": "e"})
    ctx = compose(src, spec)
    assert names(ctx) == ["Containerfile", "app.py", "conf/gunicorn.py", "pkg/extra.py",
                          "pkg/mod.py", "requirements.txt"]
    assert content(ctx, "requirements.txt") == "src reqs"
    assert dict(ctx.files)["Containerfile"] == spec / "Containerfile"
    assert ctx.containerfile == "Containerfile"
    assert ctx.containerfile_text == "FROM python\nEXPOSE 5000\n"
    assert ctx.info.exposed_port == 5000


def test_files_are_sorted_absolute_paths(src: Path, spec: Path) -> None:
    write(src, {"b": "", "a/z": "", "a/b": "", "Dockerfile": "FROM x"})
    ctx = compose(src, spec)
    assert names(ctx) == sorted(names(ctx))
    assert all(path.is_absolute() for _, path in ctx.files)


def test_exclude_spec_names(src: Path, spec: Path) -> None:
    write(spec, {"Dockerfile": "FROM x", "spec.yaml": "", "README.md": "", "sub/spec.yaml": ""})
    assert names(compose(src, spec)) == ["Dockerfile", "README.md", "sub/spec.yaml"]
    assert names(compose(src, spec, exclude_spec=("spec.yaml", "README.md"))) == [
        "Dockerfile", "sub/spec.yaml"]
    # the source's own spec.yaml is not affected
    write(src, {"spec.yaml": "mine"})
    assert "spec.yaml" in names(compose(src, spec))


def test_spec_only(spec: Path) -> None:
    write(spec, {"Containerfile": "FROM x", "index.html": "hi"})
    ctx = compose(None, spec)
    assert names(ctx) == ["Containerfile", "index.html"]


def test_missing_source_folder(tmp_path: Path, spec: Path) -> None:
    with pytest.raises(BuildError) as info:
        compose(tmp_path / "nope", spec)
    assert info.value.message == f"source folder {tmp_path / 'nope'} does not exist"


def test_spec_file_under_a_source_file_is_dropped(src: Path, spec: Path) -> None:
    write(src, {"conf": "a file", "data/x": "x", "Dockerfile": "FROM x"})
    write(spec, {"conf/settings.py": "s", "data": "a file in the spec"})
    assert names(compose(src, spec)) == ["Dockerfile", "conf", "data/x"]


def test_git_folders_are_never_included(src: Path, spec: Path) -> None:
    write(src, {".git/HEAD": "ref", "sub/.git/config": "c", "sub/a": "a", "Dockerfile": "F"})
    write(spec, {".git/HEAD": "spec"})
    assert names(compose(src, spec)) == ["Dockerfile", "sub/a"]


# -- container file choice ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_files", "spec_files", "chosen", "origin"),
    [
        (["Containerfile", "Dockerfile"], ["Containerfile"], "Containerfile", "src"),
        (["Dockerfile"], ["Containerfile", "Dockerfile"], "Dockerfile", "src"),
        ([], ["Containerfile", "Dockerfile"], "Containerfile", "spec"),
        ([], ["Dockerfile"], "Dockerfile", "spec"),
    ],
)
def test_container_file_order(src: Path, spec: Path, source_files: list[str],
                              spec_files: list[str], chosen: str, origin: str) -> None:
    write(src, {n: f"FROM src-{n}" for n in source_files})
    write(spec, {n: f"FROM spec-{n}" for n in spec_files})
    ctx = compose(src, spec)
    assert ctx.containerfile == chosen
    assert ctx.containerfile_text == f"FROM {origin}-{chosen}"


def test_no_container_file(src: Path, spec: Path) -> None:
    write(src, {"app.py": ""})
    with pytest.raises(BuildError) as info:
        compose(src, spec)
    assert info.value.message == (
        "no container file found: add a Containerfile or Dockerfile to the source, "
        "or use a spec that provides one")


def test_excluded_spec_container_file_is_not_chosen(src: Path, spec: Path) -> None:
    write(spec, {"Containerfile": "FROM a", "Dockerfile": "FROM b"})
    ctx = compose(src, spec, exclude_spec=("Containerfile",))
    assert ctx.containerfile == "Dockerfile"
    assert "Containerfile" not in names(ctx)


def test_explicit_container_file(src: Path, spec: Path) -> None:
    write(src, {"Dockerfile": "FROM a", "docker/prod.Dockerfile": "FROM prod"})
    write(spec, {"build/Containerfile.dev": "FROM dev"})
    assert compose(src, spec, containerfile="docker/prod.Dockerfile").containerfile_text == (
        "FROM prod")
    ctx = compose(src, spec, containerfile="./build/Containerfile.dev")
    assert ctx.containerfile == "build/Containerfile.dev"
    assert ctx.containerfile_text == "FROM dev"


def test_explicit_container_file_missing(src: Path, spec: Path) -> None:
    write(src, {"Dockerfile": "FROM a", "sub": "a file"})
    for name in ("Missingfile", "sub/Dockerfile"):
        with pytest.raises(BuildError) as info:
            compose(src, spec, containerfile=name)
        assert info.value.message == f"container file {name} not found in the source or the spec"


def test_explicit_container_file_outside_the_context(src: Path, spec: Path) -> None:
    with pytest.raises(BuildError) as info:
        compose(src, spec, containerfile="../Dockerfile")
    assert info.value.message == "container file ../Dockerfile must be a path inside the source"


# -- .dockerignore ------------------------------------------------------------------------------


def test_source_dockerignore_applies_to_spec_files_too(src: Path, spec: Path) -> None:
    write(src, {".dockerignore": "*.md\nsecret*\n", "README.md": "", "app.py": "",
                "secret.txt": ""})
    write(spec, {"Containerfile": "FROM x", "NOTES.md": "", "secrets/key": "",
                 ".dockerignore": "*.py\n"})
    assert names(compose(src, spec)) == [".dockerignore", "Containerfile", "app.py"]


def test_spec_dockerignore_when_the_source_has_none(src: Path, spec: Path) -> None:
    write(src, {"app.py": "", "notes.txt": "", "node_modules/x/index.js": ""})
    write(spec, {"Containerfile": "FROM x", ".dockerignore": "node_modules\n*.txt\n"})
    ctx = compose(src, spec)
    assert names(ctx) == [".dockerignore", "Containerfile", "app.py"]
    assert dict(ctx.files)[".dockerignore"] == spec / ".dockerignore"


def test_container_file_and_dockerignore_are_always_sent(src: Path, spec: Path) -> None:
    write(src, {".dockerignore": "*\n", "Dockerfile": "FROM x", "app.py": ""})
    assert names(compose(src, spec)) == [".dockerignore", "Dockerfile"]
    write(src, {".dockerignore": "docker\n.dockerignore\n", "docker/Containerfile": "FROM y",
                "docker/other": ""})
    ctx = compose(src, spec, containerfile="docker/Containerfile")
    assert names(ctx) == [".dockerignore", "Dockerfile", "app.py", "docker/Containerfile"]


def test_exception_re_includes_below_an_ignored_folder(src: Path, spec: Path) -> None:
    write(src, {".dockerignore": "data\n!data/keep/**\n", "Dockerfile": "F",
                "data/big.bin": "", "data/keep/a/b.txt": "", "data/other/c.txt": ""})
    assert names(compose(src, spec)) == [".dockerignore", "Dockerfile", "data/keep/a/b.txt"]


def test_ignored_folders_are_not_walked(src: Path, spec: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(src, {".dockerignore": "node_modules\n**/__pycache__\n", "Dockerfile": "F",
                "node_modules/a/b/c.js": "", "pkg/__pycache__/m.pyc": "", "pkg/m.py": ""})
    visited: list[str] = []
    real_walk = os.walk

    def spy(top: Any, *args: Any, **kwargs: Any) -> Iterator[tuple[str, list[str], list[str]]]:
        for entry in real_walk(top, *args, **kwargs):
            visited.append(Path(entry[0]).relative_to(top).as_posix())
            yield entry

    monkeypatch.setattr(os, "walk", spy)
    assert names(compose(src, spec)) == [".dockerignore", "Dockerfile", "pkg/m.py"]
    assert sorted(visited) == [".", ".", "pkg"]  # the spec root, the source root and pkg


def test_bad_dockerignore(src: Path, spec: Path) -> None:
    write(src, {".dockerignore": "!\n", "Dockerfile": "F"})
    with pytest.raises(BuildError):
        compose(src, spec)


# -- symlinks -------------------------------------------------------------------------------


def test_symlinks_are_kept_as_symlinks(src: Path, spec: Path) -> None:
    write(src, {"Dockerfile": "FROM x", "real/file.txt": "data"})
    (src / "link.txt").symlink_to("real/file.txt")
    (src / "linkdir").symlink_to("real")
    (src / "dangling").symlink_to("/nowhere")
    ctx = compose(src, spec)
    assert names(ctx) == ["Dockerfile", "dangling", "link.txt", "linkdir", "real/file.txt"]
    assert dict(ctx.files)["linkdir"].is_symlink()


# -- digest -------------------------------------------------------------------------------------


@pytest.fixture
def ctx_factory(src: Path, spec: Path) -> Callable[..., BuildContext]:
    write(src, {"app.py": "print(1)", "Dockerfile": "FROM python"})
    write(spec, {"requirements.txt": "flask"})

    def make(**kwargs: Any) -> BuildContext:
        return compose(src, spec, **kwargs)

    return make


def test_digest_is_deterministic(ctx_factory: Callable[..., BuildContext]) -> None:
    a = ctx_factory().digest({"A": "1", "B": "2"})
    assert a == ctx_factory().digest({"B": "2", "A": "1"})
    assert len(a) == 64
    assert int(a, 16) >= 0


def test_digest_ignores_mtime(ctx_factory: Callable[..., BuildContext], src: Path) -> None:
    before = ctx_factory().digest({})
    os.utime(src / "app.py", (1, 1))
    assert ctx_factory().digest({}) == before


def test_digest_changes(ctx_factory: Callable[..., BuildContext], src: Path,
                        spec: Path) -> None:
    seen = {ctx_factory().digest({})}

    def changed(digest: str) -> None:
        assert digest not in seen
        seen.add(digest)

    changed(ctx_factory().digest({"A": "1"}))
    changed(ctx_factory().digest({"A": "2"}))
    changed(ctx_factory().digest({"A": "", "": "A"}))
    (src / "app.py").write_text("print(2)")
    changed(ctx_factory().digest({}))
    (src / "app.py").chmod(0o755)
    changed(ctx_factory().digest({}))
    (spec / "requirements.txt").write_text("flask\nrequests")
    changed(ctx_factory().digest({}))
    (src / "new.txt").write_text("")
    changed(ctx_factory().digest({}))
    (src / "new.txt").rename(src / "renamed.txt")
    changed(ctx_factory().digest({}))
    write(src, {"Containerfile": "FROM python"})
    changed(ctx_factory(containerfile="Containerfile").digest({}))
    (src / "ln").symlink_to("app.py")
    changed(ctx_factory().digest({}))
    (src / "ln").unlink()
    (src / "ln").symlink_to("renamed.txt")
    changed(ctx_factory().digest({}))


# -- tar ----------------------------------------------------------------------------------------


def read_tar(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_write_tar_entries_and_modes(src: Path, spec: Path, tmp_path: Path) -> None:
    write(src, {"Dockerfile": "FROM x", "bin/run.sh": "#!/bin/sh\n", "a/b/c.txt": "hello"})
    (src / "bin/run.sh").chmod(0o700)
    (src / "a/b/c.txt").chmod(0o600)
    (src / "link").symlink_to("a/b/c.txt")
    dest = tmp_path / "ctx.tar"
    compose(src, spec).write_tar(dest)
    members = read_tar(dest)
    assert list(members) == ["Dockerfile", "a", "a/b", "a/b/c.txt", "bin", "bin/run.sh", "link"]
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    assert members["a"].isdir() and members["a"].mode == 0o755
    assert members["a/b/c.txt"].mode == 0o644
    assert members["bin/run.sh"].mode == 0o755
    assert members["link"].issym() and members["link"].linkname == "a/b/c.txt"
    with tarfile.open(dest) as tar:
        f = tar.extractfile("a/b/c.txt")
        assert f is not None
        assert f.read() == b"hello"


def test_write_tar_is_reproducible(src: Path, spec: Path, tmp_path: Path) -> None:
    write(src, {"Dockerfile": "FROM x", "x/y.txt": "y" * 10000})
    write(spec, {"z.txt": "z"})
    compose(src, spec).write_tar(tmp_path / "one.tar")
    os.utime(src / "x/y.txt", (12345, 12345))
    compose(src, spec).write_tar(tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_write_tar_long_and_unicode_names(src: Path, spec: Path, tmp_path: Path) -> None:
    long_name = "/".join(["d" * 60] * 3) + "/f.txt"
    write(src, {"Dockerfile": "FROM x", long_name: "long", "ünï.txt": "u"})
    compose(src, spec).write_tar(tmp_path / "c.tar")
    members = read_tar(tmp_path / "c.tar")
    assert long_name in members
    assert "ünï.txt" in members


def test_write_tar_is_uncompressed(src: Path, spec: Path, tmp_path: Path) -> None:
    write(src, {"Dockerfile": "FROM x"})
    compose(src, spec).write_tar(tmp_path / "c.tar")
    data = (tmp_path / "c.tar").read_bytes()
    assert data[257:262] == b"ustar"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        assert tar.getnames() == ["Dockerfile"]
