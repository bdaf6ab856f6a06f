"""``bench/_peers/owner_cpu.py``, the owner's CPU split by part (``bench/owner_cpu_split.py``):
every part it times names a function that exists (a rename must fail here, not leave the split
silently without that part), and a timed function counts its calls and thread CPU, returning
what it returned."""

from __future__ import annotations

import importlib
import importlib.util
import os
import types
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(30)

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "..", "bench", "_peers", "owner_cpu.py")


def wrapper() -> Any:
    spec = importlib.util.spec_from_file_location("owner_cpu", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_part_names_a_function_of_the_daemon():
    parts = wrapper().PARTS
    assert len({label for _, _, label in parts}) == len(parts)
    for module, path, _ in parts:
        found: Any = importlib.import_module(module)
        for name in path.split("."):
            found = getattr(found, name)
        assert callable(found), (module, path)


def test_a_timed_function_counts_its_calls_and_cpu():
    owner_cpu = wrapper()
    target = types.SimpleNamespace(work=lambda n: sum(range(n)))
    owner_cpu.sys.modules["owner_cpu_target"] = target
    try:
        owner_cpu._wrap("owner_cpu_target", "work", "the part")
        assert target.work(200_000) == sum(range(200_000))
        assert target.work(3) == 3
    finally:
        del owner_cpu.sys.modules["owner_cpu_target"]
    assert owner_cpu.calls["the part"] == 2
    assert owner_cpu.cpu["the part"] > 0.0
