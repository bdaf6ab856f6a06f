"""A replication log batch's task deltas as columns (protocol 8: ``ReplicateLog.columns``). Pure.

The owner's log batch carried one ``TaskDelta`` a task: ~26 msgpack objects a row (11 fields, the
locations, a 13-field attempt row), and packing them was half of the owner's replication CPU. A
batch's rows are alike but for a few fields (the id, the frame, the attempt's times and pid), so
the batch travels as one column a field instead (``pack_columns``), packed once a batch into the
bytes of ``ReplicateLog.columns`` (``tasks`` then empty). A standby keeps them as they came
(``replication.standby``) and reads them back (``read_columns``) into the very rows the checked
row form gives (``protocol.rows.read_packed``): the same fields, types and order.

The bytes are a msgpack array ``[count, task_ids, task_columns, attempt_counts,
attempt_columns]``:

- ``count``: the tasks (rows) of the batch; ``task_ids`` an array of that many strings;
- ``task_columns``: one column a ``TaskDelta`` field after ``task_id``, ``attempts`` left out
  (``TASK_FIELDS``), each ``count`` entries long;
- ``attempt_counts``: an int column (``count`` entries), how many of the flattened attempt rows
  below are each task's, in task order;
- ``attempt_columns``: one column an ``AttemptInfo`` field (``ATTEMPT_FIELDS``), each as long as
  the attempt counts' sum.

A column of an int (float) field is little-endian int64 (float64) bytes: one value for every entry
(8 bytes) or one an entry. A column of a string field (``str``, ``str | None``, the locations'
``tuple[str, ...]``) is ``[values, index]``: each distinct value once, in the order first seen,
and an index an entry into them, uint8 bytes while there are at most 256 values, else int32
(``index`` empty: one value, every entry's). Longer arrays than this build knows (a newer
sender's trailing fields) are read by their first entries. Anything else is a ``ColumnError``
saying what; the standby refuses the batch as it refuses a malformed row form.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from handoffd.protocol.column_codes import ColumnError, _indices, unpack
from handoffd.protocol.log_pack import ATTEMPT_KINDS, TASK_KINDS, pack_columns
from handoffd.protocol.messages import TaskDelta
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.rows import CheckedRows, Row

#: The protocol version that brought ``ReplicateLog.columns``: sent only to a standby whose
#: range reaches it (``reads_log_columns``); any other is sent the rows, as before.
LOG_COLUMNS_SINCE: Final = 8

# A column's kind by field: q (int64), d (float64), s (str), n (str | None), t (tuple[str, ...]).
TASK_FIELDS: Final = (
    ("state", "s"),
    ("attempt", "q"),
    ("node", "n"),
    ("size", "q"),
    ("locations", "t"),
    ("failures", "q"),
    ("losses", "q"),
    ("completions", "q"),
    ("frame", "q"),
)
ATTEMPT_FIELDS: Final = (
    ("attempt", "q"),
    ("node", "s"),
    ("state", "s"),
    ("dispatched", "d"),
    ("started", "d"),
    ("ended", "d"),
    ("pid", "q"),
    ("bytes_in", "q"),
    ("bytes_out", "q"),
    ("exc_type", "s"),
    ("message", "s"),
    ("traceback", "s"),
    ("cause", "s"),
)
# (the columns follow the structs' fields: a field added to either must be added here)
assert [f.name for f in dataclasses.fields(TaskDelta)] == [
    "task_id",
    *(name for name, _ in TASK_FIELDS),
    "attempts",
]
assert [f.name for f in dataclasses.fields(AttemptInfo)] == [name for name, _ in ATTEMPT_FIELDS]
assert TASK_KINDS == "".join(kind for _, kind in TASK_FIELDS)  # (the packer's: log_pack)
assert ATTEMPT_KINDS == "".join(kind for _, kind in ATTEMPT_FIELDS)

_ATTEMPT_WIDTH: Final = len(ATTEMPT_FIELDS)
_WHAT: Final = "ReplicateLog.columns"
# The exact types a string column's values may have, by kind.
_ALLOWED: Final[dict[str, set[type]]] = {"s": {str}, "n": {str, type(None)}}


def reads_log_columns(member: Any) -> bool:
    """Whether a standby (its ``MemberState`` as membership knows it, or None) reads
    ``ReplicateLog.columns``."""
    return member is not None and member.protocol_max >= LOG_COLUMNS_SINCE


def _read_numbers(code: str, data: Any, count: int, what: str) -> list[Any]:
    if type(data) is not bytes:
        raise ColumnError(f"{what}: {type(data).__name__}, expected bytes")
    if len(data) == 8 and count != 1:
        return unpack(code, data, 1, what) * count
    return unpack(code, data, count, what)


def _read_keyed(kind: str, column: Any, count: int, what: str) -> list[Any]:
    if type(column) is not tuple or len(column) != 2:
        raise ColumnError(f"{what}: expected [values, index]")
    values, index = column
    if type(values) is not tuple or type(index) is not bytes:
        raise ColumnError(f"{what}: expected an array of values and an index's bytes")
    if kind == "t":
        for value in values:
            if type(value) is not tuple or (value and set(map(type, value)) != {str}):
                raise ColumnError(f"{what}: a value that is not an array of strings")
    elif values and not set(map(type, values)) <= _ALLOWED[kind]:
        raise ColumnError(f"{what}: a value of another type")
    if not index:
        if count and len(values) != 1:
            raise ColumnError(f"{what}: {len(values)} values and no index")
        return [values[0]] * count if count else []
    code = "B" if len(values) <= 256 else "i"
    at = unpack(code, index, count, f"{what} index")
    _indices(at, len(values), f"{what} index")
    return list(map(values.__getitem__, at))


def _read(kind: str, column: Any, count: int, what: str) -> list[Any]:
    if kind == "q" or kind == "d":
        return _read_numbers(kind, column, count, what)
    return _read_keyed(kind, column, count, what)


def read_columns(data: bytes) -> CheckedRows:
    """``ReplicateLog.columns`` as the batch's delta rows, each the tuple ``read_packed`` gives
    for the same delta in the row form (the same values and types); ``ColumnError`` if
    malformed (also for bytes that are not msgpack)."""
    try:
        value = msgpack.unpackb(data, use_list=False)
    except Exception:
        raise ColumnError(f"{_WHAT}: not msgpack") from None
    if type(value) is not tuple or len(value) < 5:
        raise ColumnError(f"{_WHAT}: expected [count, ids, columns, counts, attempt columns]")
    count, task_ids, task_columns, counts, attempt_columns = value[:5]
    if type(count) is not int or count < 0:
        raise ColumnError(f"{_WHAT}: the count is not a count")
    if type(task_ids) is not tuple or len(task_ids) != count:
        raise ColumnError(f"{_WHAT}.task_ids: expected {count} ids")
    if count and set(map(type, task_ids)) != {str}:
        raise ColumnError(f"{_WHAT}.task_ids: an id that is not a string")
    if type(task_columns) is not tuple or len(task_columns) < len(TASK_FIELDS):
        raise ColumnError(f"{_WHAT}: expected {len(TASK_FIELDS)} task columns")
    if type(attempt_columns) is not tuple or len(attempt_columns) < _ATTEMPT_WIDTH:
        raise ColumnError(f"{_WHAT}: expected {_ATTEMPT_WIDTH} attempt columns")
    columns = [
        _read(kind, column, count, f"{_WHAT}.{name}")
        for (name, kind), column in zip(TASK_FIELDS, task_columns)  # noqa: B905 - checked
    ]
    per_task = _read_numbers("q", counts, count, f"{_WHAT}.attempt_counts")
    if per_task and min(per_task) < 0:
        raise ColumnError(f"{_WHAT}.attempt_counts: a negative count")
    total = sum(per_task)
    if total > count + len(data):  # (``pack_columns``' bound: no column is read past it)
        raise ColumnError(f"{_WHAT}.attempt_counts: {total} attempts in {len(data)} bytes")
    attempt_values = [
        _read(kind, column, total, f"{_WHAT}.attempts.{name}")
        for (name, kind), column in zip(ATTEMPT_FIELDS, attempt_columns)  # noqa: B905 - checked
    ]
    flat = list(zip(*attempt_values, strict=True))
    attempts: Any
    if not total:
        attempts = itertools.repeat(CheckedRows(), count)
    elif total == count and per_task.count(1) == count:
        attempts = map(
            CheckedRows, zip(flat, strict=True)
        )  # (one attempt a task: its 1-tuple, in C)
    else:
        rows = iter(flat)
        attempts = [CheckedRows(itertools.islice(rows, n)) for n in per_task]
    return CheckedRows(zip(task_ids, *columns, attempts, strict=True))


def as_rows(rows: Sequence[Row]) -> list[list[Any]]:
    """Checked rows (``read_columns``, ``read_packed``) in the wire form ``pack_columns`` takes
    (``delta_rows``'): lists, the locations and attempts too (tests, benches)."""
    return [[*row[:5], list(row[5]), *row[6:10], [list(a) for a in row[10]]] for row in rows]


__all__ = [
    "ATTEMPT_FIELDS",
    "LOG_COLUMNS_SINCE",
    "TASK_FIELDS",
    "as_rows",
    "pack_columns",
    "read_columns",
    "reads_log_columns",
]
