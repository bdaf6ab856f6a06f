"""The lost-dispatch watch (``lost.LostMessages.check_answers``, the ``("ack", node)`` timer) gives
up every dispatch a node left unanswered and tells the node to cancel EACH of them, whatever else
goes out with them: the DispatchTasks may have arrived and only its reply been lost, and an
attempt left running there would execute the task a second time next to its new attempt.

Random runs on one to three nodes, windows of one to three: random dispatches (blocks of several
tasks to a node) are lost; when the ack timers fire, the owner's ``CancelAttempts`` name exactly
the attempts given up, each at its node; then the late yes arrives, the run ends with every task
done once with its current attempt's value. Both builds."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import dispatches, of_type, spec
from test_old_attempt_reports import _value, drain
from test_scheduler_twin import cluster

from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import ACK_TIMEOUT


def _cancelled(out: list[ev.Instruction]) -> list[tuple[str, str, int]]:
    return [(i.node, t, a) for i in of_type(out, ev.CancelAttempts) for t, a in i.items]


def drive(pure: bool, seed: int) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": float(rng.randint(2, 6)) for i in range(rng.randint(1, 3))}
    c = cluster(pure, nodes, window=rng.randint(1, 3), budget=None)
    n = rng.randint(2, 14)
    waiting = dispatches(c.submit("r", [spec(f"t{i}") for i in range(n)], max_retries=0))
    drop = [rng.random() < 0.6 for _ in waiting]
    drop[rng.randrange(len(waiting))] = True
    lost: list[tuple[str, str, int]] = []
    late: list[ev.Dispatch] = []
    for d, dropped in zip(waiting, drop, strict=True):
        if dropped:
            late.append(d)
            lost += [(d.node, item.task_id, item.attempt) for item in d.items]
        else:
            c.feed(*c.reply(d))
    c.t += ACK_TIMEOUT
    mark = len(c.log)
    cancelled: list[tuple[str, str, int]] = []
    for node in rng.sample(sorted(nodes), len(nodes)):
        cancelled += _cancelled(c.feed(ev.TimerFired(("ack", node))))
    assert sorted(cancelled) == sorted(lost)  # each given-up attempt once, at its node
    run = c.sched.run_state("r")
    assert run is not None
    for _, task_id, attempt in lost:
        assert run.tasks[task_id].attempt > attempt
    # The late yes: the node is told again to drop what it accepted (``_on_replied``).
    for d in late:
        answer = c.reply(d)
        out = c.feed(*answer)
        accepted = {(d.node, t, a) for t, a in answer[1].accepted}  # type: ignore[attr-defined]
        assert accepted <= set(_cancelled(out))
        for _, task_id, attempt in accepted:  # (the node cancels it: its claim goes back)
            if ("r", task_id, attempt) in c.costs:
                c.release(d.node, "r", task_id, attempt)
            for node in nodes:
                c.queue[node] = [q for q in c.queue[node] if q[1:3] != (task_id, attempt)]
    drain(c, run, nodes, mark)
    assert run.state == "DONE"
    assert run.tally["DONE"] == n and run.remaining == 0
    for task_id, rec in run.tasks.items():
        assert rec.completions == 1 and rec.value == _value(task_id, rec.attempt), task_id
    for node in nodes:
        assert c.sched.outstanding(node) == {}


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("pure", [False, True], ids=["built", "pure"])
def test_every_dispatch_the_ack_timer_gives_up_is_cancelled_at_its_node(
    pure: bool, seed: int
) -> None:
    drive(pure, seed)
