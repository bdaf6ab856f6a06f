"""A cache of the code ``dataclasses`` generates, so a process does not compile it again.

Creating a dataclass compiles the source text of its ``__init__``, ``__repr__``, ``__eq__`` (and
for a frozen one ``__hash__``, ``__setattr__``, ``__delattr__``): ``dataclasses._create_fn``
builds the text and ``exec``-s it, one compile each. A daemon creates a few hundred dataclasses
at import (the protocol's messages, the machines' events), and those compiles were most of its
import time and so of its start-up; handoffctl paid the same for its share on every command.

``install`` shadows the builtin ``exec`` in the ``dataclasses`` module only (its global name
``exec``, looked up before the builtins) with ``_exec``: a source text it has seen is run from
the code object compiled from that same text before; any other text is compiled, run, and kept.
The key is the exact text, and ``exec(text, ...)`` is ``exec(compile(text, "<string>", "exec"),
...)`` for a module with no ``__future__`` flags, so a cached code object is the one the text
would give: the behaviour of every class is today's, only the compile is skipped.

Nothing is done unless ``dataclasses`` is exactly the shape this is written for (Python 3.11 or
3.12, whose ``_create_fn`` execs one function's text at a time; no ``__future__`` flag in it; no
``exec`` of its own): any other version or a changed module keeps today's behaviour. The cache
file (``__pycache__/dataclass_code.<tag>.bin`` beside this module) starts with the interpreter's
bytecode magic number and a checksum of the rest; one of another Python, a truncated or corrupt
one, or one that is not there is ignored, and it is never required. It is written, atomically (a
temporary file renamed over it), where bytecode may be written: at exit when the process compiled
something new and ``sys.dont_write_bytecode`` is off, or by ``fill`` (``handoffd.testing.precompile``
calls it), as ``py_compile`` writes bytecode where ``PYTHONDONTWRITEBYTECODE`` only stops the
imports from writing it.
"""

from __future__ import annotations

import atexit
import binascii
import builtins
import marshal
import os
import sys
import tempfile
from importlib.util import MAGIC_NUMBER
from types import CodeType
from typing import Any

_FORMAT = b"HDC1"  # (this file's layout: magic, format, crc32 of the rest, marshal of a dict)
_PREFIX = "def __create_fn__("  # (every text _create_fn builds; any other exec is passed through)
_LIMIT = 8192  # texts kept at most: a process making classes in a loop must not grow it forever
_VERSIONS = ((3, 11), (3, 12))

_real_exec = builtins.exec
_path: str | None = None
_known: dict[str, bytes] | None = None  # text -> marshalled code, read from the file on first use
_new: dict[str, bytes] = {}  # compiled by this process, not in the file it read
misses = 0  # texts this process compiled (the tests count them in a second process)


def cache_path() -> str:
    """Where the cache of this interpreter lives: beside this module's bytecode."""
    tag = sys.implementation.cache_tag or "python"
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "__pycache__", f"dataclass_code.{tag}.bin")


def install(path: str | None = None) -> bool:
    """Route ``dataclasses``' exec of its generated methods through the cache; True if it did
    (False, and today's behaviour, for any ``dataclasses`` this was not written for)."""
    global _path
    import dataclasses

    if "exec" in vars(dataclasses):
        return vars(dataclasses)["exec"] is _exec
    if not _fits(dataclasses):
        return False
    _path = path or cache_path()
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    atexit.register(_save_at_exit)
    return True


def _fits(module: Any) -> bool:
    if sys.version_info[:2] not in _VERSIONS or sys.implementation.name != "cpython":
        return False
    create = getattr(module, "_create_fn", None)
    code = getattr(create, "__code__", None)
    if not isinstance(code, CodeType) or "exec" not in code.co_names:
        return False
    # A __future__ import in dataclasses would change how exec compiles its text: not ours then.
    import __future__

    flags = 0
    for name in __future__.all_feature_names:
        flags |= getattr(__future__, name).compiler_flag
    return not code.co_flags & flags


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    if (
        not isinstance(source, str)
        or not source.startswith(_PREFIX)
        or not isinstance(globals, dict)
    ):
        if globals is None:
            # (exec's default: the caller's globals, which here are dataclasses' own)
            import dataclasses

            globals = vars(dataclasses)
        _real_exec(source, globals, locals)
        return
    _real_exec(_code(source), globals, locals)


def _code(text: str) -> CodeType:
    global misses
    known = _known if _known is not None else _load()
    blob = known.get(text) or _new.get(text)
    if blob is not None:
        try:
            code = marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            code = None
        if isinstance(code, CodeType) and code.co_names == ("__create_fn__",):
            return code
        known.pop(text, None)  # (not what it claimed to be: compiled again, and saved right)
    code = compile(text, "<string>", "exec", dont_inherit=True)
    misses += 1
    if len(known) + len(_new) < _LIMIT:
        _new[text] = marshal.dumps(code)
    return code


def _load() -> dict[str, bytes]:
    global _known
    _known = _read(_path or cache_path())
    return _known


def _read(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    head = len(MAGIC_NUMBER) + len(_FORMAT)
    if data[:head] != MAGIC_NUMBER + _FORMAT or len(data) < head + 4:
        return {}
    body = data[head + 4 :]
    if int.from_bytes(data[head : head + 4], "little") != binascii.crc32(body):
        return {}
    try:
        table = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, bytes)}


def save(force: bool = False) -> bool:
    """Write what this process compiled into the cache file, merged with what the file holds
    now; True if written. Only where bytecode may be written, unless ``force``; an unwritable
    place is not an error (the cache is never required)."""
    if not _new or _path is None or (sys.dont_write_bytecode and not force):
        return False
    table = _read(_path)
    for text, blob in _new.items():
        if len(table) >= _LIMIT:
            break
        table[text] = blob
    body = marshal.dumps(table)
    data = MAGIC_NUMBER + _FORMAT + binascii.crc32(body).to_bytes(4, "little") + body
    folder = os.path.dirname(_path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".dataclass_code.", dir=folder)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # (readable as bytecode is: mkstemp's file is private)
            f.write(data)
        os.replace(temporary, _path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    _new.clear()
    return True


def _save_at_exit() -> None:
    try:
        save()
    except Exception:  # noqa: BLE001 (a cache must never turn an exit into a traceback)
        pass


def fill(modules: tuple[str, ...]) -> int:
    """Import ``modules`` (what a daemon, handoffctl and a client import: the caller names them,
    so this module imports nothing of handoffd's) and write the cache whatever
    ``PYTHONDONTWRITEBYTECODE`` says (as ``py_compile`` does); returns the texts compiled."""
    import importlib

    if not install():
        return 0
    for name in modules:
        importlib.import_module(name)
    save(force=True)
    return misses
