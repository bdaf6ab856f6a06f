"""A run's end closes its unfinished tasks by slices (issue 19, item 7: cancelling 200,000 tasks held
the owner's loop 0.15-0.6 s, 1,000,000 ~0.9 s): ``RunState.end`` moves the culprit and the tasks
out on nodes at once, ``RunState.close`` cancels the rest ``intake.CLOSE_SLICE`` tasks at a time,
one ``StartTimer(close_key)`` apart, and ``RunFinished`` comes with the last slice. Each test plays
the same random run twice and ends one copy in one slice and the other in small slices, with node
reports, losses and status queries in between: states, histories (but their times), books, the
cancels sent, the status seen meanwhile and the standby's replica must agree."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from scheduler_harness import Cluster
from test_scheduler_cancel_bulk import _dag, _delta, _play, _run

from handoffd.protocol.snapshot import encode_run
from handoffd.replication.standby import Replica
from handoffd.scheduler import events as ev
from handoffd.scheduler import intake
from handoffd.spec import TaskSpec


def _timeless(run: Any) -> Any:
    """The run's snapshot without the times of its tasks' transitions (slices end later)."""
    data = run.snapshot()
    for task in data["tasks"].values():
        task["history"] = [h[1:] for h in task["history"]]
    data["finished"] = None
    return data


def _cancels(out: list[ev.Instruction]) -> set[tuple[str, str, str, int]]:
    return {
        (i.node, i.run_id, task_id, attempt)
        for i in out
        if isinstance(i, ev.CancelAttempts)
        for task_id, attempt in i.items
    }


def _finished(out: list[ev.Instruction]) -> list[Any]:
    return [i for i in out if isinstance(i, ev.RunFinished)]


def _close_timers(out: list[ev.Instruction]) -> list[ev.StartTimer]:
    return [i for i in out if isinstance(i, ev.StartTimer) and i.key == intake.close_key("r")]


def _end(cluster: Cluster, rng: random.Random, fail: bool) -> tuple[list[ev.Instruction], Any]:
    if fail:  # a task's error with no retry left fails the run (a culprit)
        out_on = [r for r in _run(cluster).tasks.values() if r.state in ("ASSIGNED", "RUNNING")]
        if out_on:
            rec = rng.choice(out_on)
            report = ev.TaskErrored("r", rec.id, rec.attempt, rec.node, "error", "ValueError")
            _run(cluster).options = dataclasses.replace(_run(cluster).options, max_retries=0)
            return cluster.feed(report), rec.id
    return cluster.feed(ev.CancelRequested("r")), None


@pytest.mark.parametrize("seed", range(30))
def test_an_end_in_slices_leaves_what_an_end_in_one_slice_leaves(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(1, 300))
    monkeypatch.setattr(intake, "SLICE", rng.choice((1, 5, 32, 1024)))
    nodes = {"a": 2.0, "b": 4.0}
    whole, sliced = Cluster(nodes), Cluster(nodes)
    changed_whole: list[str] = []
    changed_sliced: list[str] = []
    _play(whole, specs, seed, changed_whole)
    _play(sliced, specs, seed, changed_sliced)
    assert _run(whole).snapshot() == _run(sliced).snapshot()
    replica = Replica("r", 0, 0, "owner", "addr", ("s",), encode_run(_run(sliced)))
    changed_whole.clear()
    changed_sliced.clear()
    fail = rng.random() < 0.3
    # (the same choice of culprit on both sides)
    out_whole, culprit = _end(whole, random.Random(seed), fail)
    monkeypatch.setattr(intake, "CLOSE_SLICE", rng.choice((1, 2, 7, 40)))
    out_sliced, culprit2 = _end(sliced, random.Random(seed), fail)
    assert culprit == culprit2
    assert len(_finished(out_whole)) == 1 and not _close_timers(out_whole)
    final = whole.sched.run_status("r")
    assert final is not None
    cancels = _cancels(out_sliced)
    slices = 1
    lost: ev.NodeUpdate | None = None
    while not _finished(out_sliced):
        (timer,) = _close_timers(out_sliced)
        # What a status query says between slices is already the end's.
        status = sliced.sched.run_status("r")
        assert status is not None
        assert (status.state, status.counts, status.placement) == (
            final.state,
            final.counts,
            final.placement,
        )
        # A late report meanwhile, a node lost: taken as after a whole end.
        events: list[ev.Event] = [ev.TimerFired(timer.key)]
        run = _run(sliced)
        were_out = [r for r in run.tasks.values() if r.node is not None]
        if were_out and rng.random() < 0.3:
            rec = rng.choice(were_out)
            report = ev.TaskSucceeded("r", rec.id, rec.attempt, rec.node, 8)
            events.insert(0, report)
            assert not whole.feed(report)  # (the same late report to the run ended whole)
        if not lost and rng.random() < 0.2:  # and a node lost
            lost = ev.NodeUpdate("b", "b", False, {}, {}, 99)
            events.insert(0, lost)
            whole.feed(lost)
        out_sliced = sliced.feed(*events)
        cancels |= _cancels(out_sliced)
        slices += 1
        assert slices <= len(specs) + 2
    assert len(_finished(out_sliced)) == 1
    assert repr(_finished(out_sliced)) == repr(_finished(out_whole))
    assert cancels == _cancels(out_whole)
    assert _timeless(_run(sliced)) == _timeless(_run(whole))
    status = sliced.sched.run_status("r")
    assert status is not None and repr(status) == repr(final)
    ready_w, ready_s = whole.sched._ready, sliced.sched._ready
    assert (len(ready_s), ready_s.weightless, ready_s.shape_counts(), ready_s.runs) == (
        len(ready_w),
        ready_w.weightless,
        ready_w.shape_counts(),
        ready_w.runs,
    )
    assert not _run(sliced).ready_heap and not any(r.queued for r in _run(sliced).tasks.values())
    assert dict(_run(sliced).counters or {}) == dict(_run(whole).counters or {})
    # The standby learns the same moves and closes the rest itself.
    assert set(changed_sliced) == set(changed_whole)
    run = _run(sliced)
    for task_id in sorted(set(changed_sliced)):
        replica.put(_delta(run.tasks[task_id]), None)
    replica.run_fields = (run.state, run.released, None)
    data = replica.run_data()
    assert {t: r["state"] for t, r in data["tasks"].items()} == {
        t: rec.state for t, rec in run.tasks.items()
    }


def test_a_big_cancel_goes_in_slices_and_a_small_one_at_once() -> None:
    cluster = Cluster({"a": 2.0})
    n = 3 * intake.CLOSE_SLICE + 5
    out = cluster.submit("r", [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(n)])
    while True:
        timers = [i for i in out if isinstance(i, ev.StartTimer) and i.key[0] == "intake"]
        if not timers:
            break
        out = cluster.feed(ev.TimerFired(timers[0].key))
    out = cluster.feed(ev.CancelRequested("r"))
    rounds = 1
    while not _finished(out):
        (timer,) = _close_timers(out)
        out = cluster.feed(ev.TimerFired(timer.key))
        rounds += 1
    assert rounds == 4
    assert all(r.state == "CANCELLED" for r in _run(cluster).tasks.values())
    small = Cluster({"a": 2.0})
    small.submit("s", [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(10)])
    assert len([i for i in small.feed(ev.CancelRequested("s")) if isinstance(i, ev.RunFinished)])
