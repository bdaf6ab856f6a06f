"""OwnerScheduler: events in, instructions out, with ``validate()`` after every event.

``Cluster`` plays the executing nodes: each keeps its own ledger and accepts a dispatch only if the
ledger allows, like a real node; it reports its free resources with a bumped version on every change.
"""

from __future__ import annotations

import random

import pytest
from scheduler_harness import CPU, Cluster, dispatches, of_type, placed, spec

from handoffd.errors import RunCancelled, TaskFailed, Timeout, Unschedulable, ValidationError
from handoffd.resources import add, fits, subtract
from handoffd.scheduler import events as ev
from handoffd.spec import TaskSpec


def test_chain_dispatches_one_after_another_with_input_refs() -> None:
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("a"), spec("b", "a"), spec("c", "b")])
    assert of_type(out, ev.SubmissionAccepted) == [ev.SubmissionAccepted("r")]
    assert placed(out) == {"a": ("n1", 1)}
    c.accept_all(out)
    out = c.succeed("n1", "r", "a", 1, size=50)
    assert placed(out) == {"b": ("n1", 1)}
    assert dispatches(out)[0].items[0].inputs == (ev.ValueRef("a", ("n1",), None),)
    c.accept_all(out)
    out = c.succeed("n1", "r", "b", 1, value=b"B")
    assert dispatches(out)[0].items[0].inputs == (ev.ValueRef("b", ("n1",), b"B"),)
    c.accept_all(out)
    out = c.succeed("n1", "r", "c", 1)
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE", None)]
    assert c.sched.run_status("r").counts["DONE"] == 3  # type: ignore[union-attr]
    assert c.sched.result_location("r", "b") == (b"B", ("n1",))


def test_diamond_inputs_arrive_in_args_order_and_join_waits_for_both() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "c", "b")]))
    out = c.succeed("n1", "r", "a", 1, value=b"A")
    assert set(placed(out)) == {"b", "c"}
    where = placed(out)
    c.accept_all(out)
    out = c.succeed(where["c"][0], "r", "c", 1, value=b"C")
    assert placed(out) == {}  # d still waits for b
    out = c.succeed(where["b"][0], "r", "b", 1, size=1000)
    (item,) = dispatches(out)[0].items
    assert item.task_id == "d"
    assert [ref.task_id for ref in item.inputs] == ["c", "b"]  # args order, not completion order
    assert item.inputs[0] == ev.ValueRef("c", (where["c"][0],), b"C")
    assert item.inputs[1] == ev.ValueRef("b", (where["b"][0],), None)
    # Locality: d goes where b's 1000 bytes are.
    assert dispatches(out)[0].node == where["b"][0]


def test_inline_functions_are_never_dispatched_and_travel_as_nested_refs() -> None:
    c = Cluster({"n1": 4})
    specs = [
        spec("a"),
        spec("i", "a", inline=True, argument_inclusion="as_list"),
        spec("b", "i", "a"),
    ]
    out = c.submit("r", specs)
    assert placed(out) == {"a": ("n1", 1)}
    c.accept_all(out)
    out = c.succeed("n1", "r", "a", 1, value=b"A")
    (item,) = dispatches(out)[0].items
    a_ref = ev.ValueRef("a", ("n1",), b"A")
    assert item.inputs == (ev.InlineRef("i", b"i", "as_list", (a_ref,)), a_ref)
    c.accept_all(out)
    out = c.succeed("n1", "r", "b", 1)
    assert of_type(out, ev.RunFinished)[0].state == "DONE"
    assert "i" not in c.sched.run_status("r").placement  # type: ignore[union-attr]
    assert sum(c.sched.run_status("r").counts.values()) == 2  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        c.sched.result_location("r", "i")


# -- placement ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "expected"), [("binpack", "small"), ("spread", "big")])
def test_policy_is_visible_in_node_choice(policy: str, expected: str) -> None:
    c = Cluster({"small": 8, "mid": 8, "big": 8}, free={"small": 2, "mid": 4, "big": 8})
    out = c.submit("r", [spec("t", cpu=2)], policy=policy)
    assert placed(out) == {"t": (expected, 1)}


def test_pin_goes_to_its_node() -> None:
    c = Cluster({"n1": 8, "n2": 8, "n3": 1})
    out = c.submit("r", [spec("t", node="n3"), spec("u")])
    assert placed(out)["t"] == ("n3", 1)


def test_pin_to_unknown_node_is_rejected() -> None:
    c = Cluster({"n1": 8})
    out = c.submit("r", [spec("t", node="ghost")])
    (rejected,) = of_type(out, ev.SubmissionRejected)
    assert isinstance(rejected.error, ValidationError) and rejected.error.kind == "unknown_node"
    assert c.sched.runs() == []


def test_collocated_group_goes_where_its_summed_cost_fits() -> None:
    c = Cluster({"n1": 4, "n2": 4, "big": 8}, free={"big": 6})
    specs = [
        spec("a", cpu=3),
        spec("b", cpu=3, collocate_with="a"),
        spec("c", "a", collocate_with="b"),
    ]
    out = c.submit("r", specs)
    # a + b + c = 7 cpu fit no node now... but capacity holds 7 only on big: the group waits there.
    assert placed(out) == {}
    c.used["big"] = {}
    out = c.feed(c.update("big"))
    assert placed(out) == {"a": ("big", 1), "b": ("big", 1)}  # members land together
    c.accept_all(out)
    out = c.succeed("big", "r", "a", 1)
    assert placed(out) == {"c": ("big", 1)}  # a later member is pinned to the group's node


def test_collocated_group_too_big_for_any_node_is_unschedulable() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    out = c.submit("r", [spec("a", cpu=3), spec("b", cpu=3, collocate_with="a")])
    (rejected,) = of_type(out, ev.SubmissionRejected)
    assert isinstance(rejected.error, Unschedulable)
    assert rejected.error.need == {CPU: 6.0} and rejected.error.largest == {CPU: 4.0}
    assert "collocated" in str(rejected.error)


def test_unschedulable_at_submit_names_task_need_and_largest_and_leaks_nothing() -> None:
    c = Cluster({"n1": 4, "n2": {CPU: 8, "memory": 100}})
    out = c.submit("r", [spec("ok"), spec("huge", cost={CPU: 16, "memory": 10})])
    assert [type(i) for i in out] == [ev.SubmissionRejected]
    error = out[0].error  # type: ignore[union-attr]
    assert isinstance(error, Unschedulable)
    assert error.function_id == "huge" and error.need == {CPU: 16, "memory": 10}
    assert error.largest == {CPU: 8, "memory": 100}
    assert "'huge'" in str(error) and "16" in str(error) and "8" in str(error)
    assert c.sched.runs() == [] and c.sched.run_status("r") is None
    assert c.sched.outstanding("n1") == {} and c.sched.effective_free("n2") == {
        CPU: 8,
        "memory": 100,
    }
    # The same id can be submitted again once fixed.
    out = c.submit("r", [spec("ok")])
    assert of_type(out, ev.SubmissionAccepted) and placed(out) == {"ok": ("n1", 1)}


def test_priority_wins_when_resources_are_scarce() -> None:
    c = Cluster({"n1": 1})
    out = c.submit("r", [spec("low1"), spec("high", priority=5), spec("low2")])
    assert placed(out) == {"high": ("n1", 1)}
    c.accept_all(out)
    out = c.succeed("n1", "r", "high", 1)
    assert list(placed(out)) == ["low1"]


def test_critical_path_first_among_equal_priority() -> None:
    c = Cluster({"n1": 1})
    out = c.submit("r", [spec("leaf"), spec("head"), spec("mid", "head"), spec("tail", "mid")])
    assert list(placed(out)) == ["head"]


def test_waits_for_capacity_then_dispatches_on_node_update() -> None:
    c = Cluster({"n1": 2}, free={"n1": 0})
    out = c.submit("r", [spec("t", cpu=2)])
    assert of_type(out, ev.SubmissionAccepted) and placed(out) == {}
    assert c.sched.run_status("r").counts["READY"] == 1  # type: ignore[union-attr]
    c.used["n1"] = {CPU: 1}
    assert placed(c.feed(c.update("n1"))) == {}
    c.used["n1"] = {}
    assert placed(c.feed(c.update("n1"))) == {"t": ("n1", 1)}


def test_stale_resource_version_does_not_replace_free() -> None:
    c = Cluster({"n1": 2}, free={"n1": 0})
    c.submit("r", [spec("t", cpu=2)])
    old = ev.NodeUpdate("n1", "n1", True, {CPU: 2}, {CPU: 2}, c.version["n1"] - 1)
    assert placed(c.feed(old)) == {}


def test_refused_task_is_replaced_elsewhere_on_a_fresher_view() -> None:
    c = Cluster({"n1": 4, "n2": 4}, free={"n1": 1, "n2": 4})
    out = c.submit("r", [spec("t")])
    assert placed(out) == {"t": ("n1", 1)}  # binpack: fullest
    c.used["n1"] = {CPU: 4}  # another owner took n1 meanwhile
    out = c.feed(*c.reply(dispatches(out)[0]))
    assert placed(out) == {"t": ("n2", 2)}


def test_refusal_without_a_view_change_waits_for_the_timer() -> None:
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("t")])
    d = dispatches(out)[0]
    out = c.feed(ev.DispatchAnswered("n1", "r", (), (("t", 1, "draining"),)))
    assert placed(out) == {}  # no spin on the same stale view
    assert ev.StartTimer(("refused",), 0.05) in out
    out = c.feed(ev.TimerFired(("refused",)))
    assert placed(out) == {"t": ("n1", 2)} and d.items[0].attempt == 1


# -- retries and stale reports ----------------------------------------------------------------------


def _run_until_failed(c: Cluster, run_id: str, task: str) -> tuple[int, list[float]]:
    """Fail every attempt of ``task``; return (attempts dispatched, retry delays)."""
    attempts, delays = 0, []
    out = c.log[-5:]
    while True:
        where = placed(out)
        if task not in where:
            return attempts, delays
        node, attempt = where[task]
        attempts += 1
        c.accept_all(out)
        out = c.error(node, run_id, task, attempt)
        timers = [t for t in of_type(out, ev.StartTimer) if t.key[0] == "retry"]
        if of_type(out, ev.RunFinished):
            assert not timers
            return attempts, delays
        (timer,) = timers
        delays.append(timer.delay)
        assert placed(out) == {}  # backoff first
        out = c.feed(ev.TimerFired(timer.key))


def test_max_retries_one_means_two_attempts_then_fail_fast() -> None:
    c = Cluster({"n1": 4})
    c.submit("r", [spec("bad"), spec("after", "bad"), spec("other", cpu=1)], max_retries=1)
    attempts, delays = _run_until_failed(c, "r", "bad")
    assert attempts == 2 and delays == [0.05]
    (finished,) = of_type(c.log, ev.RunFinished)
    assert finished.state == "FAILED" and isinstance(finished.error, TaskFailed)
    assert finished.error.function_id == "bad" and finished.error.attempts == 2
    assert finished.error.exc_type == "ValueError" and finished.error.exc_message == "bad 2"
    # The still-running sibling is cancelled; nothing downstream ever started.
    assert of_type(c.log, ev.CancelAttempts) == [ev.CancelAttempts("n1", "r", (("other", 1),))]
    assert "after" not in {i.task_id for d in dispatches(c.log) for i in d.items}
    status = c.sched.run_status("r")
    assert status is not None and status.state == "FAILED" and status.counts["FAILED"] == 1
    assert c.sched.outstanding("n1") == {}


def test_task_level_zero_retries_overrides_run_level_five() -> None:
    c = Cluster({"n1": 4})
    c.submit("r", [spec("bad", max_retries=0)], max_retries=5)
    assert _run_until_failed(c, "r", "bad") == (1, [])


def test_backoff_grows_exponentially() -> None:
    c = Cluster({"n1": 4})
    c.submit("r", [spec("bad")], max_retries=3)
    assert _run_until_failed(c, "r", "bad") == (4, [0.05, 0.1, 0.2])


def test_stale_attempt_and_unknown_run_reports_are_ignored() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("t"), spec("u", "t")]))
    out = c.error("n1", "r", "t", 1)
    c.feed(ev.TimerFired(of_type(out, ev.StartTimer)[0].key))
    assert placed(c.log[-5:]) == {"t": ("n1", 2)}
    # A late success of attempt 1 (at-least-once execution) is not accepted.
    out = c.feed(ev.TaskSucceeded("r", "t", 1, "n1", 10, b"old"))
    assert placed(out) == {} and c.sched.run_status("r").counts["DONE"] == 0  # type: ignore[union-attr]
    out = c.feed(ev.TaskErrored("r", "t", 1, "n1", "error", "X", "late"))
    assert out == []
    assert (
        c.feed(ev.TaskSucceeded("nope", "t", 1, "n1", 1), ev.TaskStarted("nope", "t", 1, "n1"))
        == []
    )
    # Wrong node for the current attempt: ignored too.
    assert c.feed(ev.TaskSucceeded("r", "t", 2, "elsewhere", 10)) == []
    c.accept_all(c.log[-10:])
    out = c.succeed("n1", "r", "t", 2, value=b"new")
    assert placed(out) == {"u": ("n1", 1)}
    assert c.sched.result_location("r", "t") == (b"new", ("n1",))
    assert c.feed(ev.TaskSucceeded("r", "t", 2, "n1", 10, b"dup")) == []  # exactly-once acceptance


# -- node loss --------------------------------------------------------------------------------------


def test_node_lost_mid_run_redispatches_with_next_attempt_elsewhere() -> None:
    c = Cluster({"n1": 4, "n2": 4}, free={"n1": 2, "n2": 4})
    out = c.submit("r", [spec("t"), spec("s")])
    assert placed(out) == {"t": ("n1", 1), "s": ("n1", 1)}
    c.accept_all(out)
    c.feed(ev.TaskStarted("r", "t", 1, "n1"))
    out = c.kill("n1")
    assert placed(out) == {"t": ("n2", 2), "s": ("n2", 2)}
    assert c.sched.outstanding("n1") == {} and c.sched.outstanding("n2") == {CPU: 2}
    assert of_type(out, ev.CancelAttempts) == []  # never to a dead node
    assert c.feed(ev.TaskSucceeded("r", "t", 1, "n1", 1)) == []  # the dead node's late report


def test_lineage_recompute_of_a_lost_result_still_needed() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a"), spec("small"), spec("b", "a", "small", cpu=4)]))
    c.used["n2"] = {CPU: 4}  # n2 busy with another owner's work
    c.feed(c.update("n2"))
    c.succeed("n1", "r", "small", 1, value=b"S")
    out = c.succeed("n1", "r", "a", 1, size=10_000)
    assert placed(out) == {"b": ("n1", 1)}
    c.used["n1"] = {CPU: 4}  # b is refused: n1 filled up meanwhile; b waits
    out = c.feed(*c.reply(dispatches(out)[0]))
    assert placed(out) == {}
    c.used["n2"] = {}
    c.feed(c.update("n2"))
    status = c.sched.run_status("r")
    assert status is not None and status.placement["b"] == "n2"
    c.accept_all(dispatches(c.log[-3:]))
    out = c.kill("n1")  # a's only copy dies before b started; small's copy is on the owner
    assert of_type(out, ev.CancelAttempts) == [ev.CancelAttempts("n2", "r", (("b", 2),))]
    assert placed(out) == {}  # n2 is still busy with b's claim until it reports
    c.release("n2", "r", "b", 2)
    out = c.feed(c.update("n2"))
    assert placed(out) == {"a": ("n2", 2)}
    c.accept_all(out)
    out = c.succeed("n2", "r", "a", 2, size=10_000)
    (item,) = dispatches(out)[0].items
    assert item.task_id == "b" and item.attempt == 3
    assert item.inputs == (ev.ValueRef("a", ("n2",), None), ev.ValueRef("small", (), b"S"))
    c.accept_all(out)
    out = c.succeed("n2", "r", "b", 3)
    assert of_type(out, ev.RunFinished)[0].state == "DONE"
    moves = [h[1:3] for h in c.sched.history("r", "a")]
    assert moves[moves.index(("ASSIGNED", "DONE")) + 1 :][:4] == [
        ("DONE", "PENDING"),
        ("PENDING", "READY"),
        ("READY", "ASSIGNED"),
        ("ASSIGNED", "DONE"),
    ]


def test_done_run_stays_done_when_an_output_is_lost_and_reopens_only_when_asked() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a")]))
    c.succeed("n1", "r", "a", 1, size=100)
    c.accept_all(c.submit("q", [spec("b")]))
    c.succeed("n1", "q", "b", 1, size=100)
    c.feed(ev.ResultsReleased("q"))
    assert of_type(c.log, ev.FreeResults) == [ev.FreeResults("q", ("n1",))]
    out = c.kill("n1")
    assert placed(out) == {}  # a finished run runs nothing again by itself
    assert c.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    assert c.sched.run_status("q").state == "DONE"  # type: ignore[union-attr]
    out = c.feed(ev.ValuesWanted("q", ("b",)))  # released: nothing to recompute
    assert placed(out) == {}
    out = c.feed(ev.ValuesWanted("r", ("a",)))  # a client asks for the lost value
    assert placed(out) == {"a": ("n2", 2)}
    assert c.sched.run_status("r").state == "RUNNING"  # type: ignore[union-attr]
    c.accept_all(out)
    assert of_type(c.succeed("n2", "r", "a", 2), ev.RunFinished) == [ev.RunFinished("r", "DONE")]


def test_a_lost_value_asked_for_whose_task_fits_no_live_node_fails_the_run() -> None:
    """Found by the lossy state machine: the only node big enough died with the value of a DONE
    run; the client's ask reopened the run with its task READY and nothing could ever place it
    (the run stayed RUNNING for good). Now the ask fails it, naming the cost."""
    c = Cluster({"n1": 2, "n2": 1})
    c.accept_all(c.submit("r", [spec("big", cpu=2.0)]))
    c.succeed("n1", "r", "big", 1, size=100)
    c.kill("n1")
    assert c.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    out = c.feed(ev.ValuesWanted("r", ("big",)))
    (finished,) = of_type(out, ev.RunFinished)
    assert finished.state == "FAILED" and isinstance(finished.error, Unschedulable)
    assert "big" in str(finished.error)


def test_pinned_task_whose_node_is_lost_fails_the_run() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a", node="n2"), spec("b", "a", node="n1"), spec("x")]))
    out = c.kill("n1")
    (finished,) = of_type(out, ev.RunFinished)
    assert finished.state == "FAILED" and isinstance(finished.error, Unschedulable)
    assert finished.error.function_id == "b" and "n1" in str(finished.error)
    cancelled = {(x.node, item) for x in of_type(out, ev.CancelAttempts) for item in x.items}
    assert cancelled == {("n2", ("a", 1)), ("n2", ("x", 1))}  # x: binpack filled n2 first


def test_losing_the_only_big_node_makes_a_ready_task_unschedulable() -> None:
    c = Cluster({"small": 2, "big": 8}, free={"big": 0})
    c.submit("r", [spec("t", cpu=6)])
    out = c.kill("big")
    (finished,) = of_type(out, ev.RunFinished)
    assert isinstance(finished.error, Unschedulable) and finished.error.largest == {CPU: 2}


# -- cancel, release, deadline ----------------------------------------------------------------------


def test_cancel_stops_everything_and_reports_cancelled() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    out = c.submit("r", [spec("a", cpu=4), spec("b", cpu=4), spec("c", "a")])
    c.accept_all(out)
    out = c.feed(ev.CancelRequested("r"))
    cancels = {(x.node, x.items) for x in of_type(out, ev.CancelAttempts)}
    assert cancels == {("n1", (("a", 1),)), ("n2", (("b", 1),))} or cancels == {
        ("n2", (("a", 1),)),
        ("n1", (("b", 1),)),
    }
    (finished,) = of_type(out, ev.RunFinished)
    assert finished.state == "CANCELLED" and isinstance(finished.error, RunCancelled)
    assert c.sched.run_status("r").counts["CANCELLED"] == 3  # type: ignore[union-attr]
    assert c.sched.outstanding("n1") == {} and c.sched.outstanding("n2") == {}
    assert c.feed(ev.CancelRequested("r")) == []
    node = c.sched.run_status("r").placement["a"]  # type: ignore[union-attr]
    out = c.feed(ev.TaskSucceeded("r", "a", 1, node, 1))
    assert placed(out) == {} and not of_type(out, ev.RunFinished)


def test_results_released_frees_every_holder() -> None:
    c = Cluster({"n1": 1, "n2": 1})
    c.accept_all(c.submit("r", [spec("a"), spec("b")]))
    where = c.sched.run_status("r").placement  # type: ignore[union-attr]
    assert set(where.values()) == {"n1", "n2"}
    assert c.feed(ev.ResultsReleased("r")) == []  # not finished yet: nothing to free
    for tid, node in where.items():
        c.succeed(node, "r", tid, 1)
    out = c.feed(ev.ResultsReleased("r"))
    assert out == [ev.FreeResults("r", ("n1", "n2"))]
    assert c.sched.result_location("r", "a") == (None, ())
    assert c.feed(ev.TaskSucceeded("r", "a", 1, "n1", 1)) == [ev.FreeResults("r", ("n1",))]


def test_run_deadline_fails_the_run() -> None:
    c = Cluster({"n1": 1})
    out = c.submit("r", [spec("a")], timeout=30.0)
    assert ev.StartTimer(("deadline", "r"), 30.0) in out
    out = c.feed(ev.TimerFired(("deadline", "r")))
    (finished,) = of_type(out, ev.RunFinished)
    assert finished.state == "FAILED" and isinstance(finished.error, Timeout)
    assert of_type(out, ev.CancelAttempts) == [ev.CancelAttempts("n1", "r", (("a", 1),))]


# -- several runs -----------------------------------------------------------------------------------


def test_two_runs_sharing_nodes_never_overcommit_the_view() -> None:
    c = Cluster({"n1": 4, "n2": 2})
    out = c.submit("r1", [spec(f"a{i}") for i in range(5)]) + c.submit(
        "r2", [spec(f"b{i}") for i in range(5)]
    )
    # Nothing acknowledged yet: the owner may not send more than each node reported free.
    per_node: dict[str, float] = {}
    for d in dispatches(out):
        per_node[d.node] = per_node.get(d.node, 0.0) + sum(i.cost[CPU] for i in d.items)
    assert per_node == {"n1": 4.0, "n2": 2.0}
    assert len(placed(c.log)) == 6
    assert len({(d.node, d.run_id) for d in dispatches(out)}) == len(dispatches(out))  # batched


def test_four_whole_node_runs_on_two_nodes_take_turns() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    out: list[ev.Instruction] = []
    for i in range(4):
        out += c.submit(f"r{i}", [spec("t", cpu=4)])
    first = {d.run_id: d.node for d in dispatches(out)}
    assert sorted(first) == ["r0", "r1"] and sorted(first.values()) == ["n1", "n2"]
    c.accept_all(out)
    out = c.succeed(first["r0"], "r0", "t", 1)
    assert [(d.run_id, d.node) for d in dispatches(out)] == [("r2", first["r0"])]
    c.accept_all(out)
    out = c.succeed(first["r1"], "r1", "t", 1)
    assert [(d.run_id, d.node) for d in dispatches(out)] == [("r3", first["r1"])]
    c.accept_all(out)
    for run_id, node in (("r2", first["r0"]), ("r3", first["r1"])):
        assert of_type(c.succeed(node, run_id, "t", 1), ev.RunFinished)


# -- at scale --------------------------------------------------------------------------------------


def _random_dag(rng: random.Random, n: int, prefix: str) -> list[TaskSpec]:
    specs = []
    for i in range(n):
        deps = tuple(
            f"{prefix}{j}" for j in rng.sample(range(max(0, i - 50), i), min(i, rng.randint(0, 3)))
        )
        cost = {CPU: float(rng.choice([1, 1, 2, 4]))}
        if rng.random() < 0.2:
            cost["memory"] = float(rng.choice([100, 500, 2000]))
        specs.append(TaskSpec(f"{prefix}{i}", deps, cost, b"", priority=rng.choice([0, 0, 0, 1])))
    return specs


def test_at_scale_every_task_finishes_exactly_once() -> None:
    """5000 tasks over 200 nodes in one fixed sequence: the batch limits of placement (a batch,
    consecutive misses, many shapes) only come into play at this size. Random event sequences at
    small scale, which shrink to a minimal failing one, are test_scheduler_machine.py's."""
    seed, kills, window = 4, 3, 4
    rng = random.Random(seed)
    nodes = {
        f"n{i:03d}": {CPU: float(rng.choice([4, 8, 16])), "memory": 4000.0} for i in range(200)
    }
    c = Cluster(nodes, window=window)  # type: ignore[arg-type]
    runs = {f"run{k}": _random_dag(rng, 1250, f"r{k}t") for k in range(4)}
    total = sum(len(s) for s in runs.values())
    out: list[ev.Instruction] = []
    for run_id, specs in runs.items():
        out += c.submit(run_id, specs, max_retries=6)
    pending = dispatches(out)
    timers: list[ev.StartTimer] = of_type(out, ev.StartTimer)  # (the intake's next slices)
    running: list[tuple[str, str, str, int]] = []  # (node, run, task, attempt)
    finished: dict[str, str] = {}
    kill_at = sorted(rng.sample(range(5, 60), kills))
    foreign: dict[str, int] = {}  # 0.5-cpu pieces of other owners' work per node
    steps = 0
    while len(finished) < len(runs):
        steps += 1
        assert steps < 5_000, "simulation did not converge"
        events: list[ev.Event] = [ev.TimerFired(t.key) for t in timers]
        timers = []
        # Nodes answer the dispatches in random order; each node's ledger has the last word.
        rng.shuffle(pending)
        for d in pending:
            if not c.alive[d.node]:
                continue
            if rng.random() < 0.05:
                c.used[d.node] = add(c.used[d.node], {CPU: 0.5})  # another owner's work squeezes in
                foreign[d.node] = foreign.get(d.node, 0) + 1
            replies = c.reply(d)
            events += replies
            queued = {(r, t, a) for r, t, a, _ in c.queue[d.node]}
            running += [
                (d.node, d.run_id, t, a)
                for t, a in replies[1].accepted  # type: ignore[union-attr]
                if (d.run_id, t, a) not in queued  # started at once, not queued
            ]
        pending = []
        # Finish a random subset of running tasks in random order: a few fail, a few report twice.
        rng.shuffle(running)
        cut = rng.randint(0, len(running))
        for node, run_id, task, attempt in running[:cut]:
            c.release(node, run_id, task, attempt)
            events.append(c.update(node))
            if rng.random() < 0.03:
                events.append(ev.TaskErrored(run_id, task, attempt, node, "error", "E", "flaky"))
                continue
            value = b"v" if rng.random() < 0.5 else None
            report = ev.TaskSucceeded(run_id, task, attempt, node, 100, value)
            events += [report, report] if rng.random() < 0.05 else [report]
        running = running[cut:]
        for name in nodes:  # queued tasks start as the ledger frees up, without the owner
            if c.alive[name] and c.queue[name]:
                started = c.start_queued(name)
                if started:
                    events.append(c.update(name))
                    running += [(name, r, t, a) for r, t, a in started]
        if steps % 7 == 0:  # foreign work ends now and then so nothing starves
            for name in nodes:
                if c.alive[name] and foreign.get(name):
                    foreign[name] -= 1
                    c.used[name] = subtract(c.used[name], {CPU: 0.5})
                    events.append(c.update(name))
        if kill_at and steps == kill_at[0]:
            kill_at.pop(0)
            victim = rng.choice([n for n in nodes if c.alive[n]])
            c.alive[victim] = False
            events.append(
                ev.NodeUpdate(victim, victim, False, nodes[victim], {}, c.version[victim])
            )
            running = [r for r in running if r[0] != victim]
            c.queue[victim] = []
        out = c.feed(*events)
        timers = of_type(out, ev.StartTimer)
        pending = dispatches(out)
        for d in pending:  # never more than the node's view allowed
            assert c.alive[d.node]
        for f in of_type(out, ev.RunFinished):
            assert f.state == "DONE", f
            finished[f.run_id] = f.state
        for name in nodes:  # outstanding demand stays within the window
            if c.alive[name]:
                bound = {k: q * window for k, q in nodes[name].items()}
                assert c.sched.outstanding(name) == {} or fits(c.sched.outstanding(name), bound)
    recomputed = 0
    for run_id, specs in runs.items():
        status = c.sched.run_status(run_id)
        assert status is not None and status.counts["DONE"] == len(specs)
        for s in specs:
            moves = [h[1:3] for h in c.sched.history(run_id, s.id)]
            lost = moves.count(("DONE", "PENDING")) + moves.count(("DONE", "READY"))
            accepted = sum(1 for m in moves if m[1] == "DONE")
            assert accepted == 1 + lost, (run_id, s.id, moves)  # exactly once per computation
            recomputed += lost
    if kills == 0:
        assert recomputed == 0
    assert all(c.sched.outstanding(n) == {} for n in nodes)
    assert total == 5000


# -- the dispatch window (pipelining) ---------------------------------------------------------------


def test_window_dispatches_beyond_free_up_to_window_times_capacity() -> None:
    c = Cluster({"n1": 1}, window=4)
    out = c.submit("r", [spec(f"t{i}") for i in range(10)])
    assert sorted(placed(out)) == ["t0", "t1", "t2", "t3"]  # 1 running + 3 queued on the node
    assert c.sched.outstanding("n1") == {CPU: 4.0}  # outstanding demand, not the node's ledger
    more = c.accept_all(out)
    assert placed(more) == {}  # the window is full
    more = c.succeed("n1", "r", "t0", 1)
    assert sorted(placed(more)) == ["t4"]  # one finished: one more joins the queue


def test_window_spreads_queued_demand_by_policy_and_never_past_capacity() -> None:
    c = Cluster({"n1": 2, "n2": 1}, window=2)
    out = c.submit("r", [spec(f"t{i}") for i in range(8)], policy="spread")
    where = placed(out)
    assert sum(n == "n1" for n, _ in where.values()) == 4  # window 2 x capacity 2
    assert sum(n == "n2" for n, _ in where.values()) == 2
    # Both busy (other owners' work): a 2-cpu task queues only where its capacity allows.
    c = Cluster({"n1": 1, "n2": 2}, free={"n1": 0, "n2": 0}, window=4)
    assert placed(c.submit("r", [spec("big", cpu=2)])) == {"big": ("n2", 1)}


def test_window_keeps_pins_and_collocation_groups_honest() -> None:
    c = Cluster({"n1": 1, "n2": 1}, window=3)
    specs = [spec(f"p{i}", node="n2") for i in range(5)]
    specs += [spec("a"), spec("b", collocate_with="a")]
    out = c.submit("r", specs)
    where = placed(out)
    assert all(where[f"p{i}"][0] == "n2" for i in range(5) if f"p{i}" in where)
    assert sum(n == "n2" for n, _ in where.values()) <= 3
    # the group needs 2 cpu together: no node can hold it at once, so it never queues
    assert "a" not in where and "b" not in where


def test_node_lost_returns_queued_tasks_to_ready_and_they_are_redispatched() -> None:
    c = Cluster({"n1": 1, "n2": 1}, window=3)
    out = c.submit("r", [spec(f"t{i}") for i in range(6)])
    c.accept_all(out)
    on_n1 = [t for t, (n, _) in placed(out).items() if n == "n1"]
    assert len(on_n1) == 3
    again = placed(c.kill("n1"))
    assert c.sched.outstanding("n1") == {}
    assert not set(again) - set(on_n1)  # only lost ones come back, on n2, within its window
    assert all(n == "n2" for n, _ in again.values())


# -- lost dispatches and lost replies (the ack timer) -----------------------------------------------


def test_per_task_events_are_plain_dataclasses_that_compare_and_hash_by_value() -> None:
    """The events and instructions built once per task on the owner (a report's success, a
    dispatched task, its inputs) are not frozen: a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` per field (~4x a plain one). They still compare and hash by value."""
    import dataclasses

    hot = (ev.NodeUpdate, ev.DispatchAnswered, ev.TaskSucceeded, ev.TaskErrored)
    hot += (ev.ValueRef, ev.InlineRef, ev.DispatchedTask, ev.Dispatch)
    for cls in hot:
        assert not cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert hasattr(cls, "__slots__"), cls
    a, b = ev.ValueRef("t", ("n",), b"v"), ev.ValueRef("t", ("n",), b"v")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert ev.ValueRef("t", ("m",), b"v") != a
    assert dataclasses.replace(a, value=None) == ev.ValueRef("t", ("n",), None)
    # those every run makes (a one-task ``execute``'s too) likewise (``events._hot_run``)
    for cls in (ev.RunSubmitted, ev.SubmissionAccepted, ev.StartTimer, ev.RunFinished):
        assert not cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
    # the rest stay frozen
    assert ev.CancelRequested.__dataclass_params__.frozen  # type: ignore[attr-defined]
