"""The registries of wire message types and structs, and the decorators that fill them.

Apart from ``messages`` so that a feature's own module of messages (``messages_<feature>``, imported
at the end of ``messages``) registers its types without importing ``messages`` back (a cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

#: type number -> message class (append-only; a test pins it)
MESSAGES: dict[int, type[Any]] = {}
#: nested record types, encoded as msgpack arrays of their fields
STRUCTS: dict[str, type[Any]] = {}
#: type number -> the protocol version that brought it, for types newer than the oldest version
#: a build still speaks: a codec whose range ends below it does not know the type, as a daemon of
#: that version would not (HANDOFFD_TEST_PROTOCOL plays one faithfully)
SINCE: dict[int, int] = {}


@dataclass_transform(frozen_default=True)
def message(type_id: int, since: int | None = None):  # type: ignore[no-untyped-def]
    """Register a frozen dataclass as wire message ``type_id`` (brought by protocol ``since``)."""

    def wrap(cls: type[T]) -> type[T]:
        if type_id in MESSAGES:
            raise RuntimeError(f"message type {type_id} used twice ({MESSAGES[type_id].__name__})")
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.TYPE = type_id  # type: ignore[attr-defined]
        MESSAGES[type_id] = cls
        if since is not None:
            SINCE[type_id] = since
        return cls

    return wrap


@dataclass_transform(frozen_default=True)
def struct(cls: type[T]) -> type[T]:
    """Register a frozen dataclass as a nested record."""
    cls = dataclass(frozen=True, slots=True)(cls)
    STRUCTS[cls.__name__] = cls
    return cls


def maker(cls: type[T]) -> Callable[..., T]:
    """A constructor of ``cls`` (a frozen slotted dataclass without ``__post_init__`` or default
    factories) with ``__init__``'s parameters, for code that builds one per task: it fills the slots through
    their descriptors, where the frozen ``__init__`` goes through ``object.__setattr__`` per field
    (about twice as long). The object is the same: equal, same hash."""
    given = fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in given]
    if hasattr(cls, "__post_init__") or any(
        f.name.startswith("_") or f.default_factory is not MISSING for f in given
    ):
        raise TypeError(f"{cls.__name__}: no fast constructor (post-init, factories, _names)")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    params = []
    for i, f in enumerate(given):  # a field's default is the same object as __init__'s
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        namespace[f"_set{i}"] = getattr(cls, f.name).__set__
    body = "".join(f"    _set{i}(_obj, {n})\n" for i, n in enumerate(names))
    source = f"def make({', '.join(params)}):\n    _obj = _new(_cls)\n{body}    return _obj\n"
    exec(source, namespace)  # noqa: S102 - field names of our own records only
    make: Callable[..., T] = namespace["make"]
    return make


__all__ = ["MESSAGES", "STRUCTS", "maker", "message", "struct"]
