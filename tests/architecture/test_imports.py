"""The tree is the architecture: imports only point down the layers, and no module imports itself back.

Every `import` counts, including those under `if TYPE_CHECKING:` and inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "aggregator"

# Lowest first. A package may import its own modules and those of lower layers, never a package
# of its own layer or of a higher one.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "sdk"}),
    frozenset({"config"}),
    frozenset({"registry", "policy", "tracing"}),
    frozenset({"upstreams", "search", "nginx", "trust", "cluster"}),
    frozenset({"tasks"}),  # a gateway task's call may run as the upstream's own task
    frozenset({"catalog"}),
    frozenset({"tools"}),
    frozenset({"server"}),
    frozenset({"http"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The aggregator modules `path` imports (a `from package import module` names the module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        else:
            continue
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != "aggregator":
                yield name


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer() -> None:
    unplaced = {package_of(module) for module in modules()} - set(RANK) - {"aggregator"}
    assert not unplaced, f"packages without a layer in this test: {sorted(unplaced)}"


def test_imports_point_down() -> None:
    known = modules()
    upward = []
    for module, path in known.items():
        source = package_of(module)
        if source == "aggregator":
            continue
        for target in imported(path, known):
            destination = package_of(target)
            if destination != source and RANK[destination] >= RANK[source]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    known = modules()
    graph = {module: set(imported(path, known)) - {module} for module, path in known.items()}
    # A package's __init__ re-exporting its own modules is not a cycle back into it.
    for module in graph:
        graph[module] = {
            t for t in graph[module] if not (module.startswith(t + ".") and known[t].name == "__init__.py")
        }
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("limit", [330])
def test_modules_stay_small(limit: int) -> None:
    large = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > limit}
    assert not large, f"modules over {limit} lines (split them): {large}"


def test_only_the_sdk_adapter_touches_sdk_internals() -> None:
    """Private SDK modules (`mcp.x._y`) and private attributes of SDK objects are used in `aggregator/sdk.py` only."""
    offenders = []
    for module, path in modules().items():
        if module == "aggregator.sdk":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0].startswith("mcp"):
                if any(part.startswith("_") for part in node.module.split(".")) or any(
                    alias.name.startswith("_") for alias in node.names
                ):
                    offenders.append(f"{module}: from {node.module} import ...")
            elif isinstance(node, ast.Attribute) and node.attr in {"_connection", "_stamp", "_session"}:
                owner = ast.unparse(node.value)
                if not owner.startswith("self"):
                    offenders.append(f"{module}: {owner}.{node.attr}")
    assert not offenders, "SDK internals outside aggregator/sdk.py:\n" + "\n".join(offenders)
