"""The registries of wire message types and structs, and the decorators that fill them.

Apart from ``messages`` so that a feature's own module of messages (``messages_<feature>``, imported
at the end of ``messages``) registers its types without importing ``messages`` back (a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

#: type number -> message class (append-only; a test pins it)
MESSAGES: dict[int, type[Any]] = {}
#: nested record types, encoded as msgpack arrays of their fields
STRUCTS: dict[str, type[Any]] = {}


@dataclass_transform(frozen_default=True)
def message(type_id: int):  # type: ignore[no-untyped-def]
    """Register a frozen dataclass as wire message ``type_id``."""

    def wrap(cls: type[T]) -> type[T]:
        if type_id in MESSAGES:
            raise RuntimeError(f"message type {type_id} used twice ({MESSAGES[type_id].__name__})")
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.TYPE = type_id  # type: ignore[attr-defined]
        MESSAGES[type_id] = cls
        return cls

    return wrap


@dataclass_transform(frozen_default=True)
def struct(cls: type[T]) -> type[T]:
    """Register a frozen dataclass as a nested record."""
    cls = dataclass(frozen=True, slots=True)(cls)
    STRUCTS[cls.__name__] = cls
    return cls


__all__ = ["MESSAGES", "STRUCTS", "message", "struct"]
