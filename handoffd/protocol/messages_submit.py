"""A submission as columns (issue 13): a run of plain functions sent as one array per field, not
one ``TaskMeta`` record per function. Type ids 490-499.

Most runs (W1's independent no-ops, W2's layered DAG) are functions that set nothing but an id,
dependencies, a cost, argument inclusion and a priority (``validation.plain_meta``). As records,
the owner's decode checked ten fields and built one struct per function, then read them back into
the scheduler's specs: more than the rest of its intake. A client sends such a run as
``SubmitColumns``: the ids and the dependencies (flattened, ``dep_counts`` per function) as arrays
of strings, each distinct cost map once (``costs``, one index per function in ``cost_of``), the
argument inclusions likewise, the priorities as int64s. A run with any other function (a pin,
collocation, inline type, retries or timeout) still goes as ``SubmitRun`` / ``SubmitAndWait``,
which every daemon keeps reading (older clients send nothing else).

The receiving node turns it into the ``SubmitRun`` / ``SubmitAndWait`` it stands for
(``as_submission``), its ``tasks`` a ``TaskColumns``: a sequence of ``TaskMeta`` made on demand
for whatever reads records (the general checks, which give a bad run the same refusal either
way), read as columns by the owner's intake (``daemon.intake_columns``). Columns that disagree
(lengths, an index out of range) are a ``ColumnError`` saying which: the message is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import accumulate
from typing import Any, overload

from handoffd.config import PROTOCOL_MAX
from handoffd.protocol import columns
from handoffd.protocol.columns import ColumnError
from handoffd.protocol.messages import SubmitAndWait, SubmitRun, TaskMeta
from handoffd.protocol.registry import message
from handoffd.protocol.schema import Rows

#: The first protocol version whose daemons read ``SubmitColumns``: a daemon of an older range
#: would drop it as an unknown type and the client would wait for nothing.
COLUMNS_SINCE = 4
#: The first protocol version whose daemons read ``SubmitColumns.heads``: an older one ignores the
#: trailing fields and would take each frame (a tail) for the whole payload, so it is sent whole
#: payloads (``sent_payloads``).
HEADS_SINCE = 6


@message(490, since=COLUMNS_SINCE)
class SubmitColumns:
    """``SubmitRun`` (``answer`` False) or ``SubmitAndWait`` (``answer`` True: ``wait``,
    ``max_bytes`` and ``release`` are its) of plain functions, as columns (module doc). Per
    function: ``ids``, ``dep_counts`` (i: how many of ``deps`` are its, in order), ``cost_of`` (i,
    index into ``costs``), ``inclusion`` (B, index into ``inclusions``), ``priorities`` (q).
    Frames: one payload per function, in ``ids`` order, then the packages' zips. Protocol 6
    (``HEADS_SINCE``): ``heads`` holds each distinct code head once (a payload's start that
    carries the function's pickled code, ``values.call_head``) and ``head_of`` (i, one per
    function) says whose: the function's frame is then only its payload's tail, the payload
    ``heads[head_of[i]] + frame``; -1 (or no ``head_of``): the frame is the whole payload."""

    request_id: int
    run_id: str
    ids: tuple[str, ...]
    dep_counts: bytes
    deps: tuple[str, ...]
    costs: tuple[dict[str, float], ...]
    cost_of: bytes
    inclusions: tuple[str, ...]
    inclusion: bytes
    priorities: bytes
    max_retries: int
    policy: str
    outputs: tuple[str, ...] | None
    answer: bool
    wait: float
    max_bytes: int
    release: bool
    packages: tuple[str, ...] = ()
    heads: tuple[bytes, ...] = ()
    head_of: bytes = b""


_NO_DEPS: tuple[str, ...] = ()


class TaskColumns(Sequence[TaskMeta]):
    """A submission's plain functions as columns (``SubmitColumns``, checked): a ``Sequence`` of
    ``TaskMeta`` made on demand, the columns read as they are by the owner's intake."""

    __slots__ = (
        "ids",
        "deps",
        "cost_maps",
        "cost_of",
        "inclusions",
        "inclusion",
        "priorities",
        "heads",
        "head_of",
        "sent",
    )

    def __init__(self, msg: SubmitColumns) -> None:
        n = len(msg.ids)
        counts = columns.unpack("i", msg.dep_counts, n, "SubmitColumns.dep_counts")
        # (a run without dependencies counted in one identity pass, not compared value by value)
        if counts and counts.count(0) != n and min(counts) < 0:
            raise ColumnError("SubmitColumns.dep_counts: a negative count")
        if sum(counts) != len(msg.deps):
            raise ColumnError(
                f"SubmitColumns.deps: {len(msg.deps)} entries, the dep_counts add up to "
                f"{sum(counts)}: the sender built inconsistent columns"
            )
        cost_of = columns.unpack("i", msg.cost_of, n, "SubmitColumns.cost_of")
        columns._indices(cost_of, len(msg.costs), "SubmitColumns.cost_of")
        inclusion = columns.unpack("B", msg.inclusion, n, "SubmitColumns.inclusion")
        columns._indices(inclusion, len(msg.inclusions), "SubmitColumns.inclusion")
        self.ids = msg.ids
        #: each function's dependencies, a tuple of ids (one shared empty one)
        self.deps: list[tuple[str, ...]] = _split(msg.deps, counts)
        self.cost_maps = msg.costs
        self.cost_of = cost_of
        self.inclusions = msg.inclusions
        self.inclusion = inclusion
        self.priorities = columns.unpack("q", msg.priorities, n, "SubmitColumns.priorities")
        #: the code heads (protocol 6) and each function's index into them (-1: its frame is
        #: whole); ``head_of`` None when no frame is a tail
        self.heads = msg.heads
        self.head_of: list[int] | None = None
        if msg.head_of or msg.heads:
            head_of = columns.unpack("i", msg.head_of, n, "SubmitColumns.head_of")
            columns._indices(head_of, len(msg.heads), "SubmitColumns.head_of", low=-1)
            self.head_of = head_of
        #: the message as it came: its arrays go on, as they are, in the run's snapshot
        #: (``daemon.intake_columns.snapshot_columns``)
        self.sent = msg

    def __len__(self) -> int:
        return len(self.ids)

    def whole(self, frames: Sequence[Any]) -> Sequence[Any]:
        """``frames`` (one per function, then the packages') with each function's payload whole:
        its head joined to its tail where it came cut (for the readers of whole payloads: the
        general path's ``validation.wire_specs``, a takeover's specs)."""
        head_of = self.head_of
        n = len(self.ids)
        if head_of is None or len(frames) < n:  # (too few: the caller's check says so)
            return frames
        heads = self.heads
        out: list[Any] = [
            heads[h] + frames[i] if h >= 0 else frames[i] for i, h in enumerate(head_of)
        ]
        out += frames[n:]
        return out

    @overload
    def __getitem__(self, at: int) -> TaskMeta: ...

    @overload
    def __getitem__(self, at: slice) -> tuple[TaskMeta, ...]: ...

    def __getitem__(self, at: int | slice) -> TaskMeta | tuple[TaskMeta, ...]:
        if isinstance(at, slice):
            return tuple(self._meta(i) for i in range(*at.indices(len(self.ids))))
        if at < 0:
            at += len(self.ids)
        if not 0 <= at < len(self.ids):
            raise IndexError("task index out of range")
        return self._meta(at)

    def __iter__(self) -> Iterator[TaskMeta]:
        return map(self._meta, range(len(self.ids)))

    def _meta(self, i: int) -> TaskMeta:
        return TaskMeta(
            self.ids[i],
            self.deps[i],
            self.cost_maps[self.cost_of[i]],
            self.inclusions[self.inclusion[i]],
            None,
            None,
            False,
            None,
            None,
            self.priorities[i],
        )


def _split(flat: tuple[str, ...], counts: list[int]) -> list[tuple[str, ...]]:
    """``flat`` cut into ``counts`` pieces, in order (an empty piece: one shared empty tuple)."""
    if not flat:
        return [_NO_DEPS] * len(counts)
    ends = list(accumulate(counts))
    out: list[tuple[str, ...]] = []
    start = 0
    for end in ends:
        out.append(flat[start:end] if end != start else _NO_DEPS)
        start = end
    return out


def as_submission(msg: SubmitColumns) -> SubmitRun | SubmitAndWait:
    """The ``SubmitRun`` / ``SubmitAndWait`` that ``msg`` stands for, its ``tasks`` a
    ``TaskColumns``; ``ColumnError`` when its columns disagree."""
    tasks: Any = TaskColumns(msg)
    if msg.answer:
        return SubmitAndWait(
            msg.request_id,
            msg.run_id,
            tasks,
            msg.max_retries,
            msg.policy,
            msg.outputs,
            msg.wait,
            msg.max_bytes,
            msg.release,
            msg.packages,
        )
    return SubmitRun(
        msg.request_id, msg.run_id, tasks, msg.max_retries, msg.policy, msg.outputs, msg.packages
    )


def submit_columns(msg: SubmitRun | SubmitAndWait) -> SubmitColumns | None:
    """``msg`` as ``SubmitColumns`` when its tasks are rows (``codec.Rows``: ``TaskMeta``'s fields
    in order) of plain functions (``validation.plain_meta``'s fields unset, the priority an int,
    the cost a dict); None for anything else (it goes as it is)."""
    rows = msg.tasks
    n = len(rows)
    if n < 2:  # (a one-function run keeps the one-task path: ``protocol.repeats``)
        return None
    ids: list[str] = []
    counts: list[int] = []
    deps: list[str] = []
    shapes: dict[Any, int] = {}
    cost_maps: list[dict[str, float]] = []
    cost_of: list[int] = []
    kinds: dict[str, int] = {}
    inclusion: list[int] = []
    priorities: list[int] = []
    last_cost: Any = None
    last_shape = 0
    for row in rows:
        if type(row) is not tuple or len(row) != 10 or row[4:9] != _PLAIN_TAIL:
            return None
        if row[6] is not False:  # (0 == False: the records' check refuses an int there)
            return None
        fid, fdeps, cost, kind, priority = row[0], row[1], row[2], row[3], row[9]
        if type(fid) is not str or type(priority) is not int or type(cost) is not dict:
            return None
        if type(kind) is not str or type(fdeps) not in (tuple, list):
            return None
        ids.append(fid)
        counts.append(len(fdeps))
        deps += fdeps
        if cost is not last_cost:
            try:
                key = tuple(cost.items())
                at = shapes.get(key)
            except TypeError:
                return None
            if at is None:
                at = shapes[key] = len(cost_maps)
                cost_maps.append(cost)
            last_cost, last_shape = cost, at
        cost_of.append(last_shape)
        code = kinds.get(kind)
        if code is None:
            code = kinds[kind] = len(kinds)
        inclusion.append(code)
        priorities.append(priority)
    if len(kinds) > 255 or len(cost_maps) >= 1 << 31:
        return None
    try:
        packed = (
            columns.pack("i", counts),
            columns.pack("i", cost_of),
            columns.pack("B", inclusion),
            columns.pack("q", priorities),
        )
    except (OverflowError, TypeError):
        return None
    answer = isinstance(msg, SubmitAndWait)
    return SubmitColumns(
        msg.request_id,
        msg.run_id,
        tuple(ids),
        packed[0],
        tuple(deps),
        tuple(cost_maps),
        packed[1],
        tuple(kinds),
        packed[2],
        packed[3],
        msg.max_retries,
        msg.policy,
        msg.outputs,
        answer,
        msg.wait if isinstance(msg, SubmitAndWait) else 0.0,
        msg.max_bytes if isinstance(msg, SubmitAndWait) else 0,
        msg.release if isinstance(msg, SubmitAndWait) else False,
        msg.packages,
    )


class SentColumns:
    """A client's submission of plain functions already built as ``SubmitColumns``' columns
    (``handoffd.dag_columns``), in the ``tasks`` field of the ``SubmitRun`` / ``SubmitAndWait``
    it goes in: ``as_sent`` sends them as they are, or their records (``rows``) to a daemon that
    reads no columns. Fields as ``SubmitColumns``' of the same names."""

    __slots__ = (
        "ids",
        "dep_counts",
        "deps",
        "costs",
        "cost_of",
        "inclusions",
        "inclusion",
        "priorities",
        "heads",
        "head_of",
    )

    def __init__(
        self,
        ids: tuple[str, ...],
        dep_counts: bytes,
        deps: tuple[str, ...],
        costs: tuple[dict[str, float], ...],
        cost_of: bytes,
        inclusions: tuple[str, ...],
        inclusion: bytes,
        priorities: bytes,
        heads: tuple[bytes, ...] = (),
        head_of: bytes = b"",
    ) -> None:
        self.ids = ids
        self.dep_counts = dep_counts
        self.deps = deps
        self.costs = costs
        self.cost_of = cost_of
        self.inclusions = inclusions
        self.inclusion = inclusion
        self.priorities = priorities
        #: (protocol 6) the code heads and each function's index into them: the payloads built
        #: with these are tails (``sent_payloads`` joins them for a daemon below 6)
        self.heads = heads
        self.head_of = head_of

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[tuple[Any, ...]]:
        """The ``TaskMeta`` rows these columns stand for (``DAG.wire_tasks``' rows)."""
        n = len(self.ids)
        what = "SentColumns"
        deps = _split(self.deps, columns.unpack("i", self.dep_counts, n, what))
        cost_of = columns.unpack("i", self.cost_of, n, what)
        inclusion = columns.unpack("B", self.inclusion, n, what)
        priorities = columns.unpack("q", self.priorities, n, what)
        costs, kinds = self.costs, self.inclusions
        return [
            (fid, deps[i], costs[cost_of[i]], kinds[inclusion[i]], *_PLAIN_TAIL, priorities[i])
            for i, fid in enumerate(self.ids)
        ]


def _sent_columns(msg: SubmitRun | SubmitAndWait, tasks: SentColumns, heads: bool) -> SubmitColumns:
    answer = isinstance(msg, SubmitAndWait)
    return SubmitColumns(
        msg.request_id,
        msg.run_id,
        tasks.ids,
        tasks.dep_counts,
        tasks.deps,
        tasks.costs,
        tasks.cost_of,
        tasks.inclusions,
        tasks.inclusion,
        tasks.priorities,
        msg.max_retries,
        msg.policy,
        msg.outputs,
        answer,
        msg.wait if isinstance(msg, SubmitAndWait) else 0.0,
        msg.max_bytes if isinstance(msg, SubmitAndWait) else 0,
        msg.release if isinstance(msg, SubmitAndWait) else False,
        msg.packages,
        tasks.heads if heads else (),
        tasks.head_of if heads else b"",
    )


def _reads_heads(daemon_max: int) -> bool:
    """Whether a submission to a daemon whose range ends at ``daemon_max`` goes with code heads:
    it and this process (``HANDOFFD_TEST_PROTOCOL`` may play an older client) both reach 6."""
    return min(daemon_max, PROTOCOL_MAX) >= HEADS_SINCE


def sent_payloads(tasks: Any, payloads: list[Any], daemon_max: int) -> list[Any]:
    """The payload frames to send with ``as_sent(msg, daemon_max)`` of a submission whose tasks
    are ``tasks`` and payloads ``payloads``: as built, or each joined whole (head and tail) when
    they were built as tails and the daemon reads no heads."""
    if type(tasks) is not SentColumns or not tasks.heads or _reads_heads(daemon_max):
        return payloads
    heads = tasks.heads
    head_of = columns.unpack("i", tasks.head_of, len(tasks.ids), "SentColumns.head_of")
    return [heads[h] + payloads[i] if h >= 0 else payloads[i] for i, h in enumerate(head_of)]


def as_sent(
    msg: SubmitRun | SubmitAndWait, daemon_max: int
) -> SubmitRun | SubmitAndWait | SubmitColumns:
    """What a client sends for ``msg`` to a daemon whose protocol range ends at ``daemon_max``
    (0: not heard yet): its columns when it has them (``submit_columns``, or a ``SentColumns``
    as built) and the daemon reads them, else its records."""
    tasks: Any = msg.tasks
    if type(tasks) is SentColumns:
        if daemon_max < COLUMNS_SINCE:
            return replace(msg, tasks=Rows(tasks.rows()))
        return _sent_columns(msg, tasks, _reads_heads(daemon_max))
    if daemon_max < COLUMNS_SINCE:
        return msg
    return submit_columns(msg) or msg


# A row's node, collocate_with, inline, max_retries and timeout when the function is plain.
_PLAIN_TAIL = (None, None, False, None, None)

__all__ = [
    "COLUMNS_SINCE",
    "HEADS_SINCE",
    "SentColumns",
    "SubmitColumns",
    "TaskColumns",
    "as_sent",
    "as_submission",
    "sent_payloads",
    "submit_columns",
]
