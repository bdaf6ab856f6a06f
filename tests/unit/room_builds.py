"""The room index in its two builds, for its tests: as imported (compiled where it was built) and
its ``.py`` loaded as a module of its own, whatever build is imported."""

from __future__ import annotations

import pathlib
from types import ModuleType

import pure_build

from handoffd.scheduler import room_index as imported

SOURCE = pathlib.Path(imported.__file__).with_name("room_index.py")


def pure(name: str) -> ModuleType:
    """``room_index.py`` itself as the module ``name`` (each test file its own name)."""
    return pure_build.pure(imported, name)


def build(param: str, name: str) -> ModuleType:
    """The build a test's ``module`` fixture asks for: ``imported`` or ``pure``."""
    return imported if param == "imported" else pure(name)
