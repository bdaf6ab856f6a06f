"""A released run keeps only what status queries answer: its task records go at once (a busy
minute of released runs was tens of thousands of records every full collection scanned)."""

from __future__ import annotations

import gc
import weakref

from scheduler_harness import Cluster, spec

from handoffd.scheduler import events as ev


def test_a_released_run_keeps_its_status_and_drops_its_tasks() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("a"), spec("b"), spec("c", "a", "b")], outputs=("c",)))
    c.succeed("n1", "r", "a", 1)
    c.accept_all(c.succeed("n1", "r", "b", 1))
    c.succeed("n1", "r", "c", 1)
    before = c.sched.run_status("r")
    assert before is not None and before.state == "DONE" and before.counts["DONE"] == 3
    assert before.placement == {"a": "n1", "b": "n1", "c": "n1"}
    state = weakref.ref(c.sched.run_state("r"))  # type: ignore[arg-type]
    out = c.feed(ev.ResultsReleased("r"))
    assert out == [ev.FreeResults("r", ("n1",))]
    gc.collect()
    assert state() is None and c.sched.run_state("r") is None
    assert c.sched.run_status("r") == before  # state, counts, placement, error, term
    assert c.sched.runs() == ["r"] and c.sched.term_of("r") == before.term
    assert c.sched.result_location("r", "c") == (None, ())
    assert c.feed(ev.ResultsReleased("r")) == []
    assert c.submit("r", [spec("a")]) == [ev.SubmissionAccepted("r")]  # a retried submission
    # a late copy of a released run's value is dropped where it landed
    assert c.feed(ev.TaskSucceeded("r", "a", 1, "n2", 1)) == [ev.FreeResults("r", ("n2",))]
    c.sched.forget("r")
    assert c.sched.run_status("r") is None and c.sched.runs() == []


def test_a_failed_run_is_summarised_with_its_error() -> None:
    c = Cluster({"n1": 1})
    c.accept_all(c.submit("r", [spec("a"), spec("b", "a")], max_retries=0))
    c.error("n1", "r", "a", 1)
    before = c.sched.run_status("r")
    assert before is not None and before.state == "FAILED" and before.error is not None
    c.feed(ev.ResultsReleased("r"))
    assert c.sched.run_state("r") is None
    assert c.sched.run_status("r") == before
    assert c.sched.step_down("r") and c.sched.run_status("r") is None
