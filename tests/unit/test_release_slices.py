"""A big run's release goes by slices (``owned.Releasing``), each on a timer of its own, and
every query between two slices answers what the one-pass release answers."""

from __future__ import annotations

import gc
import importlib
import random
import weakref
from typing import Any

import pytest
from scheduler_harness import Cluster, of_type, spec
from test_history_golden import _pure_run, drive
from test_scheduler_builds import pure_build

from handoffd.scheduler import events as ev
from handoffd.scheduler.owned import PER_TASK, OwnedRuns, release_key


def _pure_owned() -> Any:
    """``owned`` run from its .py with ``history_kept``'s .py: the compiled build reads the
    compiled records' C fields, a pure run's records are plain objects."""
    module = pure_build("owned")
    module.history_kept = pure_build("history_kept")  # type: ignore[attr-defined]
    return module.OwnedRuns


_OWNED = {"compiled": OwnedRuns, "pure": _pure_owned()}


def _answers(runs: OwnedRuns, run_id: str, queries: list[tuple[float, bool]]) -> list[Any]:
    return [
        runs.status(run_id),
        runs.times(run_id),
        runs.term_of(run_id),
        runs.is_released(run_id),
        run_id in runs,
        runs.ids(),
        runs.result_location(run_id, "t0"),
        *[runs.history(run_id, since, brief) for since, brief in queries],
    ]


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(1, 9))
def test_queries_between_slices_answer_the_one_pass_release(build: str, seed: int) -> None:
    module = (
        importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()
    )
    run, now = drive(module, seed)
    rng = random.Random(seed)
    queries = [(0.0, False), (0.0, True)]
    queries += [(1000.0 + rng.uniform(0.0, now + 1.0), rng.random() < 0.5) for _ in range(3)]
    whole = _OWNED[build]()
    whole.add(run)
    assert not whole.release(run, limit=1, whole=len(run.tasks))  # small enough: one pass
    want = _answers(whole, "r", queries)

    sliced = _OWNED[build]()
    sliced.add(run)
    limit = rng.randint(1, 5)
    assert sliced.release(run, limit=limit, whole=limit)
    assert "r" not in sliced.live
    steps = 0
    while True:
        assert _answers(sliced, "r", queries) == want
        steps += 1
        if not sliced.release_next("r", limit):
            break
    assert _answers(sliced, "r", queries) == want
    assert steps > len(run.tasks) // limit  # kept and let go of in slices, not at once
    assert not sliced.release_next("r", limit)  # a late timer finds nothing to do


def test_every_per_task_container_of_a_run_is_let_go_of_by_slices() -> None:
    """A container of an item per task left out of ``PER_TASK`` goes whole with the run: one
    C call freeing every item on the loop."""
    run, _ = drive(importlib.import_module("handoffd.scheduler.run"), 2)
    n = len(run.tasks)
    sized = {
        name
        for name in dir(run)
        if not name.startswith("__")
        and isinstance(getattr(run, name, None), (dict, list, set))
        and len(getattr(run, name)) >= n
    }
    assert sized <= set(PER_TASK), sized - set(PER_TASK)


def _done_run(c: Cluster, n: int) -> None:
    c.accept_all(c.submit("r", [spec(f"t{i}") for i in range(n)]))
    for i in range(n):
        rec = c.sched.run_state("r").tasks[f"t{i}"]  # type: ignore[union-attr]
        c.accept_all(c.succeed(rec.node, "r", f"t{i}", rec.attempt))
    assert c.sched.run_status("r").state == "DONE"  # type: ignore[union-attr]


def test_the_scheduler_releases_a_big_run_on_timers_and_answers_meanwhile() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.sched._releases.limit = c.sched._releases.whole = 3  # type: ignore[attr-defined]
    _done_run(c, 10)
    status, hist = c.sched.run_status("r"), c.sched.run_history("r")
    state = weakref.ref(c.sched.run_state("r"))  # type: ignore[arg-type]
    out = c.feed(ev.ResultsReleased("r"))
    assert of_type(out, ev.StartTimer) == [ev.StartTimer(release_key("r"), 0.0)]
    assert len(of_type(out, ev.FreeResults)) == 1
    assert c.sched.run_state("r") is None  # out of the live runs at once
    timers = 1
    while True:
        assert c.sched.run_status("r") == status and c.sched.run_history("r") == hist
        assert c.feed(ev.ResultsReleased("r")) == []  # released already
        out = c.feed(ev.TimerFired(release_key("r")))
        if not out:
            break
        assert out == [ev.StartTimer(release_key("r"), 0.0)]
        timers += 1
    assert timers >= 10 // 3
    gc.collect()
    assert state() is None
    assert c.sched.run_status("r") == status and c.sched.run_history("r") == hist
    c.sched.forget("r")
    assert c.sched.run_status("r") is None and c.sched.run_history("r") is None


def test_a_run_forgotten_or_stepped_down_mid_release_stops_its_slices() -> None:
    for drop in ("forget", "step_down"):
        c = Cluster({"n1": 4})
        c.sched._releases.limit = c.sched._releases.whole = 2  # type: ignore[attr-defined]
        _done_run(c, 6)
        c.feed(ev.ResultsReleased("r"))
        c.feed(ev.TimerFired(release_key("r")))
        if drop == "forget":
            c.sched.forget("r")
        else:
            assert c.sched.step_down("r")
        assert c.feed(ev.TimerFired(release_key("r"))) == []
        assert c.sched.run_status("r") is None and c.sched.run_history("r") is None


def test_a_small_run_is_released_in_one_pass() -> None:
    c = Cluster({"n1": 4})
    c.sched._releases.limit = 3  # type: ignore[attr-defined]
    c.sched._releases.whole = 10  # type: ignore[attr-defined]
    _done_run(c, 10)
    hist = c.sched.run_history("r")
    out = c.feed(ev.ResultsReleased("r"))
    assert of_type(out, ev.StartTimer) == []
    assert c.sched.run_history("r") == hist
