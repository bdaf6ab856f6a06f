"""The owner frees a value as soon as no task needs it: not a requested output and every consumer
DONE. ``Cluster`` plays the nodes and checks ``validate()`` after every event; the simulation at the
end also plays the nodes' stores, so a dispatch that names a value no live node holds (a task that
would fail with input_lost) fails the test."""

from __future__ import annotations

import pytest
from scheduler_harness import Cluster, dispatches, of_type, placed, spec

from handoffd.scheduler import events as ev


def frees(out: list[ev.Instruction]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.node, f.run_id, f.task_ids) for f in of_type(out, ev.FreeUnneededValues)]


def test_a_value_is_freed_when_its_last_consumer_is_done() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    dag = [spec("p"), spec("c1", "p"), spec("c2", "p"), spec("q"), spec("d", "q")]
    out = c.submit("r", dag, outputs=("c1", "c2", "d"))
    c.accept_all(out)
    first = c.succeed("n1", "r", "p", 1, size=10_000)
    assert frees(first) == []
    c.accept_all(first)
    out = c.succeed("n1", "r", "q", 1, size=10_000)
    c.accept_all(out)
    running = {**placed(first), **placed(out)}
    assert set(running) == {"c1", "c2", "d"}
    out = c.succeed(running["c1"][0], "r", "c1", 1)
    assert frees(out) == []  # c2 still needs p
    assert c.sched.result_location("r", "p") == (None, ("n1",))
    out = c.succeed(running["c2"][0], "r", "c2", 1)
    assert frees(out) == [("n1", "r", ("p",))]
    assert c.sched.result_location("r", "p") == (None, ())
    out = c.succeed(running["d"][0], "r", "d", 1)
    assert frees(out) == [("n1", "r", ("q",))]
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE")]
    for output in ("c1", "c2", "d"):
        assert c.sched.result_location("r", output)[1]  # the outputs keep their copies


def test_frees_of_one_batch_go_out_once_per_node_and_run() -> None:
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("a"), spec("b"), spec("c", "a", "b")], outputs=("c",))
    c.accept_all(out)
    c.succeed("n1", "r", "a", 1)
    c.accept_all(c.succeed("n1", "r", "b", 1))
    out = c.succeed("n1", "r", "c", 1)
    assert frees(out) == [("n1", "r", ("a", "b"))]
    assert of_type(out, ev.FreeUnneededValues)[0].term == c.sched.term_of("r")


def test_a_leaf_that_is_no_output_is_freed_at_once() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("side"), spec("out")], outputs=("out",)))
    assert frees(c.succeed("n1", "r", "side", 1)) == [("n1", "r", ("side",))]
    assert frees(c.succeed("n1", "r", "out", 1)) == []


@pytest.mark.parametrize("outputs", [None, ("p", "c")])
def test_outputs_are_never_freed(outputs: tuple[str, ...] | None) -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("p"), spec("c", "p")], outputs=outputs))
    c.accept_all(c.succeed("n1", "r", "p", 1))
    out = c.succeed("n1", "r", "c", 1)
    assert frees(c.log) == []
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE")]
    assert c.sched.result_location("r", "p") == (None, ("n1",))


def test_a_small_value_the_owner_holds_is_dropped_without_a_message() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("p"), spec("c", "p")], outputs=("c",)))
    c.accept_all(c.succeed("n1", "r", "p", 1, value=b"P"))
    assert c.sched.result_location("r", "p") == (b"P", ("n1",))
    out = c.succeed("n1", "r", "c", 1)
    assert frees(out) == [("n1", "r", ("p",))]
    assert c.sched.result_location("r", "p") == (None, ())


def test_a_retried_consumer_keeps_its_input() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("p"), spec("c", "p")], outputs=("c",), max_retries=2))
    c.accept_all(c.succeed("n1", "r", "p", 1, size=10_000))
    out = c.error("n1", "r", "c", 1)
    assert frees(out) == []
    (timer,) = [t for t in of_type(out, ev.StartTimer) if t.key[0] == "retry"]
    out = c.feed(ev.TimerFired(timer.key))
    (item,) = dispatches(out)[0].items
    assert item.task_id == "c" and item.inputs == (ev.ValueRef("p", ("n1",), None),)
    c.accept_all(out)
    c.release("n1", "r", "c", 2)
    out = c.feed(c.update("n1"), ev.TaskErrored("r", "c", 2, "n1", "input_lost", "L", "", ""))
    assert frees(c.log) == []  # a consumer sent back to READY is not finished
    ((node, attempt),) = placed(out).values()
    c.accept_all(out)
    assert frees(c.succeed(node, "r", "c", attempt)) == [("n1", "r", ("p",))]


def test_asking_for_an_output_lost_after_its_inputs_were_freed_recomputes_only_what_it_needs() -> (
    None
):
    # a -> b -> c and a -> d; outputs c and d. d's small value lives on the owner, so when the node
    # holding c dies only c, and the freed b and a it needs, run again.
    c = Cluster({"n1": 4, "n2": 4})
    dag = [spec("a"), spec("b", "a"), spec("c", "b"), spec("d", "a")]
    c.accept_all(c.submit("r", dag, outputs=("c", "d")))
    out = c.succeed("n1", "r", "a", 1, size=10_000)
    c.accept_all(out)
    on = {t: n for t, (n, _) in placed(out).items()}
    out = c.succeed(on["d"], "r", "d", 1, value=b"D")
    out = c.succeed(on["b"], "r", "b", 1, size=10_000)
    assert frees(out) == [("n1", "r", ("a",))]
    c.accept_all(out)
    node_c = placed(out)["c"][0]
    out = c.succeed(node_c, "r", "c", 1, size=10_000)
    assert frees(out) == [(on["b"], "r", ("b",))]
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE")]
    out = c.kill(node_c)
    assert placed(out) == {}  # a finished run stays finished until a client asks
    assert c.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    out = c.feed(ev.ValuesWanted("r", ("c", "d")))
    assert c.sched.run_status("r").state == "RUNNING"  # type: ignore[union-attr]
    assert set(placed(out)) == {"a"}  # the chain's root first; d keeps its owner copy
    redone = []
    while True:
        c.accept_all(out)
        items = placed(out)
        if not items:
            break
        (task, (node, attempt)), *_ = items.items()
        redone.append(task)
        out = c.succeed(node, "r", task, attempt, size=10_000)
    assert redone == ["a", "b", "c"]
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE")]
    assert c.sched.result_location("r", "d")[0] == b"D"
    assert [h[2] for h in c.sched.history("r", "d")].count("DONE") == 1
    status = c.sched.run_status("r")
    assert status is not None and status.counts["DONE"] == 4


def test_a_freed_value_is_recomputed_after_a_takeover_only_when_asked_for() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a"), spec("b", "a"), spec("c", "b")], outputs=("c",)))
    c.accept_all(c.succeed("n1", "r", "a", 1, size=10_000))
    c.accept_all(c.succeed("n1", "r", "b", 1, size=10_000))
    c.succeed("n1", "r", "c", 1, size=10_000)
    data = c.sched.snapshot("r")
    assert [data["tasks"][t]["locations"] for t in "abc"] == [[], [], ["n1"]]
    other = Cluster({"n1": 4, "n2": 4})
    other.sched.restore_run(data, other.t)
    other.sched.validate()
    assert other.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    out = other.kill("n1")  # the output's only copy: c needs b, b needs a
    assert placed(out) == {}  # recomputed only when asked for
    out = other.feed(ev.ValuesWanted("r", ("c",)))
    assert set(placed(out)) == {"a"}


def test_asking_for_an_output_a_takeover_lost_recomputes_the_freed_chain_behind_it() -> None:
    from handoffd.replication.takeover import Holdings, merge

    c = Cluster({"n1": 4, "n2": 4})
    dag = [spec("a"), spec("b", "a"), spec("c", "b"), spec("d", "c")]
    c.accept_all(c.submit("r", dag, outputs=("d",)))
    for task in "abc":
        c.accept_all(c.succeed("n1", "r", task, 1, size=10_000))
    c.succeed("n1", "r", "d", 1, size=10_000)
    # The owner and n1 die together: n2 answers the new owner's reconciliation with nothing.
    data = merge(c.sched.snapshot("r"), {"n2": Holdings({}, {})})
    other = Cluster({"n2": 4})
    out = other.sched.restore_run(data, other.t)
    other.sched.validate()
    assert placed(out) == {} and other.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]
    out = other.feed(ev.ValuesWanted("r", ("d",)))  # a client asks for the lost output
    assert set(placed(out)) == {"a"}
    states = {t: r.state for t, r in other.sched.run_state("r").tasks.items()}  # type: ignore[union-attr]
    assert states == {"a": "ASSIGNED", "b": "PENDING", "c": "PENDING", "d": "PENDING"}
