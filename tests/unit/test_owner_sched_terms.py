"""``OwnerScheduler.term_of``: a live run's term read from the scheduler's own run look-up (the
shell asks 4 times a one-task run), a released run's from what its release kept, None for a run
it does not own (never owned, forgotten, or dropped to another owner)."""

from __future__ import annotations

from scheduler_harness import Cluster

from handoffd.scheduler import events as ev
from handoffd.spec import TaskSpec


def test_a_runs_term_is_its_own_while_live_and_released_and_none_once_gone() -> None:
    cluster = Cluster({"a": 2.0})
    sched = cluster.sched
    sched.term = 3
    out = cluster.submit("r", [TaskSpec("t", (), {"cpu": 1.0}, b"p")])
    assert sched.term_of("r") == 3 and sched.term_of("other") is None
    run = sched.run_state("r")
    assert run is not None
    run.term = 5  # (a takeover's: the run's own term, not the scheduler's)
    assert sched.term_of("r") == 5
    (d,) = [i for i in out if isinstance(i, ev.Dispatch)]
    node_update, answered = cluster.reply(d)
    cluster.feed(node_update, answered)
    for task_id, attempt in answered.accepted:
        cluster.succeed(d.node, d.run_id, task_id, attempt)
    assert sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    sched.handle_batch([ev.ResultsReleased("r")], cluster.t)
    assert sched.run_state("r") is None and sched.term_of("r") == 5
    sched.forget("r")
    assert sched.term_of("r") is None
    cluster.submit("s", [TaskSpec("t", (), {"cpu": 1.0}, b"p")])
    assert sched.step_down("s") and sched.term_of("s") is None
