# cython: annotation_typing=False
"""READY tasks held back from the ready queue: a part of the owner's scheduler (``OwnerScheduler``).

Two reasons to hold a task back (``TaskRecord.delayed``): its attempt failed and the retry waits out
its backoff (the ``("retry", run, task, attempt)`` timer), or a node refused it on a view of the node
that has not changed since we sent it, so placing it again at once would repeat the refusal. A refused
task is held until the view changes or the ``("refused",)`` timer fires (REFUSAL_BACKOFF), whichever
comes first: a refusal never spins. Pure: timers are instructions, their firing an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from handoffd.scheduler.events import StartTimer
from handoffd.scheduler.outbox import Outbox
from handoffd.scheduler.run import READY, RunState, TaskRecord, backoff

REFUSAL_BACKOFF = 0.05  # seconds before refused tasks are re-placed when the view has not changed


class DelayedTasks:
    """The refused tasks held and the refusal timer; retries only need their own timers. A task
    let go is handed to ``enqueue`` (the scheduler's ready queue); runs are looked up by ``run_of``."""

    def __init__(
        self,
        out: Outbox,
        *,
        run_of: Callable[[str], RunState | None],
        enqueue: Callable[[RunState, TaskRecord], None],
    ) -> None:
        self._out = out
        self._run_of = run_of
        self._enqueue = enqueue
        # (run, task) -> the attempt refused. Public so that the owner calls ``view_changed``
        # only when something is held: most reports free something and nothing is held.
        self.held: dict[tuple[str, str], int] = {}
        self._refusal_timer = False

    def refused(self, run: RunState, rec: TaskRecord) -> None:
        """``rec`` (READY, delayed) was refused on an unchanged view: hold it."""
        self.held[(run.run_id, rec.id)] = rec.attempt
        if not self._refusal_timer:
            self._refusal_timer = True
            self._out.direct.append(StartTimer(("refused",), REFUSAL_BACKOFF))

    def failed(self, run: RunState, rec: TaskRecord) -> None:
        """``rec`` (READY, delayed) failed and is retried after its backoff."""
        key = ("retry", run.run_id, rec.id, rec.attempt)
        self._out.direct.append(StartTimer(key, backoff(rec.failures)))

    def view_changed(self) -> None:
        """A node's free resources or liveness changed: what was refused may fit now."""
        for (run_id, task_id), attempt in self.held.items():
            self._let_go(run_id, task_id, attempt)
        self.held.clear()

    def refusal_timer_fired(self) -> None:
        self._refusal_timer = False
        self.view_changed()

    def retry_due(self, run_id: str, task_id: str, attempt: object) -> None:
        """The retry timer of ``attempt`` fired (stale when the task moved on meanwhile)."""
        self._let_go(run_id, task_id, attempt)

    def _let_go(self, run_id: str, task_id: str, attempt: object) -> None:
        run = self._run_of(run_id)
        rec = run.tasks.get(task_id) if run is not None else None
        if (
            run is not None
            and rec is not None
            and rec.state == READY
            and rec.delayed
            and rec.attempt == attempt
        ):
            rec.delayed = False
            self._enqueue(run, rec)

    def drop_run(self, run_id: str, task_ids: Iterable[str]) -> None:
        """The run is no longer ours: hold none of its tasks."""
        for task_id in task_ids:
            self.held.pop((run_id, task_id), None)
