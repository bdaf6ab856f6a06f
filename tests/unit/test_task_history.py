"""Task history (issue 16) as pure scheduler state: attempts opened by dispatch, closed by the
task's moves, completed by the node's report, bounded, carried by snapshots and log deltas to a
standby, settled at a takeover, and frozen at release."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from handoffd.protocol.messages import ReplicateLog, TaskDelta
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.snapshot import decode_run, encode_run
from handoffd.replication import takeover
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler import history
from handoffd.scheduler.owned import OwnedRuns
from handoffd.scheduler.run import READY, RunState
from handoffd.spec import RunOptions, TaskSpec


def _run() -> RunState:
    specs = [TaskSpec("a", (), {"cpu": 1.0}, b"p"), TaskSpec("b", ("a",), {"cpu": 1.0}, b"p")]
    run = RunState("r", specs, RunOptions(max_retries=3))
    run.wall_offset = 1000.0
    run.start(0.0)
    return run


def _fields(row: tuple[Any, ...]) -> SimpleNamespace:
    return SimpleNamespace(**dict(zip(history.ATTEMPT_FIELDS, row, strict=True)))


def test_attempts_follow_dispatch_failure_loss_and_success() -> None:
    run = _run()
    a = run.tasks["a"]
    run.assign(a, "n1", 1.0)
    history.observe(
        a.attempts, 1, "n1", state="error", pid=42, started=1001.5, ended=1002.0,
        bytes_in=10, bytes_out=0, error=("ValueError", "bad", "Traceback ..."),
    )  # fmt: skip
    run.make_ready(a, 2.0, "error on n1: retry 1", delayed=True)
    run.assign(a, "n2", 3.0)
    run.node_lost("n2", 4.0)
    run.assign(a, "n1", 5.0)
    run.succeeded(a, "n1", 3, b"v", 6.0)
    got = [(x.attempt, x.node, x.state) for x in map(_fields, a.attempts)]
    assert got == [(1, "n1", "FAILED"), (2, "n2", "LOST"), (3, "n1", "DONE")]
    first, lost, done = map(_fields, a.attempts)
    assert (first.pid, first.started, first.ended, first.exc_type) == (
        42,
        1001.5,
        1002.0,
        "ValueError",
    )
    assert first.dispatched == 1001.0 and "retry" in first.cause
    assert (lost.dispatched, lost.ended) == (1003.0, 1004.0) and "lost" in lost.cause
    assert done.ended == 1006.0 and run.submitted == 1000.0
    frozen = history.freeze(a.id, a.state, a.node, a.attempts, a.history, run.wall_offset)
    doc = history.summary(frozen)
    assert doc["attempts"] == 3 and doc["error"]["type"] == "ValueError"
    assert doc["started"] == 1005.0 and doc["finished"] == 1006.0 and doc["duration_s"] == 1.0
    assert doc["transitions"][0] == {
        "time": 1000.0,
        "from": "PENDING",
        "to": READY,
        "cause": "submitted",
    }


def test_attempts_are_bounded_keeping_the_first() -> None:
    attempts: list[tuple[Any, ...]] = []
    for n in range(1, 40):
        history.opened(attempts, n, "x", float(n))
    assert len(attempts) == history.ATTEMPTS_LIMIT
    assert attempts[0][0] == 1 and attempts[-1][0] == 39


def test_snapshot_and_log_delta_carry_attempts_to_a_standby() -> None:
    run = _run()
    a = run.tasks["a"]
    run.assign(a, "n1", 1.0)
    run.succeeded(a, "n1", 3, None, 2.0)
    data = decode_run(encode_run(run))  # what a standby is sent
    assert data["tasks"]["a"]["attempts"] == history.rows(a.attempts)
    assert (
        data["submitted"] == 1000.0
        and RunState.from_snapshot(data).tasks["a"].attempts[0][history.STATE] == "DONE"
    )
    store = StandbyStore("s")
    store.on_snapshot("r", 0, 0, "o", "addr", ("s",), encode_run(_run()))
    info = AttemptInfo(*history.rows(a.attempts)[0])
    delta = TaskDelta("a", "DONE", 1, "n1", 3, ("n1",), 0, 0, 1, -1, (info,))
    store.on_log(ReplicateLog("r", 0, 1, ("s",), (delta,), "RUNNING", False, None), "addr", [])
    rebuilt = store.replicas["r"].run_data()
    assert rebuilt["tasks"]["a"]["attempts"] == history.rows(a.attempts)


def test_takeover_marks_attempts_out_on_the_dead_owner_lost_and_adds_found_ones() -> None:
    run = _run()
    a = run.tasks["a"]
    run.assign(a, "dead", 1.0)
    merged = takeover.merge(run.snapshot(), {"n1": takeover.Holdings({}, {})})
    assert merged["tasks"]["a"]["attempts"][0][2] == "LOST"
    merged = takeover.merge(run.snapshot(), {"n1": takeover.Holdings({"a": 5}, {})})
    states = [(r[1], r[2]) for r in merged["tasks"]["a"]["attempts"]]
    assert states == [("dead", "LOST"), ("n1", "DONE")]


def test_a_released_run_keeps_its_frozen_history_until_forgotten() -> None:
    owned = OwnedRuns()
    run = _run()
    owned.add(run)
    run.assign(run.tasks["a"], "n1", 1.0)
    run.succeeded(run.tasks["a"], "n1", 1, b"v", 2.0)
    run.assign(run.tasks["b"], "n1", 3.0)
    run.succeeded(run.tasks["b"], "n1", 1, b"v", 4.0)
    owned.release(run)
    h = owned.history("r")
    assert h is not None and h.state == "DONE" and h.finished == 1004.0
    assert [t[0] for t in h.tasks] == ["a", "b"] and all(len(t[3]) == 1 for t in h.tasks)
    owned.forget("r")
    assert owned.history("r") is None


def test_history_since_lists_only_tasks_that_moved() -> None:
    owned = OwnedRuns()
    run = _run()  # wall = now + 1000; both tasks moved at 0 (submitted: b stays PENDING)
    owned.add(run)
    run.assign(run.tasks["a"], "n1", 5.0)
    h = owned.history("r", since=1004.0)
    assert h is not None and [t[0] for t in h.tasks] == ["a"] and h.total == 2
    assert owned.history("r", since=1006.0).tasks == ()  # type: ignore[union-attr]
    run.succeeded(run.tasks["a"], "n1", 1, b"v", 7.0)  # b becomes READY at 7
    assert [t[0] for t in owned.history("r", since=1006.0).tasks] == ["a", "b"]  # type: ignore[union-attr]
    assert len(owned.history("r").tasks) == 2  # type: ignore[union-attr]


def test_brief_packed_reply_decodes_to_the_same_document() -> None:
    from handoffd.daemon.history_io import history_reply
    from handoffd.protocol import codec
    from handoffd.protocol.messages_observability import GetTaskHistory
    from handoffd.scheduler.history import document
    from handoffd.scheduler.owned import history_of

    run = _run()
    a = run.tasks["a"]
    run.assign(a, "n1", 1.0)
    run.succeeded(a, "n1", 3, b"v", 2.0)

    class Owner:
        def run_history(self, run_id: str, since: float, brief: bool) -> object:
            return history_of(run, since, brief)

    def doc(brief: bool) -> dict:
        reply = history_reply(Owner(), "me", GetTaskHistory(1, "r", 0.0, brief))  # type: ignore[arg-type]
        decoded = codec.decode(codec.encode(reply, sender="me"))
        assert decoded is not None
        return document(decoded.msg)

    full, brief = doc(False), doc(True)
    assert [t["transitions"] for t in brief["tasks"]] == [[], []]
    for t in full["tasks"]:
        t["transitions"] = []
    assert brief == full and full["tasks"][1]["deps"] == ["a"]
