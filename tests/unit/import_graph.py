"""The run-time import graph of a source tree, read with ``ast`` (nothing is imported), and its
cycles. Used by test_module_rules; ``python tests/unit/import_graph.py [ROOT]`` prints the cycles
and the long modules of a checkout.

What counts as an import at run time:
- every ``import``/``from ... import`` statement, at module level or inside a function or class
  (a function-level import still runs, only later);
- except those under ``if TYPE_CHECKING:`` (they never run; their ``else:`` branch does);
- ``importlib.import_module("literal")``; a module that calls ``import_module`` with a computed
  name (the lazy public names of ``handoffd/__init__.py``) imports every module its string
  literals name;
- ``from pkg import name`` is an import of ``pkg.name`` when that is a module, else of ``pkg``;
  ``import a.b.c`` of the longest known prefix. The implicit import of a parent package's
  ``__init__`` is not an edge (every module would otherwise sit in a cycle with its package).
Cython sources (``.pyx``) are read line by line for ``import``/``from ... import``; ``cimport`` is
resolved at compile time and is not an edge.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

SUFFIXES = (".py", ".pyx")


def modules(roots: Iterable[tuple[Path, str]]) -> dict[str, Path]:
    """Module name -> source file, for each (directory, package name it installs as). Symlinked
    directories are not followed (``handoffd/_core`` links to ``_core/``, listed on its own)."""
    found: dict[str, Path] = {}
    for base, package in roots:
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(base)
            for filename in sorted(files):
                stem, dot, suffix = filename.rpartition(".")
                if not dot or f".{suffix}" not in SUFFIXES:
                    continue
                parts = [package, *rel.parts] + ([] if stem == "__init__" else [stem])
                found[".".join(parts)] = Path(dirpath) / filename
    return found


def project_modules(root: Path) -> dict[str, Path]:
    """handoffd's modules in a checkout: ``handoffd/`` plus the core's sources in ``_core/``."""
    return modules([(root / "handoffd", "handoffd"), (root / "_core", "handoffd._core")])


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports:
    def __init__(self, name: str, path: Path, known: dict[str, Path]) -> None:
        self.name = name
        self.package = name if path.stem == "__init__" else name.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.package.split(".")
        parts = parts[: len(parts) - (level - 1)]
        return ".".join(parts + ([module] if module else []))

    def add(self, target: str) -> None:
        while target and target not in self.known:
            target = target.rpartition(".")[0]
        if target:
            self.found.add(target)

    def add_from(self, module: str, names: Iterable[str]) -> None:
        for alias in names:
            child = f"{module}.{alias}"
            self.add(child if child in self.known else module)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` (source ``path``) imports at run time."""
    out = _Imports(name, path, known)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pyx":
        for line in text.splitlines():
            if "cimport" in line:
                continue
            match = re.match(r"\s*from\s+(\.*)([\w.]*)\s+import\s+\(?([\w\s,]+)", line)
            if match:
                module = out.absolute(match.group(2) or None, len(match.group(1)))
                names = [n.split()[0] for n in match.group(3).split(",") if n.strip()]
                out.add_from(module, names)
            elif match := re.match(r"\s*import\s+([\w.]+)", line):
                out.add(match.group(1))
        return out.found - {name}
    tree = ast.parse(text, str(path))
    dynamic = False

    def visit(node: ast.AST) -> None:
        nonlocal dynamic
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = out.absolute(node.module, node.level)
            out.add_from(module, [alias.name for alias in node.names])
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    out.add(first.value)
                else:
                    dynamic = True
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    if dynamic:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in known:
                    out.add(node.value)
    return out.found - {name}


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted,
    in sorted order: every module in one can reach every other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return sorted(found)


def describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(edges[m] & inside))}" for m in component)


def long_modules(known: dict[str, Path], limit: int) -> dict[str, int]:
    """Modules over ``limit`` lines, with their line counts."""
    counts = {name: len(path.read_bytes().splitlines()) for name, path in known.items()}
    return {name: n for name, n in sorted(counts.items()) if n > limit}


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    known = project_modules(root)
    edges = graph(known)
    for component in cycles(edges):
        print("cycle:", describe(component, edges))
    for name, n in long_modules(known, 700).items():
        print(f"long: {name} {n} lines")
    print(f"{len(known)} modules read")
