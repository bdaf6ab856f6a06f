"""A submission that came as columns (``protocol.messages_submit``) checked and built from them.

``graph.wire_graph`` reads a submission's ``TaskMeta`` records one by one; a ``SubmitColumns``
run has none. ``column_graph`` makes its specs straight from the columns: each distinct cost map
parsed once, the ids' uniqueness in one dict built in C, then one loop that makes the specs
(dependencies already split per function by ``TaskColumns``), then the same links, cycle walk and
ranking as the records' plain path (``plain_graph.links``, ``graph._plain``). It says None for
anything that path would not take (a bad id, a duplicate, a bad cost, an unknown inclusion, an
unknown dependency, a cycle, a bad option): the caller then takes the general path
(``validation.wire_specs`` over the ``TaskMeta`` records the columns make on demand), which
refuses it with the same error as the records' form.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from handoffd import resources
from handoffd.protocol.messages_snapshot import SnapshotColumns
from handoffd.protocol.messages_submit import TaskColumns
from handoffd.protocol.snapshot import far_specs
from handoffd.scheduler import plain_graph
from handoffd.scheduler.graph import Order, TaskGraph, _plain, run_fields_plain, wire_graph
from handoffd.spec import TaskSpec
from handoffd.store.chunks import FAR_BYTES
from handoffd.validation import ARGUMENT_INCLUSIONS

_new = object.__new__


def task_ids(tasks: Sequence[Any]) -> list[str]:
    """The ids of a submission's functions (records or columns), for the intake's bounds."""
    if type(tasks) is TaskColumns:
        return list(tasks.ids)
    return [t.id for t in tasks]


def plain_graph_of(
    msg: Any, frames: Sequence[Any], order: Order | None
) -> tuple[tuple[TaskSpec, ...], TaskGraph] | None:
    """``graph.wire_graph`` for either form of a submission (records or columns)."""
    if type(msg.tasks) is TaskColumns:
        return column_graph(msg, frames, order)
    return wire_graph(msg, frames, order)


def column_graph(
    msg: Any, frames: Sequence[Any], order: Order | None
) -> tuple[tuple[TaskSpec, ...], TaskGraph] | None:
    """The specs and graph of a submission whose ``tasks`` are ``TaskColumns``, checked as
    ``graph.wire_graph`` checks plain records; None for anything it would not take."""
    tasks: TaskColumns = msg.tasks
    ids = tasks.ids
    n = len(ids)
    if not run_fields_plain(msg, n, frames):
        return None
    outputs = msg.outputs
    deps = tasks.deps
    # No task needs another and no output named (W1): no id is looked up, so their uniqueness
    # is checked by the effective dependencies' dict itself, made here in one C call (every
    # task's the one empty tuple), which the links then are (``free_links``): no set of the ids.
    unlinked = outputs is None and not any(deps)
    index: Any = dict.fromkeys(ids, ()) if unlinked else dict(zip(ids, range(n), strict=True))
    if len(index) != n or "" in index:  # (the codec checked they are str)
        return None
    if outputs is not None:
        for output in outputs:
            if type(output) is not str or output not in index:
                return None
    for kind in tasks.inclusions:
        if kind not in ARGUMENT_INCLUSIONS:
            return None
    parsed: list[dict[str, float]] = []
    for raw in tasks.cost_maps:
        for qty in raw.values():
            if type(qty) is bool:  # (True == 1: ``parse`` refuses it, an equal map would not)
                return None
        try:
            parsed.append(resources.parse_cached(raw, what="cost"))
        except resources.ResourceError:
            return None
    specs = plain_graph.column_specs(
        ids,
        deps,
        parsed,
        tasks.cost_of,
        tasks.inclusions,
        tasks.inclusion,
        tasks.priorities,
        frames,
        tasks.heads,
        tasks.head_of,
    )
    if unlinked:
        found: Any = plain_graph.free_links(ids, index)
    else:
        found = plain_graph.column_links(ids, deps, index, True)
        if found is None:
            return None
    # The ranking's inputs read from the columns (one size a cost map), not from each spec.
    size_of = [float(sum(cost.values())) for cost in parsed]
    if len(size_of) == 1:
        sizes = size_of * n
    else:
        sizes = list(map(size_of.__getitem__, tasks.cost_of))
    priorities = list(tasks.priorities)
    return tuple(specs), _plain(specs, found, outputs, order, priorities, sizes, unlinked)


def run_alike(tasks: Any) -> tuple[int, str] | None:
    """``RunState.alike`` of the run ``column_graph`` built from ``tasks`` (its specs plain: no
    pin, no timeout): (the priority, the argument inclusion) every task has, when they all have
    the same and none needs another, read from the columns in C scans; None otherwise, and for
    records (``tasks`` not ``TaskColumns``)."""
    if type(tasks) is not TaskColumns:
        return None
    n = len(tasks.ids)
    if n == 0 or any(tasks.deps):
        return None
    priorities = tasks.priorities
    inclusion = tasks.inclusion
    priority = priorities[0]
    kind = inclusion[0]
    if priorities.count(priority) != n or inclusion.count(kind) != n:
        return None
    return priority, tasks.inclusions[kind]


# Cost maps up to which ``column_probes`` finds each one's first task by a scan of the run's
# ``cost_of`` (one C scan a map, stopping at its first use): a run's few shapes (W1's one).
PROBED_COSTS = 4


def column_probes(tasks: TaskColumns, costs: Sequence[dict[str, float]]) -> tuple[str, ...] | None:
    """``scheduler.intake.probes`` of the run ``column_graph`` built from ``tasks`` (``costs``:
    its cost maps as parsed, the dicts its specs and records share), read from the columns: its
    tasks are plain (no pin, no group), so the probes are the first task of each cost shape, in
    the run's order, found where each cost map is first used rather than by a look at every
    record (its spec's pin and cost items: ~0.5k instructions a W1 task). None for a run of
    more than ``PROBED_COSTS`` cost maps (``probes`` then walks its records)."""
    if len(costs) > PROBED_COSTS:
        return None
    cost_of = tasks.cost_of
    firsts: list[tuple[int, int]] = []
    for k in range(len(costs)):
        try:
            firsts.append((cost_of.index(k), k))
        except ValueError:  # (a cost map no task uses)
            continue
    firsts.sort()
    seen: set[Any] = set()
    out: list[str] = []
    ids = tasks.ids
    for at, k in firsts:
        shape = tuple(costs[k].items())  # (a record's ``cost_items``: equal maps, one shape)
        if shape not in seen:
            seen.add(shape)
            out.append(ids[at])
    return tuple(out)


def snapshot_columns(
    tasks: Sequence[Any],
    specs: Sequence[TaskSpec],
    far: Sequence[TaskSpec],
    payloads: tuple[bytes, ...] | None = None,
) -> SnapshotColumns | None:
    """The specs of a run checked by ``column_graph`` (from ``tasks``, its ``TaskColumns``) as its
    snapshot's ``RunSnapshot.columns``: the arrays the submission came with, the cost maps as
    parsed (as the specs hold them) and the payloads (``payloads``: the specs' own, read here if
    not given), the ``far`` ones (``snapshot.far_specs``) empty; None when ``tasks`` are
    records."""
    if type(tasks) is not TaskColumns:
        return None
    sent = tasks.sent
    if payloads is None:
        payloads = tuple(map(_PAYLOAD, specs))
    if far:  # (left out as a spec row leaves them: ``snapshot.far_payload``)
        payloads = tuple(b"" if len(p) > FAR_BYTES else p for p in payloads)
    return _columns(sent, payloads)


def column_snapshot(
    tasks: Sequence[Any], specs: Sequence[TaskSpec], frames: Sequence[Any] = ()
) -> tuple[SnapshotColumns | None, tuple[TaskSpec, ...]]:
    """``snapshot_columns`` of a run ``column_graph`` built, and its ``snapshot.far_specs``: the
    specs' payloads read once for both (each read goes through the spec's ``__dict__``; the
    lengths then compared in C calls). A run whose payloads came as code heads and tails
    (``frames``, protocol 6) keeps them so, each head once: no payload past ``FAR_BYTES``
    then (bounded by its head and its tail: else as whole payloads)."""
    if type(tasks) is TaskColumns and tasks.head_of is not None and len(frames) >= len(tasks):
        tails = tuple(map(bytes, frames[: len(tasks)]))
        longest = max(map(len, tails), default=0) + max(map(len, tasks.heads), default=0)
        if longest <= FAR_BYTES:
            return _with_heads(tasks, tails), ()
    payloads = tuple(map(_PAYLOAD, specs))
    if max(map(len, payloads), default=0) <= FAR_BYTES:
        far: tuple[TaskSpec, ...] = ()
    else:
        far = far_specs(specs)
    return snapshot_columns(tasks, specs, far, payloads), far


def _with_heads(tasks: TaskColumns, tails: tuple[bytes, ...]) -> SnapshotColumns:
    """``snapshot_columns`` of a run that came with code heads: its tails and heads as they came
    (a standby of 6 or more reads them: ``protocol.snapshot.encode_run``)."""
    sent = tasks.sent
    return _columns(sent, tails, sent.heads, sent.head_of)


def _columns(
    sent: Any, payloads: tuple[bytes, ...], heads: tuple[bytes, ...] = (), head_of: bytes = b""
) -> SnapshotColumns:
    """A snapshot's columns from a submission's arrays as sent, its cost maps parsed (as the specs
    hold them), with ``payloads`` (whole, or tails of ``heads``)."""
    return SnapshotColumns(
        sent.ids,
        sent.dep_counts,
        sent.deps,
        tuple(resources.parse_cached(raw, what="cost") for raw in sent.costs),
        sent.cost_of,
        sent.inclusions,
        sent.inclusion,
        sent.priorities,
        payloads,
        heads,
        head_of,
    )


_PAYLOAD = attrgetter("payload")

__all__ = [
    "column_graph",
    "column_probes",
    "column_snapshot",
    "plain_graph_of",
    "run_alike",
    "snapshot_columns",
    "task_ids",
]
