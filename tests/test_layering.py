"""The package's import graph follows the pipeline: no cycle, and no module imports a layer above its own.

Every module under src/streamtensor is parsed with ``ast``; each ``import`` and ``from ... import`` (relative ones
resolved, those inside functions and ``if TYPE_CHECKING:`` blocks included) is an edge to the module it names
(``packages' ``__init__``, but that is Python's doing, not a dependency the module chose, so it is no edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "streamtensor"

# Layers, low to high: a module may import its own layer and the layers below. The longest matching prefix
# gives a module's layer; a module that matches none fails the test, so a new package gets a place here.
LAYERS: dict[str, int] = {
    "streamtensor._version": 0,
    "streamtensor.errors": 0,
    "streamtensor.target": 0,  # the Target type; the boards themselves belong to the Vitis backend
    "streamtensor.ir": 1,
    "streamtensor.packing": 2,  # the kernel ABI: packed layout and interface, shared by codegen and runtime
    "streamtensor.kernel_interface": 2,
    "streamtensor.frontend": 3,
    "streamtensor.interp": 3,
    "streamtensor.analysis": 4,
    "streamtensor.transforms": 5,
    "streamtensor.codegen": 6,
    "streamtensor.runtime": 7,
    "streamtensor.report": 7,  # report.html / trace.json: an output stage over what a compile wrote
    "streamtensor.verify": 8,
    "streamtensor.passes": 9,  # the pass registry of `streamtensor opt`
    "streamtensor.driver": 9,
    "streamtensor.llm": 9,  # the whole model: build (compiles blocks through the driver) and generate
    "streamtensor.search": 9,  # the design-space search (Optuna) over driver compiles
    "streamtensor.host": 9,  # settings of the processes the CLI and the search own
    "streamtensor": 10,  # the package root (the API)
    "streamtensor.cli": 10,
}

# Edges the ranks allow but the design does not: compiler passes and analyses never run the numerical oracles.
FORBIDDEN: list[tuple[str, str]] = [
    ("streamtensor.transforms", "streamtensor.interp"),
    ("streamtensor.analysis", "streamtensor.interp"),
    ("streamtensor.codegen", "streamtensor.interp"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (see the module docstring)."""
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            # ``import streamtensor.ir.linalg`` names the module itself; keep the longest known prefix.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.split(".")[0] == PACKAGE and target != name:
                found.add(target)
    return found


def layer(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return LAYERS[max(prefixes, key=len)]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def import_graph() -> dict[str, set[str]]:
    paths = sorted((SRC / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n)) is not None:
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)) is not None:
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "streamtensor.analysis.memory" in graph["streamtensor.analysis.resources"]  # relative
    assert "streamtensor.driver" in graph["streamtensor"]  # from the package root
    assert "streamtensor.verify.simulate" in graph["streamtensor.cli"]  # inside a function
    assert "streamtensor.ir.linalg" in graph["streamtensor.ir.dataflow"]  # absolute


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        layer(module)


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    violations = [
        f"{m} (layer {layer(m)}) imports {n} (layer {layer(n)})"
        for m, imports in sorted(import_graph().items())
        for n in sorted(imports)
        if layer(n) > layer(m)
    ]
    assert not violations, "imports up the layers:\n" + "\n".join(violations)


def test_passes_and_analyses_do_not_import_the_oracles() -> None:
    violations = [
        f"{m} imports {n}"
        for m, imports in sorted(import_graph().items())
        for n in sorted(imports)
        for low, high in FORBIDDEN
        if within(m, low) and within(n, high)
    ]
    assert not violations, "forbidden imports:\n" + "\n".join(violations)
