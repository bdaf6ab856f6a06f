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

A function pickled by value whose kept reading met only immutable objects (``_frozen``) is
proven current by a **quick proof** instead (``_quick``, ``_still``): the objects that reading
read of it, checked by identity, and a memo of cloudpickle's by-value decision. It saves the
walk, the list and the comparison of a reading on each submission of a script's function.
"""

from __future__ import annotations

import functools
import sys
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
    __slots__ = ("objects", "seen", "top")

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.seen: set[int] = set()
        # what was read of the first function, when pickled by value: (code, its eight fields,
        # closure, cells' contents, globals, ((global name, value), ...)) (``_quick``)
        self.top: tuple[Any, ...] | None = None

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
        first = len(self.seen) == 1
        code = fn.__code__
        objects.append(code)  # immutable: its constants and names come with it
        # An atom is appended here as ``value`` would append it (the same reading, a call less
        # per field: a function's reading is taken on every miss).
        atoms = _ATOMS
        fields = (
            fn.__name__,
            fn.__qualname__,
            fn.__module__,
            fn.__doc__,
            fn.__defaults__,
            fn.__kwdefaults__,
            fn.__annotations__,
            fn.__dict__,
        )
        for value in fields:
            if type(value) in atoms:
                objects.append(value)
            else:
                self.value(value)
        closure = fn.__closure__
        contents = []
        for cell in closure or ():
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                content = _MISSING
                objects.append(_MISSING)
            else:
                self.value(content)
            contents.append(content)
        space = fn.__globals__
        pairs = []
        for name in _cp._extract_code_globals(code):
            value = space.get(name, _MISSING)
            pairs.append((name, value))
            self.value(value)
        for name in _BASE_GLOBALS:
            value = space.get(name, _MISSING)
            pairs.append((name, value))
            if type(value) in atoms or value is _MISSING:
                objects.append(value)
            else:
                self.value(value)
        if first:
            self.top = (code, fields, closure, tuple(contents), space, tuple(pairs))


def _read(fn: types.FunctionType) -> _Reading | None:
    """``fn``'s reading, or None if it holds something a reading cannot vouch for."""
    reading = _Reading()
    try:
        reading.function(fn)
    except _Uncacheable:
        return None
    except (AttributeError, TypeError, RecursionError):
        return None  # an exotic object (a proxy in the globals, say): not ours to judge
    return reading


def _same(old: list[Any], new: list[Any]) -> bool:
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if a is not b:
            return False
    return True


def _frozen(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` can never change while it is the same object: an atom, or a tuple or
    frozenset of such (its reading is then fixed by its identity)."""
    kind = type(value)
    if kind in _ATOMS:
        return True
    if (kind is tuple or kind is frozenset) and depth < 4 and len(value) <= 32:
        return all(_frozen(item, depth + 1) for item in value)
    return False


# A **quick proof** of a function pickled by value: the objects its reading read of it (code,
# the eight fields, closure, cells' contents, globals, ((global name, value), ...)) and the
# by-value decision's memo. Taken only when every object that reading walked is immutable
# (``_frozen``), the two dicts empty and ``__kwdefaults__`` None: then the same objects
# (identities) make the same reading, so the proof is checked by identity alone (``_still``),
# without walking, listing and comparing a reading or asking cloudpickle again whether the
# function is pickled by reference.
_Quick = tuple[Any, ...]


def _quick(fn: types.FunctionType, reading: _Reading) -> _Quick | None:
    """A quick proof made of the objects ``reading`` (of ``fn``) read, or None when only a
    reading can vouch for ``fn``."""
    top = reading.top
    if top is None:
        return None
    code, fields, closure, contents, space, pairs = top
    name, qualname, module, doc, defaults, kwdefaults, annotations, attributes = fields
    if (
        kwdefaults is not None
        or type(annotations) is not dict
        or annotations
        or type(attributes) is not dict
        or attributes
        or type(module) is not str
        or type(doc) not in _ATOMS
        or not _frozen(defaults)
        or not _frozen(contents)
    ):
        return None
    for _, value in pairs:
        if value is not _MISSING and not _frozen(value):
            return None
    decision = _by_value(fn, module, qualname)
    if decision is None:
        return None
    return (code, fields, closure, contents, space, pairs, decision)


def _by_value(fn: types.FunctionType, module_name: str, qualname: str) -> tuple[Any, ...] | None:
    """What cloudpickle's decision that ``fn`` is pickled by value rests on, when it can be
    checked by identity: ``__module__`` is ``"__main__"`` (by value whatever else holds: ``()``),
    or its module (a plain module in ``sys.modules`` under that name, holding ``fn`` under its
    ``__qualname__``) is registered to be pickled by value: the module, its ``__name__`` and a
    copy of the registry that names it or a parent. None: anything else (the reading decides)."""
    if module_name == "__main__":
        return ()
    if "." in qualname or qualname.startswith("__"):
        return None
    registered = frozenset(_cp._PICKLE_BY_VALUE_MODULES)  # copied first: the proof rests on it
    module = sys.modules.get(module_name)
    if type(module) is not types.ModuleType or module.__dict__.get(qualname) is not fn:
        return None
    name = module.__name__
    if type(name) is not str:
        return None
    parts = name.split(".")
    if not any(".".join(parts[:i]) in registered for i in range(1, len(parts) + 1)):
        return None  # not registered: pickled by reference
    return (module, name, registered)


def _still(fn: Any, quick: _Quick) -> bool:
    """Whether ``fn``'s quick proof still holds: every object the same one as when it was read."""
    code, fields, closure, contents, space, pairs, decision = quick
    name, qualname, module, doc, defaults, _, annotations, attributes = fields
    if not (
        fn.__code__ is code
        and fn.__name__ is name
        and fn.__qualname__ is qualname
        and fn.__module__ is module
        and fn.__doc__ is doc
        and fn.__defaults__ is defaults
        and fn.__kwdefaults__ is None
        and fn.__annotations__ is annotations
        and not annotations
        and fn.__dict__ is attributes
        and not attributes
        and fn.__globals__ is space
        and fn.__closure__ is closure
    ):
        return False
    if closure:
        for cell, content in zip(closure, contents, strict=True):
            try:
                if cell.cell_contents is not content:
                    return False
            except ValueError:  # emptied since (a proof never holds an empty cell)
                return False
    get = space.get
    for key, value in pairs:
        if get(key, _MISSING) is not value:
            return False
    if decision:
        held: Any = decision[0]
        held_name, registered = decision[1:]
        if not (
            held.__name__ is held_name
            and held.__dict__.get(qualname) is fn
            and sys.modules.get(module) is held
            and _cp._PICKLE_BY_VALUE_MODULES == registered
        ):
            return False
    return True


def proven(fn: Any) -> tuple[_Quick, bytes] | None:
    """``fn``'s quick proof and the pickle it vouches for, when its entry has one: while
    ``still(fn, proof)`` holds, ``dumps_code(fn)`` would return that pickle."""
    entry = _cache.get(id(fn))
    if entry is None or entry[3] is None or entry[0]() is not fn:
        return None
    return entry[3], entry[2]


still = _still  # (public: client_one keeps the proof of its last function)

hits = 0  # pickles reused (tests prove the cache is used)
quick_hits = 0  # ... of which proven current by a quick proof
# id(fn) -> (weak reference to fn, reading, pickle, quick proof or None); the entry goes when fn
# does.
_cache: dict[int, tuple[weakref.ref[Any], list[Any], bytes, _Quick | None]] = {}


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    entry = _cache.get(key)
    if entry is not None and entry[0] is ref:
        del _cache[key]


def dumps_code(fn: Any, dumps: Any) -> bytes:
    """``dumps(fn)``, from the cache when ``fn`` is a function whose reading did not change since
    it was pickled (``dumps`` is ``values._dumps_code``: passed in, so values.py stays free of
    this module)."""
    global hits, quick_hits
    if type(fn) is not types.FunctionType:
        return dumps(fn)  # type: ignore[no-any-return]
    key = id(fn)
    entry = _cache.get(key)
    if entry is not None and entry[3] is not None and entry[0]() is fn and _still(fn, entry[3]):
        hits += 1
        quick_hits += 1
        return entry[2]
    reading = _read(fn)
    if reading is None:
        _cache.pop(key, None)
        return dumps(fn)  # type: ignore[no-any-return]
    objects = reading.objects
    if entry is not None and entry[0]() is fn and _same(entry[1], objects):
        hits += 1
        data = entry[2]
    else:
        data = dumps(fn)
        # Kept only if nothing changed while it was pickled (another thread rebinding a
        # global): else these bytes might not match the reading they would be kept under.
        again = _read(fn)
        if again is None or not _same(objects, again.objects):
            return data
    if len(_cache) >= _LIMIT:
        _cache.clear()
    ref = entry[0] if entry is not None and entry[0]() is fn else None
    if ref is None:
        ref = weakref.ref(fn, functools.partial(_forget, key))
    # the proof is made of what this reading read: it vouches for the reading, hence the bytes
    _cache[key] = (ref, objects, data, _quick(fn, reading))
    return data


def clear() -> None:
    _cache.clear()
