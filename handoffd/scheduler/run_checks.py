"""A run's invariants (``RunState.validate``, called by the tests after every event): a module
of its own, kept off the run's module (its size) and out of the compiled build."""

from __future__ import annotations

from collections import Counter
from itertools import chain, compress, filterfalse, repeat
from operator import attrgetter, eq, is_not, lt, methodcaller, ne
from typing import Any

from handoffd.scheduler.states import (
    ACTIVE,
    ASSIGNED,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    READY,
    RUN_CANCELLED,
    RUN_DONE,
    RUN_FAILED,
    RUN_RUNNING,
    RUNNING,
    TASK_STATES,
    TERMINAL,
)


class OwnerTally:
    """What ``invariants.validate_owner`` gathers from every run's tasks, filled in the same pass
    as the run's own checks (``validate_run(run, tally)``) instead of a second walk."""

    __slots__ = ("view", "add_into", "outstanding", "work", "queued", "active")

    def __init__(self, view: Any, add_into: Any) -> None:
        self.view = view
        self.add_into = add_into  # (``demand.add_into``: demand imports the run, so given here)
        self.outstanding: dict[str, dict[str, float]] = {}
        self.work: dict[str, float] = {}
        self.queued: set[tuple[str, str]] = set()
        self.active: set[tuple[str, str]] = set()


def validate_run(run: Any, owner: OwnerTally | None = None) -> None:
    """Raise AssertionError when an invariant of ``run`` (a ``RunState``) is broken; with
    ``owner``, also gather the owner's sums and check its per-task rules.

    The tests call this after every event, for every run held: a Python step a task was the
    unit tier's largest cost. ``_holds`` asks the same rules with C loops over the tasks'
    fields (``map``, ``compress``, ``Counter``) and answers only "every rule holds"; on any
    doubt the task-by-task pass below runs and raises the message it always did."""
    if len(run.tasks) < _QUICK_FROM or not _holds(run, owner):
        _validate_each(run, owner)


#: Runs of fewer tasks go task by task: the quick answer's dozen C loops cost more to set up
#: than such a run's Python steps (measured: small runs' checks twice as slow with it).
_QUICK_FROM = 100


def _validate_each(run: Any, owner: OwnerTally | None) -> None:
    """``validate_run`` task by task, in one pass (it was five, and a sixth for the owner). A
    task's failure is kept, not raised, until the checks that always came before it have
    passed, so a fault raises the message it always did."""
    where = f"run {run.run_id!r}"
    tasks = run.tasks
    live = run.state not in (RUN_FAILED, RUN_CANCELLED)
    effective = run.effective_deps
    tally = dict.fromkeys(TASK_STATES, 0)
    placed: dict[str, str] = {}
    left = 0
    shape: str | None = None  # the first task whose copies or attempts are malformed
    fault: str | None = None  # the first task breaking a live run's rules
    mine: str | None = None  # the first task breaking the owner's
    for tid, r in tasks.items():
        state = r.state
        tally[state] += 1
        node = r.node
        if state != DONE:
            left += 1
        if node is not None:
            placed[tid] = node
        if shape is None:
            locs = r.locations
            if locs and len(set(locs)) != len(locs):
                shape = f"{where} {tid} copies {locs}"
            elif type(locs) is not tuple or not set(map(type, r.attempts)) <= _TUPLE:
                shape = tid
        if live and fault is None:
            ids = effective[r.id]
            deps = [tasks[d] for d in ids] if ids else ()
            if state == DONE:
                if not r.completions > 0:
                    fault = _tag(where, r)
                elif not r.has_copy() and run._needed(r):
                    fault = f"{_tag(where, r)}: needed result has no copy"
                elif r.delayed:
                    fault = f"{_tag(where, r)}: delayed outside READY"
            elif state == PENDING:  # (the commonest, inline: a call a task was half the cost)
                if r.order < run.intake and all(d.state == DONE for d in deps):
                    fault = f"{_tag(where, r)}: PENDING with inputs done"
                elif r.delayed:
                    fault = f"{_tag(where, r)}: delayed outside READY"
            else:
                fault = _live_fault(run, r, state, deps, where)
        if owner is not None and mine is None and state != PENDING:
            if state != DONE or r.locations:  # (else the owner has nothing to check or add)
                mine = _owner_part(owner, run, r, state, node)
    assert run.remaining == left, where
    assert run.tally == tally, f"{where} tally {run.tally} != {tally}"
    assert shape is None, shape
    assert run.placed == placed, f"{where} placed"
    for tid, n in run.unfinished.items():
        users = run.consumers[tid]
        assert n == sum(tasks[c].state != DONE for c in users), f"{where} {tid}"
    if run.state == RUN_DONE:
        assert run.remaining == 0, f"{where} DONE with unfinished tasks"
    if not live:
        bad = [
            r.id
            for r in tasks.values()
            if r.state not in (DONE, FAILED, CANCELLED)
            and (r.order < run.closing or r.state not in (PENDING, READY))
        ]
        assert not bad, f"{where} ended but {bad} are unfinished (closed up to {run.closing})"
    else:
        assert fault is None, fault
    assert mine is None, mine


_TUPLE = {tuple}
_STATE, _NODE, _LOCATIONS = attrgetter("state"), attrgetter("node"), attrgetter("locations")
_ATTEMPTS, _DELAYED, _ORDER = attrgetter("attempts"), attrgetter("delayed"), attrgetter("order")
_COMPLETIONS, _ID, _HAS_COPY = attrgetter("completions"), attrgetter("id"), methodcaller("has_copy")


def _holds(run: Any, owner: OwnerTally | None) -> bool:
    """True only when every rule ``_validate_each`` checks holds for ``run`` (and then the
    owner's sums gathered as it gathers them); False when one is broken or may be, the owner's
    sums untouched. The tasks are read a field at a time in C loops, and a task is visited in
    Python only where a rule reads more than its own fields: a PENDING task taken in (its
    inputs), a task in flight (``_live_fault``), a DONE task without a copy (``_needed``)."""
    try:
        return _holds_or_raise(run, owner)
    except Exception:  # (a malformed run: the task-by-task pass raises what it always did)
        return False


def _holds_or_raise(run: Any, owner: OwnerTally | None) -> bool:
    tasks = run.tasks
    recs = list(tasks.values())
    if list(map(_ID, recs)) != list(tasks):  # (the pass reads ``r.id``; the keys are the same)
        return False
    states = list(map(_STATE, recs))
    counted = Counter(states)
    tally = {s: counted[s] for s in TASK_STATES}
    if len(counted) > len(TASK_STATES) or sum(tally.values()) != len(recs):
        return False  # (a state no table knows)
    if run.tally != tally or run.remaining != len(recs) - tally[DONE]:
        return False
    nodes = list(map(_NODE, recs))
    if run.placed != dict(
        compress(zip(tasks, nodes, strict=True), map(is_not, nodes, repeat(None)))
    ):
        return False
    locs = list(map(_LOCATIONS, recs))
    if not set(map(type, locs)) <= _TUPLE:
        return False
    copies = list(filter(None, locs))
    if list(map(len, map(set, copies))) != list(map(len, copies)):
        return False
    if not set(map(type, chain.from_iterable(map(_ATTEMPTS, recs)))) <= _TUPLE:
        return False
    for tid, n in run.unfinished.items():
        if n != sum(map(ne, map(_STATE, map(tasks.__getitem__, run.consumers[tid])), repeat(DONE))):
            return False
    if run.state == RUN_DONE and tally[DONE] != len(recs):
        return False
    done = list(compress(recs, map(eq, states, repeat(DONE))))
    live = run.state not in (RUN_FAILED, RUN_CANCELLED)
    if not live:
        if tally[DONE] + tally[FAILED] + tally[CANCELLED] != len(recs):
            closing = run.closing
            for r in recs:
                if r.state not in (DONE, FAILED, CANCELLED):
                    if r.order < closing or r.state not in (PENDING, READY):
                        return False
    elif tally[FAILED] or tally[CANCELLED] or not _live_holds(run, recs, states, done):
        return False
    if owner is not None:
        return _owner_holds(owner, run, recs, states, done)
    return True


def _live_holds(run: Any, recs: list[Any], states: list[str], done: list[Any]) -> bool:
    """A live run's per-task rules (``_validate_each``'s ``fault``) hold for every task."""
    tasks, effective = run.tasks, run.effective_deps
    # (every task's inputs looked up, as the pass does: an unknown one raises there)
    if not all(map(tasks.__contains__, chain.from_iterable(map(effective.__getitem__, tasks)))):
        return False
    if not all(map(READY.__eq__, compress(states, map(_DELAYED, recs)))):
        return False  # (a task delayed outside READY)
    if not all(map(lt, repeat(0), map(_COMPLETIONS, done))):
        return False
    for r in filterfalse(_HAS_COPY, done):
        if run._needed(r):
            return False
    intake = run.intake
    pending = list(compress(recs, map(eq, states, repeat(PENDING))))
    for r in compress(pending, map(lt, map(_ORDER, pending), repeat(intake))):
        if all(map(DONE.__eq__, map(_STATE, map(tasks.__getitem__, effective[r.id])))):
            return False  # (PENDING with inputs done)
    where = f"run {run.run_id!r}"
    for r in compress(recs, map(_IN_FLIGHT.__contains__, states)):
        ids = effective[r.id]
        deps = [tasks[d] for d in ids] if ids else ()
        if _live_fault(run, r, r.state, deps, where) is not None:
            return False
    return True


_IN_FLIGHT = frozenset((READY, ASSIGNED, RUNNING))
_ACTIVE = frozenset(ACTIVE)


def _owner_holds(
    owner: OwnerTally, run: Any, recs: list[Any], states: list[str], done: list[Any]
) -> bool:
    """The owner's rules (``_owner_part``) hold for every task: then its sums are added, in the
    tasks' order as the pass adds them."""
    view = owner.view
    if not all(map(view.alive, set(chain.from_iterable(map(_LOCATIONS, done))))):
        return False  # (a copy on a lost node)
    active = list(compress(recs, map(_ACTIVE.__contains__, states)))
    for r in active:
        if r.node is None or not view.alive(r.node):
            return False
    for r in active:
        node = r.node
        owner.add_into(owner.outstanding.setdefault(node, {}), r.spec.cost, 1)
        if r.charge:
            owner.work[node] = owner.work.get(node, 0.0) + r.charge
        owner.active.add((run.run_id, r.id))
    if run.state == RUN_RUNNING and READY in states:
        rid = run.run_id
        for r in compress(recs, map(eq, states, repeat(READY))):
            if not r.delayed:
                owner.queued.add((rid, r.id))
    return True


def _live_fault(run: Any, rec: Any, state: str, deps: Any, where: str) -> str | None:
    """The first rule of a live run a task not DONE breaks, as its message, or None: in the
    order they were always checked in."""
    if state in TERMINAL:
        return f"{_tag(where, rec)}: terminal in a live run"
    if state in (READY, ASSIGNED):
        if not all(d.state == DONE and d.has_copy() for d in deps):
            return f"{_tag(where, rec)}: inputs not ready"
    if state == PENDING and rec.order < run.intake:
        if all(d.state == DONE for d in deps):
            return f"{_tag(where, rec)}: PENDING with inputs done"
    if state == RUNNING:
        if not all(d.completions > 0 for d in deps):
            return f"{_tag(where, rec)}: running before an input existed"
    if state in ACTIVE:
        if not (rec.node is not None and rec.attempt > 0):
            return _tag(where, rec)
        pin = run.pin_of(rec.id)
        if not (pin is None or pin == rec.node):
            return f"{_tag(where, rec)}: on {rec.node}, pinned to {pin}"
    if state != READY and rec.delayed:
        return f"{_tag(where, rec)}: delayed outside READY"
    return None


def _owner_part(owner: OwnerTally, run: Any, rec: Any, state: str, node: Any) -> str | None:
    """Add ``rec`` to the owner's sums; its first broken owner rule as a message, or None."""
    view = owner.view
    if state == DONE:
        bad = [n for n in rec.locations if not view.alive(n)]
        return f"{rec.id} has copies on lost nodes {bad}" if bad else None
    if state in ACTIVE:
        if node is None:
            return ""
        if not view.alive(node):
            return f"{rec.id} active on lost {node}"
        owner.add_into(owner.outstanding.setdefault(node, {}), rec.spec.cost, 1)
        if rec.charge:
            owner.work[node] = owner.work.get(node, 0.0) + rec.charge
        owner.active.add((run.run_id, rec.id))
    elif state == READY and not rec.delayed and run.state == RUN_RUNNING:
        owner.queued.add((run.run_id, rec.id))
    return None


def _tag(where: str, rec: Any) -> str:
    """A failed check's subject; built only when a check fails (formatting every task's history
    on every validation made the scheduler's randomized tests 2-3x slower)."""
    return f"{where} task {rec.id!r} ({rec.state}) history={rec.history}"
