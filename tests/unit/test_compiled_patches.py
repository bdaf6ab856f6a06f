"""No test patches a compiled module's name where the compiled code never looks it up.

A patch of ``module.name`` (``monkeypatch.setattr``, ``mock.patch``, ``setattr``, an assignment)
replaces an entry of the module's dict: it takes effect wherever a caller looks ``name`` up there
at the call, which Cython's compiled modules do for plain Python names. It does nothing where
``module``'s ``.pxd`` cimports ``name`` (the compiled code holds the C object), nor for a function
that a ``.pxd`` declares ``cpdef``/``cdef`` where the module itself calls it (a C call), nor for a
name another compiled module cimports from it. That is how ``test_scheduler_successes``' case of a
pure ``successes`` (``monkeypatch.setattr(owner, "successes", ...)``, ``owner.pxd`` cimports it)
passed with a broken ``succeeded_on`` until a996a6b. This reads every test's patches whose target
the file's imports name (a module, a module's attribute, a dotted string) and refuses those.
Targets it cannot name (a subscript, a call's result: a pure build made at run time) are not seen.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "handoffd"

_CIMPORT = re.compile(r"^(?:from\s+([\w.]+)\s+)?cimport\s+(.+)$", re.M)
_DEFINITION = re.compile(r"^\s*(?:async\s+)?c?p?def\b.*$", re.M)
_DECLARED = re.compile(
    r"^c(?:p)?def\s+(?:class\s+(\w+)|(?:inline\s+)?[\w.\[\], *]*?\b(\w+)\s*\()", re.M
)


def _declarations(path: Path) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(names cimported, names declared cdef/cpdef/cdef class at top level, {module: names
    cimported from it}) of a .pxd or .pyx."""
    cimported: set[str] = set()
    declared: set[str] = set()
    sources: dict[str, set[str]] = {}
    text = path.read_text()
    for origin, names in _CIMPORT.findall(text):
        for part in names.split(","):
            words = part.split()
            if not words:
                continue
            name, local = words[0], words[-1]  # (``a as b``: b is the name bound here)
            cimported.add(local.split(".")[0])
            module = f"{origin}.{name}" if origin else name
            if origin:
                sources.setdefault(origin, set()).add(name)
            sources.setdefault(module, set())
    for klass, function in _DECLARED.findall(text):
        declared.add(klass or function)
    return cimported, declared, sources


@cache
def compiled_modules() -> dict[str, tuple[Path, set[str]]]:
    """Each compiled module (a .pxd or .pyx under the package) by dotted name: its source file
    and the names a patch of it cannot reach."""
    found: dict[str, tuple[Path, set[str], set[str]]] = {}
    cimported_from: dict[str, set[str]] = {}
    for typed in [*PACKAGE.rglob("*.pxd"), *(ROOT / "_core").glob("*.pyx")]:
        if typed.parent.name == "_core":
            dotted = f"handoffd._core.{typed.stem}"
            source = ROOT / "_core" / f"{typed.stem}.pyx"
        else:
            dotted = ".".join(typed.relative_to(ROOT).with_suffix("").parts)
            source = typed.with_suffix(".py")
        if not source.exists():
            continue
        cimported, declared, sources = _declarations(typed)
        if typed.suffix == ".pxd" and source.suffix == ".pyx":
            more = _declarations(source)
            cimported |= more[0]
            declared |= more[1]
        have = found.setdefault(dotted, (source, set(), set()))
        have[1].update(cimported)
        have[2].update(declared)
        for module, names in sources.items():
            cimported_from.setdefault(module, set()).update(names)
    out: dict[str, tuple[Path, set[str]]] = {}
    for dotted, (source, cimported, declared) in found.items():
        text = _DEFINITION.sub("", source.read_text())  # (the calls, not the definitions)
        called_inside = {
            name
            for name in declared
            if len(re.findall(rf"(?<![\w.]){re.escape(name)}\(", text)) > 0
        }
        unreachable = cimported | called_inside | cimported_from.get(dotted, set())
        out[dotted] = (source, unreachable)
    return out


def _statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Every statement of a file, nested ones included (its expressions are not walked: a
    patch is a statement of its own, a ``with`` item or a decorator)."""
    bodies: list[list[ast.stmt]] = [tree.body]
    while bodies:
        for statement in bodies.pop():
            yield statement
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(statement, field, None)
                if isinstance(inner, list):
                    bodies.append(inner)
            for handler in getattr(statement, "handlers", ()):
                bodies.append(handler.body)
            for case in getattr(statement, "cases", ()):
                bodies.append(case.body)


def _imports(tree: ast.Module) -> dict[str, str]:
    """Each name a file binds by an import (anywhere in it): the dotted path it stands for."""
    bound: dict[str, str] = {}
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _dotted(expr: ast.expr, bound: dict[str, str]) -> str | None:
    if isinstance(expr, ast.Name):
        return bound.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _dotted(expr.value, bound)
        return None if base is None else f"{base}.{expr.attr}"
    return None


def _module_at(dotted: str) -> str | None:
    """The module ``dotted`` names (``package.module``, or ``module.attribute`` where the attribute
    is a compiled module), or None; imported only in the second case."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = ROOT.joinpath(*parts[:cut])
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            break
    else:
        return None
    module, rest = ".".join(parts[:cut]), parts[cut:]
    if not rest:
        return module
    leaves = {name.rpartition(".")[2] for name in compiled_modules()}
    if rest[0] not in leaves:
        return None
    found: object = importlib.import_module(module)
    for attribute in rest:
        found = getattr(found, attribute, None)
    return found.__name__ if isinstance(found, ModuleType) else None


def _calls(node: ast.stmt) -> Iterator[ast.Call]:
    """The calls a statement makes as a patch would: itself, its ``with`` items, decorators."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield node.value
    for item in getattr(node, "items", ()):
        if isinstance(item.context_expr, ast.Call):
            yield item.context_expr
    for decorator in getattr(node, "decorator_list", ()):
        if isinstance(decorator, ast.Call):
            yield decorator


def _patches(tree: ast.Module, bound: dict[str, str]) -> Iterator[tuple[int, str, str]]:
    """(line, dotted target module or object, name) of each patch in a file."""
    for node in _statements(tree):
        for call in _calls(node):
            called = call.func
            verb = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            args = call.args
            if not args or verb not in ("setattr", "delattr", "object", "patch"):
                continue
            first = args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                target, _, name = first.value.rpartition(".")  # ("package.module.name", value)
                if target and verb != "object":
                    yield call.lineno, target, name
            elif len(args) >= 2 and isinstance(args[1], ast.Constant) and verb != "patch":
                target = _dotted(first, bound)
                if target is not None:
                    yield call.lineno, target, str(args[1].value)
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            for into in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(into, ast.Attribute):
                    target = _dotted(into.value, bound)
                    if target is not None:
                        yield node.lineno, target, into.attr


# What a patch's target starts with (the object patched, a dotted string, an assignment's base), and
# an import's names: a file none of whose patches starts with a name it imports (or "handoffd") is
# not parsed (most of them: parsing every test file took seconds).
_TARGET = re.compile(
    r"""(?:setattr|delattr|patch|patch\.object)\(\s*["']?([A-Za-z_]\w*)|^\s*([A-Za-z_]\w*)\.[\w.]+\s*[-+]?=(?!=)""",
    re.M,
)
_IMPORTED = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s+(\([^)]*\)|[^\n]*)", re.M)


def _may_patch_an_import(text: str) -> bool:
    bases = {a or b for a, b in _TARGET.findall(text)}
    if "handoffd" in bases:
        return True
    imported = set(re.findall(r"\w+", " ".join(_IMPORTED.findall(text))))
    return not bases.isdisjoint(imported)


def unreachable_patches(text: str, where: str) -> list[str]:
    """``where:line module.name`` of each patch in ``text`` that a compiled caller never sees."""
    if not _may_patch_an_import(text):
        return []
    tree = ast.parse(text)
    bound = _imports(tree)
    compiled = compiled_modules()
    out = []
    for line, target, name in sorted(_patches(tree, bound)):
        module = _module_at(target) if target.startswith("handoffd") else None
        if module in compiled and name in compiled[module][1]:
            out.append(f"{where}:{line} {module}.{name}")
    return out


def test_the_scan_knows_the_compiled_modules_and_what_they_hide() -> None:
    compiled = compiled_modules()
    for dotted in (
        "handoffd.scheduler.owner",
        "handoffd.membership.swim",
        "handoffd._core.ranking",
    ):
        assert dotted in compiled, sorted(compiled)
    owner, plain_graph = (
        compiled["handoffd.scheduler.owner"][1],
        compiled["handoffd.scheduler.plain_graph"][1],
    )
    assert "successes" in owner  # (owner.pxd: from handoffd.scheduler cimport successes)
    assert "column_links" in plain_graph  # (cpdef, and ``links`` calls it)
    assert "sizes" not in plain_graph  # (cpdef, but only Python callers: graph._plain)
    assert "ClusterView" in compiled["handoffd.scheduler.cluster_view"][1]  # (others cimport it)


def test_a996a6b_s_patch_is_refused() -> None:
    before = """
import pytest
import handoffd.scheduler.owner as owner_module
from handoffd.scheduler import plain_graph, graph

def test_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owner_module, "successes", None)
    monkeypatch.setattr("handoffd.scheduler.plain_graph.column_links", None)
    monkeypatch.setattr(graph.plain_graph, "sizes", None)
    monkeypatch.setattr(plain_graph, "free", None)
    owner_module.OwnerBooks = None
"""
    assert unreachable_patches(before, "t.py") == [
        "t.py:7 handoffd.scheduler.owner.successes",
        "t.py:8 handoffd.scheduler.plain_graph.column_links",
        "t.py:11 handoffd.scheduler.owner.OwnerBooks",
    ]


def test_no_test_patches_what_the_compiled_build_does_not_look_up() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        found += unreachable_patches(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []
