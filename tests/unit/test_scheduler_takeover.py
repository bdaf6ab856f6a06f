"""The scheduler's takeover part (``Takeover.restore``) on replicas merged with the nodes' answers
that disagree with the replica about where a collocation group runs.

Found by the state machine (test_scheduler_machine.py): a dispatch reached a node after it had
restarted (so it no longer knew the run's term) and after the run had moved its group elsewhere;
the next takeover adopted that attempt while the replica still named the other node as the
group's: the restored run was inconsistent (a member out away from its group)."""

from __future__ import annotations

from scheduler_harness import Cluster, dispatches, placed, spec

from handoffd.replication.takeover import Holdings, merge
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.run import ATTEMPT_STRIDE


def _group_on_one_node() -> tuple[dict, str, str]:
    """A run whose group (a, b collocated) went to one node; (its snapshot, that node, the other)."""
    c = Cluster({"n1": 1, "n2": 1})
    out = c.submit("r", [spec("a", cpu=0.5), spec("b", cpu=0.5, collocate_with="a")])
    (d,) = dispatches(out)
    assert sorted(i.task_id for i in d.items) == ["a", "b"]
    other = "n2" if d.node == "n1" else "n1"
    return c.sched.snapshot("r"), d.node, other


def _standby() -> OwnerScheduler:
    new = OwnerScheduler("standby", now=1.0, term=1)
    for n in ("n1", "n2"):
        new.handle(ev.NodeUpdate(n, n, True, {"cpu": 1.0}, {"cpu": 1.0}, 1), 1.0)
    return new


def test_a_group_follows_the_member_the_nodes_say_is_out() -> None:
    data, first, other = _group_on_one_node()
    # Only `other` answers, running a (the replica's group node `first` knows nothing).
    merged = merge(data, {other: Holdings({}, {"a": 1}), first: Holdings({}, {})})
    new = _standby()
    out = new.restore_run(merged, 1.0)
    new.validate()
    run = new.run_state("r")
    assert run is not None and run.pin_of("b") == other
    assert placed(out) == {"b": (other, ATTEMPT_STRIDE + 1)}  # b joins a where a runs


def test_a_member_out_apart_from_its_group_is_placed_again_with_it() -> None:
    data, first, other = _group_on_one_node()
    # a runs on `other` (a late dispatch), b on the group's node: the group follows a (its first
    # member out); b's attempt there runs for nothing and counts as a loss.
    merged = merge(data, {other: Holdings({}, {"a": 1}), first: Holdings({}, {"b": 1})})
    new = _standby()
    out = new.restore_run(merged, 1.0)
    new.validate()
    run = new.run_state("r")
    assert run is not None and run.pin_of("b") == other
    assert run.tasks["b"].losses == 1 and run.tasks["a"].state == "RUNNING"
    assert placed(out) == {"b": (other, ATTEMPT_STRIDE + 1)}
    assert new.outstanding(first) == {} and new.outstanding(other) == {"cpu": 1.0}
    new.handle(ev.TaskSucceeded("r", "b", 1, first, 10), 1.1)  # the stray attempt's report
    assert new.run_status("r").counts["DONE"] == 0  # type: ignore[union-attr]
