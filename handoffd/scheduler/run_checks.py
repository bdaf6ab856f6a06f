"""A run's invariants (``RunState.validate``, called by the tests after every event): a module
of its own, kept off the run's module (its size) and out of the compiled build."""

from __future__ import annotations

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
    RUNNING,
    TASK_STATES,
    TERMINAL,
)


def validate_run(run: Any) -> None:
    """Raise AssertionError when an invariant of ``run`` (a ``RunState``) is broken."""
    where = f"run {run.run_id!r}"
    assert run.remaining == sum(r.state != DONE for r in run.tasks.values()), where
    tally = dict.fromkeys(TASK_STATES, 0)
    for r in run.tasks.values():
        tally[r.state] += 1
    assert run.tally == tally, f"{where} tally {run.tally} != {tally}"
    placed = {tid: r.node for tid, r in run.tasks.items() if r.node is not None}
    for tid, r in run.tasks.items():  # (a tuple, kept as a set would be: each node once)
        assert len(set(r.locations)) == len(r.locations), f"{where} {tid} copies {r.locations}"
        assert type(r.locations) is tuple and all(type(a) is tuple for a in r.attempts), tid
    assert run.placed == placed, f"{where} placed"
    for tid, left in run.unfinished.items():
        users = run.consumers[tid]
        assert left == sum(run.tasks[c].state != DONE for c in users), f"{where} {tid}"
    if run.state == RUN_DONE:
        assert run.remaining == 0, f"{where} DONE with unfinished tasks"
    if run.state in (RUN_FAILED, RUN_CANCELLED):
        bad = [
            r.id
            for r in run.tasks.values()
            if r.state not in (DONE, FAILED, CANCELLED)
            and (r.order < run.closing or r.state not in (PENDING, READY))
        ]
        assert not bad, f"{where} ended but {bad} are unfinished (closed up to {run.closing})"
        return
    for rec in run.tasks.values():
        deps = [run.tasks[d] for d in run.effective_deps[rec.id]]
        assert rec.state not in TERMINAL, f"{_tag(where, rec)}: terminal in a live run"
        if rec.state in (READY, ASSIGNED):
            assert all(d.state == DONE and d.has_copy() for d in deps), (
                f"{_tag(where, rec)}: inputs not ready"
            )
        if rec.state == PENDING and rec.order < run.intake:
            assert not all(d.state == DONE for d in deps), (
                f"{_tag(where, rec)}: PENDING with inputs done"
            )
        if rec.state == RUNNING:
            assert all(d.completions > 0 for d in deps), (
                f"{_tag(where, rec)}: running before an input existed"
            )
        if rec.state in ACTIVE:
            assert rec.node is not None and rec.attempt > 0, _tag(where, rec)
            pin = run.pin_of(rec.id)
            assert pin is None or pin == rec.node, (
                f"{_tag(where, rec)}: on {rec.node}, pinned to {pin}"
            )
        if rec.state == DONE:
            assert rec.completions > 0, _tag(where, rec)
            if not rec.has_copy():
                assert not run._needed(rec), f"{_tag(where, rec)}: needed result has no copy"
        if rec.state != READY:
            assert not rec.delayed, f"{_tag(where, rec)}: delayed outside READY"


def _tag(where: str, rec: Any) -> str:
    """A failed check's subject; built only when a check fails (formatting every task's history
    on every validation made the scheduler's randomized tests 2-3x slower)."""
    return f"{where} task {rec.id!r} ({rec.state}) history={rec.history}"
