# cython: annotation_typing=False
# (compiled from the .py alone, as placement.py: its classes stay Python classes)
"""Run retention: when a finished run's results are freed and when the run is forgotten.

A long-lived daemon must not grow per run. A run that ended keeps its results until the client
collected them (``ResultsCollected``: a ``FreeRunRequest``, or an outcome that carried them all) or
for ``keep_results_s`` (``NodeConfig.result_retention_s``), whichever comes first; its status then
stays answerable for ``keep_status_s`` more, after which every trace of it is dropped (the owner's
scheduler, the replication log, the standbys). A run another owner took over (``RunDropped``) is
nothing of ours to keep.

Pure: events in, instructions out, ``now`` passed in (the owner's shell feeds it and executes what
comes out: ``ReleaseResults`` becomes the scheduler's ``ResultsReleased``, ``ForgetRun`` its
``forget``). Both time lines are insertion-ordered dicts (an entry is re-inserted, never updated in
place), so a tick visits only their due heads: at hundreds of runs a second, a minute of released
runs was tens of thousands of entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

FORGET_AFTER_S = 60.0  # a released run's status stays answerable this long (keep_status_s)


@dataclass(slots=True, unsafe_hash=True)  # (not frozen: see ``events._hot``)
class RunEnded:
    """The run reached DONE, FAILED or CANCELLED (or a takeover restored it so)."""

    run_id: str


@dataclass(slots=True, unsafe_hash=True)  # (not frozen: see ``events._hot``)
class ResultsCollected:
    """The client holds every result it wants: free them now, not after the retention time."""

    run_id: str


@dataclass(frozen=True, slots=True)
class RunDropped:
    """We stepped down: another owner holds the run at a higher term."""

    run_id: str


@dataclass(frozen=True, slots=True)
class TimePassed:
    """Time passed: release and forget what is due."""


RetentionEvent = Union[RunEnded, ResultsCollected, RunDropped, TimePassed]


@dataclass(slots=True, unsafe_hash=True)  # (not frozen: see ``events._hot``)
class ReleaseResults:
    """Free the run's results everywhere. ``ended``: the run had ended, so its status is kept for
    ``keep_status_s`` from now and its standbys need their replica no longer (a takeover would have
    nothing left to do); False for a run that has not ended (the release is a no-op there)."""

    run_id: str
    ended: bool


@dataclass(frozen=True, slots=True)
class ForgetRun:
    """Drop every trace of the run (released ``keep_status_s`` ago)."""

    run_id: str


RetentionInstruction = Union[ReleaseResults, ForgetRun]


class RetentionPolicy:
    def __init__(self, keep_results_s: float, keep_status_s: float = FORGET_AFTER_S) -> None:
        self.keep_results_s = keep_results_s
        self.keep_status_s = keep_status_s
        self._ended: dict[str, float] = {}  # run -> when it ended; results not released yet
        self._released: dict[str, float] = {}  # run -> when its results were released

    def handle(self, event: RetentionEvent, now: float) -> list[RetentionInstruction]:
        # The shell's two events a run by their exact type first (a pointer test each, the
        # stamps written here: a one-task run paid an ``isinstance`` chain and a ``_stamp``
        # call for each), then the chain (any subclass too).
        if type(event) is RunEnded:
            ended = self._ended
            run_id = event.run_id
            if run_id in ended:  # (re-inserted at the end: the dict stays in time order)
                del ended[run_id]
            ended[run_id] = now
            return []
        if type(event) is ResultsCollected:
            return self._collected(event.run_id, now)
        if isinstance(event, TimePassed):
            return self._tick(now)
        if isinstance(event, RunEnded):
            _stamp(self._ended, event.run_id, now)
            return []
        if isinstance(event, ResultsCollected):
            return self._collected(event.run_id, now)
        if isinstance(event, RunDropped):
            self._ended.pop(event.run_id, None)
            self._released.pop(event.run_id, None)
            return []
        raise TypeError(f"not a retention event: {event!r}")

    def _collected(self, run_id: str, now: float) -> list[RetentionInstruction]:
        released = self._released
        if self._ended.pop(run_id, None) is not None:
            ended = True
        else:
            ended = run_id in released
            if ended:
                del released[run_id]
        if ended:  # (stamped again at the end: the dict stays in time order)
            released[run_id] = now
        return [ReleaseResults(run_id, ended)]

    def _tick(self, now: float) -> list[RetentionInstruction]:
        out: list[RetentionInstruction] = []
        # (each time line's head looked at first, as ``_pop_due`` would: most ticks find nothing
        # due in either)
        ended = self._ended
        if ended and not now - next(iter(ended.values())) < self.keep_results_s:
            for run_id in _pop_due(ended, now, self.keep_results_s):
                _stamp(self._released, run_id, now)
                out.append(ReleaseResults(run_id, True))
        # After the releases: with keep_status_s == 0 a run released by this tick goes in it too.
        released = self._released
        if released and not now - next(iter(released.values())) < self.keep_status_s:
            for run_id in _pop_due(released, now, self.keep_status_s):
                out.append(ForgetRun(run_id))
        return out

    def tracked(self) -> int:
        """Runs this policy still holds an entry for (ended or released, not forgotten)."""
        return len(self._ended.keys() | self._released.keys())


def _stamp(entries: dict[str, float], run_id: str, now: float) -> None:
    entries.pop(run_id, None)  # re-inserted at the end: the dict stays in time order
    entries[run_id] = now


def _pop_due(entries: dict[str, float], now: float, age: float) -> Iterator[str]:
    """Remove and yield the run ids stamped at least ``age`` before ``now``, oldest first."""
    while entries:
        run_id, at = next(iter(entries.items()))
        if now - at < age:
            return
        del entries[run_id]
        yield run_id
