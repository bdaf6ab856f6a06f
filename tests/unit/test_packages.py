"""Code packages (issue 14): built deterministically, refused when too large, and in a worker on
``sys.path`` only while a task of the run that shipped them runs."""

from __future__ import annotations

import io
import os
import random
import sys
import types
import zipfile
from pathlib import Path

import pytest

from handoffd import packages, values
from handoffd.errors import ValidationError
from handoffd.worker import code_env


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_directory_zips_to_the_same_bytes_until_a_file_changes(tmp_path: Path) -> None:
    root = _write(
        tmp_path / "wd",
        {"a.py": "A = 1\n", "pkg/__init__.py": "", "__pycache__/a.pyc": "x", ".git/HEAD": "x"},
    )
    first = packages.working_dir_package(str(root))
    again = packages.working_dir_package(str(root))
    assert first.sha == again.sha and first.data == again.data
    names = zipfile.ZipFile(__import__("io").BytesIO(first.data)).namelist()
    assert sorted(names) == ["a.py", "pkg/__init__.py"]  # caches and VCS dirs left out
    (root / "a.py").write_text("A = 2\n")
    assert packages.working_dir_package(str(root)).sha != first.sha


def test_py_modules_keep_their_import_names(tmp_path: Path) -> None:
    _write(tmp_path, {"mypkg/__init__.py": "", "mypkg/sub.py": "", "single.py": ""})
    import io

    def names(item: str) -> list[str]:
        package = packages.module_package(item)
        return sorted(zipfile.ZipFile(io.BytesIO(package.data)).namelist())

    assert names(str(tmp_path / "mypkg")) == ["mypkg/__init__.py", "mypkg/sub.py"]
    assert names(str(tmp_path / "single.py")) == ["single.py"]
    with pytest.raises(ValidationError) as info:
        packages.module_package("no_such_module_anywhere_14")
    assert info.value.kind == "bad_py_module"
    with pytest.raises(ValidationError) as info:
        packages.build(str(tmp_path / "missing"), None, [])
    assert info.value.kind == "bad_working_dir"


def test_too_much_code_is_refused_saying_what_and_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    (tmp_path / "big.bin").write_bytes(os.urandom(50_000))
    monkeypatch.setenv(packages.ENV_MAX, "20000")
    with pytest.raises(ValidationError) as info:
        packages.build(str(tmp_path), None, [])
    assert info.value.kind == "package_too_large"
    assert "working_dir" in str(info.value) and packages.ENV_MAX in str(info.value)


def test_a_workers_path_holds_only_the_running_runs_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "src", {"shipped_mod_14.py": "def f():\n    return 'v1'\n"})
    package = packages.working_dir_package(str(src))
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / f"{package.sha}.zip").write_bytes(package.data)
    monkeypatch.setenv(code_env.ENV_DIR, str(code_dir))
    saved_path = list(sys.path)
    try:
        code_env.activate((package.sha,))
        import shipped_mod_14  # type: ignore[import-not-found]

        assert shipped_mod_14.f() == "v1"
        extracted = str(code_dir / package.sha)
        assert sys.path[0] == extracted
        code_env.activate(())  # a task of a run that shipped nothing
        assert extracted not in sys.path and "shipped_mod_14" not in sys.modules
        # A payload's code names its packages: loading it activates them first.
        blob = values.dumps_code(lambda: __import__("shipped_mod_14").f(), (package.sha,))
        fn = values.load_code(blob)
        assert isinstance(fn, code_env.Packaged) and fn() == "v1"
        with pytest.raises(code_env.PackageMissing, match="never reached"):
            code_env.activate(("0" * 64,))
    finally:
        code_env.activate(())
        sys.path[:] = saved_path


def test_a_remote_traceback_names_the_users_files_with_their_source(tmp_path: Path) -> None:
    src = _write(tmp_path / "src", {"helpers_tb.py": "def f():\n    raise KeyError('k')\n"})
    dag_file = _write(tmp_path, {"dag.py": "import x\n\ndef task():\n    return f()\n"})
    package = packages.working_dir_package(str(src))
    remote = (
        "Traceback (most recent call last):\n"
        f'  File "{dag_file / "dag.py"}", line 4, in task\n'
        f'  File "/var/node/code/{package.sha}/helpers_tb.py", line 2, in f\n'
        "    raise KeyError('k')\n"
        "KeyError: 'k'\n"
    )
    assert packages.localize_traceback(remote) == (
        "Traceback (most recent call last):\n"
        f'  File "{dag_file / "dag.py"}", line 4, in task\n'
        "    return f()\n"
        f'  File "{src / "helpers_tb.py"}", line 2, in f\n'
        "    raise KeyError('k')\n"
        "KeyError: 'k'\n"
    )


def test_code_pickled_by_value_keeps_its_file_name() -> None:
    import pickle

    def local_fn() -> int:
        return 1

    loaded = pickle.loads(values.dumps_code(local_fn))
    assert loaded.__code__.co_filename == __file__


def test_a_root_is_resolved_once_and_again_when_its_symlink_points_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = packages
    a, b, link = tmp_path / "a", tmp_path / "b", tmp_path / "link"
    a.mkdir()
    b.mkdir()
    link.symlink_to(a)
    resolved: list[str] = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p: resolved.append(p) or real(p))
    assert pk._real_root(str(link)) == os.path.join(real(a), "")
    assert pk._real_root(str(link)) == os.path.join(real(a), "") and len(resolved) == 1
    link.unlink()
    link.symlink_to(b)  # the same path now names another directory: resolved again
    assert pk._real_root(str(link)) == os.path.join(real(b), "") and len(resolved) == 2
    assert pk._real_root("/") == ""


def test_a_module_edited_in_place_with_its_size_and_mtime_kept_ships_its_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stat check's stamp holds the change time: an edit that keeps the size and puts the
    mtime back (as an editor or a checkout may) still ships the new source."""
    root = _write(tmp_path / "proj", {"kept_mod.py": "X = 1\n"})
    source = root / "kept_mod.py"
    module = types.ModuleType("kept_mod")
    module.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "kept_mod", module)

    def shipped() -> str:
        package = packages.local_modules_package([str(root)], cwd=True)
        assert package is not None
        with zipfile.ZipFile(io.BytesIO(package.data)) as zf:
            return zf.read("kept_mod.py").decode()

    assert shipped() == "X = 1\n"
    before = os.stat(source)
    source.write_text("X = 2\n")  # the same size
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(source).st_mtime_ns == before.st_mtime_ns
    assert os.stat(source).st_size == before.st_size
    assert shipped() == "X = 2\n"


def test_the_working_directory_is_not_resolved_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.getcwd()`` names a real path already: ``cwd=True`` takes it as its own root without
    a stat or realpath, and finds the same modules as resolving it would."""
    root = _write(tmp_path / "proj", {"cwd_mod.py": "Y = 1\n"})
    module = types.ModuleType("cwd_mod")
    module.__file__ = str(root / "cwd_mod.py")
    monkeypatch.setitem(sys.modules, "cwd_mod", module)
    monkeypatch.chdir(root)
    resolved = packages.local_modules_package([str(root)])
    calls: list[str] = []
    real = packages._real_root
    monkeypatch.setattr(packages, "_real_root", lambda p: calls.append(p) or real(p))
    fast = packages.local_modules_package([os.getcwd(), ""], cwd=True)
    assert calls == []
    assert fast is not None and resolved is not None and fast.sha == resolved.sha
    assert packages.local_modules_package([os.getcwd(), str(tmp_path)], cwd=True) is not None
    assert calls == [str(tmp_path)]  # the other root is resolved as before


def test_the_cwd_package_is_local_modules_packages_through_random_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cwd_package`` (a one-task execute's) compares each file's stat with its last stamp
    itself: through random edits (in place with size and mtime kept, replaced by a rename,
    deleted and written again, modules imported and dropped, another directory) it gives the
    package ``local_modules_package`` builds, and the same object while nothing changed."""
    rng = random.Random(19)
    roots = [_write(tmp_path / name, {f"{name}_m0.py": "V = 0\n"}) for name in ("cwdpk1", "cwdpk2")]
    names: list[str] = []

    def add(root: Path, i: int) -> None:
        name = f"{root.name}_m{i}"  # a module found at its import path (as _scan_modules asks)
        path = root / f"{name}.py"
        if not path.exists():
            path.write_text(f"V = {i}\n")
        module = types.ModuleType(name)
        module.__file__ = str(path)
        monkeypatch.setitem(sys.modules, name, module)
        if name not in names:
            names.append(name)

    for root in roots:
        add(root, 0)
    monkeypatch.setattr(packages, "_last_cwd", None)
    root = roots[0]
    monkeypatch.chdir(root)
    last = None
    changed = 0
    for step in range(150):
        files = sorted(root.glob("*_m*.py"))
        action = rng.choice(["same", "same", "edit", "rename", "rewrite", "import", "drop", "cd"])
        if action == "edit" and files:  # the same size, the mtime put back
            path = rng.choice(files)
            before = os.stat(path)
            text = path.read_text()
            path.write_text(text[:4] + str((int(text[4]) + 1) % 10) + text[5:])  # "V = d..."
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        elif action == "rename" and files:
            path = rng.choice(files)
            fresh = path.with_suffix(".new")
            fresh.write_text(path.read_text() + "# renamed over\n")
            os.replace(fresh, path)
        elif action == "rewrite" and files:
            path = rng.choice(files)
            text = path.read_text()
            path.unlink()
            path.write_text(text)
        elif action == "import":
            add(root, rng.randrange(1, 4))
        elif action == "drop" and len(names) > 2:
            monkeypatch.delitem(sys.modules, names.pop(rng.randrange(len(names))))
        elif action == "cd":
            root = roots[1] if root == roots[0] else roots[0]
            monkeypatch.chdir(root)
        cwd = os.getcwd()
        got = packages.cwd_package(cwd)
        want = packages.local_modules_package([cwd], cwd=True)
        assert (got is None) == (want is None), (step, action)
        if got is not None and want is not None:
            assert (got.sha, got.data) == (want.sha, want.data), (step, action)
            if last is not None and action == "same":
                assert got is last  # nothing changed: the last package as it was
            changed += last is None or got.sha != last.sha
        last = got
    assert changed > 20


def test_a_rescan_resolves_only_the_new_modules_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``sys.modules`` grew, the scan runs again: each module file already seen keeps its
    real path (no ``realpath``: ~180 of them, an ``lstat`` per path component, were ~2-10 ms of
    the client's first big submission), the new one is resolved and shipped."""
    root = _write(tmp_path / "proj", {"old_mod.py": "A = 1\n", "new_mod.py": "B = 1\n"})
    old = types.ModuleType("old_mod")
    old.__file__ = str(root / "old_mod.py")
    monkeypatch.setitem(sys.modules, "old_mod", old)
    first = packages.local_modules_package([str(root)], cwd=True)
    assert first is not None
    resolved: list[str] = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p: resolved.append(p) or real(p))
    new = types.ModuleType("new_mod")
    new.__file__ = str(root / "new_mod.py")
    monkeypatch.setitem(sys.modules, "new_mod", new)  # sys.modules grew: scanned again
    package = packages.local_modules_package([str(root)], cwd=True)
    assert resolved == [new.__file__]
    assert package is not None
    with zipfile.ZipFile(io.BytesIO(package.data)) as zf:
        assert sorted(zf.namelist()) == ["new_mod.py", "old_mod.py"]
