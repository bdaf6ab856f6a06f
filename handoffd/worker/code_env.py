"""A run's shipped code in a worker process: its packages on ``sys.path`` while its tasks run.

A run may ship code packages (``working_dir=``, ``py_modules=``, and the caller's own modules,
see ``handoffd.packages``): zip files named by their sha256, which the node keeps in its code dir
(``HANDOFFD_CODE_DIR``, set by the daemon for its workers). The run's callables travel with the
packages' names in front of their pickle (``values.dumps_code``): the worker activates them before
unpickling (a function of a shipped module is pickled by reference to it) and keeps the callable as
a ``Packaged``, so every call activates them again. A callable shipped without packages is
unpickled with none active: nothing of another run's code can leak into it.

Workers are shared by runs, so a package is on ``sys.path`` only while a task of a run that
shipped it runs: switching to a task with other packages (or none) takes the old ones off the path
and drops the modules imported from them (another run may ship another version of ``helpers``).
Each package is extracted once per node into ``<code dir>/<sha>/`` (an atomic rename, so two
workers extracting at once never see half a directory).
This module is imported by freshly spawned workers: it stays light (no threads, no sockets).
"""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from typing import Any

ENV_DIR = "HANDOFFD_CODE_DIR"
ENV_NODE = "HANDOFFD_NODE"

# Invariant: _active_paths are on sys.path (at its front) exactly while _active is not empty.
_active: tuple[str, ...] = ()
_active_paths: list[str] = []


class PackageMissing(ModuleNotFoundError):
    """A package the run shipped is not on this node (its fetch from the owner failed)."""


class Packaged:
    """A shipped callable (``values.load_code``) and the code packages (sha256 hex) it needs."""

    __slots__ = ("shas", "fn")

    def __init__(self, shas: tuple[str, ...], fn: Any) -> None:
        self.shas = tuple(shas)
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def configure(node: str, code_dir: str) -> None:
    """In a fresh worker: the node it serves and the node's code dir (set by the pool)."""
    if node:
        os.environ[ENV_NODE] = node
    if code_dir:
        os.environ[ENV_DIR] = code_dir


def code_dir() -> str:
    return os.environ.get(ENV_DIR, "")


def _extracted(sha: str) -> str:
    root = code_dir()
    target = os.path.join(root, sha)
    if os.path.isdir(target):
        return target
    archive = os.path.join(root, sha + ".zip")
    if not root or not os.path.isfile(archive):
        node = os.environ.get(ENV_NODE, "this node")
        raise PackageMissing(
            f"code package {sha[:12]} of this run never reached {node} (the node could not "
            "fetch it from the run's owner or any other node); submit the run again"
        )
    staging = f"{target}.tmp-{os.getpid()}"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another worker extracted it first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


def activate(shas: tuple[str, ...]) -> None:
    """Make exactly these packages importable (first on ``sys.path``), dropping others'."""
    global _active, _active_paths
    if shas == _active:
        return
    if _active:
        old = _active_paths
        for path in old:
            try:
                sys.path.remove(path)
            except ValueError:
                pass
        prefixes = tuple(p + os.sep for p in old)
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if file.startswith(prefixes):
                del sys.modules[name]
        _active, _active_paths = (), []
    if shas:
        paths = [_extracted(sha) for sha in shas]
        sys.path[:0] = paths
        _active, _active_paths = tuple(shas), paths
    importlib.invalidate_caches()


def missing_module_hint(exc: ModuleNotFoundError) -> str:
    """What a task's ModuleNotFoundError means here, and which option ships the module."""
    if isinstance(exc, PackageMissing):
        return str(exc)
    node = os.environ.get(ENV_NODE, "the worker's node")
    name = exc.name or str(exc)
    top = name.split(".")[0]
    return (
        f"{exc} (on {node}): module {name!r} is neither installed there nor shipped with the run. "
        f"Ship it with py_modules=[{top!r}] (its directory or the imported module) or "
        f"working_dir=<the directory holding it> on execute()/submit(), or "
        f"`handoffctl submit --py-module {top} | --working-dir DIR`; modules under the "
        f"submitting directory are shipped automatically once imported there; or install it "
        f"on every node"
    )
