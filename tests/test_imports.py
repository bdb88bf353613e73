"""The reportgen package's modules import each other without cycles.

Every import counts, the lazy ones inside functions included: a cycle hidden in a
function body still means two modules that each need the other, so neither can be
read, tested or moved on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "reportgen"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """The package's modules by their name inside the package (``"data"``, ``"render"``)."""
    return {path.stem: path for path in sorted(package_dir.glob("*.py")) if path.stem != "__init__"}


def imported_modules(source: str, modules: set[str]) -> set[str]:
    """The package modules that ``source`` imports anywhere, at module level or in a function.

    Understands ``import reportgen.x``, ``from reportgen import x``, ``from reportgen.x import y``
    and their relative forms (``from . import x``, ``from .x import y``).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1 and parts[1] in modules:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = node.module.split(".") if node.module else []
            elif node.module and node.module.split(".")[0] == PACKAGE:
                base = node.module.split(".")[1:]
            else:
                continue
            if base:
                if base[0] in modules:
                    found.add(base[0])
            else:
                found.update(alias.name for alias in node.names if alias.name in modules)
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Each module and the package modules it imports (itself left out)."""
    modules = package_modules(package_dir)
    names = set(modules)
    return {
        name: imported_modules(path.read_text(encoding="utf-8"), names) - {name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    unvisited, on_path, done = 0, 1, 2
    state = dict.fromkeys(graph, unvisited)
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = on_path
        path.append(node)
        for target in sorted(graph[node]):
            if state[target] == on_path:
                return path[path.index(target):] + [target]
            if state[target] == unvisited and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = done
        return None

    for node in sorted(graph):
        if state[node] == unvisited and (cycle := visit(node)):
            return cycle
    return None


def test_the_parser_sees_every_form_of_import():
    source = (
        "import reportgen.a\n"
        "from reportgen import b, errors as e\n"
        "from reportgen.c import thing\n"
        "from . import d\n"
        "from .f import other\n"
        "import numpy\n"
        "from reportgen import not_a_module\n"
        "def later():\n"
        "    from reportgen import g\n"
        "class Lazy:\n"
        "    def method(self):\n"
        "        import reportgen.h as h\n"
    )
    modules = {"a", "b", "c", "d", "errors", "f", "g", "h", "unused"}
    assert imported_modules(source, modules) == {"a", "b", "c", "d", "errors", "f", "g", "h"}


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_the_graph_covers_the_package():
    graph = import_graph()
    assert {"stages", "cli", "render", "site"} <= set(graph)
    assert "render" in graph["stages"]


def test_no_import_cycles_lazy_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
