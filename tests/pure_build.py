"""A compiled module's ``.py`` loaded as a module of its own, whatever build is imported: the
reference its twin tests compare the compiled build with. (In tests/, beside the root conftest, so
every tier imports it: the unit tier's twin tests and the cluster tier's block tests, which open
pipes.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def pure(imported: ModuleType, name: str) -> ModuleType:
    """``imported``'s source file run as plain Python under the module name ``name``."""
    source = Path(imported.__file__ or "").with_name(imported.__name__.rsplit(".", 1)[-1] + ".py")
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_builds(imported: ModuleType, pure_module: ModuleType) -> None:
    """``pure_module`` is the ``.py``; ``imported`` is the compiled build wherever the core was
    built (a build without Cython has the ``.py`` only)."""
    assert pure_module.__file__ is not None and pure_module.__file__.endswith(".py")
    try:
        import handoffd._core.sched  # noqa: F401
    except ImportError:  # a build without Cython: the .py is the only build
        return
    assert imported.__file__ is not None
    assert imported.__file__.endswith((".so", ".pyd")), imported.__file__
