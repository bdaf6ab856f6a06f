"""The owner's rare requests and checks: a run's cancel, values wanted after its end, and whether
every running run still fits the live nodes.

Split from ``owner.py`` at its size limit (as ``owner_timers``): each happens once per client
request or node loss, not per task, so this stays a plain module driving the scheduler through the
fields and methods the compiled class exposes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from handoffd.errors import RunCancelled
from handoffd.scheduler.events import CancelRequested, ValuesWanted
from handoffd.scheduler.states import RUN_CANCELLED, RUN_DONE, RUN_FAILED, RUN_RUNNING

if TYPE_CHECKING:
    from handoffd.scheduler.owner import OwnerScheduler

__all__ = ["check_all_fit", "on_cancel", "on_values_wanted"]

log = logging.getLogger("handoffd.scheduler")


def on_cancel(sched: OwnerScheduler, ev: CancelRequested) -> None:
    run = sched._owned.live.get(ev.run_id)
    if run is not None and run.state == RUN_RUNNING:
        sched._end_run(run, RUN_CANCELLED, RunCancelled(f"run {ev.run_id!r} was cancelled"))


def on_values_wanted(sched: OwnerScheduler, ev: ValuesWanted) -> None:
    run = sched._owned.live.get(ev.run_id)
    if run is None or run.state != RUN_DONE or run.released:
        return
    sched._cancel(run.recompute_lost(ev.task_ids, sched._now), run)
    if run.state == RUN_RUNNING:
        log.info("run %s reopened: a client asked for values lost since it ended", run.run_id)
        sched._dirty = True
        check_all_fit(sched)  # a lost value whose task fits no live node now fails the run


def check_all_fit(sched: OwnerScheduler) -> None:
    """Fail each running run with a task that no longer fits any live node (``Unschedulable``)."""
    view = sched._view
    for run in list(sched._owned.live.values()):
        if run.state == RUN_RUNNING:
            probes = run.prebuilt.probes if run.prebuilt is not None else None
            if probes is not None and view.misfit(run, probes, True) is None:
                # No task misfits, finished or not, by one per shape: the common case after
                # a node is lost, without a look at every task (0.2 s for 200,000 tasks,
                # with the rest of the loss more than 1 s for 1,000,000 in one batch).
                continue
            error = view.misfit(run)
            if error is not None:
                sched._end_run(run, RUN_FAILED, error, culprit=error.function_id)
