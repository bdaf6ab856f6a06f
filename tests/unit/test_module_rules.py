"""Two rules of the architecture (issue 12, "done when"), checked on the source tree: no import
cycle among handoffd's modules at run time (imports under ``TYPE_CHECKING`` aside, function-level
imports included), and no module over 700 lines. The checker itself is tested on small trees."""

from __future__ import annotations

from pathlib import Path

from import_graph import cycles, describe, graph, long_modules, modules, project_modules

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 700  # the split limit; aim for about 600
KNOWN = project_modules(ROOT)


def test_no_import_cycle_among_handoffd_modules() -> None:
    assert "handoffd.scheduler.owner" in KNOWN and "handoffd._core.api" in KNOWN  # read the tree
    edges = graph(KNOWN)
    found = [describe(component, edges) for component in cycles(edges)]
    assert not found, "import cycles (break them; an import only for types goes under " + (
        "TYPE_CHECKING):\n" + "\n".join(found)
    )


def test_no_module_over_the_split_limit() -> None:
    assert KNOWN["handoffd._core.sched"].suffix == ".pyx"  # Cython sources count too
    offenders = long_modules(KNOWN, MAX_LINES)
    assert not offenders, f"modules over {MAX_LINES} lines (split them): {offenders}"


# -- the checker ----------------------------------------------------------------------------------


def tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(modules([(tmp_path / "pkg", "pkg")]))


def test_a_function_level_import_closes_a_cycle(tmp_path: Path) -> None:
    edges = tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "def later():\n    from pkg.c import x\n    return x\n",
            "c.py": "import pkg.a\nx = 1\n",
            "d.py": "from . import a\n",  # reaches the cycle, is not in it
        },
    )
    assert edges["pkg.b"] == {"pkg.c"} and edges["pkg.d"] == {"pkg.a"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert describe(["pkg.a", "pkg.b", "pkg.c"], edges) == (
        "pkg.a -> pkg.b; pkg.b -> pkg.c; pkg.c -> pkg.a"
    )


def test_imports_for_types_only_are_not_a_cycle(tmp_path: Path) -> None:
    edges = tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import B\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "import typing\n"
                "if TYPE_CHECKING:\n    from pkg.a import A\nelse:\n    from pkg import c\n"
                "if typing.TYPE_CHECKING:\n    import pkg.a\n"
                "class B: ...\n"
            ),
            "c.py": "",
        },
    )
    assert edges["pkg.b"] == {"pkg.c"}  # the else branch runs
    assert cycles(edges) == []


def test_lazy_imports_by_name_and_cython_sources_count(tmp_path: Path) -> None:
    edges = tree(
        tmp_path,
        {
            "__init__.py": (
                "import importlib\n"
                "_LAZY = {'thing': 'pkg.impl'}\n"
                "def __getattr__(name):\n"
                "    return getattr(importlib.import_module(_LAZY[name]), name)\n"
            ),
            "impl.py": "from pkg import fast\n",
            "fast.pyx": (
                "from libc.math cimport INFINITY\n"
                "from ._consts import EPS, POLICIES\n"
                "def f():\n    import pkg\n"
            ),
            "_consts.py": "EPS = 1e-9\n",
        },
    )
    assert edges["pkg"] == {"pkg.impl"}
    assert edges["pkg.fast"] == {"pkg", "pkg._consts"}
    assert cycles(edges) == [["pkg", "pkg.fast", "pkg.impl"]]


def test_long_modules_are_named_with_their_length(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * 701)
    (tmp_path / "pkg" / "fine.py").write_text("x = 1\n" * 700)
    known = modules([(tmp_path / "pkg", "pkg")])
    assert long_modules(known, MAX_LINES) == {"pkg.big": 701}


def test_the_core_is_read_once_under_its_installed_name() -> None:
    assert (ROOT / "handoffd" / "_core").is_symlink()  # to _core/, not walked twice
    assert not [n for n in KNOWN if "._core._core" in n or n.startswith("handoffd.handoffd")]
    assert KNOWN["handoffd._core.api"].resolve() == (ROOT / "_core" / "api.py").resolve()
