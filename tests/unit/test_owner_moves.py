"""The owner's own ways of its most common moves (``scheduler/owner_books.py``: a dispatch's
READY -> ASSIGNED in ``_assign``, an intake's PENDING -> READY in ``_take_slice``, a success's books
in ``moved``) against the run's general move (``RunState.move`` with its table, its listener and
the books' general case).

A run with a plain ``listener`` takes the general way everywhere (the owner writes a move out only
for a run whose listener is None, and reads a success table row by row); a no-op listener is all
that differs between the two schedulers driven here. Both go through the same random runs as
``test_run_state_twin`` (refusals, retries, failures, a node lost, a cancel, a takeover), in both
builds, and must show the same instructions, run state, histories, counters and demand after
every batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_run_state_twin as twin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import Cluster
from test_run_state_twin import STEPS, Driver, drive
from test_scheduler_twin import PURE, cluster, workloads

from handoffd.replication import log as rlog
from handoffd.scheduler import owner

pytestmark = pytest.mark.timeout(170)


def _told(run: Any, rec: Any, old: str, new: str) -> None:
    """A listener that does nothing: its presence alone sends every move the general way."""


def _generic_class(pure: bool) -> type:
    base = PURE["handoffd.scheduler.owner"].OwnerScheduler if pure else owner.OwnerScheduler

    class GeneralMoves(base):  # type: ignore[misc, valid-type]
        """The owner with a listener on each run it owns (submitted or taken over)."""

        def _own(self, run: Any) -> None:
            super()._own(run)
            run.listener = _told

    return GeneralMoves


GENERAL = {pure: _generic_class(pure) for pure in (False, True)}


def _general_cluster(pure: bool, nodes: Any, window: int, budget: float | None) -> Cluster:
    c = cluster(pure, nodes, window, budget)
    sched = GENERAL[pure]("owner", now=0.0, window=window, queue_seconds=budget)
    c.sched = sched
    c.t = 0.0
    c.feed(*[c.update(n) for n in nodes])
    return c


class WatchedDriver(Driver):
    """``Driver`` that also records what the owner tells the replication feed (``on_changes``:
    the moves a standby must know, and whether each went out to a node) after every batch."""

    make = staticmethod(cluster)

    def __init__(self, pure: bool, nodes: dict[str, Any], window: int, budget: float | None):
        self.told: list[tuple[str, str, bool]] = []
        super().__init__(pure, nodes, window, budget)
        self.c = self._cluster(pure, nodes, window, budget)

    def _cluster(self, pure: bool, nodes: Any, window: int, budget: float | None) -> Cluster:
        c = self.make(pure, nodes, window, budget)
        # (a block's moves one by one: the general move tells each alone)
        c.sched.on_changes = lambda changes: self.told.extend(rlog.each_move(changes))
        return c

    def took(self, out: list[Any]) -> None:
        super().took(out)
        self.trace.append(("told", tuple(self.told)))
        self.told.clear()

    def take_over(self) -> None:
        saved = twin.cluster
        twin.cluster = self._cluster  # type: ignore[assignment]
        try:
            super().take_over()
        finally:
            twin.cluster = saved


class GeneralDriver(WatchedDriver):
    """The same over the owner whose runs all have a listener (a takeover's new owner too)."""

    make = staticmethod(_general_cluster)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pure=st.booleans(),
    workload=workloads(),
    sizes=st.lists(st.sampled_from([1.0, 2.0, 4.0]), min_size=1, max_size=3),
    window=st.sampled_from([1, 4, 32]),
    budget=st.sampled_from([None, 0.005]),
    steps=STEPS,
)
def test_the_owners_own_moves_keep_what_the_general_move_keeps(
    pure: bool, workload: Any, sizes: list[float], window: int, budget: float | None, steps: Any
) -> None:
    specs, options = workload
    nodes = {f"n{i}": {"cpu": size, "mem": 10.0} for i, size in enumerate(sizes)}
    written = drive(WatchedDriver(pure, nodes, window, budget), specs, options, steps)
    general = drive(GeneralDriver(pure, nodes, window, budget), specs, options, steps)
    assert len(written) == len(general)
    for i, (w, g) in enumerate(zip(written, general, strict=True)):
        assert w == g, f"batch {i} differs"
