"""``Outbox.take``: what one scheduler call collected, in its order, and nothing rebuilt for a kind
nothing was collected of (issue 13, single-task latency: four calls per one-task run)."""

from __future__ import annotations

from handoffd.scheduler import events as ev
from handoffd.scheduler.outbox import Outbox, placed_of


def _item(task_id: str) -> ev.DispatchedTask:
    return ev.DispatchedTask(task_id, 1, b"p", {"cpu": 1.0}, "variadic", None, (), 0, 1.0)


def test_take_returns_direct_then_each_batch_kind_at_its_runs_term() -> None:
    out = Outbox()
    finished = ev.RunFinished("r1", "DONE")
    out.direct.append(finished)
    out.cancels[("n1", "r1")] = [("a", 1)]
    out.dispatches[("n2", "r2")] = placed_of([_item("b"), _item("c")])
    out.frees[("n1", "r1")] = ["a"]
    out.withdraws[("n2", "r2")] = [("b", 1)]
    terms = {"r1": 3, "r2": 4}
    assert out.take(terms.__getitem__) == [
        finished,
        ev.CancelAttempts("n1", "r1", (("a", 1),)),
        ev.Dispatch("n2", "r2", 4, (_item("b"), _item("c"))),
        ev.FreeUnneededValues("n1", "r1", 3, ("a",)),
        ev.Withdraw("n2", "r2", 4, (("b", 1),)),
    ]
    assert (out.direct, out.cancels, out.dispatches, out.frees, out.withdraws) == (
        [],
        {},
        {},
        {},
        {},
    )
    assert out.take(terms.__getitem__) == []


def test_take_leaves_the_kinds_nothing_was_collected_of() -> None:
    out = Outbox()
    cancels, frees, withdraws = out.cancels, out.frees, out.withdraws
    out.dispatches[("n1", "r1")] = placed_of([_item("a")])
    (dispatch,) = out.take(lambda run_id: 0)
    assert dispatch.items == (_item("a"),) and out.dispatches == {}
    assert out.cancels is cancels and out.frees is frees and out.withdraws is withdraws


def test_take_reads_the_terms_off_the_live_runs_else_the_default() -> None:
    """The scheduler hands its live runs (run id -> run) and its own term: a batch goes at its
    run's term, a run no longer live at the scheduler's."""
    from handoffd.scheduler.run import RunState
    from handoffd.spec import RunOptions, TaskSpec

    live = {"r1": RunState("r1", [TaskSpec("a", (), {"cpu": 1.0}, b"p")], RunOptions(), term=7)}
    out = Outbox()
    out.dispatches[("n1", "r1")] = placed_of([_item("a")])
    out.dispatches[("n2", "gone")] = placed_of([_item("b")])
    out.frees[("n1", "r1")] = ["a"]
    out.frees[("n1", "gone")] = ["b"]
    out.withdraws[("n2", "r1")] = [("a", 1)]
    out.withdraws[("n2", "gone")] = [("b", 1)]
    assert out.take(live, 5) == [
        ev.Dispatch("n1", "r1", 7, (_item("a"),)),
        ev.Dispatch("n2", "gone", 5, (_item("b"),)),
        ev.FreeUnneededValues("n1", "r1", 7, ("a",)),
        ev.FreeUnneededValues("n1", "gone", 5, ("b",)),
        ev.Withdraw("n2", "r1", 7, (("a", 1),)),
        ev.Withdraw("n2", "gone", 5, (("b", 1),)),
    ]
