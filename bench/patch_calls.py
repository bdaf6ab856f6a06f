"""A pytest plugin that counts the calls each test's ``monkeypatch.setattr`` function receives.

A patch nobody calls is either a guard ("this must not be called") or a patch the code never looks
up: a compiled module's cimported or cdef/cpdef name (``tests/unit/test_compiled_patches.py``), a
name another module imported by value, a subprocess's copy. This lists every patch site with its
calls so the second kind can be told from the first (then plant a fault through the guard: the
test must fail). Session 30's audit (docs/performance.md, helper patch) used it.

    PYTHONPATH=bench .venv/bin/pytest -p patch_calls -p no:cacheprovider tests/unit/test_x.py

Without ``-n``: the table is printed at the end of the session. A site is ``file:line`` of the
test's call, the target (a module's or class's name) and the attribute; ``calls`` counts calls of
the function put in (a value that is not a function: ``-``).
"""

from __future__ import annotations

import functools
import sys
import types
from collections import Counter
from typing import Any

import _pytest.monkeypatch as monkeypatch

_USES: Counter[str] = Counter()
_CALLS: Counter[str] = Counter()
_NOT_FUNCTIONS: set[str] = set()
_real_setattr = monkeypatch.MonkeyPatch.setattr
_NOTSET: Any = monkeypatch.NOTSET


def _site() -> str:
    frame = sys._getframe(2)
    while frame is not None and "/tests/" not in frame.f_code.co_filename:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename.split('/tests/', 1)[1]}:{frame.f_lineno}"


def _counted(key: str, function: Any) -> Any:
    @functools.wraps(function)
    def counted(*args: Any, **kwargs: Any) -> Any:
        _CALLS[key] += 1
        return function(*args, **kwargs)

    return counted


def _setattr(
    self: Any, target: Any, name: Any = _NOTSET, value: Any = _NOTSET, raising: bool = True
) -> None:
    shown = (
        target if isinstance(target, str) else getattr(target, "__name__", type(target).__name__)
    )
    key = f"{_site()}  {shown}  {name if isinstance(name, str) else ''}"
    _USES[key] += 1
    functions = (types.FunctionType, types.BuiltinFunctionType, functools.partial)
    if value is not _NOTSET and isinstance(value, functions):
        value = _counted(key, value)
    elif value is _NOTSET and isinstance(name, functions):  # (the "module.name" string form)
        name = _counted(key, name)
    else:
        _NOT_FUNCTIONS.add(key)
    _real_setattr(self, target, name, value, raising)


monkeypatch.MonkeyPatch.setattr = _setattr  # type: ignore[method-assign,assignment]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("monkeypatch.setattr sites: uses, calls")
    for key in sorted(k for k in _USES if not k.startswith("?")):
        calls = "-" if key in _NOT_FUNCTIONS else str(_CALLS[key])
        terminalreporter.write_line(f"{_USES[key]:5d} {calls:>8}  {key}")
