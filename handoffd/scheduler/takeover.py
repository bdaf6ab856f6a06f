"""Failover entry points of the owner's scheduler (``OwnerScheduler`` mixin): adopt a replicated
run at a new term (``restore_run``), or drop one another owner took over (``step_down``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handoffd.scheduler.events import Instruction
from handoffd.scheduler.lost import LostMessages, Outbox
from handoffd.scheduler.ready import ReadyQueue
from handoffd.scheduler.run import (
    ACTIVE,
    ATTEMPT_STRIDE,
    READY,
    RUN_RUNNING,
    RunState,
    TaskRecord,
)


class Takeover(LostMessages):
    """Adopting and dropping whole runs; the state lives on the scheduler."""

    term: int
    _seq: int
    _ready: ReadyQueue
    _refused: dict[tuple[str, str], int]
    _dirty: bool
    _released: dict[str, Any]  # run -> what status queries answer (a OwnedRunStatus)

    if TYPE_CHECKING:  # the scheduler's own bookkeeping

        def _order(
            self, priority: Any, consumers: Any, estimate: Any, size: Any
        ) -> tuple[list[int], list[float]]: ...
        def _on_move(self, run: RunState, rec: TaskRecord, old: str, new: str) -> None: ...
        def _enqueue(self, run: RunState, rec: TaskRecord) -> None: ...
        def _lose_in_run(self, run: RunState, node: str) -> None: ...
        def _cancel(self, cancels: list[tuple[str, str, int]], run: RunState) -> None: ...
        def _place(self) -> None: ...
        def _flush(self) -> list[Instruction]: ...

    def restore_run(
        self, data: dict[str, Any], now: float, term: int | None = None
    ) -> list[Instruction]:
        """Adopt a replicated run (takeover, at ``term``: default the scheduler's); tasks on nodes
        we do not see alive are treated as lost. New attempts start above ``term * ATTEMPT_STRIDE``
        so they never collide with the previous owner's."""
        self._now = max(self._now, now)
        run = RunState.from_snapshot(data, order=self._order)
        run.term = self.term if term is None else term
        run.attempt_floor = run.term * ATTEMPT_STRIDE
        run.seq = self._seq = self._seq + 1
        self._runs[run.run_id] = run
        run.listener = self._on_move
        for rec in run.tasks.values():
            if rec.state in ACTIVE and rec.node is not None:
                self._view.claim(rec.node, rec.spec.cost, 1)
                self._active[(run.run_id, rec.id)] = self._now
            if rec.state == READY:
                rec.delayed = False
                self._enqueue(run, rec)
        self._out = Outbox()
        if self._active and not self._probe_timer:
            self._arm_probe_timer(self.probe_interval)
        lost = {r.node for r in run.tasks.values() if r.state in ACTIVE and r.node is not None}
        lost |= {n for r in run.tasks.values() for n in r.locations}
        for node in sorted(lost):
            if not self._view.alive(node):
                self._lose_in_run(run, node)
        if run.state == RUN_RUNNING:
            # A value freed (no consumer needed it) whose consumer must now run again: the
            # replica marks only that consumer, the chain behind it is recomputed here.
            self._cancel(run.recompute_needed(self._now), run)
        self._dirty = True
        self._place()
        return self._flush()

    def step_down(self, run_id: str) -> bool:
        """Drop a run another owner took over (higher term): no cancels, its attempts are the new
        owner's now. False if we did not own it."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return self._released.pop(run_id, None) is not None
        run.listener = None
        for rec in run.tasks.values():
            if rec.state in ACTIVE and rec.node is not None:
                self._view.claim(rec.node, rec.spec.cost, -1)
            self._active.pop((run_id, rec.id), None)
            self._refused.pop((run_id, rec.id), None)
        self._ready.drop_run(run)
        self._view.forget_run(run_id)
        self._probes = {k: p for k, p in self._probes.items() if k[1] != run_id}
        self._dirty = True
        return True
