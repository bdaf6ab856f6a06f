"""``handoffd.testing.precompile``: the suite's bytecode for handoffd (tests/conftest.py), so the
processes a test starts under PYTHONDONTWRITEBYTECODE=1 load each module instead of compiling
it. Its files must be what an import takes without compiling, follow an edit that keeps the size
and the mtime, and not be written again while the source is unchanged."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from handoffd.testing import precompile


def _code_without_compiling(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The module's code object as an import gets it, with compiling from source forbidden."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{path} compiled from source")

    loader = importlib.machinery.SourceFileLoader(path.stem, str(path))
    with monkeypatch.context() as m:
        m.setattr(importlib.machinery.SourceFileLoader, "source_to_code", refuse)
        return loader.get_code(path.stem)


def test_the_files_are_imported_without_compiling_and_follow_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", True)  # (as under CI's environment)
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    first, second = package / "first.py", package / "sub" / "second.py"
    first.write_text("V = 1\n")
    second.write_text("W = 2\n")
    assert precompile(package) == 2
    namespace: dict[str, Any] = {}
    exec(_code_without_compiling(first, monkeypatch), namespace)
    exec(_code_without_compiling(second, monkeypatch), namespace)
    assert (namespace["V"], namespace["W"]) == (1, 2)
    cached = Path(importlib.util.cache_from_source(str(second)))
    written = cached.stat().st_mtime_ns

    # An edit that keeps the size and puts the mtime back (a timestamp file would go stale).
    before = first.stat()
    first.write_text("V = 7\n")
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert precompile(package) == 1  # (only the edited file)
    namespace = {}
    exec(_code_without_compiling(first, monkeypatch), namespace)
    assert namespace["V"] == 7
    assert cached.stat().st_mtime_ns == written

    # Edited after the last precompile: the import sees the hash differ and compiles, never
    # running the old code.
    first.write_text("V = 8\n")
    with pytest.raises(AssertionError, match="compiled from source"):
        _code_without_compiling(first, monkeypatch)


def test_a_module_that_does_not_compile_is_left_to_its_import(tmp_path: Path) -> None:
    """A syntax error is the import's to report (in the test that imports it), not a reason to
    fail the session's start: the other modules still get their files."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "broken.py").write_text("def (:\n")
    (package / "fine.py").write_text("X = 1\n")
    assert precompile(package) == 1
    assert Path(importlib.util.cache_from_source(str(package / "fine.py"))).exists()
    assert not Path(importlib.util.cache_from_source(str(package / "broken.py"))).exists()
