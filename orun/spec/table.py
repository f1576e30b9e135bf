"""The README's spec table, generated from the spec files (a test keeps them in sync)."""

from __future__ import annotations

import json

from orun.spec.model import Spec


def _param_cell(spec: Spec) -> str:
    parts = []
    for name, p in spec.params.items():
        if name == "app_name":
            continue
        if p.is_required:
            parts.append(f"**`{name}`** ({p.type}, required)")
        else:
            parts.append(f"`{name}` ({p.type}, default `{json.dumps(p.default)}`)")
    return "<br>".join(parts) or "none"


def _dev_cell(spec: Spec) -> str:
    """What an edit does to a dev app (`app create --dev`) of this spec."""
    if spec.kind != "container" or spec.container.image_param:
        return "-"
    return f"`{spec.dev.reload}`"


def markdown_table(specs: list[Spec]) -> str:
    lines = [
        "| spec | kind | params | path routing | dev reload | example |",
        "|---|---|---|---|---|---|",
    ]
    for spec in specs:
        example = spec.example
        routing = "yes" if spec.routing.path_routing else "domain root only"
        lines.append(f"| `{spec.name}` | {spec.kind} | {_param_cell(spec)} | {routing} | "
                     f"{_dev_cell(spec)} | `{example}` |")
    return "\n".join(lines)
