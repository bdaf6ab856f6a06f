"""``file_watch`` (issue 13, W3): a watch over some files stays quiet while nothing about them
changes, and says so after every kind of change a stat would see; ``packages.cwd_package``
answers through it and never returns a package of files changed since."""

from __future__ import annotations

import io
import os
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handoffd import file_watch, packages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def _tree(tmp_path: Path) -> tuple[str, Path]:
    module = tmp_path / "pkg" / "sub" / "mod.py"
    module.parent.mkdir(parents=True)
    module.write_text("V = 1\n")
    (tmp_path / "pkg" / "other.py").write_text("W = 1\n")
    return str(tmp_path.resolve()) + os.sep, module


def _same_size_edit(path: Path) -> None:
    before = os.stat(path)
    path.write_text("V = 2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace(path: Path) -> None:
    fresh = path.with_suffix(".new")
    fresh.write_text("V = 3\n")
    os.replace(fresh, path)


def _move_dir(path: Path) -> None:
    sub = path.parent
    sub.rename(sub.with_name("moved"))
    sub.mkdir()
    (sub / path.name).write_text("V = 1\n")  # the same path, another file


def _through_link(path: Path) -> None:
    # made before the watch by _link_first; written through its other name
    with open(path.parent.parent / "alias.py", "a") as f:
        f.write("# more\n")


CHANGES: dict[str, Callable[[Path], None]] = {
    "append": lambda p: p.write_text(p.read_text() + "X = 1\n"),
    "same size, mtime put back": _same_size_edit,
    "utime": lambda p: os.utime(p, ns=(1, 1)),
    "chmod": lambda p: os.chmod(p, 0o600),
    "replaced by a rename": _replace,
    "deleted": lambda p: p.unlink(),
    "a directory of the path moved": _move_dir,
    "a file created beside it": lambda p: (p.parent / "new.py").write_text(""),
    "written through a hard link": _through_link,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_a_stat_sees_ends_the_quiet(tmp_path: Path, change: str) -> None:
    root, module = _tree(tmp_path)
    os.link(module, tmp_path / "pkg" / "alias.py")
    watch = file_watch.watch(root, [str(module)])
    assert watch is not None
    assert watch.quiet() and watch.quiet()
    CHANGES[change](module)
    assert not watch.quiet(), change
    assert not watch.quiet(), change  # and it stays so


def test_reads_and_changes_elsewhere_leave_it_quiet(tmp_path: Path) -> None:
    root, module = _tree(tmp_path / "a")
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    watch = file_watch.watch(root, [str(module)])
    assert watch is not None
    module.read_text()
    os.stat(module)
    (elsewhere / "x.py").write_text("changed\n")
    (tmp_path / "a" / "pkg" / "other.py").write_text("W = 2\n")  # a file not watched
    assert watch.quiet()


def test_no_watch_where_it_could_not_be_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, module = _tree(tmp_path)
    assert file_watch.watch(root, [str(tmp_path / "gone.py")]) is None  # nothing to watch
    assert file_watch.watch(root, []) is None
    assert file_watch.watch(str(module.parent) + os.sep, [str(tmp_path / "x.py")]) is None
    monkeypatch.setattr(file_watch, "MAX_WATCHES", 3)  # the file and its 3 directories
    assert file_watch.watch(root, [str(module)]) is None
    monkeypatch.setattr(file_watch, "MAX_WATCHES", 4)
    assert file_watch.watch(root, [str(module)]) is not None
    real = file_watch._mounts
    mounts = real()
    monkeypatch.setattr(file_watch, "_mounts", lambda: [*mounts, (str(tmp_path), "nfs4")])
    assert file_watch.watch(root, [str(module)]) is None  # another host may write it
    monkeypatch.setattr(file_watch, "_mounts", lambda: [*mounts, (str(tmp_path), "tmpfs")])
    assert file_watch.watch(root, [str(module)]) is not None
    monkeypatch.setattr(file_watch, "_libc", False)  # no inotify here
    assert file_watch.watch(root, [str(module)]) is None


def test_a_mount_change_is_kept_once_seen(tmp_path: Path) -> None:
    """The kernel reports a mount table change to one poll only; the watch keeps it."""
    root, module = _tree(tmp_path)
    watch = file_watch.watch(root, [str(module)])
    assert watch is not None
    polls = [[(watch._mounts.fileno(), 2)]]

    class Once:
        def poll(self, timeout: int) -> list[tuple[int, int]]:
            return polls.pop() if polls else []

    watch._poll = Once()  # type: ignore[assignment]
    assert not watch.quiet()
    assert not watch.quiet()


def _text(package: packages.Package | None, name: str) -> str:
    assert package is not None
    return zipfile.ZipFile(io.BytesIO(package.data)).read(name).decode()


def _module(monkeypatch: pytest.MonkeyPatch, root: Path, name: str) -> Path:
    path = root / f"{name}.py"
    path.write_text("V = 0\n")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    monkeypatch.setitem(sys.modules, name, module)
    return path


def test_the_cwd_package_answers_through_the_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the watch is quiet, no file is stat'ed; after a same-size edit with its mtime put
    back the new code ships, and the watch is made again."""
    path = _module(monkeypatch, tmp_path, "fwatch_m0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(packages, "_last_cwd", None)
    cwd = os.getcwd()
    packages.cwd_package(cwd)  # (a first watch imports ctypes: the modules are scanned again)
    first = packages.cwd_package(cwd)
    assert _text(first, "fwatch_m0.py") == "V = 0\n"  # (reading a zip imports a module too)
    first = packages.cwd_package(cwd)
    assert first is not None
    made = file_watch.made
    stats: list[str] = []
    real_stat = os.stat

    def counted(p: Any, *args: Any, **kwargs: Any) -> Any:
        stats.append(str(p))
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    for _ in range(5):
        assert packages.cwd_package(cwd) is first
    assert stats == []  # the watch answered
    _same_size_edit(path)
    second = packages.cwd_package(cwd)
    assert second is not None and second.sha != first.sha
    assert _text(second, "fwatch_m0.py") == "V = 2\n"
    assert file_watch.made == made + 1  # watched again
    stats.clear()
    assert packages.cwd_package(cwd) is second
    assert stats == []


def test_a_change_while_the_watch_is_made_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file changed after its stamp was taken and before its watch began: the watch made is
    not trusted (the files are stat'ed again after it), so the next call ships the change."""
    path = _module(monkeypatch, tmp_path, "fwatch_m1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(packages, "_last_cwd", None)
    real = file_watch.watch
    edits = [path]

    def late(root: str, files: Any) -> Any:
        if edits:
            _same_size_edit(edits.pop())  # between the stamp and the watch
        return real(root, files)

    monkeypatch.setattr(file_watch, "watch", late)
    cwd = os.getcwd()
    first = packages.cwd_package(cwd)
    assert _text(first, "fwatch_m1.py") == "V = 0\n"
    assert _text(packages.cwd_package(cwd), "fwatch_m1.py") == "V = 2\n"


def test_a_busy_directory_goes_back_to_stats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch that fires with no change soon after it was made (files made and removed beside
    the modules) is not made again each call: the stats answer until the modules change; in a
    quiet directory a new watch follows such an event."""
    path = _module(monkeypatch, tmp_path, "fwatch_m2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(packages, "_last_cwd", None)
    cwd = os.getcwd()
    packages.cwd_package(cwd)
    assert _text(packages.cwd_package(cwd), "fwatch_m2.py") == "V = 0\n"
    first = packages.cwd_package(cwd)
    made = file_watch.made
    (tmp_path / "scratch.tmp").write_text("")  # an event of no change, at once
    assert packages.cwd_package(cwd) is first
    assert packages._last_cwd is not None and packages._last_cwd[4] is None
    assert packages.cwd_package(cwd) is first and file_watch.made == made  # stats
    _same_size_edit(path)
    second = packages.cwd_package(cwd)
    assert _text(second, "fwatch_m2.py") == "V = 2\n"  # the stats saw it
    assert file_watch.made == made + 1  # the new files watched
    monkeypatch.setattr(file_watch, "BUSY", 0.0)  # a quiet directory
    (tmp_path / "scratch2.tmp").write_text("")
    assert packages.cwd_package(cwd) is second
    assert file_watch.made == made + 2 and packages._last_cwd[4] is not None
