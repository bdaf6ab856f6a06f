"""A submission taken in by the owner's scheduler: checked, then entered in slices (issue 19).

A run of 200,000 tasks used to be taken in within one scheduler batch: building its task records
and moving its roots to READY held the owner's loop 1.3-3 s. The records are now built where the
graph is (``daemon.upload_intake``, a thread; the run comes in ``RunSubmitted.run``), and the
roots enter the ready queue ``SLICE`` tasks of the run's placement order at a time
(``RunState.take_in``): after each slice the scheduler asks to be called again
(``StartTimer(intake_key(run), 0)``), so the daemon's loop serves other events between slices.
The slices go in placement order, so the first tasks placed are the ones an unsliced intake
would have placed first. A run built off the loop waits for its first slice until the batch
that accepted it was carried out (``first_slice``). A run's end closes its unfinished tasks by
slices the same way (``RunState.close``, ``CLOSE_SLICE``, ``close_key``). Pure: the checks read the scheduler's view through what is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handoffd._core import api as core
from handoffd.errors import Unschedulable, ValidationError
from handoffd.scheduler import placement
from handoffd.scheduler.events import RunSubmitted, TimerKey
from handoffd.scheduler.graph import Order
from handoffd.scheduler.run import RunState

if TYPE_CHECKING:
    from handoffd.scheduler.cluster_view import ClusterView

# Tasks of ``RunState.ordered`` looked at per slice: moving 4,096 to READY (into the ready queue,
# each asking the cluster view whether it could be placed) took 15-30 ms alone and 100-150 ms of
# a daemon's loop iteration on a loaded machine; 1,024 keeps an iteration well under 100 ms.
SLICE = 1024
# Tasks of an ended run's ``ordered`` closed per slice (``RunState.close``): a never-started task
# is cancelled without the listener, ~1 us each, so 4,096 keep a slice near 5-10 ms.
CLOSE_SLICE = 4096


@dataclass(frozen=True)
class Prebuilt:
    """What is worked out where a run is built (``RunState.prebuilt``), for its intake: its
    snapshot's two big fields packed (``protocol.snapshot.pack_parts``) and ``probes``."""

    # (the tasks part None: left unpacked, every task as built: ``pack_parts``' ``tasks``)
    packed: tuple[bytes, bytes | None]
    # One task per (pin, cost) shape and every task of a collocation group, in the run's order:
    # the ones the owner's checks (a live pin, a node that can hold it) must look at; they find
    # the same first misfit as a look at every task (``ClusterView.misfit``).
    probes: tuple[str, ...]
    # The specs whose payloads the snapshot leaves out (``protocol.snapshot.far_specs``), for
    # ``OwnerPayloads.refs`` at the run's first snapshot; None: not worked out.
    far: tuple[Any, ...] | None = None
    # ``packed``'s specs are ``RunSnapshot.columns`` (``pack_parts``' ``columns``), not spec rows,
    # when not 0: then the protocol version a standby must reach to read them (1: any that reads
    # columns; code heads: 6).
    columns: int = 0


def probes(run: RunState) -> tuple[str, ...]:
    """``Prebuilt.probes`` of ``run``."""
    group_of = run.group_of
    if not group_of:
        return _ungrouped_probes(run)
    seen: set[Any] = set()
    out = []
    for rec in run.tasks.values():
        if rec.id not in group_of:
            shape = (rec.spec.node, rec.cost_items)
            if shape in seen:
                continue
            seen.add(shape)
        out.append(rec.id)
    return tuple(out)


def _ungrouped_probes(run: RunState) -> tuple[str, ...]:
    """``probes`` of a run without collocation groups (every plain run): the first task of each
    (pin, cost) shape. A task whose pin and cost shape are the very objects of the task before it
    has a shape already seen, so it is passed over without building and hashing its shape (a run
    builds one ``cost_items`` per run of equal costs: W1's 10,000 tasks share one)."""
    seen: set[Any] = set()
    out: list[str] = []
    last_node: Any = out  # (no task's pin: the first task's shape is always looked up)
    last_items: Any = out
    for rec in run.tasks.values():
        node = rec.spec.node
        items = rec.cost_items
        if items is last_items and node is last_node:
            continue
        last_node = node
        last_items = items
        shape = (node, items)
        if shape in seen:
            continue
        seen.add(shape)
        out.append(rec.id)
    return tuple(out)


def first_slice(run: RunState) -> int:
    """Tasks taken in with the submission itself: none for a run built off the loop (a big one),
    so the standbys' first snapshot is sent while it is untouched (``Prebuilt.packed``, not
    packed on the loop); a run built here is small enough to go at once, in the same batch."""
    return 0 if run.prebuilt is not None else SLICE


def intake_key(run_id: str) -> TimerKey:
    """The timer key that takes in the next slice of ``run_id``."""
    return ("intake", run_id)


def close_key(run_id: str) -> TimerKey:
    """The timer key that closes the next slice of the ended run ``run_id``."""
    return ("close", run_id)


def accept(ev: RunSubmitted, term: int, order: Order, view: ClusterView) -> RunState:
    """The run ``ev`` submits (built now unless it came built), checked against the live nodes
    of ``view``; raises the ``HandoffError`` that refuses it."""
    if ev.options.policy not in placement.POLICIES:
        raise ValidationError(
            "invalid_policy",
            None,
            f"policy {ev.options.policy!r} is not one of {placement.POLICIES}",
        )
    run = ev.run
    if run is None or run.run_id != ev.run_id or not run.untouched():
        run = RunState(ev.run_id, ev.specs, ev.options, term=term, order=order, graph=ev.graph)
    run.term = term
    # The tasks to check: every one, or one per shape when worked out off the loop.
    ids = run.prebuilt.probes if run.prebuilt is not None else None
    records = run.tasks.values() if ids is None else [run.tasks[i] for i in ids]
    pins: dict[str, str] = {}  # pin -> its first task (the one an error names)
    for rec in records:
        pin = rec.spec.node
        if pin is not None and pin not in pins:
            pins[pin] = rec.id
    for pin, task_id in pins.items():
        if not view.alive(pin):
            raise ValidationError(
                "unknown_node", task_id, f"pinned to {pin!r}, which is not a live node"
            )
    error = _misfit(view, run) if ids is None else view.misfit(run, ids)
    if error is not None:
        raise error
    return run


def _misfit(view: ClusterView, run: RunState) -> Unschedulable | None:
    """``view.misfit(run)``. A lone unpinned task in no group (every one-task ``execute``) that
    some live node's capacity holds is what ``misfit`` passes after building a view of every
    node, a shape set and the group walk; that one is told here with the same core ``fits`` in
    the same order, and anything else (a misfit to describe too) is ``misfit``'s."""
    tasks = run.tasks
    if len(tasks) == 1 and not run.group_of:
        for rec in tasks.values():
            if rec.spec.node is None:
                fits = core.kernels(view.backend).fits
                cost = rec.spec.cost
                for node in view.nodes.values():
                    if node.alive and fits(cost, node.capacity):
                        return None
    return view.misfit(run)
