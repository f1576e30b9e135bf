"""What to build for an app version: the composed context, build args and image tag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orun.build.context import BuildContext


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """What to build: the composed context, the merged build args and the image tag."""

    context: BuildContext
    build_args: Mapping[str, str]
    tag: str
    digest: str
