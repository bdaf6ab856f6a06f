"""The runs this node owns: a part of the owner's scheduler (``OwnerScheduler``).

A run is owned whole (``live``: its ``RunState``, running or finished) until the client has what it
wants (``release``); from then on only what status queries answer is kept, until ``forget`` after
retention. Pure bookkeeping: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from handoffd.errors import HandoffError
from handoffd.scheduler import history
from handoffd.scheduler.run import DONE, RUN_RUNNING, RunState


@dataclass(frozen=True)
class OwnedRunStatus:
    state: str  # RUNNING | DONE | FAILED | CANCELLED
    counts: dict[str, int]  # task state name -> number of regular tasks
    placement: dict[str, str]  # task id -> node of its latest attempt
    error: HandoffError | None
    term: int = 0


def status_of(run: RunState) -> OwnedRunStatus:
    return OwnedRunStatus(run.state, run.counts(), run.placement(), run.error, run.term)


@dataclass(frozen=True)
class RunHistory:
    """What ``handoffctl tasks`` shows of a run: every task's attempts and transitions."""

    state: str
    term: int
    submitted: float  # wall clock; 0.0: not known
    finished: float
    tasks: tuple[history.Frozen, ...]
    total: int = 0  # tasks in the run (``tasks`` may be only those that moved)


def history_of(run: RunState, since: float = 0.0, brief: bool = False) -> RunHistory:
    """Every task's history; with ``since`` (wall clock) only of tasks that moved since; ``brief``:
    without their transitions."""
    tasks = history.freeze_all(run.tasks, run.effective_deps, run.wall_offset, since, brief)
    return RunHistory(run.state, run.term, run.submitted, run.finished, tasks, len(run.tasks))


@dataclass(frozen=True)
class _Kept:
    """A released run's task histories as ``history.keep`` left them, shifted to the wall clock
    only when asked (``history.thaw``)."""

    state: str
    term: int
    submitted: float
    finished: float
    wall_offset: float
    tasks: tuple[history.Kept, ...]

    def history(self, since: float = 0.0, brief: bool = False) -> RunHistory:
        tasks = history.thaw(self.tasks, self.wall_offset, since, brief)
        return RunHistory(
            self.state, self.term, self.submitted, self.finished, tasks, len(self.tasks)
        )


class OwnedRuns:
    def __init__(self) -> None:
        self.live: dict[str, RunState] = {}  # the scheduler reads it; only this part changes it
        # Released runs: their task records, specs and payloads are dropped at release.
        self._released: dict[str, OwnedRunStatus] = {}
        self._histories: dict[str, _Kept] = {}  # released runs' task histories (issue 16)
        self._seq = 0

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.live or run_id in self._released

    def is_released(self, run_id: str) -> bool:
        return run_id in self._released

    def add(self, run: RunState) -> None:
        """Own ``run`` from now on; it is newer than every run we own (ties go to the older)."""
        self._seq += 1
        run.seq = self._seq
        self.live[run.run_id] = run

    def release(self, run: RunState) -> None:
        """Keep only what status queries answer: a released run's tasks are never looked at again
        (no copies, nothing recomputed), and during a busy minute they were tens of thousands of
        records that every full garbage collection scanned."""
        self._released[run.run_id] = status_of(run)
        self._histories[run.run_id] = _Kept(
            run.state,
            run.term,
            run.submitted,
            run.finished,
            run.wall_offset,
            history.keep(run.tasks, run.effective_deps),
        )
        del self.live[run.run_id]

    def pop(self, run_id: str) -> RunState | None:
        """Stop owning a live run (another owner took it over)."""
        return self.live.pop(run_id, None)

    def pop_released(self, run_id: str) -> bool:
        """Stop owning a released run; False if it was not one."""
        self._histories.pop(run_id, None)
        return self._released.pop(run_id, None) is not None

    def forget(self, run_id: str) -> RunState | None:
        """Drop a finished run entirely (after retention); the live run dropped, if it was one."""
        self._released.pop(run_id, None)
        self._histories.pop(run_id, None)
        run = self.live.get(run_id)
        if run is None or run.state == RUN_RUNNING:
            return None
        del self.live[run_id]
        return run

    # -- queries -----------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return [*self.live, *self._released]

    def status(self, run_id: str) -> OwnedRunStatus | None:
        run = self.live.get(run_id)
        if run is None:
            return self._released.get(run_id)
        return status_of(run)

    def times(self, run_id: str) -> tuple[float, float]:
        """(submitted, finished), wall clock; 0.0 when not known."""
        run = self.live.get(run_id)
        if run is not None:
            return run.submitted, run.finished
        h = self._histories.get(run_id)
        return (h.submitted, h.finished) if h is not None else (0.0, 0.0)

    def history(self, run_id: str, since: float = 0.0, brief: bool = False) -> RunHistory | None:
        run = self.live.get(run_id)
        if run is not None:
            return history_of(run, since, brief)
        h = self._histories.get(run_id)
        return h.history(since, brief) if h is not None else None

    def term_of(self, run_id: str) -> int | None:
        run = self.live.get(run_id)
        if run is None:
            summary = self._released.get(run_id)
            return summary.term if summary is not None else None
        return run.term

    def result_location(self, run_id: str, task_id: str) -> tuple[bytes | None, tuple[str, ...]]:
        if run_id in self._released:
            return None, ()
        rec = self.live[run_id].tasks[task_id]
        if rec.state != DONE:
            return None, ()
        return rec.value, tuple(sorted(rec.locations))
