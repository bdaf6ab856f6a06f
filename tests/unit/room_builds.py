"""The room index in its two builds, for its tests: as imported (compiled where it was built) and
its ``.py`` loaded as a module of its own, whatever build is imported."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

from handoffd.scheduler import room_index as imported

SOURCE = pathlib.Path(imported.__file__).with_name("room_index.py")


def pure(name: str) -> ModuleType:
    """``room_index.py`` itself as the module ``name`` (each test file its own name)."""
    spec = importlib.util.spec_from_file_location(name, SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build(param: str, name: str) -> ModuleType:
    """The build a test's ``module`` fixture asks for: ``imported`` or ``pure``."""
    return imported if param == "imported" else pure(name)
