"""Every bundled spec builds from the base images named by build args, with the classic
builder, as a non-root user; and loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orun.build.dockerfile import forbidden_features, parse_containerfile
from orun.spec import load_spec_dir
from orun.spec.catalog import bundled_specs_dir

SPECS = sorted(p for p in bundled_specs_dir().iterdir() if (p / "spec.yaml").is_file())


def container_files(spec_dir: Path) -> list[Path]:
    return [p for p in (spec_dir / "Containerfile", spec_dir / "Dockerfile") if p.is_file()]


@pytest.mark.parametrize("spec_dir", SPECS, ids=lambda p: p.name)
def test_spec_loads(spec_dir: Path) -> None:
    spec = load_spec_dir(spec_dir.name, spec_dir)
    assert spec.description
    assert spec.example.startswith(f"orun app create --spec {spec_dir.name} ")


@pytest.mark.parametrize("spec_dir", [s for s in SPECS if container_files(s)],
                         ids=lambda p: p.name)
def test_containerfile_uses_only_base_image_args(spec_dir: Path) -> None:
    (path,) = container_files(spec_dir)
    text = path.read_text()
    assert forbidden_features(text) == []
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.I))
    info = parse_containerfile(text)
    for image in froms:
        arg = re.fullmatch(r"\$\{?([A-Z_]+)\}?", image)
        # a base image named by a global build arg (PYTHON_IMAGE, ...; image-cmd's IMAGE
        # is the app's own image, java's MAVEN_IMAGE/JRE_IMAGE follow JAVA_VERSION)
        assert image in stages or (arg and arg.group(1).endswith("IMAGE")
                                   and arg.group(1) in info.args), \
            f"{path}: FROM {image} is neither a base-image build arg nor an earlier stage"
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert users and users[-1] not in ("root", "0"), f"{path} must run as a non-root user"
    spec = load_spec_dir(spec_dir.name, spec_dir)
    if spec.routing.path_routing and spec.container.port == 0 and "port" not in spec.params:
        assert info.exposed_port, f"{path}: no port param and no EXPOSE"
