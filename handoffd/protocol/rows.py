"""Structs decoded as checked rows, not objects: a receiver that only repacks a message's structs
(a standby keeps each task's newest ``TaskDelta`` packed, ``replication.standby.Replica``) asks
its codec for the rows of that field (``Codec(rows={ReplicateLog: "tasks"})``) and skips
building an object per struct and per nested struct, which cost it more than the rest of the
message's decode and its own work on it together.

A row is checked exactly as the struct's ``from_values`` checks its fields (the same types, the
same conversions: an int in a float field becomes a float) and comes as a tuple of this build's
fields in declaration order, nested structs as rows too. A struct of another length (a sender of
another protocol version) is read by the struct's own ``from_other`` and turned into a row of
this build's fields, so a consumer sees one shape whatever the sender's version.

A receiver that only keeps a message's structs until it may need them (a standby keeps a log
batch's task deltas until it takes over, ``replication.standby``) asks for that field *packed*
(``Codec(packed={ReplicateLog: "tasks"})``): the message is read field by field and that one
skipped, kept as the bytes it was sent as; ``read_packed`` reads them later as checked rows, with
the same checks. Its message of another shape (another field count, a protocol version's number
past one byte) is read whole, that field as checked rows.
"""

from __future__ import annotations

import copy
import sys
import typing
from collections.abc import Callable
from typing import Any

import msgpack

from handoffd.protocol.messages import STRUCTS
from handoffd.protocol.schema import (
    MESSAGE_OFFSET,
    Invalid,
    Record,
    _float_from,
    _Schema,
    struct_record,
)

Row = tuple[Any, ...]


class CheckedRows(tuple):  # type: ignore[type-arg]
    """A ``tuple[Struct, ...]`` field decoded as rows (see the module): each a tuple of the
    struct's fields in declaration order, checked."""

    __slots__ = ()


def row_checker(record: Record) -> Callable[[Row], Row]:
    """Check ``v``, the wire tuple of exactly ``record.count`` values, as ``record.from_values``
    would (raises ``Invalid``), and return it as a row."""
    env: dict[str, Any] = {"Invalid": Invalid, "_float_from": _float_from}
    lines = ["def check(v):"]
    for i, (name, schema) in enumerate(zip(record.names, record.schemas, strict=True)):
        where = f"{record.cls.__name__}.{name}"
        lines.append(f"    f{i} = v[{i}]")
        if schema.scalar is float:
            lines.append(f"    if type(f{i}) is not float: f{i} = _float_from(f{i})")
        elif schema.scalar is not None:
            env[f"_t{i}"] = schema.scalar
            lines.append(f"    if type(f{i}) is not _t{i}: raise Invalid({where!r})")
        elif schema.passes_from is not None:
            env[f"_p{i}"] = schema.passes_from
            env[f"_c{i}"] = schema.from_wire
            lines.append(f"    if type(f{i}) not in _p{i}: f{i} = _c{i}(f{i})")
        else:
            env[f"_c{i}"] = _row_field(record, name)
            lines.append(f"    f{i} = _c{i}(f{i})")
    lines.append(f"    return ({', '.join(f'f{i}' for i in range(record.count))},)")
    exec("\n".join(lines), env)  # noqa: S102 - generated from our own annotations only
    return env["check"]  # type: ignore[no-any-return]


def _row_field(record: Record, name: str) -> Callable[[Any], Any]:
    """Field ``name`` of ``record`` when neither a scalar nor a union of scalars: a tuple of
    structs becomes a tuple of rows; one with no struct in it (a tuple of str, a dict) is read by
    the field's own from_wire."""
    cls = record.cls
    hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), dict(STRUCTS))[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] in STRUCTS.values():
            return tuple_rows(struct_record(args[0]))
    schema = record.schemas[record.names.index(name)]
    if schema.record is not None:
        raise TypeError(f"{cls.__name__}.{name}: a struct field is not read as a row")
    return schema.from_wire


def tuple_rows(record: Record) -> Callable[[Any], CheckedRows]:
    """``tuple[Struct, ...]`` read as ``CheckedRows``."""
    check, count, other = row_checker(record), record.count, record.from_other

    def from_wire(v: Any) -> CheckedRows:
        if type(v) is not tuple:
            raise Invalid("tuple")
        out = []
        for x in v:
            if type(x) is not tuple:
                raise Invalid(record.cls.__name__)
            if len(x) == count:
                out.append(check(x))
            else:  # another version's struct: read as such, then as this build's row
                out.append(as_row(other(x)))
        return CheckedRows(out)

    return from_wire


def as_row(obj: Any) -> Row:
    """A struct object as its row (nested structs as rows)."""
    out = []
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        if type(value) is tuple and value and type(value[0]) in _STRUCT_TYPES:
            value = CheckedRows(as_row(x) for x in value)
        out.append(value)
    return tuple(out)


_STRUCT_TYPES = frozenset(STRUCTS.values())


def read_packed(record: Record, packed: bytes) -> CheckedRows:
    """``packed`` (a ``tuple[Struct, ...]`` of ``record``'s struct, as sent) as checked rows;
    raises ``Invalid`` (also for bytes that are not msgpack) as the message's decode would."""
    try:
        value = msgpack.unpackb(packed, use_list=False)
    except Exception:
        raise Invalid(f"{record.cls.__name__}: packed rows") from None
    reader = _ROWS_OF.get(record.cls)
    if reader is None:
        reader = _ROWS_OF[record.cls] = tuple_rows(record)
    return reader(value)


_ROWS_OF: dict[type, Callable[[Any], CheckedRows]] = {}  # struct -> its tuple_rows, built once


def packed_reader(type_id: int, count: int, at: int) -> Callable[[bytes], tuple[Any, ...] | None]:
    """For a message of type ``type_id`` with ``count`` fields: ``read(head)`` is the head's
    values as ``msgpack.unpackb(head, use_list=False)`` gives them, but the one at ``at`` (of
    the whole array, envelope included) left as its packed bytes; None if ``head`` is not such a
    message (another type or shape) or is malformed (the caller decodes it whole: it drops it)."""
    total = MESSAGE_OFFSET + count
    header = bytes([0x90 | total]) if total < 16 else b"\xdc" + total.to_bytes(2, "big")
    after = len(header)

    def read(head: bytes) -> tuple[Any, ...] | None:
        # (the envelope's lo and hi are positive fixints and type_id is one byte: versions and
        # type ids are small; anything else is read whole)
        if (
            len(head) <= after + 3
            or head[after + 2] != type_id
            or head[after] > 0x7F
            or head[after + 1] > 0x7F
            or not head.startswith(header)
        ):
            return None
        try:
            unpacker = msgpack.Unpacker(use_list=False, max_buffer_size=len(head))
            unpacker.feed(head)
            unpack = unpacker.unpack
            unpacker.read_array_header()
            values: list[Any] = [unpack() for _ in range(at)]
            start = unpacker.tell()
            unpacker.skip()
            end = unpacker.tell()
            if head[start] & 0xF0 != 0x90 and head[start] not in (0xDC, 0xDD):
                return None  # not an array: read whole, the field's check refuses it
            values.append(head[start:end])
            values += [unpack() for _ in range(total - at - 1)]
            if unpacker.tell() != len(head):
                return None  # trailing bytes: unpackb refuses them
        except Exception:
            return None
        return tuple(values)

    return read


def reading_packed(record: Record, field: str) -> Record:
    """``reading_rows``, but ``field`` may come as bytes (``packed_reader`` kept it packed), passed
    on as they are: read as rows with ``read_packed`` when needed."""
    at = record.names.index(field)
    schema = record.schemas[at]
    rows = _row_field(record, field)
    if rows is schema.from_wire:
        raise TypeError(f"{record.cls.__name__}.{field} is not a tuple of structs")

    def reader(v: Any) -> Any:
        return v if type(v) is bytes else rows(v)

    patched = copy.copy(record)
    patched.schemas = (
        *record.schemas[:at],
        _Schema(schema.name, schema.to_wire, reader, None),
        *record.schemas[at + 1 :],
    )
    patched.from_message = patched._compile_from_values(MESSAGE_OFFSET)
    patched.schemas = record.schemas
    return patched


def reading_rows(record: Record, field: str) -> Record:
    """A copy of the message's ``record`` whose ``from_message`` reads ``field`` (a
    ``tuple[Struct, ...]``) as ``CheckedRows``; encoding and every other field are the record's.
    (A message of another length is read by ``from_other``, as structs.)"""
    at = record.names.index(field)
    schema = record.schemas[at]
    reader = _row_field(record, field)
    if reader is schema.from_wire:
        raise TypeError(f"{record.cls.__name__}.{field} is not a tuple of structs")
    rows = _Schema(schema.name, schema.to_wire, reader, None)
    patched = copy.copy(record)
    patched.schemas = (*record.schemas[:at], rows, *record.schemas[at + 1 :])
    patched.from_message = patched._compile_from_values(MESSAGE_OFFSET)
    patched.schemas = record.schemas  # (from_other and errors: the record's own)
    return patched


__all__ = [
    "CheckedRows",
    "Row",
    "as_row",
    "packed_reader",
    "read_packed",
    "reading_packed",
    "reading_rows",
    "row_checker",
    "tuple_rows",
]
