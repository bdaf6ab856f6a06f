# cython: annotation_typing=False
# (the annotations are for mypy; release.pxd beside it gives the compiled build its C types)
"""A run's release: a part of the owner's scheduler (``OwnerScheduler``).

The client has what it wants of an ended run (``ResultsReleased``): its holders are told to free
its values and the run keeps only what queries answer (``OwnedRuns.release``). A big run's release
goes by slices, each asked for with ``StartTimer(release_key(run), 0)`` as an intake's or a close's
slices are (``scheduler.intake``), so the daemon's loop serves other events between them.
Pure: no clock, no I/O. A C class when compiled (``release.pxd``): every run's release (a one-task
``execute``'s too) reads the run's fields and calls the view, the ready queue and the outbox
through C fields, where the Python part's attribute look-ups and calls were most of its cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoffd.scheduler.events import FreeResults, ResultsReleased, StartTimer
from handoffd.scheduler.outbox import Outbox
from handoffd.scheduler.owned import RELEASE_SLICE, RELEASE_WHOLE, OwnedRuns, release_key
from handoffd.scheduler.run import RUN_RUNNING

if TYPE_CHECKING:
    from handoffd.scheduler.cluster_view import ClusterView
    from handoffd.scheduler.ready import ReadyQueue


class Releases:
    """Releases the runs of ``owned`` the client is done with, writing to ``out``."""

    def __init__(self, owned: OwnedRuns, view: ClusterView, ready: ReadyQueue, out: Outbox) -> None:
        self._owned = owned
        self._view = view
        self._ready = ready
        self._out = out
        self.limit = RELEASE_SLICE  # tasks per slice (tests set a few)
        self.whole = RELEASE_WHOLE  # released in one pass up to this many tasks

    def released(self, ev: ResultsReleased) -> None:
        run = self._owned.live.get(ev.run_id)
        if run is None or run.state == RUN_RUNNING or run.released:
            return
        run.released = True
        holders = run.holders
        if holders:
            live: list[str] = []  # (a loop, not a generator: its frame, and C calls compiled)
            for n in holders:
                if self._view.alive(n):
                    live.append(n)
            if live:
                live.sort()
                self._out.direct.append(FreeResults(run.run_id, tuple(live)))
        self._ready.drop_run(run)
        run.mover = None
        if self._owned.release(run, self.limit, self.whole):
            self._out.direct.append(StartTimer(release_key(run.run_id), 0.0))

    def next_slice(self, run_id: str) -> None:
        """``release_key``'s timer fired: the next slice, and a timer for the one after."""
        if self._owned.release_next(run_id, self.limit):
            self._out.direct.append(StartTimer(release_key(run_id), 0.0))
