"""A run held by its dispatch lease (replication/lease.py, ``OwnerScheduler.hold_dispatch``):
nothing of it is placed, tasks lost meanwhile wait, what runs goes on and reports; other runs
are placed as usual; let go, it is placed at once."""

from __future__ import annotations

from scheduler_harness import Cluster, placed, spec

from handoffd.scheduler.cluster_view import QUEUE_SECONDS, WINDOW


def hold(c: Cluster, run_id: str, held: bool) -> list[object]:
    c.t += 0.01
    out = c.sched.hold_dispatch(run_id, held, c.t)
    c.sched.validate()
    c.log.extend(out)
    return list(out)


def test_a_held_run_places_nothing_until_let_go_and_its_running_tasks_report() -> None:
    c = Cluster({"a": 1, "b": 1, "c": 1})
    out = c.submit("r", [spec(f"t{i}") for i in range(5)])
    assert len(placed(out)) == 3
    c.accept_all(out)
    assert hold(c, "r", True) == []
    # A node is lost (a DEAD verdict): its task goes back to READY and waits.
    lost = next(t for t, (node, _) in placed(out).items() if node == "c")
    assert placed(c.kill("c")) == {}
    # A task that ran ends: its result is taken, the free slot is not used for the held run.
    done = next(t for t, (node, _) in placed(out).items() if node == "a")
    assert placed(c.succeed("a", "r", done, 1)) == {}
    counts = c.sched.run_status("r").counts  # type: ignore[union-attr]
    assert counts["DONE"] == 1 and counts["READY"] == 3
    # Another run of the same owner is placed meanwhile.
    other = c.submit("other", [spec("x")])
    assert placed(other) == {"x": ("a", 1)}
    c.accept_all(other)
    on_b = next(t for t, (node, _) in placed(out).items() if node == "b")
    assert placed(c.succeed("b", "r", on_b, 1)) == {}  # b is free: still nothing of r
    again = hold(c, "r", False)
    assert placed(again) == {lost: ("b", 2)}  # at once, the lost task first (its order)


def test_holding_is_idempotent_and_a_run_stepped_down_or_unknown_is_ignored() -> None:
    c = Cluster({"a": 2})
    hold(c, "nobody", True)
    assert "nobody" not in c.sched._ready.held
    c.accept_all(c.submit("r", [spec("t0")]))
    hold(c, "r", True)
    hold(c, "r", True)
    assert c.sched._ready.held == {"r"}
    assert c.sched.step_down("r")
    assert c.sched._ready.held == set()
    assert hold(c, "r", False) == []


def test_a_held_runs_queued_tasks_are_not_withdrawn_to_wait_at_the_owner() -> None:
    c = Cluster(
        {"busy": 1, "idle": 1}, free={"busy": 0}, window=WINDOW, queue_seconds=QUEUE_SECONDS
    )
    out = c.submit("r", [spec("t0"), spec("t1")])
    assert placed(out) == {"t0": ("idle", 1), "t1": ("busy", 1)}  # t1 waits in busy's queue
    c.accept_all(out)
    hold(c, "r", True)
    out = c.succeed("idle", "r", "t0", 1, duration=1.0)  # idle frees
    assert not [i for i in out if type(i).__name__ == "Withdraw"]
