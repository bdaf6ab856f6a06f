"""A run another owner took over (``OwnerScheduler.step_down``) takes ALL of its unanswered
dispatches off the nodes' pending cost (``Demand.forget_run``), each batch of several tasks in
full: what the node has room for is then what it reports free minus the unanswered dispatches of
the runs still ours, so the next run fills exactly that room. A batch taken back only in part
would hold room on the node for good (no answer for the run is taken any more).

Random runs on one or two nodes: two runs share the nodes, some of their dispatch blocks are
lost (never answered), the second run is stepped down, a third run of enough tasks arrives; its
placement on each node must be the node's free less the first run's unanswered cost. Both
builds."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import dispatches, placed, spec
from test_scheduler_twin import cluster


def drive(pure: bool, seed: int) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": float(rng.randint(2, 6)) for i in range(rng.randint(1, 2))}
    total = int(sum(nodes.values()))
    c = cluster(pure, nodes, window=1, budget=None)
    n0 = rng.randint(0, total - 2)
    n1 = rng.randint(2, total - n0)  # (all placed at once: both runs fit the nodes)
    unanswered = dict.fromkeys(nodes, 0)  # the first run's lost dispatches a node
    lost_of_dropped = 0
    for run_id, n in (("r0", n0), ("r1", n1)):
        if not n:
            continue
        waiting = dispatches(c.submit(run_id, [spec(f"{run_id}t{i}") for i in range(n)]))
        assert sum(len(d.items) for d in waiting) == n
        for d in waiting:
            if rng.random() < (0.4 if run_id == "r0" else 0.8):
                if run_id == "r0":
                    unanswered[d.node] += len(d.items)
                else:
                    lost_of_dropped += len(d.items)
            else:
                c.feed(*c.reply(d))
    assert c.sched.step_down("r1")
    c.sched.validate()
    # What each node has room for now: its free (r1's accepted tasks still run there, their
    # claims in it) less r0's dispatches it has not answered.
    room = {node: int(c.free(node)["cpu"]) - unanswered[node] for node in nodes}
    out = c.submit("r2", [spec(f"r2t{i}") for i in range(total)])
    got = dict.fromkeys(nodes, 0)
    for node, _ in placed(out).values():
        got[node] += 1
    assert got == room, (lost_of_dropped, unanswered)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("pure", [False, True], ids=["built", "pure"])
def test_a_stepped_down_runs_unanswered_batches_give_all_their_room_back(
    pure: bool, seed: int
) -> None:
    drive(pure, seed)
