# cython: annotation_typing=False, boundscheck=False, wraparound=False, initializedcheck=False
# (the annotations are for mypy; log_pack.pxd beside it gives the compiled build its C types; the
# buffers' indices are kept below their capacity by each column's own check, an attempt row's by
# its width's, and every buffer is set in its column's constructor)
"""The owner's pack of a log batch's deltas into columns (``protocol.log_columns``: the layout,
the reader). Compiled from this .py with the .pxd beside it (setup.py PROTOCOL_COMPILED).

Each column is a typed buffer (an ``array`` seen through a typed memoryview when compiled): a
number field's value is converted to its C type where it is put and stored, no Python object a
field; a string field's value is compared with the one put before (a pointer compare as a rule)
and its index stored. ``LogColumns`` takes a batch a task at a time, either from the rows
``OwnerQueries.delta_rows`` builds (``put_row``, for ``pack_columns``) or from the scheduler's
records themselves (``put_record``, ``OwnerQueries.delta_columns``: no row a task built only to be
transposed), and is reused batch after batch (``reset``): its buffers are allocated once.
A value of the wrong type or range is refused where it is put (TypeError, OverflowError: the
array's own check in the pure build, the C conversion in the compiled one).
tests/unit/test_log_columns.py holds the build to this .py and both to session 32's packer.
"""

from __future__ import annotations

import operator
import sys
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

# A column's kind, one a field in order (``log_columns.TASK_FIELDS``, ``ATTEMPT_FIELDS``): q int64,
# d float64, s str, n str | None, t tuple[str, ...] (the locations, a list in a row).
TASK_KINDS = "sqnqtqqqq"
ATTEMPT_KINDS = "qssdddqqqssss"
_ROW_WIDTH = len(TASK_KINDS) + 2  # the id, the columns, the attempts
_ATTEMPT_WIDTH = len(ATTEMPT_KINDS)

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)
_packb = _packer.pack
_array_header = _packer.pack_array_header
_FIVE = _array_header(5)  # ``ReplicateLog.columns``' outer array (see ``LogColumns.packed``)
_SWAP = sys.byteorder != "little"  # the wire is little-endian
_NOTHING = object()  # no value put yet in a string column
_START = 256  # entries a column holds before it first grows
_KEEP = 1 << 14  # a column grown past this many entries starts again small at its next batch


def _wire(data: Any, count: int) -> bytes:
    part = data[:count]
    if _SWAP:
        part.byteswap()
    result: bytes = part.tobytes()
    return result


def _int(value: Any) -> int:
    """An int field's value from a Python object: an int, or what its ``__index__`` gives (a
    bool's); TypeError for a float, where the C conversion alone would truncate it."""
    if type(value) is int:
        return value
    result: int = operator.index(value)
    return result


class _Ints:
    """An int64 column: its values in a buffer, and whether all are the first so far."""

    view: Any  # the buffer as a typed memoryview (the array itself in the .py)

    def __init__(self) -> None:
        self.count = 0
        self.same = True
        self._allocate(_START)

    def _allocate(self, capacity: int) -> None:
        self.view = None  # (an array exporting its buffer cannot be resized or freed)
        self.data = array("q", bytes(8 * capacity))
        self.view = self.data
        self.capacity = capacity

    def _grow(self) -> None:
        self.view = None
        self.data.frombytes(bytes(8 * self.capacity))
        self.view = self.data
        self.capacity *= 2

    def reset(self) -> None:
        self.count = 0
        self.same = True
        if self.capacity > _KEEP:
            self._allocate(_START)

    def put(self, value: int) -> int:
        n = self.count
        if n == self.capacity:
            self._grow()
        self.view[n] = value
        if self.same and self.view[n] != self.view[0]:
            self.same = False
        self.count = n + 1
        return 0

    def packed(self) -> bytes:
        """The column's bytes: one value for every entry when all are the same (none if empty)."""
        return _wire(self.data, 1 if self.same and self.count else self.count)


class _Floats:
    """A float64 column (as ``_Ints``)."""

    view: Any

    def __init__(self) -> None:
        self.count = 0
        self.same = True
        self._allocate(_START)

    def _allocate(self, capacity: int) -> None:
        self.view = None
        self.data = array("d", bytes(8 * capacity))
        self.view = self.data
        self.capacity = capacity

    def _grow(self) -> None:
        self.view = None
        self.data.frombytes(bytes(8 * self.capacity))
        self.view = self.data
        self.capacity *= 2

    def reset(self) -> None:
        self.count = 0
        self.same = True
        if self.capacity > _KEEP:
            self._allocate(_START)

    def put(self, value: float) -> int:
        n = self.count
        if n == self.capacity:
            self._grow()
        self.view[n] = value
        if self.same and self.view[n] != self.view[0]:  # (NaN: never the same, as a compare)
            self.same = False
        self.count = n + 1
        return 0

    def packed(self) -> bytes:
        return _wire(self.data, 1 if self.same and self.count else self.count)


class _Keyed:
    """A string column (kind s, n or t): its distinct values (a dict, in the order first seen)
    and an index an entry, kept both as uint8 (while below 256) and int32. An entry the same as
    the one before (the rule: a batch's tasks are alike but for a few fields) is only counted:
    the index is written a run of them at a time, when the value changes or the column is packed
    (``_fill``), and not at all for a column of one value (no index goes)."""

    narrow_view: Any
    wide_view: Any

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.table: dict[Any, int] = {}
        self.count = 0
        self.filled = 0  # entries whose index is written
        self.last: Any = _NOTHING  # the value last put, and its index
        self.last_at = 0
        self._allocate(_START)

    def _allocate(self, capacity: int) -> None:
        self.narrow_view = None
        self.wide_view = None
        self.narrow = array("B", bytes(capacity))
        self.wide = array("i", bytes(4 * capacity))
        self.narrow_view = self.narrow
        self.wide_view = self.wide
        self.capacity = capacity

    def _grow(self) -> None:
        self.narrow_view = None
        self.wide_view = None
        self.narrow.frombytes(bytes(self.capacity))
        self.wide.frombytes(bytes(4 * self.capacity))
        self.narrow_view = self.narrow
        self.wide_view = self.wide
        self.capacity *= 2

    def reset(self) -> None:
        self.table.clear()
        self.count = 0
        self.filled = 0
        self.last = _NOTHING
        self.last_at = 0
        if self.capacity > _KEEP:
            self._allocate(_START)

    def put(self, value: Any, sort: bool) -> bool:
        """Add ``value``; False if of another type than the kind's. ``sort``: a locations value
        is sorted (a record's tuple; a row's list comes sorted)."""
        last = self.last
        at = self.last_at
        if value is not last and (last is _NOTHING or value != last):
            kind = self.kind
            key: Any
            if kind == "t":
                if type(value) is not list and type(value) is not tuple:
                    return False
                for item in value:
                    if type(item) is not str:
                        return False
                key = tuple(sorted(value)) if sort and len(value) > 1 else tuple(value)
            elif type(value) is str or (value is None and kind == "n"):
                key = value
            else:
                return False
            table = self.table
            found = table.get(key)
            if found is None:
                at = len(table)
                table[key] = at
            else:
                at = found
            if at != self.last_at:
                self._fill()
            self.last = value
            self.last_at = at
        self.count += 1
        return True

    def _fill(self) -> None:
        """The index of each entry put since the last fill: ``last_at``."""
        n = self.filled
        count = self.count
        at = self.last_at
        while self.capacity < count:
            self._grow()
        if at < 256:
            while n < count:
                self.narrow_view[n] = at
                self.wide_view[n] = at
                n += 1
        else:
            while n < count:
                self.wide_view[n] = at
                n += 1
        self.filled = count

    def packed(self) -> list[Any]:
        values = list(self.table)
        if len(values) <= 1:
            return [values, b""]
        self._fill()
        if len(values) <= 256:
            return [values, _wire(self.narrow, self.count)]
        return [values, _wire(self.wide, self.count)]


def _put_str_py(strs: _Strs, value: str) -> bool:
    """``value`` msgpack-packed after the strings put so far (``_Strs``); False if msgpack cannot
    pack it (a lone surrogate, past 2**32 - 1 bytes). The pure build's; the compiled build's is
    log_pack.pxd's ``_put_str``, the string's UTF-8 copied after the header msgpack gives it."""
    try:
        packed = _packb(value)
    except ValueError:  # (UnicodeEncodeError too)
        return False
    at = strs.size
    end = at + len(packed)
    while strs.capacity < end:
        strs._grow()
    strs.data[at:end] = array("B", packed)
    strs.size = end
    strs.count += 1
    return True


# (log_pack.pxd cimports ``_put_str`` by this name in the compiled build, as run.pxd's ``_make``)
if TYPE_CHECKING:
    _put_str: Callable[[_Strs, str], bool]
globals().setdefault("_put_str", _put_str_py)


def _keyed_py(column: _Keyed, value: Any, sort: bool) -> bool:
    """``column.put(value, sort)``. The compiled build's is log_pack.pxd's ``_keyed``: an entry
    that is the very object put before (the rule: a batch's tasks share their strings) only
    counted where it is put, no call (a call a string field was ~45 instructions)."""
    return column.put(value, sort)


def _put_int_py(column: _Ints, value: int) -> int:
    """``column.put(value)``; the compiled build's is log_pack.pxd's ``_put_int``, inline."""
    return column.put(value)


def _put_float_py(column: _Floats, value: float) -> int:
    """``column.put(value)``; the compiled build's is log_pack.pxd's ``_put_float``, inline."""
    return column.put(value)


if TYPE_CHECKING:
    _keyed: Callable[[_Keyed, Any, bool], bool]
    _put_int: Callable[[_Ints, int], int]
    _put_float: Callable[[_Floats, float], int]
globals().setdefault("_keyed", _keyed_py)
globals().setdefault("_put_int", _put_int_py)
globals().setdefault("_put_float", _put_float_py)


class _Strs:
    """A column of strings as the items of a msgpack array, each packed as it is put (the batch's
    task ids): where a list of them was packed item by item at the end, each a generic
    ``Packer._pack`` (its type tests, its nesting) and a list entry before it."""

    view: Any

    def __init__(self) -> None:
        self.count = 0
        self.size = 0  # bytes
        self._allocate(16 * _START)

    def _allocate(self, capacity: int) -> None:
        self.view = None
        self.data = array("B", bytes(capacity))
        self.view = self.data
        self.capacity = capacity

    def _grow(self) -> None:
        self.view = None
        self.data.frombytes(bytes(self.capacity))
        self.view = self.data
        self.capacity *= 2

    def reset(self) -> None:
        self.count = 0
        self.size = 0
        if self.capacity > 16 * _KEEP:
            self._allocate(16 * _START)

    def put(self, value: str) -> bool:
        result: bool = _put_str(self, value)  # noqa: F821
        return result

    def packed(self) -> memoryview:
        """The strings' bytes: the array's items, without its header."""
        return memoryview(self.data)[: self.size]


class LogColumns:
    """A log batch's columns, filled a task at a time (``put_row``, ``put_record``) and packed
    (``packed``) as ``ReplicateLog.columns``; ``reset`` empties them for the next batch."""

    def __init__(self) -> None:
        self.task_ids = _Strs()
        self.state = _Keyed("s")
        self.attempt = _Ints()
        self.node = _Keyed("n")
        self.size = _Ints()
        self.locations = _Keyed("t")
        self.failures = _Ints()
        self.losses = _Ints()
        self.completions = _Ints()
        self.frame = _Ints()
        self.counts = _Ints()  # attempts a task
        self.total = 0  # attempts in all
        self.a_attempt = _Ints()
        self.a_node = _Keyed("s")
        self.a_state = _Keyed("s")
        self.a_dispatched = _Floats()
        self.a_started = _Floats()
        self.a_ended = _Floats()
        self.a_pid = _Ints()
        self.a_bytes_in = _Ints()
        self.a_bytes_out = _Ints()
        self.a_exc_type = _Keyed("s")
        self.a_message = _Keyed("s")
        self.a_traceback = _Keyed("s")
        self.a_cause = _Keyed("s")

    def reset(self) -> None:
        self.task_ids.reset()
        self.total = 0
        for ints in (self.attempt, self.size, self.failures, self.losses, self.completions):
            ints.reset()
        for ints in (self.frame, self.counts, self.a_attempt, self.a_pid, self.a_bytes_in):
            ints.reset()
        self.a_bytes_out.reset()
        for floats in (self.a_dispatched, self.a_started, self.a_ended):
            floats.reset()
        for keyed in (self.state, self.node, self.locations, self.a_node, self.a_state):
            keyed.reset()
        for keyed in (self.a_exc_type, self.a_message, self.a_traceback, self.a_cause):
            keyed.reset()

    def put_row(self, row: Any) -> bool:
        """Add a delta row in ``delta_rows``' wire form; False if the columns cannot carry it
        (another width, a value of another type); TypeError, OverflowError from a number field."""
        if len(row) != _ROW_WIDTH:
            return False
        return self._put(
            row[0],
            row[1],
            _int(row[2]),
            row[3],
            _int(row[4]),
            row[5],
            _int(row[6]),
            _int(row[7]),
            _int(row[8]),
            _int(row[9]),
            row[10],
            False,
        )

    def put_record(
        self,
        task_id: Any,
        state: Any,
        attempt: int,
        node: Any,
        size: int,
        locations: Any,
        failures: int,
        losses: int,
        completions: int,
        frame: int,
        attempts: list[Any],
    ) -> bool:
        """Add a task from the fields of its record (``TaskRecord``: its locations in any order,
        its attempt rows); as ``put_row``, but an int field is taken as the compiled build's C
        conversion takes it (a float truncated, as the compiled record's C field stores it)."""
        # (``int(+x)``: compiled, the C value as it came; in the .py the C conversion's result:
        # a number's int, truncated, and a TypeError for a string, which ``int`` alone parses)
        return self._put(
            task_id,
            state,
            int(+attempt),
            node,
            int(+size),
            locations,
            int(+failures),
            int(+losses),
            int(+completions),
            int(+frame),
            attempts,
            True,
        )

    def _put(
        self,
        task_id: Any,
        state: Any,
        attempt: int,
        node: Any,
        size: int,
        locations: Any,
        failures: int,
        losses: int,
        completions: int,
        frame: int,
        attempts: Any,
        sort: bool,
    ) -> bool:
        if type(task_id) is not str:
            return False
        if not (
            _keyed(self.state, state, False)  # noqa: F821
            and _keyed(self.node, node, False)  # noqa: F821
            and _keyed(self.locations, locations, sort)  # noqa: F821
            and self.task_ids.put(task_id)
        ):
            return False
        _put_int(self.attempt, attempt)  # noqa: F821
        _put_int(self.size, size)  # noqa: F821
        _put_int(self.failures, failures)  # noqa: F821
        _put_int(self.losses, losses)  # noqa: F821
        _put_int(self.completions, completions)  # noqa: F821
        _put_int(self.frame, frame)  # noqa: F821
        _put_int(self.counts, len(attempts))  # noqa: F821
        for attempt_row in attempts:
            # (a tuple, as a record's rows are: its fields read without a generic look-up)
            row = attempt_row if type(attempt_row) is tuple else tuple(attempt_row)
            if len(row) != _ATTEMPT_WIDTH:
                return False
            _put_int(self.a_attempt, _int(row[0]))  # noqa: F821
            if not (
                _keyed(self.a_node, row[1], False)  # noqa: F821
                and _keyed(self.a_state, row[2], False)  # noqa: F821
            ):
                return False
            _put_float(self.a_dispatched, row[3])  # noqa: F821
            _put_float(self.a_started, row[4])  # noqa: F821
            _put_float(self.a_ended, row[5])  # noqa: F821
            _put_int(self.a_pid, _int(row[6]))  # noqa: F821
            _put_int(self.a_bytes_in, _int(row[7]))  # noqa: F821
            _put_int(self.a_bytes_out, _int(row[8]))  # noqa: F821
            if not (
                _keyed(self.a_exc_type, row[9], False)  # noqa: F821
                and _keyed(self.a_message, row[10], False)  # noqa: F821
                and _keyed(self.a_traceback, row[11], False)  # noqa: F821
                and _keyed(self.a_cause, row[12], False)  # noqa: F821
            ):
                return False
            self.total += 1
        return True

    def packed(self) -> bytes | None:
        """The batch as ``ReplicateLog.columns``; None if it has no task, or its attempts pass a
        reader's bound (see ``pack_columns``)."""
        count = self.task_ids.count
        if not count:
            return None
        try:
            # The array [count, task_ids, task_columns, counts, attempt_columns] as msgpack packs
            # it, the ids' items as they were put (``_Strs``), the last three packed as an array
            # of them less its header.
            rest = _packb(
                [
                    [
                        self.state.packed(),
                        self.attempt.packed(),
                        self.node.packed(),
                        self.size.packed(),
                        self.locations.packed(),
                        self.failures.packed(),
                        self.losses.packed(),
                        self.completions.packed(),
                        self.frame.packed(),
                    ],
                    self.counts.packed(),
                    [
                        self.a_attempt.packed(),
                        self.a_node.packed(),
                        self.a_state.packed(),
                        self.a_dispatched.packed(),
                        self.a_started.packed(),
                        self.a_ended.packed(),
                        self.a_pid.packed(),
                        self.a_bytes_in.packed(),
                        self.a_bytes_out.packed(),
                        self.a_exc_type.packed(),
                        self.a_message.packed(),
                        self.a_traceback.packed(),
                        self.a_cause.packed(),
                    ],
                ]
            )
            packed = b"".join(
                (
                    _FIVE,
                    _packb(count),
                    _array_header(count),
                    self.task_ids.packed(),
                    memoryview(rest)[1:],
                )
            )
        except (TypeError, ValueError, OverflowError):
            return None
        # A reader refuses more attempts than this (a bound on what a few bytes may make it build):
        # only identical attempts, one task with many, could pass it; they go as rows.
        return packed if self.total <= count + len(packed) else None


def pack_columns(rows: Any) -> bytes | None:
    """``log_columns.pack_columns``: the batch's delta rows (``OwnerQueries.delta_rows``) as
    ``ReplicateLog.columns``; None if they cannot be (see there)."""
    if not len(rows):
        return None
    columns = LogColumns()
    try:
        for row in rows:
            if not columns.put_row(row):
                return None
    except (TypeError, OverflowError):
        return None
    return columns.packed()
