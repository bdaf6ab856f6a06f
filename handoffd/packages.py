"""Code packages: the user's own modules, a working directory, named packages, shipped with a run.

Functions of an importable module are pickled by reference (``helpers.clean``): a worker needs the
module. A run therefore ships, as zip files named by their sha256 (content-addressed: the same code
is sent and stored once per node however many runs ship it):

- the caller's own modules, automatically: the source of every module imported from under the
  caller's working directory or the submitted dag.py's directory (not the standard library, not
  site-packages, not handoffd itself), each at its import path;
- ``working_dir=DIR``: the directory's files (version-control and cache directories left out), on
  ``sys.path`` as a directory is;
- ``py_modules=[...]``: packages or modules (a directory, a .py file, an imported module, or the
  name of one) under their own names.

Each node keeps a run's packages in its code dir and its workers put them on ``sys.path`` only while
they run that run's tasks (``handoffd.worker.code_env``). A run's packages together may not exceed
``max_bytes()`` (zipped), which is refused at submission with what was too large.
"""

from __future__ import annotations

import hashlib
import io
import linecache
import logging
import os
import re
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from handoffd import file_watch
from handoffd.errors import ValidationError
from handoffd.file_watch import Watch

log = logging.getLogger("handoffd.client")

ENV_MAX = "HANDOFFD_MAX_PACKAGE_BYTES"
DEFAULT_MAX_BYTES = 64 << 20
SKIP_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
    }
)
SKIP_SUFFIXES = (".pyc", ".pyo")
_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same files always zip to the same bytes (and sha)


@dataclass(frozen=True)
class Package:
    sha: str  # sha256 of ``data``, hex
    data: bytes  # a zip file
    source: str  # what it was built from, for messages


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def max_bytes() -> int:
    value = os.environ.get(ENV_MAX, "")
    return int(value) if value.isdigit() else DEFAULT_MAX_BYTES


def _zip(entries: Iterable[tuple[str, str]]) -> bytes:
    """A deterministic zip of (name in the archive, file path) entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname, path in sorted(set(entries)):
            info = zipfile.ZipInfo(arcname, _DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(path, "rb") as f:
                zf.writestr(info, f.read())
    return buffer.getvalue()


# sha -> {name in the archive: the file it came from}: where a remote traceback's frame really is
_origins: dict[str, dict[str, str]] = {}


def _package(entries: list[tuple[str, str]], source: str) -> Package:
    data = _zip(entries)
    sha = hashlib.sha256(data).hexdigest()
    if len(_origins) > 256:
        _origins.clear()
    _origins[sha] = dict(entries)
    return Package(sha, data, source)


_SHIPPED_PATH = re.compile(r'File "[^"]*?[/\\]([0-9a-f]{64})[/\\]([^"]+)"')
_FRAME = re.compile(r'^(\s*)File "([^"]+)", line (\d+)')


def localize_traceback(text: str) -> str:
    """A task's traceback as the user reads it: frames in shipped packages name the user's own
    files (not the node's code dir), and frames without their source line (functions shipped by
    value: the worker has no copy of the file) get it from this machine's copy."""
    if not text:
        return text

    def original(match: re.Match[str]) -> str:
        path = _origins.get(match.group(1), {}).get(match.group(2).replace("\\", "/"))
        return f'File "{path}"' if path else match.group(0)

    lines = _SHIPPED_PATH.sub(original, text).splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        frame = _FRAME.match(line)
        if frame is None:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        indent = frame.group(1)
        if following.startswith(indent + "  ") and not _FRAME.match(following):
            continue  # the worker had the source
        source = linecache.getline(frame.group(2), int(frame.group(3))).strip()
        if source:
            out.append(f"{indent}  {source}")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _tree(root: str, prefix: str) -> list[tuple[str, str]]:
    """Every file under ``root`` as (``prefix`` + its path relative to root, its path)."""
    entries = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in files:
            if name.endswith(SKIP_SUFFIXES):
                continue
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                entries.append((prefix + rel, path))
    return entries


def working_dir_package(path: str) -> Package:
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise ValidationError(
            "bad_working_dir", None, f"working_dir {path!r} is not a directory: pass a directory"
        )
    _check_tree_size(root, f"working_dir {path!r}")
    return _package(_tree(root, ""), f"working_dir {path!r}")


def module_package(item: str | ModuleType) -> Package:
    """A package (directory with ``__init__.py``, or any directory), a .py file, an imported
    module, or an importable module's name, under its own name."""
    label = f"py_modules entry {item!r}"
    if isinstance(item, ModuleType):
        path = _module_root(item, label)
    elif os.path.exists(item):
        path = os.path.abspath(item)
    else:
        module = sys.modules.get(item)
        if module is None:
            import importlib.util

            try:
                spec = importlib.util.find_spec(item)
            except (ImportError, ValueError):
                spec = None
            if spec is None or spec.origin in (None, "built-in", "frozen"):
                raise ValidationError(
                    "bad_py_module",
                    None,
                    f"{label} is neither a path nor an importable module: pass a package "
                    "directory, a .py file, or the module itself",
                )
            locations = list(spec.submodule_search_locations or [])
            path = locations[0] if locations else spec.origin
        else:
            path = _module_root(module, label)
    path = path.rstrip(os.sep)
    if os.path.isdir(path):
        name = os.path.basename(path)
        _check_tree_size(path, label)
        return _package(_tree(path, name + "/"), label)
    if path.endswith(".py") and os.path.isfile(path):
        return _package([(os.path.basename(path), path)], label)
    raise ValidationError(
        "bad_py_module", None, f"{label} ({path}) is not a directory or a .py file"
    )


def _module_root(module: ModuleType, label: str) -> str:
    locations = list(getattr(module, "__path__", []) or [])
    if locations:
        return str(locations[0])
    file = getattr(module, "__file__", None)
    if not file:
        raise ValidationError("bad_py_module", None, f"{label} has no source file to ship")
    return str(file)


def _check_tree_size(root: str, label: str) -> None:
    """Refuse a directory too big to ship before zipping it (a home directory by mistake)."""
    limit = max_bytes()
    total, biggest = 0, []
    for _, path in _tree(root, ""):
        size = os.path.getsize(path)
        total += size
        biggest.append((size, path))
        if total > 4 * limit:
            break
    if total > 4 * limit:
        biggest.sort(reverse=True)
        top = ", ".join(f"{os.path.relpath(p, root)} ({s >> 20} MiB)" for s, p in biggest[:3])
        raise ValidationError(
            "package_too_large",
            None,
            f"{label} holds over {4 * limit >> 20} MiB of files (largest: {top}); ship only the "
            f"code (py_modules=[...]) and keep data on shared storage, or raise {ENV_MAX}",
        )


# -- the caller's own modules ---------------------------------------------------------------------


def _excluded_dirs() -> tuple[str, ...]:
    """The interpreter's and installed packages' directories (fixed for the process: found once;
    ``sysconfig.get_paths`` expands its schemes each call)."""
    global _excluded
    if _excluded is None:
        _excluded = _excluded_now()
    return _excluded


_excluded: tuple[str, ...] | None = None


def _excluded_now() -> tuple[str, ...]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(__file__)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


_resolved: dict[str, tuple[tuple[int, int], str]] = {}  # root -> ((st_dev, st_ino), _real_root)


def _real_root(path: str) -> str:
    """``realpath(path)`` ending in a separator ("" for "/"), resolved again only when ``path``
    names another directory than last time (a stat, not realpath's lstat of every component and
    ~60 Python calls on each run: 15 % of a one-task ``execute``'s client CPU)."""
    try:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    except OSError:
        ident = None
    cached = _resolved.get(path)
    if cached is not None and cached[0] == ident:
        return cached[1]
    real = os.path.realpath(path)
    root = "" if real == "/" else os.path.join(real, "")
    if ident is not None:
        if len(_resolved) >= 64:
            _resolved.clear()
        _resolved[path] = (ident, root)
    return root


_scan_key: tuple[int, tuple[str, ...]] | None = None
_scan: list[tuple[str, str]] = []  # (name in the archive, file) of the last scan
_built: dict[tuple[tuple[str, str, int, int, int, int], ...], Package] = {}


def _cwd_root(path: str) -> str:
    """``_real_root`` of ``os.getcwd()``'s answer without a stat: POSIX's getcwd names the
    directory with no symbolic link, ``.`` or ``..`` in it, so it is its own realpath."""
    return "" if path == "/" else path + os.sep  # (no separator at its end but "/"'s)


def local_modules_package(roots: Sequence[str], cwd: bool = False) -> Package | None:
    """The caller's modules imported from under ``roots``, as one package (None if there are
    none). Rescanned when ``sys.modules`` grew; rebuilt when a file changed. ``cwd``: the first
    root is ``os.getcwd()``'s answer (a real path already)."""
    return _stamped(roots, cwd)[1]


# (cwd, len(sys.modules), ((file, (mtime, size, ctime, inode)), ...), their package, a watch
# over the files or None: none could be made) of the last ``cwd_package``
_last_cwd: (
    tuple[str, int, tuple[tuple[str, tuple[int, ...]], ...], Package | None, Watch | None] | None
) = None


def cwd_package(cwd: str) -> Package | None:
    """``local_modules_package([cwd], cwd=True)`` (``cwd``: ``os.getcwd()``'s answer). While the
    directory and the number of modules are the last call's, the last package while the watch
    over its files is quiet (``file_watch``: one system call), else while each file's stat is
    its last stamp (compared as it is taken: no roots or scan key made, no whole stamp looked
    up)."""
    global _last_cwd
    last = _last_cwd
    if last is not None and last[0] == cwd and last[1] == len(sys.modules):
        held = last[4]
        if held is not None and held.quiet():
            return last[3]  # no file of theirs, no directory above them changed
        if _unchanged(last[2]):
            if held is not None:  # an event of no change (a file made beside them): a new
                # watch, the files stat'ed again after it is made (a change before is missed);
                # none in a busy directory (stats each call until the modules change)
                fresh = (
                    None
                    if held.busy()
                    else file_watch.watch(_cwd_root(cwd), [f for f, _ in last[2]])
                )
                if fresh is not None and not _unchanged(last[2]):
                    _last_cwd = None  # changed meanwhile: the next call looks again
                else:
                    _last_cwd = (*last[:4], fresh)
            return last[3]
    count = len(sys.modules)  # (before: a module imported meanwhile makes the next call look)
    stamp, package = _stamped([cwd], True)
    if os.name == "posix" and stamp is not None and (package is not None or not stamp):
        files = tuple([(f, (mtime, size, ctime, ino)) for _, f, mtime, size, ctime, ino in stamp])
        fresh = file_watch.watch(_cwd_root(cwd), [f for f, _ in files])
        if fresh is not None and not _unchanged(files):
            fresh = None  # changed while the watch was made: the next call stats
        _last_cwd = (cwd, count, files, package, fresh)
    else:  # nothing to compare with (a file gone, a package over the limit: said each time)
        _last_cwd = None
    return package


def _unchanged(files: tuple[tuple[str, tuple[int, ...]], ...]) -> bool:
    """Whether each file's stat is its stamp (mtime, size, ctime, inode)."""
    stat = os.stat
    try:
        for f, kept in files:
            st = stat(f)
            if (st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino) != kept:
                return False
    except OSError:
        return False
    return True


def _stamped(
    roots: Sequence[str], cwd: bool
) -> tuple[tuple[tuple[str, str, int, int, int, int], ...] | None, Package | None]:
    """``local_modules_package``'s package and the stamps of its files (None: one failed)."""
    global _scan_key, _scan
    real = _cwd_root if cwd and os.name == "posix" else _real_root
    roots = tuple(
        [root for i, r in enumerate(roots) if r and (root := (real if i == 0 else _real_root)(r))]
    )
    key = (len(sys.modules), roots)
    if key != _scan_key:
        _scan, _scan_key = _scan_modules(roots), key
    if not _scan:
        return (), None
    try:
        stat = os.stat
        stamps = []
        for arc, f in _scan:
            st = stat(f)
            # the change time too: an edit that keeps the size and puts the mtime back (an
            # editor's or a checkout's) still moves it, as any write, rename or utime does
            stamps.append((arc, f, st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino))
        stamp = tuple(stamps)
    except OSError:
        _scan_key = None
        return None, None
    package = _built.get(stamp)
    if package is None:
        total = sum(entry[3] for entry in stamp)
        if total > max_bytes():
            log.warning(
                "not shipping the %d modules imported from under %s: %d MiB is over the %d MiB "
                "limit (%s); pass py_modules=[...] instead",
                len(stamp),
                ", ".join(roots),
                total >> 20,
                max_bytes() >> 20,
                ENV_MAX,
            )
            return stamp, None
        if len(_built) > 16:
            _built.clear()
        package = _built[stamp] = _package(list(_scan), "modules imported from " + ", ".join(roots))
    return stamp, package


# A module's ``__file__`` -> its real path, as first resolved: a rescan (every submission after
# ``sys.modules`` grew) resolves only the new modules' files (~180 ``realpath`` calls, each an
# ``lstat`` per path component, took the client's first big submission ~10 ms). The module was
# loaded from where its file was then, so that is the file to ship.
_real_files: dict[str, str] = {}


def _scan_modules(roots: tuple[str, ...]) -> list[tuple[str, str]]:
    excluded = _excluded_dirs()
    entries = []
    reals = _real_files
    if len(reals) > 50_000:
        reals.clear()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py") or name == "__main__" or name == "handoffd":
            continue
        if name.startswith("handoffd."):
            continue
        real = reals.get(file)
        if real is None:
            real = reals[file] = os.path.realpath(file)
        if not real.startswith(roots) or real.startswith(excluded):
            continue
        is_package = bool(getattr(module, "__path__", None))
        arcname = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        # Only a module found at its import path (not one loaded from a file under another
        # name, like handoffctl's dag.py, which travels by value).
        if not real.replace(os.sep, "/").endswith("/" + arcname):
            continue
        entries.append((arcname, real))
    return entries


def build(
    working_dir: str | None,
    py_modules: Iterable[str | ModuleType] | None,
    roots: Sequence[str],
    cwd: bool = False,
) -> list[Package]:
    """The packages a run ships, in ``sys.path`` order (explicit ones shadow the caller's).
    ``cwd``: the first root is ``os.getcwd()``'s answer."""
    if (
        working_dir is None and py_modules is None
    ):  # the caller's modules only (every plain execute)
        local = local_modules_package(roots, cwd)
        return [] if local is None else [local]
    if isinstance(py_modules, (str, ModuleType)):
        py_modules = [py_modules]
    packages: list[Package] = []
    explicit: list[Package] = []
    if working_dir is not None:
        explicit.append(working_dir_package(working_dir))
    for item in py_modules or ():
        explicit.append(module_package(item))
    total = sum(len(p.data) for p in explicit)
    if total > max_bytes():
        sizes = ", ".join(f"{p.source}: {_size(len(p.data))}" for p in explicit)
        raise ValidationError(
            "package_too_large",
            None,
            f"the code shipped with the run is {_size(total)} zipped, over the "
            f"{_size(max_bytes())} limit ({sizes}); ship only the code and keep data on "
            f"shared storage, or raise {ENV_MAX}",
        )
    packages.extend(explicit)
    local = local_modules_package(roots, cwd)
    if local is not None:
        packages.append(local)
    seen: set[str] = set()
    return [p for p in packages if not (p.sha in seen or seen.add(p.sha))]  # type: ignore[func-returns-value]
