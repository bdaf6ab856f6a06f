"""The owner scheduler's invariants across its parts, checked by the tests after every event
(``OwnerScheduler.validate``): what is ACTIVE is charged to live nodes in the cluster view, what
is READY is in the ready queue, no DONE copy sits on a lost node, and each part's own checks."""

from __future__ import annotations

from typing import Any

from handoffd.scheduler.cluster_view import add_into
from handoffd.scheduler.run import ACTIVE, DONE, READY, RUN_RUNNING


def validate_owner(live: dict[str, Any], view: Any, lost: Any, rebalance: Any, ready: Any) -> None:
    """Raise AssertionError when an invariant is broken."""
    outstanding: dict[str, dict[str, float]] = {}
    work: dict[str, float] = {}
    queued: set[tuple[str, str]] = set()
    active: set[tuple[str, str]] = set()
    for run in live.values():
        run.validate()
        for rec in run.tasks.values():
            if rec.state in ACTIVE:
                assert rec.node is not None
                assert view.alive(rec.node), f"{rec.id} active on lost {rec.node}"
                add_into(outstanding.setdefault(rec.node, {}), rec.spec.cost, 1)
                if rec.charge:
                    work[rec.node] = work.get(rec.node, 0.0) + rec.charge
                active.add((run.run_id, rec.id))
            if rec.state == READY and not rec.delayed and run.state == RUN_RUNNING:
                queued.add((run.run_id, rec.id))
            if rec.state == DONE:
                bad = [n for n in rec.locations if not view.alive(n)]
                assert not bad, f"{rec.id} has copies on lost nodes {bad}"
    view.validate(outstanding, work)
    lost.validate(active)
    rebalance.validate()
    in_queue = ready.validate(live)
    assert queued == in_queue, f"ready queue {sorted(in_queue)} != {sorted(queued)}"
