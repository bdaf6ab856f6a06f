"""RunState: the per-run graph and task state machine, driven directly (no owner, no cluster)."""

from __future__ import annotations

import pytest

from handoffd.errors import RunCancelled, TaskFailed, ValidationError
from handoffd.protocol.snapshot import error_from_data, error_to_data
from handoffd.scheduler import events as ev
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.run import (
    ASSIGNED,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    READY,
    RUN_DONE,
    RUN_FAILED,
    RUN_RUNNING,
    RUNNING,
    TRANSITIONS,
    InvalidTransition,
    RunState,
    backoff,
)
from handoffd.spec import RunOptions, TaskSpec


def spec(tid: str, *deps: str, cost: dict[str, float] | None = None, **kw: object) -> TaskSpec:
    return TaskSpec(
        tid, tuple(deps), cost if cost is not None else {"cpu": 1.0}, tid.encode(), **kw
    )  # type: ignore[arg-type]


def states(run: RunState) -> dict[str, str]:
    return {tid: rec.state for tid, rec in run.tasks.items()}


def test_transition_table_covers_every_state_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == {PENDING, READY, ASSIGNED, RUNNING, DONE, FAILED, CANCELLED}
    assert TRANSITIONS[FAILED] == frozenset() and TRANSITIONS[CANCELLED] == frozenset()
    assert RUNNING not in TRANSITIONS[PENDING] and ASSIGNED not in TRANSITIONS[PENDING]


def test_illegal_move_raises_with_the_task_history() -> None:
    run = RunState("r", [spec("a")], RunOptions())
    run.start(0.0)
    rec = run.tasks["a"]
    run.assign(rec, "n1", 1.0)
    with pytest.raises(InvalidTransition) as info:
        run.move(rec, READY, 2.0, "refused")  # legal
        run.move(rec, RUNNING, 3.0, "bogus")  # READY -> RUNNING is illegal
    text = str(info.value)
    assert "READY -> RUNNING" in text
    assert "dispatched to n1 attempt 1" in text and "refused" in text
    assert [h[1:3] for h in info.value.history] == [
        (PENDING, READY),
        (READY, ASSIGNED),
        (ASSIGNED, READY),
    ]


def test_start_readies_roots_and_completion_readies_consumers() -> None:
    run = RunState("r", [spec("a"), spec("b", "a"), spec("c", "a", "b")], RunOptions())
    run.start(0.0)
    assert states(run) == {"a": READY, "b": PENDING, "c": PENDING}
    run.assign(run.tasks["a"], "n", 0.1)
    run.move(run.tasks["a"], RUNNING, 0.2, "started")
    run.succeeded(run.tasks["a"], "n", 10, None, 0.3)
    assert states(run) == {"a": DONE, "b": READY, "c": PENDING}
    run.validate()
    run.assign(run.tasks["b"], "n", 0.4)
    run.succeeded(run.tasks["b"], "n", 10, b"v", 0.5)  # ASSIGNED -> DONE: start report overtaken
    run.assign(run.tasks["c"], "m", 0.6)
    run.succeeded(run.tasks["c"], "m", 1, None, 0.7)
    assert run.state == RUN_DONE and run.remaining == 0
    run.validate()


def test_graph_validation_errors() -> None:
    with pytest.raises(ValidationError) as e1:
        RunState("r", [spec("a"), spec("a")], RunOptions())
    assert e1.value.kind == "duplicate_id"
    with pytest.raises(ValidationError) as e2:
        RunState("r", [spec("a", "zzz")], RunOptions())
    assert e2.value.kind == "missing_dependency" and e2.value.function_id == "a"
    with pytest.raises(ValidationError) as e3:
        RunState("r", [spec("a", "c"), spec("b", "a"), spec("c", "b")], RunOptions())
    assert e3.value.kind == "cycle" and "->" in e3.value.message
    with pytest.raises(ValidationError) as e4:
        RunState("r", [spec("a"), spec("b", node="n1", inline=True)], RunOptions())
    assert e4.value.kind == "invalid_inline"
    with pytest.raises(ValidationError) as e5:
        RunState("r", [spec("a", node="x"), spec("b", collocate_with="a", node="y")], RunOptions())
    assert e5.value.kind == "invalid_collocation"


def test_graph_ranks_by_priority_then_upward_rank_even_when_the_ranking_disagrees() -> None:
    specs = [spec("a"), spec("b", "a"), spec("c", "b"), spec("x", priority=1), spec("y")]
    graph = build_graph(specs, outputs=("c",))
    order = [graph.regular[i].id for i in graph.placement_order]
    assert order[0] == "x"  # priority first
    assert order.index("a") < order.index("b") < order.index("c")  # longest path first
    assert graph.wanted == {"c"} and graph.consumers["a"] == ["b"]

    def backwards(priority: list[int], *_: object) -> tuple[list[int], list[float]]:
        n = len(priority)  # a ranking in reverse submission order, every rank 0
        return list(reversed(range(n))), [0.0] * n

    graph = build_graph(specs, None, order=backwards)
    order = [graph.regular[i].id for i in graph.placement_order]
    assert order == ["x", "y", "c", "b", "a"]  # priority still wins; ties keep the ranking's order
    run = RunState("r", specs, RunOptions(), order=backwards)
    assert [rec.id for rec in run.ordered] == order
    assert [rec.order for rec in run.ordered] == list(range(5))


def test_inline_dependencies_resolve_to_regular_tasks_and_refs_nest() -> None:
    specs = [
        spec("a"),
        spec("b"),
        spec("i1", "a", inline=True, argument_inclusion="as_list"),
        spec("i2", "i1", "b", inline=True),
        spec("c", "i2", "a"),
    ]
    run = RunState("r", specs, RunOptions())
    assert run.effective_deps["c"] == ("a", "b")
    assert set(run.tasks) == {"a", "b", "c"}  # inline functions are not tasks
    run.start(0.0)
    for tid in ("a", "b"):
        run.assign(run.tasks[tid], "n", 0.1)
        run.succeeded(run.tasks[tid], "n", 5, b"val-" + tid.encode() if tid == "a" else None, 0.2)
    assert run.tasks["c"].state == READY
    refs = run.input_refs("c")
    a_ref = ev.ValueRef("a", ("n",), b"val-a")
    assert refs == (
        ev.InlineRef(
            "i2",
            b"i2",
            "variadic",
            (ev.InlineRef("i1", b"i1", "as_list", (a_ref,)), ev.ValueRef("b", ("n",), None)),
        ),
        a_ref,
    )


def test_collocation_groups_and_group_cost() -> None:
    specs = [
        spec("a", cost={"cpu": 2}),
        spec("b", cost={"cpu": 3}, collocate_with="a"),
        spec("c", "a", cost={"cpu": 1, "gpu": 1}, collocate_with="b"),
        spec("d"),
    ]
    run = RunState("r", specs, RunOptions())
    assert run.group_of["a"] == run.group_of["b"] == run.group_of["c"]
    assert "d" not in run.group_of
    run.start(0.0)
    assert run.group_cost("a") == {"cpu": 6, "gpu": 1}
    run.assign(run.tasks["a"], "n7", 0.1)
    assert run.pin_of("b") == "n7" and run.pin_of("c") == "n7" and run.pin_of("d") is None
    assert run.group_cost("b") == {"cpu": 4, "gpu": 1}  # a is ASSIGNED: no longer in the remainder


def test_node_lost_requeues_and_recomputes_lost_results_still_needed() -> None:
    run = RunState("r", [spec("a"), spec("b"), spec("c", "a", "b"), spec("d", "c")], RunOptions())
    run.start(0.0)
    for tid, node, value in (("a", "x", None), ("b", "x", b"small")):
        run.assign(run.tasks[tid], node, 0.1)
        run.succeeded(run.tasks[tid], node, 100, value, 0.2)
    run.assign(run.tasks["c"], "y", 0.3)
    cancels, gave_up = run.node_lost("x", 0.4)
    # a's only copy was on x and c has not started: recompute a, c waits again (and is cancelled).
    # b's value is held by the owner: nothing to do.
    assert gave_up is None
    assert cancels == [("y", "c", 1)]
    assert states(run) == {"a": READY, "b": DONE, "c": PENDING, "d": PENDING}
    assert run.tasks["a"].losses == 1
    run.validate()


def test_running_consumer_keeps_running_and_done_run_reopens_only_when_asked() -> None:
    run = RunState("r", [spec("a"), spec("b", "a")], RunOptions())
    run.start(0.0)
    run.assign(run.tasks["a"], "x", 0.1)
    run.succeeded(run.tasks["a"], "x", 100, None, 0.2)
    run.assign(run.tasks["b"], "y", 0.3)
    run.move(run.tasks["b"], RUNNING, 0.35, "started")
    # a is an output the client has not fetched: it is recomputed even though b already has it.
    cancels, _ = run.node_lost("x", 0.4)
    assert cancels == [] and run.tasks["b"].state == RUNNING and run.tasks["a"].state == READY
    run.validate()
    run.assign(run.tasks["a"], "y", 0.5)
    run.succeeded(run.tasks["a"], "y", 100, None, 0.6)
    run.succeeded(run.tasks["b"], "y", 1, None, 0.7)
    assert run.state == RUN_DONE
    run.node_lost("y", 0.8)  # both outputs lost, not released: a finished run stays finished
    assert run.state == RUN_DONE and states(run) == {"a": DONE, "b": DONE}
    run.validate()
    run.recompute_lost(("b",), 0.9)  # a client asks for b: b and the a it needs run again
    assert run.state == RUN_RUNNING and states(run) == {"a": READY, "b": PENDING}
    run.validate()


def test_released_results_are_not_recomputed() -> None:
    run = RunState("r", [spec("a")], RunOptions())
    run.start(0.0)
    run.assign(run.tasks["a"], "x", 0.1)
    run.succeeded(run.tasks["a"], "x", 100, None, 0.2)
    run.released = True
    run.node_lost("x", 0.3)
    assert run.state == RUN_DONE and run.tasks["a"].state == DONE


def test_end_fails_culprit_cancels_the_rest_and_lists_active_dispatches() -> None:
    run = RunState("r", [spec("a"), spec("b"), spec("c", "a")], RunOptions())
    run.start(0.0)
    run.assign(run.tasks["a"], "x", 0.1)
    run.assign(run.tasks["b"], "y", 0.1)
    error = TaskFailed("a", 1, "ValueError", "boom")
    cancels = run.end(RUN_FAILED, error, 0.2, culprit="a")
    assert sorted(cancels) == [("x", "a", 1), ("y", "b", 1)]
    assert states(run) == {"a": FAILED, "b": CANCELLED, "c": CANCELLED}
    assert run.error is error
    run.validate()


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.4]
    assert backoff(30) == 2.0


def test_snapshot_round_trips_as_plain_data() -> None:
    specs = [spec("a", priority=3), spec("i", "a", inline=True), spec("b", "i", collocate_with="a")]
    run = RunState("r", specs, RunOptions(max_retries=2, policy="spread", outputs=("b",)), seq=4)
    run.start(0.0)
    run.assign(run.tasks["a"], "x", 0.1)
    run.succeeded(run.tasks["a"], "x", 7, b"v", 0.2)
    run.holders.add("x")
    run.error = RunCancelled("stop")
    data = run.snapshot()
    _check_plain(data)
    back = RunState.from_snapshot(data)
    assert back.snapshot() == data
    assert back.options == run.options and states(back) == states(run)
    assert back.group_node == {run.group_of["a"]: "x"}
    assert isinstance(back.error, RunCancelled) and str(back.error) == "stop"
    assert back.input_refs("b") == run.input_refs("b")


def _check_plain(value: object) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            _check_plain(v)
    elif isinstance(value, list):
        for v in value:
            _check_plain(v)
    else:
        assert value is None or isinstance(value, (str, int, float, bool, bytes)), value


def test_errors_round_trip_through_plain_data() -> None:
    error = TaskFailed("f", 3, "KeyError", "'x'", "tb")
    back = error_from_data(error_to_data(error))
    assert isinstance(back, TaskFailed)
    assert (back.function_id, back.attempts, back.exc_type, back.traceback) == (
        "f",
        3,
        "KeyError",
        "tb",
    )
    assert error_from_data(None) is None
