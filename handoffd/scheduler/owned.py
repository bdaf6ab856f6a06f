# cython: annotation_typing=False
# (compiled from the .py alone, as placement.py: its classes stay Python classes)
"""The runs this node owns: a part of the owner's scheduler (``OwnerScheduler``).

A run is owned whole (``live``: its ``RunState``, running or finished) until the client has what it
wants (``release``); from then on only what status queries answer is kept, until ``forget`` after
retention. Pure bookkeeping: no clock, no I/O.

A run of more than ``RELEASE_WHOLE`` tasks is released by slices (``Releasing``): its task
histories kept ``RELEASE_SLICE`` tasks at a time, then its records let go of as many at a time,
each slice on a timer of its own (``release_key``): one pass over a 100,000-task run held the
owner's loop ~0.1 s. Meanwhile the run answers as released (status, term) and its history from
its records (unchanged: the run is out of ``live``, nothing moves it) until every task is kept,
then from the kept tuples: the same answer either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handoffd.errors import HandoffError
from handoffd.scheduler import history, history_kept
from handoffd.scheduler.events import TimerKey
from handoffd.scheduler.run import DONE, RUN_RUNNING, RunState

#: Tasks kept, then records let go of, per slice of a big run's release: ~1 us a task each way,
#: so a slice holds the loop a few ms.
RELEASE_SLICE = 2048
#: A run of at most this many tasks is released in one pass (~10 ms at 10,000 tasks): slicing
#: costs ~10 % more CPU a task, which a run of W1's size (10,000) should not pay.
RELEASE_WHOLE = 16384


# Two of these and a ``_Kept`` are made per run (its answer, its release): frozen, but built by
# a hand ``__init__`` writing the instance dict, as ``object.__setattr__`` per field cost ~2.5x
# (a test holds each ``__init__`` to the fields).


@dataclass(frozen=True, init=False)
class OwnedRunStatus:
    state: str  # RUNNING | DONE | FAILED | CANCELLED
    counts: dict[str, int]  # task state name -> number of regular tasks
    placement: dict[str, str]  # task id -> node of its latest attempt
    error: HandoffError | None
    term: int = 0

    def __init__(
        self,
        state: str,
        counts: dict[str, int],
        placement: dict[str, str],
        error: HandoffError | None,
        term: int = 0,
    ) -> None:
        d = self.__dict__
        d["state"], d["counts"], d["placement"], d["error"], d["term"] = (
            state,
            counts,
            placement,
            error,
            term,
        )


def status_of(run: RunState) -> OwnedRunStatus:
    return OwnedRunStatus(run.state, run.counts(), run.placement(), run.error, run.term)


def release_key(run_id: str) -> TimerKey:
    """The timer key that releases the next slice of ``run_id`` (``OwnedRuns.release_next``)."""
    return ("release", run_id)


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


@dataclass(frozen=True, init=False)
class _Kept:
    """A released run's task histories as ``history_kept.keep`` left them, shifted to the wall
    clock only when asked (``history_kept.thaw``)."""

    state: str
    term: int
    submitted: float
    finished: float
    wall_offset: float
    tasks: history_kept.Kept

    def __init__(
        self,
        state: str,
        term: int,
        submitted: float,
        finished: float,
        wall_offset: float,
        tasks: history_kept.Kept,
    ) -> None:
        d = self.__dict__
        d["state"], d["term"], d["submitted"], d["finished"], d["wall_offset"], d["tasks"] = (
            state,
            term,
            submitted,
            finished,
            wall_offset,
            tasks,
        )

    def history(self, since: float = 0.0, brief: bool = False) -> RunHistory:
        tasks = history_kept.thaw(self.tasks, self.wall_offset, since, brief)
        return RunHistory(
            self.state,
            self.term,
            self.submitted,
            self.finished,
            tasks,
            history_kept.kept_count(self.tasks),
        )


def _kept(run: RunState, tasks: history_kept.Kept) -> _Kept:
    return _Kept(run.state, run.term, run.submitted, run.finished, run.wall_offset, tasks)


# A RunState's containers of an item per task. Dropped whole with the run, each is one C call
# freeing every item (3-11 ms at 300,000 tasks, each), so a big run's release drops them one per
# slice instead (a test holds this list to RunState's containers).
PER_TASK = (
    "tasks",
    "ordered",
    "specs",
    "effective_deps",
    "consumers",
    "unfinished",
    "placed",
    "wanted",
)


class Releasing:
    """A big run's release under way: its histories kept a slice at a time (``run`` held, its
    records unchanged), then what it holds per task let go of a slice at a time: the run is
    dropped, but its per-task containers (``PER_TASK``) and records (``held``, with their lists,
    and their tasks' consumer lists) are still referenced here, so each goes on a later slice:
    a container, one at a time (nothing of the run is changed: someone may still read it, a
    standby's snapshot packed off the loop), then ``limit`` records at a time."""

    def __init__(self, run: RunState) -> None:
        self.run: RunState | None = run
        # Every record (the dict never changes: the run is not live), then, as they are kept,
        # their tasks' consumer lists.
        self.held: list[Any] = list(run.tasks.values())
        self._at = 0  # the records before it are kept
        self._cols = history_kept.columns()
        self.parts: list[Any] = []
        self.kept: _Kept | None = None

    def step(self, limit: int) -> bool:
        """One slice: ``limit`` tasks kept, a container or ``limit`` records let go of; False
        when done."""
        run = self.run
        if run is not None:
            held = self.held
            start = self._at
            limit = min(limit, len(run.tasks) - start)  # (the consumer lists follow the records)
            self._at = history_kept.keep_next(held, start, limit, run.effective_deps, self._cols)
            consumers = run.consumers
            held.extend([consumers.get(rec.id) for rec in held[start : self._at]])
            if self._at < len(run.tasks):
                return True
            self.kept = _kept(run, history_kept.sealed(self._cols))
            self._cols = []
            self.parts = [getattr(run, name) for name in PER_TASK]
            self.run = None  # only its own references go: all it held per task is held here
            return True
        if self.parts:
            self.parts.pop()
        else:
            del self.held[-limit:]
        return bool(self.parts or self.held)

    def history(self, since: float, brief: bool) -> RunHistory:
        if self.run is not None:
            return history_of(self.run, since, brief)
        assert self.kept is not None
        return self.kept.history(since, brief)


class OwnedRuns:
    def __init__(self) -> None:
        self.live: dict[str, RunState] = {}  # the scheduler reads it; only this part changes it
        # Released runs: their task records, specs and payloads are dropped at release.
        self._released: dict[str, OwnedRunStatus] = {}
        self._histories: dict[str, _Kept] = {}  # released runs' task histories (issue 16)
        self._releasing: dict[str, Releasing] = {}  # big runs released by slices
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

    def release(
        self, run: RunState, limit: int = RELEASE_SLICE, whole: int = RELEASE_WHOLE
    ) -> bool:
        """Keep only what status queries answer: a released run's tasks are never looked at again
        (no copies, nothing recomputed), and during a busy minute they were tens of thousands of
        records that every full garbage collection scanned. True: a run of more than ``whole``
        tasks, released by slices of ``limit`` from now on (``release_next`` on ``release_key``'s timer)."""
        run_id = run.run_id
        # Its placement as it is, not a copy: the run is never moved again (not live).
        self._released[run_id] = OwnedRunStatus(
            run.state, run.counts(), run.placed, run.error, run.term
        )
        del self.live[run_id]
        if len(run.tasks) > whole:
            self._releasing[run_id] = Releasing(run)
            return True
        self._histories[run_id] = _Kept(  # (``_kept``'s, without its call: every run's release)
            run.state,
            run.term,
            run.submitted,
            run.finished,
            run.wall_offset,
            history_kept.keep(run.tasks, run.effective_deps),
        )
        return False

    def release_next(self, run_id: str, limit: int = RELEASE_SLICE) -> bool:
        """The next slice of ``run_id``'s release; True while there is more to do."""
        releasing = self._releasing.get(run_id)
        if releasing is None:  # forgotten or taken over meanwhile
            return False
        more = releasing.step(limit)
        if releasing.kept is not None and run_id not in self._histories:
            self._histories[run_id] = releasing.kept
        if not more:
            del self._releasing[run_id]
        return more

    def pop(self, run_id: str) -> RunState | None:
        """Stop owning a live run (another owner took it over)."""
        return self.live.pop(run_id, None)

    def pop_released(self, run_id: str) -> bool:
        """Stop owning a released run; False if it was not one."""
        self._releasing.pop(run_id, None)
        self._histories.pop(run_id, None)
        return self._released.pop(run_id, None) is not None

    def forget(self, run_id: str) -> RunState | None:
        """Drop a finished run entirely (after retention); the live run dropped, if it was one."""
        self._released.pop(run_id, None)
        self._releasing.pop(run_id, None)
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
        if h is not None:
            return h.submitted, h.finished
        releasing = self._releasing.get(run_id)
        if releasing is not None and releasing.run is not None:
            return releasing.run.submitted, releasing.run.finished
        return 0.0, 0.0

    def history(self, run_id: str, since: float = 0.0, brief: bool = False) -> RunHistory | None:
        run = self.live.get(run_id)
        if run is not None:
            return history_of(run, since, brief)
        h = self._histories.get(run_id)
        if h is None and run_id in self._releasing:
            return self._releasing[run_id].history(since, brief)
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
