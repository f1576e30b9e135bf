"""The README's spec table, generated from the spec files (a test keeps them in sync)."""

from __future__ import annotations

import json

from orun.spec.model import Spec

_EXAMPLES = {
    "static": "orun app create --spec static ./site /docs",
    "static_single": "orun app create --spec static_single --param index=report.html ./out /report",
    "proxy": "orun app create --spec proxy --param url=https://example.com - /ext",
}


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


def markdown_table(specs: list[Spec]) -> str:
    lines = [
        "| spec | kind | params | path routing | example |",
        "|---|---|---|---|---|",
    ]
    for spec in specs:
        example = _EXAMPLES.get(spec.name, f"orun app create --spec {spec.name} ./src /app")
        routing = "yes" if spec.routing.path_routing else "domain root only"
        lines.append(f"| `{spec.name}` | {spec.kind} | {_param_cell(spec)} | {routing} | "
                     f"`{example}` |")
    return "\n".join(lines)
