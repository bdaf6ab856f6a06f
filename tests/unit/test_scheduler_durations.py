"""Binpack packs free resources, not queues: queued work is bounded by learned durations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scheduler_harness import Cluster, dispatches, placed, spec

from handoffd.scheduler import events as ev
from handoffd.scheduler.cluster_view import QUEUE_SECONDS, WINDOW
from handoffd.scheduler.durations import (
    UNKNOWN,
    UNKNOWN_CHARGE,
    Durations,
    function_key,
    share,
)


def test_durations_are_learned_per_function_then_per_shape() -> None:
    d = Durations(alpha=0.5)
    shape = (("cpu", 1.0),)
    assert d.estimate("f", shape) == UNKNOWN
    d.observe("f", shape, 1.0)
    assert d.estimate("f", shape) == 1.0
    d.observe("f", shape, 3.0)
    assert d.estimate("f", shape) == 2.0  # EWMA: halfway
    assert d.estimate("g", shape) == 2.0  # never seen: its cost shape's average
    assert d.estimate("g", (("cpu", 2.0),)) == UNKNOWN
    d.observe("f", shape, -1.0)  # not measured: nothing learned
    d.observe("f", shape, float("nan"))
    assert d.estimate("f", shape) == 2.0
    # work charged to a node: seconds x the task's share of it; unknown counts as long
    assert d.charge("f", shape, {"cpu": 1.0}, {"cpu": 4.0}) == 0.5
    assert d.charge("h", (("gpu", 1.0),), {"gpu": 1.0}, {"gpu": 2.0}) == UNKNOWN_CHARGE / 2
    assert share({"cpu": 1.0, "memory": 500.0}, {"cpu": 4.0, "memory": 1000.0}) == 0.5
    assert share({}, {"cpu": 4.0}) == 0.0


def test_durations_forget_the_oldest_function_past_the_bound() -> None:
    d = Durations(max_keys=2)
    for name in ("a", "b", "c"):
        d.observe(name, (), 1.0)
    assert set(d.by_function) == {function_key("b", ()), function_key("c", ())}


def _heterogeneous(queue_seconds: float | None = QUEUE_SECONDS) -> Cluster:
    return Cluster({"one": 1, "two_a": 2, "two_b": 2}, window=WINDOW, queue_seconds=queue_seconds)


@pytest.mark.parametrize("policy", ["binpack", "spread", "first_fit"])
def test_unknown_durations_are_placed_on_free_resources_only(policy: str) -> None:
    """The measured wedge of the issue: 20 one-second tasks on nodes of 1, 2 and 2 cpus. With the
    window alone binpack queued most of them on the 1-cpu node; now each node gets what it can
    start, and the rest wait at the owner until a node frees up."""
    c = _heterogeneous()
    out = c.submit("r", [spec(f"t{i}") for i in range(20)], policy=policy)
    where = placed(out)
    assert len(where) == 5
    per_node = {n: sum(1 for node, _ in where.values() if node == n) for n in c.capacity}
    assert per_node == {"one": 1, "two_a": 2, "two_b": 2}
    more = c.accept_all(out)
    assert not placed(more)  # nothing queued behind them
    # one finishes (1 s each): exactly one more goes, to the node that freed
    task, (node, attempt) = next(iter(where.items()))
    out = c.succeed(node, "r", task, attempt, duration=1.0)
    assert {n for n, _ in placed(out).values()} == {node} and len(placed(out)) == 1


@pytest.mark.parametrize("policy", ["binpack", "spread", "first_fit"])
@pytest.mark.parametrize("took", [None, 0.5])
def test_nodes_busy_with_other_owners_work_get_one_wave_of_ours_queued(
    policy: str, took: float | None
) -> None:
    """Every slot runs another owner's work: each node is given as many of our tasks as it has
    slots (they start there by priority as its slots free), never more, whatever their duration
    (unknown or learned). Before, one task per node: the rest waited at the owner, which sees
    such a node free only late."""
    c = Cluster(
        {"one": 1, "two_a": 2, "two_b": 2},
        free={"one": 0.0, "two_a": 0.0, "two_b": 0.0},
        window=WINDOW,
        queue_seconds=QUEUE_SECONDS,
    )
    if took is not None:
        for i in range(8):
            c.sched._view.durations.observe(f"t{i}", (("cpu", 1.0),), took)
    out = c.submit("r", [spec(f"t{i}", priority=10) for i in range(8)], policy=policy)
    out += c.accept_all(out)
    where = placed(c.log)
    per_node = {n: sum(1 for node, _ in where.values() if node == n) for n in c.capacity}
    assert per_node == {"one": 1, "two_a": 2, "two_b": 2}
    assert {n: len(q) for n, q in c.queue.items()} == per_node  # all queued behind the others
    # a slot frees on "one": our queued task starts there; nothing more is queued (its one
    # slot holds ours), and the next goes only when one of ours ends
    c.used["one"] = {}
    (started,) = c.start_queued("one")
    assert not placed(c.feed(c.update("one")))
    c.release("one", *started)
    out = c.feed(c.update("one"), ev.TaskSucceeded("r", started[1], started[2], "one", 1, None))
    assert [n for n, _ in placed(out).values()] == ["one"]


def test_a_node_half_ours_gets_its_other_half_queued() -> None:
    """One of a node's two slots runs our task, the other another owner's: one more of ours is
    queued there (it waits behind the other owner's work only), not two."""
    c = Cluster({"two": 2}, free={"two": 1.0}, window=WINDOW, queue_seconds=QUEUE_SECONDS)
    c.sched._view.durations.observe("t0", (("cpu", 1.0),), 1.0)
    out = c.submit("r", [spec(f"t{i}") for i in range(4)])
    out += c.accept_all(out)
    assert len(placed(c.log)) == 2 and len(c.queue["two"]) == 1


def test_depth_alone_is_what_the_issue_measured() -> None:
    """(The fallback without a time budget queues up to the window: 20 tasks all go at once.)"""
    c = _heterogeneous(queue_seconds=None)
    out = c.submit("r", [spec(f"t{i}") for i in range(20)], policy="binpack")
    out += c.accept_all(out)
    assert len(placed(c.log)) == 20


def test_tasks_known_to_be_tiny_are_queued_to_the_window_depth() -> None:
    c = Cluster({"n1": 1}, window=4, queue_seconds=QUEUE_SECONDS)
    out = c.submit("warm", [spec("f")])
    ((_, attempt),) = placed(out).values()
    c.accept_all(out)
    c.succeed("n1", "warm", "f", attempt, duration=0.0001)  # f takes 100 us
    out = c.submit("r", [spec("f", cpu=1.0)] + [spec(f"g{i}") for i in range(8)])
    c.accept_all(out)
    # f's own estimate and, for the g's (never seen), their cost shape's: all tiny. Only the
    # window's depth bounds them: 4 x 1 cpu.
    sent = [i.task_id for d in dispatches(c.log) if d.run_id == "r" for i in d.items]
    assert len(sent) == 4


def test_a_node_busy_with_long_work_gets_nothing_queued_however_short_the_task() -> None:
    c = Cluster({"n1": 1, "n2": 1}, window=8, queue_seconds=QUEUE_SECONDS)
    out = c.submit("long", [spec("slow"), spec("slow2")])
    c.accept_all(out)
    where = placed(out)
    slow_node, slow_attempt = where["slow"]
    c.succeed(slow_node, "long", "slow", slow_attempt, duration=2.0)  # slow: 2 s
    # the freed node takes a short task now; learn it is short
    out = c.submit("short", [spec("quick", cpu=0.5, cost={"cpu": 0.5}, priority=0)])
    c.accept_all(out)
    ((node, attempt),) = placed(out).values()
    c.succeed(node, "short", "quick", attempt, duration=0.0001)
    # n? still runs slow2 (unknown, charged as long): many short tasks go only to the free node,
    # queued there up to the time budget, never behind slow2
    busy = where["slow2"][0]
    out = c.submit("many", [spec(f"q{i}", cost={"cpu": 0.5}) for i in range(40)])
    out += c.accept_all(out)
    nodes = [n for d in dispatches(c.log) if d.run_id == "many" for n in [d.node]]
    assert busy not in nodes and nodes


@settings(max_examples=60, deadline=None)
@given(
    took=st.lists(st.sampled_from([0.00005, 0.0005, 0.004, 0.05, 1.0]), min_size=1, max_size=40),
    cpus=st.tuples(st.sampled_from([1, 2, 4]), st.sampled_from([1, 2])),
)
def test_queued_work_never_exceeds_the_time_budget_plus_one_task(
    took: list[float], cpus: tuple[int, int]
) -> None:
    """Whatever durations were learned, a node's work (expected seconds to drain what we gave
    it) is what starts at once (at most the longest task) or the time budget plus the last task
    queued (a node takes a task while its budget is positive)."""
    c = Cluster({"n1": cpus[0], "n2": cpus[1]}, window=WINDOW, queue_seconds=QUEUE_SECONDS)
    for i, seconds in enumerate(took):
        c.sched._view.durations.observe(f"t{i}", (("cpu", 1.0),), seconds)
    c.accept_all(c.submit("r", [spec(f"t{i}") for i in range(len(took))]))
    view = c.sched._view
    longest = max(took)
    for node in ("n1", "n2"):
        bound = max(longest, QUEUE_SECONDS + longest / c.capacity[node]["cpu"])
        assert view.work.get(node, 0.0) <= bound + 1e-9
