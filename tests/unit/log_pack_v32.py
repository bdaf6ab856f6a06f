"""Session 32's packer of a log batch's rows into columns (``handoffd/protocol/log_pack.py`` at
127c4b4: a Python list a column, each field put through it), kept unchanged as the reference the
typed buffers' packer is held to byte for byte (test_log_pack, test_replication_wire). Plain
Python here, never compiled.
"""

from __future__ import annotations

from typing import Any

import msgpack

from handoffd.protocol.column_codes import pack

# A column's kind, one a field in order (``log_columns.TASK_FIELDS``, ``ATTEMPT_FIELDS``): q int64,
# d float64, s str, n str | None, t tuple[str, ...] (the locations, a list in a row).
TASK_KINDS = "sqnqtqqqq"
ATTEMPT_KINDS = "qssdddqqqssss"
_ROW_WIDTH = len(TASK_KINDS) + 2  # the id, the columns, the attempts
_ATTEMPT_WIDTH = len(ATTEMPT_KINDS)

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_NOTHING = object()  # no value seen yet in a column


class _Column:
    """One field's column, filled a row at a time: a number column's values (and whether all
    are the first), a string column's index an entry into its distinct values (a dict, in the
    order first seen)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.numeric = kind in "qd"
        self.same = True  # a number column: every value the first so far
        self.entries: list[Any] = []  # numbers, or indices into ``table``
        self.table: dict[Any, int] = {}
        self.last: Any = _NOTHING  # a string column's value last put, and its index
        self.last_at = 0

    def put(self, value: Any) -> bool:
        """Add ``value``; False if a string field's value is of another type (a number is
        checked by its pack)."""
        entries = self.entries
        if self.numeric:
            if self.same and entries and value != entries[0]:
                self.same = False
            entries.append(value)
            return True
        last = self.last
        if value is last or (last is not _NOTHING and value == last):
            entries.append(self.last_at)
            return True
        kind = self.kind
        key: Any
        if kind == "t":
            if type(value) is not list and type(value) is not tuple:
                return False
            for item in value:
                if type(item) is not str:
                    return False
            key = tuple(value)
        elif type(value) is str or (value is None and kind == "n"):
            key = value
        else:
            return False
        table = self.table
        at = table.get(key)
        if at is None:
            at = len(table)
            table[key] = at
        self.last = value
        self.last_at = at
        entries.append(at)
        return True

    def packed(self) -> Any:
        """The column as ``log_columns`` lays it out; TypeError, OverflowError (``pack``) if a
        number does not fit its field's type."""
        entries = self.entries
        if self.numeric:
            return pack(self.kind, entries[:1] if self.same else entries)
        values = list(self.table)
        if len(values) <= 1:
            return [values, b""]
        return [values, pack("B" if len(values) <= 256 else "i", entries)]


class _Columns:
    """The columns of one struct's fields (``kinds``: one a field), filled a row at a time."""

    def __init__(self, kinds: str) -> None:
        self.columns = [_Column(kind) for kind in kinds]
        self.width = len(kinds)

    def put(self, row: Any, start: int) -> bool:
        """Put ``row[start:start + width]`` in the columns; False as ``_Column.put``."""
        columns = self.columns
        for j in range(self.width):
            column = columns[j]
            if not column.put(row[start + j]):
                return False
        return True

    def packed(self) -> list[Any]:
        return [column.packed() for column in self.columns]


def pack_columns(rows: Any) -> bytes | None:
    """``log_columns.pack_columns``: the batch's delta rows (``OwnerQueries.delta_rows``) as
    ``ReplicateLog.columns``; None if they cannot be (see there)."""
    count = len(rows)
    if not count:
        return None
    task_ids: list[str] = []
    counts: list[int] = []
    tasks, attempts = _Columns(TASK_KINDS), _Columns(ATTEMPT_KINDS)
    total = 0
    for row in rows:
        if len(row) != _ROW_WIDTH or type(row[0]) is not str:
            return None
        task_ids.append(row[0])
        if not tasks.put(row, 1):
            return None
        tried = row[_ROW_WIDTH - 1]
        counts.append(len(tried))
        for attempt in tried:
            if len(attempt) != _ATTEMPT_WIDTH or not attempts.put(attempt, 0):
                return None
            total += 1
    try:
        same = counts.count(counts[0]) == count
        packed: bytes = _packb(
            [
                count,
                task_ids,
                tasks.packed(),
                pack("q", counts[:1] if same else counts),
                attempts.packed(),
            ]
        )
    except (TypeError, ValueError, OverflowError):
        return None
    # A reader refuses more attempts than this (a bound on what a few bytes may make it build):
    # only identical attempts, one task with many, could pass it; they go as rows.
    return packed if total <= count + len(packed) else None
