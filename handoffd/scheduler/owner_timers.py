"""The owner's timers: what each key of a ``TimerFired`` does to the scheduler.

Split from ``owner.py`` at its size limit. Timers are rare (one per run's intake slice, close
slice, deadline, retry, probe round or answer check), so this stays a plain module: it drives the
scheduler's parts through the fields and methods the compiled class exposes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoffd.errors import Timeout
from handoffd.scheduler.events import TimerFired
from handoffd.scheduler.states import RUN_FAILED, RUN_RUNNING

if TYPE_CHECKING:
    from handoffd.scheduler.owner import OwnerScheduler

__all__ = ["on_timer"]


def on_timer(sched: OwnerScheduler, ev: TimerFired) -> None:
    key = ev.key
    if key == ("refused",):
        sched._delays.refusal_timer_fired()
    elif len(key) == 2 and key[0] == "ack":
        if sched._lost.check_answers(str(key[1]), sched._now):
            # Given-up dispatches held the node's resources in our view; when none of them
            # was a task still waiting (a cancelled run's), nothing else would place again.
            sched._dirty = True
    elif len(key) == 2 and key[0] == "intake":
        sched._take_in(str(key[1]))
    elif len(key) == 2 and key[0] == "release":
        sched._releases.next_slice(str(key[1]))
    elif len(key) == 2 and key[0] == "close":
        run = sched._owned.live.get(str(key[1]))
        if run is not None and run.closing < len(run.ordered):
            sched._close(run)
    elif key == ("probe",):
        sched._lost.probe_nodes(sched._now)
    elif len(key) == 4 and key[0] == "retry":
        sched._delays.retry_due(str(key[1]), str(key[2]), key[3])
    elif len(key) == 2 and key[0] == "deadline":
        run = sched._owned.live.get(str(key[1]))
        if run is not None and run.state == RUN_RUNNING:
            error = Timeout(
                f"run {run.run_id!r} did not finish within its deadline of {run.options.timeout} s"
            )
            sched._end_run(run, RUN_FAILED, error)
