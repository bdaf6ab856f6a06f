"""The client's pickled functions kept across submissions, each proven current before reuse.

``DAG.wire_tasks`` cloudpickles each callable once per DAG; a client that builds a new DAG around
the same function for every ``execute`` (one short task at a time) paid that pickling on every
call. ``dumps_code`` here returns the bytes of the last pickling of the same function object when
nothing that pickle was made of has changed, and pickles again otherwise.

What cloudpickle writes for a function is determined by objects we can list: pickled by reference
(an importable module's function), its module and qualified name; by value, its code, names,
defaults, annotations, ``__dict__``, closure cells and the globals its code names (and the same
again for every function those refer to), and the module's ``__name__``/``__file__``/... . A
**reading** walks them and records every object met, in order, with an end mark after each
container's items. A pickle is reused only if a new reading is the same sequence of objects (the
same identities: an immutable value with the same identity has the same value, and a list, dict or
set is walked item by item each time, so a changed item changes the reading). Whether each
function, class and module is pickled by reference is asked again on every reading (a module
registered by value since, a name rebound in its module).

Only what such a reading can vouch for is cached: plain scalars, tuples, frozensets, lists,
dicts and sets of them, functions, classes and modules pickled by reference, and built-in
functions of modules. Anything else met (an instance of a user's class, whose pickle may depend
on anything; a class or module pickled by value; a package, whose pickle names the submodules
imported at the time) leaves that function uncached, pickled on every submission as before.
"""

from __future__ import annotations

import functools
import types
import weakref
from typing import Any

from cloudpickle import cloudpickle as _cp

_ATOMS = frozenset({int, float, complex, bool, str, bytes, type(None), type(Ellipsis)})
_CONTAINERS = frozenset({tuple, frozenset, list, dict, set})
_MAX_READING = 400  # objects a reading may hold: a function that refers to more is not cached
_LIMIT = 256  # functions cached (a client that makes new functions all the time drops them)
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")  # cloudpickle keeps these


class _Missing:
    """Stands for an absent global, an empty closure cell or the end of a container's items."""


_MISSING = _Missing()
_END = _Missing()


class _Uncacheable(Exception):
    pass


class _Reading:
    __slots__ = ("objects", "seen")

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.seen: set[int] = set()

    def value(self, value: Any) -> None:
        objects = self.objects
        objects.append(value)
        kind = type(value)
        if kind in _ATOMS or value is _MISSING:
            return
        if len(objects) > _MAX_READING:
            raise _Uncacheable
        if kind in _CONTAINERS:
            if id(value) in self.seen:  # met before (shared or cyclic): pickled as a reference
                return
            self.seen.add(id(value))
            if kind is dict:
                for key, item in value.items():
                    self.value(key)
                    self.value(item)
            else:
                for item in value:
                    self.value(item)
            objects.append(_END)
        elif kind is types.FunctionType:
            self.function(value)
        elif kind is types.BuiltinFunctionType:
            # A module's built-in function pickles as its module and name; a bound built-in
            # method (``[].append``) pickles its object.
            if not isinstance(value.__self__, types.ModuleType):
                raise _Uncacheable
        elif isinstance(value, type):
            if value in _cp._BUILTIN_TYPE_NAMES or value in (type(None), type(Ellipsis)):
                return
            if not _cp._should_pickle_by_reference(value):
                raise _Uncacheable  # a class by value: its dict, methods, ... may change
            objects.append(value.__module__)
            objects.append(value.__qualname__)
        elif kind is types.ModuleType:
            if getattr(value, "__package__", None):
                raise _Uncacheable  # cloudpickle adds the submodules imported right now
            if not _cp._should_pickle_by_reference(value):
                raise _Uncacheable
            objects.append(value.__name__)
        else:
            raise _Uncacheable

    def function(self, fn: types.FunctionType) -> None:
        objects = self.objects
        if id(fn) in self.seen:  # recursion, or a helper named twice: pickled once
            return
        self.seen.add(id(fn))
        if _cp._should_pickle_by_reference(fn):
            objects.append(True)
            objects.append(fn.__module__)
            objects.append(fn.__qualname__)
            return
        objects.append(False)
        code = fn.__code__
        objects.append(code)  # immutable: its constants and names come with it
        # An atom is appended here as ``value`` would append it (the same reading, a call less
        # per field: a function's reading is taken on every submission).
        atoms = _ATOMS
        for value in (
            fn.__name__,
            fn.__qualname__,
            fn.__module__,
            fn.__doc__,
            fn.__defaults__,
            fn.__kwdefaults__,
            fn.__annotations__,
            fn.__dict__,
        ):
            if type(value) in atoms:
                objects.append(value)
            else:
                self.value(value)
        for cell in fn.__closure__ or ():
            try:
                self.value(cell.cell_contents)
            except ValueError:  # an empty cell
                objects.append(_MISSING)
        space = fn.__globals__
        for name in _cp._extract_code_globals(code):
            self.value(space.get(name, _MISSING))
        for name in _BASE_GLOBALS:
            value = space.get(name, _MISSING)
            if type(value) in atoms or value is _MISSING:
                objects.append(value)
            else:
                self.value(value)


def _read(fn: types.FunctionType) -> list[Any] | None:
    """``fn``'s reading, or None if it holds something a reading cannot vouch for."""
    reading = _Reading()
    try:
        reading.function(fn)
    except _Uncacheable:
        return None
    except (AttributeError, TypeError, RecursionError):
        return None  # an exotic object (a proxy in the globals, say): not ours to judge
    return reading.objects


def _same(old: list[Any], new: list[Any]) -> bool:
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if a is not b:
            return False
    return True


hits = 0  # pickles reused (tests prove the cache is used)
# id(fn) -> (weak reference to fn, reading, pickle); the entry goes when fn does.
_cache: dict[int, tuple[weakref.ref[Any], list[Any], bytes]] = {}


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    entry = _cache.get(key)
    if entry is not None and entry[0] is ref:
        del _cache[key]


def dumps_code(fn: Any, dumps: Any) -> bytes:
    """``dumps(fn)``, from the cache when ``fn`` is a function whose reading did not change since
    it was pickled (``dumps`` is ``values._dumps_code``: passed in, so values.py stays free of
    this module)."""
    if type(fn) is not types.FunctionType:
        return dumps(fn)  # type: ignore[no-any-return]
    key = id(fn)
    reading = _read(fn)
    if reading is None:
        _cache.pop(key, None)
        return dumps(fn)  # type: ignore[no-any-return]
    entry = _cache.get(key)
    if entry is not None and entry[0]() is fn and _same(entry[1], reading):
        global hits
        hits += 1
        return entry[2]
    data: bytes = dumps(fn)
    # Kept only if nothing changed while it was pickled (another thread rebinding a global):
    # else these bytes might not match the reading they would be kept under.
    again = _read(fn)
    if again is not None and _same(reading, again):
        if len(_cache) >= _LIMIT:
            _cache.clear()
        ref = weakref.ref(fn, functools.partial(_forget, key))
        _cache[key] = (ref, reading, data)
    return data


def clear() -> None:
    _cache.clear()
