"""Failover, a part of the owner's scheduler (``OwnerScheduler``): adopt a replicated run at a new
term (``restore``). Giving a run up to a new owner is the scheduler's ``step_down``: forgetting a run
without cancelling anything needs nothing particular to a takeover.

What is particular to a takeover is decided here; the scheduler keeps the books through the narrow
callables it passes in (the same bookkeeping a submitted or released run goes through). Pure: data
in, decisions out, no clock (the scheduler's is the host's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoffd.scheduler.graph import Order
from handoffd.scheduler.ready import has_entries
from handoffd.scheduler.run import ACTIVE, ATTEMPT_STRIDE, READY, RUN_RUNNING, RunState, TaskRecord

Shape = tuple[Any, tuple[tuple[str, float], ...]]  # (pin, cost items): ``ReadyQueue.shapes`` key


@dataclass
class Adoptable:
    """A run a takeover built and prepared off the event loop (``prepare``): adopting it walks
    only its tasks out on nodes (``active``), not all of them. Its READY tasks are already flagged
    queued and in its ready heap; ``queued`` is what the ready queue counts of them (size,
    weightless, shapes)."""

    run: RunState
    strays: list[TaskRecord]  # members out apart from their collocation group (``_regroup``)
    active: list[TaskRecord]  # ASSIGNED/RUNNING with a node: out there, in the books
    nodes: list[str]  # every node the run has work, a copy or a group on: lost if not alive
    queued: tuple[int, int, dict[Shape, int]]


def prepare(run: RunState) -> Adoptable:
    """What ``Takeover.restore`` and owning the run (``_own_as_is``) work out per task, done on
    the run alone, so in a takeover's thread (``daemon.replication_rebuild``): at 200,000 tasks
    those walks and heap pushes held the new owner's loop 0.3-1 s. The run's ready entries are its
    READY, not delayed tasks' positions in order (its ready line: ``ready._entry_push``), flagged as
    ``ReadyQueue.push`` flags them; the queue adds the counts at adoption (``ReadyQueue.adopt``)."""
    for rec in run.tasks.values():
        if rec.state == READY:
            rec.delayed = False  # its retry or refusal timer went with the previous owner
    strays = _regroup(run)
    active = [r for r in run.tasks.values() if r.state in ACTIVE and r.node is not None]
    # (a stray's node counts only for its copies: ``restore`` looks after it is taken back)
    apart = {r.id for r in strays}
    nodes: set[str] = {r.node for r in active if r.id not in apart and r.node is not None}
    nodes |= {n for r in run.tasks.values() for n in r.locations}
    nodes |= {n for n in run.group_node.values() if n is not None}
    size = weightless = 0
    shapes: dict[Shape, int] = {}
    if run.state == RUN_RUNNING and not has_entries(run):
        line = []
        for rec in run.ordered:
            if rec.state == READY and not rec.queued:
                rec.queued = rec.in_heap = True
                line.append(rec.order)
                size += 1
                if not rec.spec.cost:
                    weightless += 1
                shape = (rec.spec.node, rec.cost_items)
                shapes[shape] = shapes.get(shape, 0) + 1
        run.ready_line, run.ready_at = line, 0  # ``ordered`` is in order: ascending, a line
    return Adoptable(run, strays, active, sorted(nodes), (size, weightless, shapes))


class Takeover:
    """Adopting a whole run at a change of owner. It keeps no state between calls: a takeover is
    one call, and what it leaves behind is the run's (its term and attempt floor) and the books the
    scheduler keeps for every run it owns."""

    def __init__(
        self,
        *,
        alive: Callable[[str], bool],
        own_as_is: Callable[..., None],
        lose_in_run: Callable[[RunState, str], None],
        recompute: Callable[[RunState], None],
        count_loss: Callable[[RunState, TaskRecord, str], None],
        order: Order,
    ) -> None:
        # What a takeover needs from the scheduler that owns it: whether a node is ALIVE; to own a
        # run with its tasks as they are (ASSIGNED/RUNNING ones out, READY ones queued); to treat a
        # node as lost for one run; to recompute what a run needs and has no copy of; to count an
        # attempt lost and place the task again; and the run ranking.
        self._alive = alive
        self._own_as_is = own_as_is
        self._lose_in_run = lose_in_run
        self._recompute = recompute
        self._count_loss = count_loss
        self._order = order

    def restore(self, data: dict[str, Any] | RunState | Adoptable, term: int) -> RunState:
        """Adopt a replicated run at ``term`` (its plain data, or the run built from it with our
        ``order``, or that run ``prepare``d, off the event loop: ``daemon.replication_rebuild``);
        tasks on nodes we do not see alive are treated as lost. New attempts start above
        ``term * ATTEMPT_STRIDE`` so they never collide with the previous owner's."""
        if isinstance(data, Adoptable):
            return self._adopt(data, term)
        if isinstance(data, RunState):
            run = data
        else:
            run = RunState.from_snapshot(data, order=self._order)
        run.term = term
        run.attempt_floor = term * ATTEMPT_STRIDE
        for rec in run.tasks.values():
            if rec.state == READY:
                rec.delayed = False  # its retry or refusal timer went with the previous owner
        strays = _regroup(run)
        self._own_as_is(run)
        for rec in strays:
            if rec.state in ACTIVE:  # (a node lost above may have taken it back already)
                where = run.pin_of(rec.id)
                self._count_loss(run, rec, f"out on {rec.node}, apart from its group on {where}")
        lost = {r.node for r in run.tasks.values() if r.state in ACTIVE and r.node is not None}
        lost |= {n for r in run.tasks.values() for n in r.locations}
        lost |= {n for n in run.group_node.values() if n is not None}
        for node in sorted(lost):
            if not self._alive(node):
                self._lose_in_run(run, node)
        if run.state == RUN_RUNNING:
            # A value freed (no consumer needed it) whose consumer must now run again: the
            # replica marks only that consumer, the chain behind it is recomputed here.
            self._recompute(run)
        return run

    def _adopt(self, ready: Adoptable, term: int) -> RunState:
        """``restore`` of a prepared run: the same steps, the per-task walks done already."""
        run = ready.run
        run.term = term
        run.attempt_floor = term * ATTEMPT_STRIDE
        self._own_as_is(run, ready.active, ready.queued)
        for rec in ready.strays:
            if rec.state in ACTIVE:
                where = run.pin_of(rec.id)
                self._count_loss(run, rec, f"out on {rec.node}, apart from its group on {where}")
        for node in ready.nodes:
            if not self._alive(node):
                self._lose_in_run(run, node)
        if run.state == RUN_RUNNING:
            self._recompute(run)
        return run


def _regroup(run: RunState) -> list[TaskRecord]:
    """Put each collocation group where its members are out, and return the members out apart
    from it. The nodes' answers merged into a replica may show a member running where the
    replica's group is not, or members on two nodes: an attempt that reached a node long after
    the run had moved on (the node had restarted and forgotten the run's term). The group follows
    its pin, else its first member out; a member out elsewhere runs for nothing."""
    strays: list[TaskRecord] = []
    for gid, members in run.group_members.items():
        out = [run.tasks[m] for m in members if run.tasks[m].state in ACTIVE]
        if not out:
            continue
        pin = run.group_pin.get(gid)
        where = pin if pin is not None else out[0].node
        run.group_node[gid] = where
        strays += [rec for rec in out if rec.node != where]
    return strays
