"""Fail on an import cycle between the project's modules or an import that points up a layer.

Layers, lowest first: ``recorded_data`` < ``predictor_onnx`` < ``proxy`` < ``replay`` < ``bench``
< ``experiments`` < ``tests``/``tools``. A module may import its own layer and the layers below
it. The command line and the demo (``proxy.cli``, ``proxy.demo``) are the composition roots and
may import any layer. Every import that runs counts, including those inside functions (a lazy
import is still an arrow); imports under ``if TYPE_CHECKING:`` do not (they never run).

Inside ``proxy`` the same rule holds between its sub-packages (``PROXY_FLOORS``): ``wire`` <
``observe`` < ``policies`` < ``auth`` < ``config`` < ``upstream`` < ``decide``/``learn`` <
``execute`` < ``http``, with the modules directly in ``proxy/`` (the CLI, the demo) on top.

Usage: ``python tools/check_imports.py`` from the repository root; exit status 1 on a problem.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

LAYERS = {
    "recorded_data": 0,
    "predictor_onnx": 1,
    "proxy": 2,
    "replay": 3,
    "bench": 4,
    "experiments": 5,
    "tests": 6,
    "tools": 6,
}
COMPOSITION_ROOTS = frozenset({"proxy.cli", "proxy.demo"})
# Inside ``proxy``, the way a request travels, lowest first: a sub-package may import its own
# floor and the floors below it. The modules directly in ``proxy/`` are the composition roots
# (and the demo's report, which imports nothing of the proxy).
PROXY_FLOORS = {
    "proxy.wire": 0,
    "proxy.observe": 1,
    "proxy.policies": 2,
    "proxy.auth": 3,
    "proxy.config": 4,
    "proxy.upstream": 5,
    "proxy.decide": 6,
    "proxy.learn": 6,
    "proxy.execute": 7,
    "proxy.http": 8,
}
_ROOT_FLOOR = 9


def module_name(root: Path, path: Path) -> str:
    """Dotted module name of a file below ``root`` (``pkg/__init__.py`` is ``pkg``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` (annotations only, never run)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement in ``tree`` may refer to (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def build_graph(root: Path) -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    files = {
        module_name(root, path): path
        for top in LAYERS
        if (root / top).is_dir()
        for path in (root / top).rglob("*.py")
        if "work" not in path.relative_to(root).parts
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {
            name
            for name in imported_names(tree, module, path.name == "__init__.py")
            if name in files and name != module
        }
        graph[module] = targets
    return graph


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer into a higher one."""
    problems = []
    for module, targets in sorted(graph.items()):
        if module in COMPOSITION_ROOTS:
            continue
        layer = LAYERS[module.split(".")[0]]
        for target in sorted(targets):
            if LAYERS[target.split(".")[0]] > layer:
                problems.append(f"upward import: {module} imports {target}")
    return problems


def proxy_floor(module: str) -> int | None:
    """The floor of a module inside ``proxy`` (None outside it)."""
    if module != "proxy" and not module.startswith("proxy."):
        return None
    package = ".".join(module.split(".")[:2])
    return PROXY_FLOORS.get(package, _ROOT_FLOOR)


def floor_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Imports inside ``proxy`` from a lower floor into a higher one, or across one floor's
    sibling packages (``decide`` and ``learn`` share a floor and stay independent)."""
    problems = []
    for module, targets in sorted(graph.items()):
        floor = proxy_floor(module)
        if floor is None or floor == _ROOT_FLOOR:
            continue
        package = ".".join(module.split(".")[:2])
        for target in sorted(targets):
            target_floor = proxy_floor(target)
            if target_floor is None:
                continue
            target_package = ".".join(target.split(".")[:2])
            if target_floor > floor or (target_floor == floor and target_package != package):
                problems.append(f"upward import inside proxy: {module} imports {target}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main() -> int:
    """Check the repository this file lives in; print every problem."""
    root = Path(__file__).resolve().parent.parent
    graph = build_graph(root)
    problems = upward_arrows(graph) + floor_arrows(graph)
    problems += [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"imports: {len(graph)} modules, no cycle, no upward arrow")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
