"""``daemon.lane``: a held one-task ``execute``'s outcome sent from our executor's report, before
the scheduler's batch. Two owners take the same random one-task runs, one with the lane and one
without: every reply (message and frames) and the scheduler's state after the batch are equal,
the lane's reply comes before the batch (``flush``) and only when its conditions hold, and a run
it answered is released at its end as the general path releases it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fake_port import FakePort

from handoffd.daemon.executor_events import AnsweredHere
from handoffd.daemon.executor_records import Task, done_report, failed, reported_here
from handoffd.daemon.owner import OwnerIO
from handoffd.daemon.owner_waits import REPLICATE_DELAY
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler

pytestmark = pytest.mark.timeout(120)

CPU = "cpu"


class Ledger:
    def __init__(self) -> None:
        self.capacity = {CPU: 2.0}
        self.free = {CPU: 2.0}
        self.version = 1


class Lane:
    """An owner as the daemon drives it: dispatches to our executor taken as records, what our
    executor says held to the drain's end (``batch_reports``)."""

    def __init__(self, lane: bool) -> None:
        self.port = FakePort()
        self.ledger = Ledger()
        self.owner = OwnerIO(
            self.port,
            OwnerScheduler(self.port.name, now=self.port.now()),
            resources=self.ledger,
            local_value=lambda run_id, task_id: None,
            keep_results_s=30.0,
            keep_status_s=5.0,
        )
        self.owner.batch_reports = True
        self.owner.lane = lane
        self.handed: list[Any] = []
        self.owner.here = lambda msg, frames, term: self.handed.append(msg)

    def submit(self, run_id: str, meta: m.TaskMeta, outputs: Any, max_bytes: int, release: bool):
        msg = m.SubmitAndWait(7, run_id, (meta,), 0, "binpack", outputs, 30.0, max_bytes, release)
        self.owner.handle(msg, [b"code-of-f"], b"client", None)
        self.owner.flush()
        (dispatch,) = self.handed
        self.handed.clear()
        return dispatch.attempts[0]

    def from_here(self, record: Any) -> list[Any]:
        """The record fed as the daemon feeds it; the replies made before the drain's end."""
        before = len(self.port.replies)
        self.owner.from_here(record)
        early = self.port.replies[before:]
        self.owner.flush()
        return early


def _task(run_id: str, attempt: int) -> Task:
    return Task(run_id, "f", attempt, "a:1", {}, [], "variadic", None, b"", (), {})


def _report(run_id: str, attempt: int, value: bytes | None, ok: bool, version: int) -> Any:
    ledger = Ledger()
    ledger.version = version
    task = _task(run_id, attempt)
    if ok:
        row = done_report(task, len(value or b"x" * 9), (0, 0.0, 0.0), 0.001)
        return reported_here(run_id, 0, [(row, value, "")], ledger)
    bad = failed(task, "exception", "ValueError", "boom", "tb")
    return reported_here(run_id, 0, [(bad, None, "")], ledger)


def _same_reply(a: Any, b: Any) -> None:
    assert type(a.msg) is type(b.msg)
    assert a.msg == b.msg
    assert [bytes(f) for f in a.frames] == [bytes(f) for f in b.frames]


def _running(on: Lane, off: Lane, run_id: str) -> bool:
    run_on = on.owner.scheduler.run_state(run_id)
    run_off = off.owner.scheduler.run_state(run_id)
    assert (run_on is None) == (run_off is None)
    return run_on is not None and run_on.state == "RUNNING"


def _status(lane: Lane, run_id: str) -> tuple[Any, ...]:
    st = lane.owner.scheduler.run_status(run_id)
    assert st is not None
    return st.state, st.counts, st.placement, repr(st.error), st.term


def test_random_runs_answer_alike_with_and_without_the_lane() -> None:
    rng = random.Random(21)
    ticks = random.Random(5)  # (apart: the runs' draws stay those of the seed)
    on, off = Lane(True), Lane(False)
    early_answers = 0
    version = 1
    for i in range(400):
        run_id = f"r{i}"
        retries = rng.choice((None, 0, 1))
        meta = m.TaskMeta("f", (), {CPU: 1.0}, "variadic", None, None, False, retries, None, 0)
        outputs = rng.choice((None, None, ("f",), ()))
        max_bytes = rng.choice((1 << 20, 4, 0))
        release = rng.random() < 0.8
        attempts = {on.submit(run_id, meta, outputs, max_bytes, release)}
        attempts.add(off.submit(run_id, meta, outputs, max_bytes, release))
        (attempt,) = attempts
        if rng.random() < 0.2:  # the replication delay ran out first: an ordinary replicated run
            for lane in (on, off):
                lane.port.advance(REPLICATE_DELAY * 2)
        while True:
            version += 1
            if rng.random() < 0.7:  # (else the report overtakes the answer)
                answer = AnsweredHere(run_id, 0, (("f", attempt),), (), {CPU: 1.0}, version)
                assert on.from_here(answer) == off.from_here(answer) == []
            version += 1
            ok = rng.random() < 0.7
            value = rng.choice((b"42", b"x" * 10, None)) if ok else None
            record = _report(run_id, attempt, value, ok, version)
            early_on = on.from_here(record)
            early_off = off.from_here(record)
            assert early_off == []  # the general path answers in the batch, never before
            if early_on:
                early_answers += 1
                assert ok and value is not None and release and max_bytes >= len(value)
            if not _running(on, off, run_id):
                break
            for _ in range(100):  # a retry, dispatched alike (after its delay, if it has one)
                if on.handed or off.handed:
                    break
                for lane in (on, off):
                    lane.port.advance(0.5)
                    lane.owner.flush()
            (d_on,) = on.handed
            (d_off,) = off.handed
            on.handed.clear()
            off.handed.clear()
            assert d_on.attempts == d_off.attempts
            attempt = d_on.attempts[0]
        assert len(on.port.replies) == len(off.port.replies)
        for a, b in zip(on.port.replies, off.port.replies, strict=True):
            _same_reply(a, b)
        assert _status(on, run_id) == _status(off, run_id)
        assert (on.owner.scheduler.run_state(run_id) is None) == (
            off.owner.scheduler.run_state(run_id) is None
        )
        on.port.replies.clear()
        off.port.replies.clear()
        on.port.sent.clear()
        off.port.sent.clear()
        ticked = ticks.random() < 0.5  # (else the run's release waits for the next batch)
        for lane in (on, off):
            lane.port.advance(REPLICATE_DELAY * 2)
            if ticked:
                lane.owner.tick(lane.port.now())
    assert early_answers > 50  # the lane was taken, and often
    for lane in (on, off):
        lane.owner.tick(lane.port.now())
    assert not on.owner.waiting._early  # every early answer's run ended and was released
    for i in range(400):  # released alike: each run's values freed or kept in both
        run_on, run_off = (lane.owner.scheduler.run_state(f"r{i}") for lane in (on, off))
        assert (run_on is None) == (run_off is None)
        if run_on is not None:
            where = on.owner.scheduler.result_location(f"r{i}", "f")
            assert where == off.owner.scheduler.result_location(f"r{i}", "f")
            assert _status(on, f"r{i}") == _status(off, f"r{i}")


def test_the_lane_answers_before_the_batch_and_releases_at_the_run_end() -> None:
    lane = Lane(True)
    meta = m.TaskMeta("f", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
    attempt = lane.submit("r1", meta, None, 1 << 20, True)
    record = _report("r1", attempt, b"42", True, 5)
    lane.owner.from_here(record)
    (reply,) = lane.port.replies
    assert isinstance(reply.msg, m.RunOutcome) and reply.msg.state == "DONE"
    assert reply.msg.task_ids == ("f",) and reply.msg.released and reply.frames == [b"42"]
    assert lane.owner.scheduler.run_status("r1").state == "RUNNING"  # the batch is still to come
    assert "r1" in lane.owner.waiting._early
    lane.owner.flush()
    assert lane.owner.scheduler.run_status("r1").state == "DONE"
    assert len(lane.port.replies) == 1  # answered once
    assert not lane.owner.waiting._early
    assert lane.owner.scheduler.result_location("r1", "f")[0] == b"42"
    lane.owner.tick(lane.port.now())  # the release joined the next batch: the values are gone
    assert lane.owner.scheduler.result_location("r1", "f") == (None, ())


def test_a_one_task_submission_leaves_the_last_run_s_release_for_the_next_batch() -> None:
    """The release the last run's answer carried waits in ``_pending``: the next one-task
    submission is fed without it (its dispatch does not wait for it), the batch after it feeds
    it; anything else waiting with it is fed with the submission, in order."""
    lane = Lane(True)
    meta = m.TaskMeta("f", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
    attempt = lane.submit("r1", meta, None, 1 << 20, True)
    assert lane.from_here(_report("r1", attempt, b"42", True, 5)) != []
    assert [type(e) for e in lane.owner._pending] == [ev.ResultsReleased]
    attempt = lane.submit("r2", meta, None, 1 << 20, True)  # (dispatched: ``submit`` checks)
    assert [e.run_id for e in lane.owner._pending] == ["r1"]  # not fed with the submission
    assert lane.owner.scheduler.result_location("r1", "f")[0] == b"42"
    assert lane.from_here(_report("r2", attempt, b"42", True, 6)) != []  # (answered first)
    assert lane.owner.scheduler.result_location("r1", "f") == (None, ())  # the report's batch
    assert [e.run_id for e in lane.owner._pending] == ["r2"]
    # A node update waits behind the release: both go with the submission, in their order.
    lane.owner._feed_reported(lane.owner._reported("b", m.TasksReported("r9", (), {}, 1)))
    lane.owner._pending.append(ev.CancelRequested("r9"))
    lane.submit("r3", meta, None, 1 << 20, True)
    assert lane.owner._pending == []
    assert lane.owner.scheduler.result_location("r2", "f") == (None, ())
    # The release of a run still going (freed by its client) goes with the next submission.
    lane.owner._free_now("r3")
    assert [e.run_id for e in lane.owner._pending] == ["r3"]
    lane.submit("r4", meta, None, 1 << 20, True)
    assert lane.owner._pending == []


def test_a_stale_or_unheld_report_takes_the_general_path() -> None:
    lane = Lane(True)
    meta = m.TaskMeta("f", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
    attempt = lane.submit("r1", meta, None, 1 << 20, True)
    assert lane.from_here(_report("r1", attempt + 1, b"42", True, 5)) == []  # not the attempt
    assert lane.from_here(_report("r1", attempt, b"42", True, 6)) != []
    attempt = lane.submit("r2", meta, None, 1 << 20, True)
    lane.port.advance(REPLICATE_DELAY * 2)  # replicated (no standbys here): no longer held
    assert lane.from_here(_report("r2", attempt, b"42", True, 7)) == []
    assert lane.port.replies[-1].msg.state == "DONE"  # answered by the batch


def test_a_one_task_dispatch_table_is_the_general_build() -> None:
    """``lane.one_table`` builds the ``HereTable`` and frames ``dispatch_here`` builds for a
    dispatch of one task without inputs, slot for slot; anything else is left to it (None)."""
    from handoffd.daemon import lane
    from handoffd.daemon.dispatch import HereTable, dispatch_here
    from handoffd.scheduler import events as ev

    rng = random.Random(5)
    for i in range(200):
        cost = {CPU: rng.choice((0.0, 0.5, 1.0, 2)), "memory": rng.choice((0, 100.0))}
        item = ev.DispatchedTask(
            "f",
            rng.randint(1, 9),
            b"code-%d" % i,
            cost,
            rng.choice(("variadic", "as_list")),
            rng.choice((None, 2, 0.5)),
            (),
            rng.randint(-3, 3),
            rng.random(),
        )
        ins = ev.Dispatch("a", f"r{i}", rng.randint(0, 3), (item,))
        packages = rng.choice(((), ("pkg",)))
        address_of = {"a": "a:1"}.get
        one = lane.one_table(ins, "a:1", address_of, packages)
        assert one is not None
        table, frames = one
        general, general_frames = dispatch_here(ins, "a:1", address_of, packages)
        assert type(general) is HereTable and frames == general_frames
        for slot in (*HereTable.__mro__[1].__slots__, *HereTable.__slots__):
            if slot in (
                "msg",
                "input_kinds",
                "input_inclusion",
                "parents",
                "holder_counts",
                "holders",
            ):
                continue  # (not set by either build: ``HereTable``'s doc)
            a, b = getattr(table, slot), getattr(general, slot)
            if slot == "timeouts" and a[0] != a[0]:
                assert b[0] != b[0]
                continue
            assert a == b, slot
            assert type(a) is type(b), slot
    two = ev.Dispatch("a", "r", 0, (item, item))
    assert lane.one_table(two, "a:1", {"a": "a:1"}.get, ()) is None
    ref = ev.ValueRef("g", ("a",), b"1")
    fed = ev.DispatchedTask("f", 1, b"c", {CPU: 1.0}, "variadic", None, (ref,), 0, 0.0)
    assert lane.one_table(ev.Dispatch("a", "r", 0, (fed,)), "a:1", {"a": "a:1"}.get, ()) is None
