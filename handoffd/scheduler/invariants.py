"""The owner scheduler's invariants across its parts, checked by the tests after every event
(``OwnerScheduler.validate``): what is ACTIVE is charged to live nodes in the cluster view, what
is READY is in the ready queue, no DONE copy sits on a lost node, and each part's own checks."""

from __future__ import annotations

from typing import Any

from handoffd._core.api import EPS
from handoffd.scheduler.demand import add_into
from handoffd.scheduler.run_checks import OwnerTally, validate_run


def validate_owner(live: dict[str, Any], view: Any, lost: Any, rebalance: Any, ready: Any) -> None:
    """Raise AssertionError when an invariant is broken."""
    sums = OwnerTally(view, add_into)
    for run in live.values():
        validate_run(run, sums)  # (``run.validate()`` and the owner's rules, in one pass)
    outstanding, work, queued, active = sums.outstanding, sums.work, sums.queued, sums.active
    view.validate(outstanding, work)
    lost.validate(active)
    rebalance.validate()
    in_queue = ready.validate(live)
    assert queued == in_queue, f"ready queue {sorted(in_queue)} != {sorted(queued)}"


def validate_view(
    view: Any, outstanding: dict[str, dict[str, float]], work: dict[str, float] | None = None
) -> None:
    """``ClusterView.validate``: raise AssertionError unless the view's outstanding demand equals
    ``outstanding`` and its work ``work`` (both recomputed from the tasks), no unanswered dispatch
    is on a lost node and the room index holds what a full pass would build."""
    view._rooms.refresh(view)
    alive = [n for n in view.nodes.values() if n.alive]
    assert view._rooms.alive(view.nodes) == alive, "room index: live nodes out of step"
    rooms_of = {n.name: view.room_of(n) for n in alive}  # (a query: asked once a node)
    for n in alive:
        assert view._rooms.room.get(n.name) == rooms_of[n.name], f"room index: {n.name} stale"
    assert len(view._rooms.room) == len(alive), "room index holds a lost node"
    fillable = [n.name for n in alive if view.may_take_part(n)]
    assert view._rooms.fillable() == fillable, "room index: windows that may take part"
    rooms = view._rooms
    for n in alive:
        free = any(q > EPS for q in view.effective_free(n.name).values())
        load = view.outstanding.get(n.name, {})
        wave = any(q > 0.0 and q - load.get(k, 0.0) > 0.0 for k, q in n.capacity.items())
        hollow = not any(q > 0.0 for q in n.capacity.values())
        roomy = any(q > 0.0 for q in rooms_of[n.name].values())
        got = (
            n.name in rooms._with_free.members,
            n.name in rooms._with_wave.members,
            n.name in rooms._hollow,
            n.name in rooms._with_room.members,
        )
        assert got == (free, wave, hollow, roomy), f"room index: {n.name}'s sets {got}"
    top: dict[str, float] = {}
    for n in alive:
        for kind, q in n.capacity.items():
            top[kind] = max(top.get(kind, q), q)
    assert view._rooms.top(alive) == top, "room index: largest capacities"
    if work is not None:
        for node in set(work) | set(view.work):
            got, expect = view.work.get(node, 0.0), work.get(node, 0.0)
            assert abs(got - expect) <= 1e-6 * max(1.0, expect), (
                f"work on {node}: recorded {got}, tasks hold {expect}"
            )
    for node in set(outstanding) | set(view.outstanding):
        mine, want = view.outstanding.get(node, {}), outstanding.get(node, {})
        for kind in set(mine) | set(want):
            assert abs(mine.get(kind, 0.0) - want.get(kind, 0.0)) <= EPS, (
                f"outstanding on {node}: recorded {mine}, tasks hold {want}"
            )
    for node, sent in view.unacked.items():
        assert view.alive(node), f"unacked dispatches on lost {node}"
        summed: dict[str, float] = {}
        assert all(b.left for b in sent), f"an empty batch of unacked dispatches on {node}"
        for cost, _, _ in view.unacked_of(node).values():
            add_into(summed, cost, 1)
        have = view.pending.get(node, {})
        for kind in set(summed) | set(have):
            assert abs(have.get(kind, 0.0) - summed.get(kind, 0.0)) <= EPS, (
                f"pending on {node}: recorded {have}, unanswered dispatches hold {summed}"
            )
