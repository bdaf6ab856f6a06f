"""The dataclass code cache (``handoffd._dataclass_code``): a class built through it is the class
``dataclasses`` builds without it, a bad or unwritable cache changes nothing, and a second
process really compiles nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from handoffd import _dataclass_code

# Every kind of generated method: defaults, factories, frozen (__hash__, __setattr__,
# __delattr__), slots, __post_init__ with an InitVar, kw_only, eq without hash, unsafe_hash,
# repr=False fields, a field named like the function's own names.
_SOURCE = """
import dataclasses
from dataclasses import InitVar, KW_ONLY, dataclass, field

@dataclass
class Plain:
    a: int
    b: str = "x"
    c: list = field(default_factory=list)
    d: int = field(default=3, repr=False, compare=False)

@dataclass(frozen=True)
class Frozen:
    x: int
    y: tuple = ()

@dataclass(frozen=True, slots=True)
class Slotted:
    self: int
    other: float = 1.5

@dataclass
class Post:
    a: int
    scale: InitVar[int] = 2
    b: int = field(init=False, default=0)

    def __post_init__(self, scale):
        self.b = self.a * scale

@dataclass(kw_only=True)
class Keywords:
    a: int
    b: int = 4

@dataclass
class Mixed:
    a: int
    _: KW_ONLY
    b: int = 1
    c: dict = field(default_factory=dict)

@dataclass(unsafe_hash=True, order=True)
class Ordered:
    a: int
    b: str = ""

CLASSES = (Plain, Frozen, Slotted, Post, Keywords, Mixed, Ordered)
"""

# The hook is installed only on the dataclasses it was written for (another Python: today's).
hooked = pytest.mark.skipif(
    sys.version_info[:2] not in _dataclass_code._VERSIONS,
    reason="no hook on this Python's dataclasses",
)

_METHODS = (
    "__init__",
    "__repr__",
    "__eq__",
    "__hash__",
    "__setattr__",
    "__delattr__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
)


def _build() -> tuple[type, ...]:
    """The classes of ``_SOURCE``, new ones each call (a module dataclasses can look up)."""
    module = types.ModuleType("dataclass_code_probe")
    sys.modules[module.__name__] = module
    try:
        exec(compile(_SOURCE, "dataclass_code_probe", "exec"), vars(module))
    finally:
        del sys.modules[module.__name__]
    return vars(module)["CLASSES"]


def _behaviour(classes: tuple[type, ...]) -> list[Any]:
    """What each class does, as comparable values (instances are compared within one build)."""
    plain, frozen, slotted, post, keywords, mixed, ordered = classes
    seen: list[Any] = []
    for cls in classes:
        seen.append(
            [
                (f.name, f.default, f.default_factory, f.init, f.repr, f.compare, f.kw_only)
                for f in dataclasses.fields(cls)
            ]
        )
        seen.append(tuple(m for m in _METHODS if m in vars(cls)))
    p, q = plain(1), plain(1)
    assert p.c is not q.c  # (a factory per instance)
    seen += [repr(p), p == q, p == plain(1, d=9), p == plain(2), repr(plain(1, "y", [1], 5))]
    seen.append(repr(p).replace(plain.__qualname__, "?"))
    f = frozen(1)
    seen += [repr(f), hash(f) == hash(frozen(1)), f == frozen(1, ())]
    for attempt in (lambda: setattr(f, "x", 2), lambda: delattr(f, "x")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            attempt()
    s = slotted(7)
    seen += [repr(s), slotted.__slots__, hasattr(s, "__dict__"), hash(s) == hash(slotted(7, 1.5))]
    seen += [repr(post(3)), post(3, 5).b, post(3) == post(3, 9)]
    with pytest.raises(TypeError):
        keywords(1)  # type: ignore[misc]
    seen += [repr(keywords(a=1)), repr(mixed(1, b=2)), mixed(1) == mixed(1, c={})]
    with pytest.raises(TypeError):
        mixed(1, 2)  # type: ignore[misc]
    seen += [
        ordered(1) < ordered(2),
        ordered(1, "b") >= ordered(1, "a"),
        hash(ordered(1)) == hash(ordered(1)),
    ]
    # The generated functions themselves: the same code (bytecode, constants, names, lines).
    for cls in classes:
        for name in _METHODS:
            fn = getattr(vars(cls).get(name), "__wrapped__", vars(cls).get(name))
            code = getattr(fn, "__code__", None)
            if code is not None:
                code = (
                    code.co_code,
                    code.co_consts,
                    code.co_names,
                    code.co_varnames,
                    code.co_filename,
                    code.co_firstlineno,
                    code.co_flags,
                )
            seen.append((cls.__name__, name, code, getattr(fn, "__annotations__", None)))
    return seen


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's cache pointed at a new file (the hook itself is handoffd's)."""
    assert dataclasses.exec is _dataclass_code._exec  # type: ignore[attr-defined]
    path = tmp_path / "__pycache__" / "dataclass_code.bin"
    monkeypatch.setattr(_dataclass_code, "_path", str(path))
    monkeypatch.setattr(_dataclass_code, "_known", None)
    monkeypatch.setattr(_dataclass_code, "_new", {})
    return path


@hooked
def test_a_class_built_through_the_cache_is_the_class_built_without_it(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.delattr(dataclasses, "exec")  # (today's dataclasses: the builtin exec)
        reference = _behaviour(_build())
    before = _dataclass_code.misses
    missed = _behaviour(_build())
    compiled = _dataclass_code.misses - before
    assert compiled >= 7 * 3
    assert _dataclass_code.save(force=True) and cache.exists()
    monkeypatch.setattr(_dataclass_code, "_known", None)  # (read from the file again)
    before = _dataclass_code.misses
    hit = _behaviour(_build())
    assert _dataclass_code.misses == before  # (every method came from the file)
    assert missed == reference
    assert hit == reference


@hooked
@pytest.mark.parametrize(
    "damage",
    ["truncated", "flipped", "foreign", "garbage", "empty", "not_a_table", "wrong_code"],
)
def test_a_bad_cache_file_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    _build()
    assert _dataclass_code.save(force=True)
    data = cache.read_bytes()
    head = len(_dataclass_code.MAGIC_NUMBER) + len(_dataclass_code._FORMAT)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data = data[:-50] + bytes([data[-50] ^ 0xFF]) + data[-49:]
    elif damage == "foreign":  # (another Python's cache: another magic number)
        data = b"\x00\x00\r\n" + data[4:]
    elif damage == "garbage":
        data = os.urandom(4096)
    elif damage == "empty":
        data = b""
    elif damage in ("not_a_table", "wrong_code"):
        import binascii
        import marshal

        table = marshal.loads(data[head + 4 :])
        if damage == "not_a_table":
            body = marshal.dumps(list(table))
        else:  # (a valid file whose entries hold code that is not a generated function's)
            body = marshal.dumps(
                {text: marshal.dumps(compile("x = 1", "<string>", "exec")) for text in table}
            )
        data = data[:head] + binascii.crc32(body).to_bytes(4, "little") + body
    cache.write_bytes(data)
    monkeypatch.setattr(_dataclass_code, "_known", None)
    monkeypatch.setattr(_dataclass_code, "_new", {})
    with monkeypatch.context() as m:
        m.delattr(dataclasses, "exec")
        reference = _behaviour(_build())
    before = _dataclass_code.misses
    assert _behaviour(_build()) == reference
    assert _dataclass_code.misses - before >= 7 * 3  # (compiled again: nothing was taken from it)


@hooked
def test_an_unwritable_place_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # (a regular file where the cache's folder would be: no directory, no cache, as root too)
    monkeypatch.setattr(
        _dataclass_code, "_path", str(blocker / "__pycache__" / "dataclass_code.bin")
    )
    monkeypatch.setattr(_dataclass_code, "_known", None)
    monkeypatch.setattr(_dataclass_code, "_new", {})
    with monkeypatch.context() as m:
        m.delattr(dataclasses, "exec")
        reference = _behaviour(_build())
    assert _behaviour(_build()) == reference
    assert _dataclass_code.save(force=True) is False
    assert _dataclass_code._save_at_exit() is None
    assert list(tmp_path.iterdir()) == [blocker]


@hooked
def test_nothing_is_written_where_bytecode_may_not_be(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert _dataclass_code.save() is False and not cache.exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert _dataclass_code.save() is True and cache.exists()


def test_a_dataclasses_of_another_shape_is_left_alone() -> None:
    class Other:  # (a dataclasses whose _create_fn does not exec: 3.13's shape, say)
        @staticmethod
        def _create_fn(name: str) -> None:
            return None

    assert not _dataclass_code._fits(Other)
    assert _dataclass_code._fits(dataclasses) == (sys.version_info[:2] in _dataclass_code._VERSIONS)


_PROCESS = """
import json, sys
from handoffd import _dataclass_code as m
m._path = sys.argv[1]  # (before the first dataclass: nothing was read yet)
import handoffd.cli.daemon, handoffd.daemon.node, handoffd.cli.ctl
print(json.dumps({"misses": m.misses, "written": m.save(force=True)}))
"""


def _process(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@hooked
def test_a_second_process_compiles_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dataclass_code.bin"
    first = _process(path)
    assert first["misses"] > 500 and first["written"]
    written = path.read_bytes()
    second = _process(path)
    assert second == {"misses": 0, "written": False}
    assert path.read_bytes() == written
    path.write_bytes(written[:100])  # (a torn file: ignored, compiled again, written whole)
    assert _process(path) == first
