"""orun's layers and the one direction of its imports, read from the source.

`python -m tests.layering` prints the upward imports and import cycles it finds (the
unit test `tests/unit/test_layers.py` requires none). Every import counts, those under
`if TYPE_CHECKING:` too: a type-only import is still a dependency a reader follows.
docs/architecture.md describes the same layers in prose; keep the two in step.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: bottom to top; a module may import its own layer and the ones below it. A module is
#: in the layer of the longest prefix listed here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("orun", "orun.errors", "orun.log")),
    ("data", ("orun.state", "orun.spec", "orun.sources", "orun.events", "orun.bus")),
    ("engine", ("orun.engine",)),
    ("build", ("orun.build",)),
    ("runtime", ("orun.runtime",)),
    ("proxy", ("orun.proxy",)),
    ("certs", ("orun.certs",)),
    ("routing", ("orun.routing",)),
    ("metrics", ("orun.metrics",)),
    ("services", ("orun.control",)),
    ("api", ("orun.api", "orun.console")),
    ("entry", ("orun.cli", "orun.server", "orun.__main__")),
)
#: layers that sit side by side: neither imports the other (the proxy owns the small
#: interface it needs, the runtime implements it, routing wires the two)
SIBLINGS = frozenset({("runtime", "proxy"), ("proxy", "runtime")})
#: only these may import the composition root
SERVER_IMPORTERS = frozenset({"orun.__main__", "orun.cli.main"})


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the `orun` package under `root`."""
    found: dict[str, Path] = {}
    for path in sorted((root / "orun").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _owner(name: str, known: Mapping[str, Path]) -> str:
    """The module that `name` (a module, or a name imported from one) lives in."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the orun modules it imports (the package `orun` itself left out)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and (node.module == "orun" or node.module.startswith("orun.")):
                for alias in node.names:
                    targets.add(_owner(f"{node.module}.{alias.name}", known))
            elif isinstance(node, ast.Import):
                targets.update(_owner(a.name, known) for a in node.names
                               if a.name.startswith("orun."))
        targets.discard(name)
        targets.discard("orun")
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


@dataclass(frozen=True, slots=True)
class Report:
    unplaced: list[str]
    upward: list[str]
    cycles: list[list[str]]

    @property
    def ok(self) -> bool:
        return not (self.unplaced or self.upward or self.cycles)

    def lines(self) -> list[str]:
        out = [f"module in no layer: {m}" for m in self.unplaced]
        out += [f"upward import: {u}" for u in self.upward]
        out += ["import cycle: " + " -> ".join([*c, c[0]]) for c in self.cycles]
        return out


def check(graph: Mapping[str, Iterable[str]]) -> Report:
    unplaced = sorted(m for m in graph if layer_of(m) < 0)
    upward: list[str] = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target == "orun.server":
                if module not in SERVER_IMPORTERS:
                    upward.append(f"{module} -> {target} (only the CLI entry starts the server)")
                continue
            mine, theirs = layer_of(module), layer_of(target)
            if mine < 0 or theirs < 0:
                continue
            pair = (LAYERS[mine][0], LAYERS[theirs][0])
            if theirs > mine:
                upward.append(f"{module} ({pair[0]}) -> {target} ({pair[1]})")
            elif pair in SIBLINGS:
                upward.append(f"{module} ({pair[0]}) -> {target} ({pair[1]}, a sibling)")
    return Report(unplaced, upward, cycles(graph))


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


if __name__ == "__main__":
    report = check(import_graph(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
    for line in report.lines():
        print(line)
    print(f"{len(report.upward)} upward import(s), {len(report.cycles)} cycle(s), "
          f"{len(report.unplaced)} module(s) in no layer")
    sys.exit(0 if report.ok else 1)
