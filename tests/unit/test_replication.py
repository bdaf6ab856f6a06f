"""Pure tests of owner replication and takeover (handoffd/replication): standby order, the log with
acks and catch-up snapshots, stale terms ignored, one takeover per side, and the takeover merge
restored into a real OwnerScheduler."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from handoffd.protocol.messages import ALIVE, DEAD, SUSPECT, ErrorInfo, ReplicateLog, TaskDelta
from handoffd.protocol.snapshot import decode_run, encode_run_data, info_to_data
from handoffd.replication import log as rlog
from handoffd.replication.standby import StandbyStore
from handoffd.replication.takeover import Holdings, merge
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.run import ATTEMPT_STRIDE
from handoffd.spec import RunOptions, TaskSpec

NODES = ["a", "b", "c", "d", "e"]


def spec(task_id: str, *deps: str) -> TaskSpec:
    return TaskSpec(
        id=task_id, deps=tuple(deps), cost={"cpu": 1.0}, payload=b"code-" + task_id.encode()
    )


def owner_with_chain(name: str = "a") -> OwnerScheduler:
    """Owner ``name`` of run r1: x -> y -> z, plus w independent; workers b and c, 4 cpus each."""
    sched = OwnerScheduler(name, now=0.0)
    for n in ["b", "c"]:
        sched.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
    sched.handle(
        ev.RunSubmitted("r1", (spec("x"), spec("y", "x"), spec("z", "y"), spec("w")), RunOptions()),
        0.0,
    )
    return sched


def packed(data: dict[str, Any]) -> bytes:
    return encode_run_data(data)


def log_batch(
    seq: int,
    deltas: tuple[TaskDelta, ...] = (),
    run_state: str = "RUNNING",
    term: int = 0,
    standbys: tuple[str, ...] = ("b", "c"),
    error: ErrorInfo | None = None,
) -> ReplicateLog:
    return ReplicateLog("r1", term, seq, standbys, deltas, run_state, False, error)


def test_standby_order_is_deterministic_and_excludes_the_owner() -> None:
    order = rlog.standby_order("run-1", NODES)
    assert order == rlog.standby_order("run-1", list(reversed(NODES)))  # input order irrelevant
    assert sorted(order) == NODES
    log_a = rlog.ReplicationLog("a", 2)
    chosen = log_a.choose("run-1", NODES)
    assert chosen == [n for n in order if n != "a"][:2]
    # A node leaving only removes it from the order; the others keep their relative order.
    rest = [n for n in order if n != order[0]]
    assert rlog.standby_order("run-1", rest) == rest
    # Different runs spread over different standbys.
    firsts = {rlog.standby_order(f"run-{i}", NODES)[0] for i in range(50)}
    assert len(firsts) >= 4


def test_accept_waits_for_snapshot_acks_and_keeps_a_slow_standby() -> None:
    log_a = rlog.ReplicationLog("a", 2, accept_timeout=2.0)
    out = log_a.track("r", ["a", "b", "c"], 0.0, accept=True)
    snaps = [i for i in out if isinstance(i, rlog.SendSnapshot)]
    assert {s.node for s in snaps} == {"b", "c"} and not any(
        isinstance(i, rlog.Accept) for i in out
    )
    first, second = log_a.standbys("r")
    assert log_a.on_ack("r", first, 0, False, 0.1) == []  # one of two: keep waiting
    assert log_a.tick(1.0) == []
    out = log_a.tick(2.5)  # the other has not answered: the client is answered with one replica
    assert out == [rlog.Accept("r", (first,))]
    assert log_a.standbys("r") == (first, second)  # still a standby: its batches go on
    # ... and it is not resent the snapshot it is still taking for a while (4 resend_after)
    resent = {t / 2: log_a.tick(t / 2) for t in range(6, 15)}
    assert {t: out for t, out in resent.items() if out} == {
        6.5: [rlog.SendSnapshot("r", second, 0, (first, second))]
    }
    (batch,) = (log_a.changed("r", "t"), log_a.flush())[1]
    assert isinstance(batch, rlog.SendLog) and batch.nodes == (first, second)


def test_accept_waits_for_a_first_ack_past_the_timeout() -> None:
    """Under load no standby acked within accept_timeout: the client was answered with the run
    replicated nowhere (the standbys dropped), and the owner's death then lost it (issue 19)."""
    log_a = rlog.ReplicationLog("a", 2, accept_timeout=2.0, accept_limit=20.0)
    log_a.track("r", ["a", "b", "c"], 0.0, accept=True)
    first, second = log_a.standbys("r")
    assert [log_a.tick(t / 2) for t in range(1, 12)] == [[]] * 11  # to 5.5 s: no ack, no answer
    assert log_a.standbys("r") == (first, second)
    assert log_a.on_ack("r", second, 0, False, 6.0) == [rlog.Accept("r", (second,))]
    assert log_a.standbys("r") == (first, second)


def test_accept_gives_up_waiting_after_the_limit() -> None:
    log_a = rlog.ReplicationLog("a", 2, accept_timeout=2.0, accept_limit=20.0)
    log_a.track("r", ["a", "b", "c"], 0.0, accept=True)
    assert log_a.tick(19.9) == []
    assert log_a.tick(20.0) == [rlog.Accept("r", ())]  # the shell logs it: no replica yet
    assert len(log_a.standbys("r")) == 2
    assert log_a.on_ack("r", log_a.standbys("r")[0], 0, False, 21.0) == []  # answered once


def test_a_dead_standby_replaced_during_the_accept_is_waited_for() -> None:
    log_a = rlog.ReplicationLog("a", 1, accept_timeout=2.0)
    log_a.track("r", ["a", "b", "c"], 0.0, accept=True)
    (first,) = log_a.standbys("r")
    other = "c" if first == "b" else "b"
    out = log_a.members_changed(["a", other], 3.0)  # the first died: the next live one
    assert [(type(o).__name__, getattr(o, "node", "")) for o in out] == [("SendSnapshot", other)]
    assert log_a.tick(3.5) == []
    assert log_a.on_ack("r", other, 0, False, 4.0) == [rlog.Accept("r", (other,))]


def test_no_live_peer_accepts_at_once_unreplicated() -> None:
    log_a = rlog.ReplicationLog("a", 2)
    assert log_a.track("r", ["a"], 0.0, accept=True) == [rlog.Accept("r", ())]


def test_log_batches_per_flush_and_standby_applies_in_order() -> None:
    sched = owner_with_chain()
    data = sched.snapshot("r1")
    log_a = rlog.ReplicationLog("a", 2)
    log_a.track("r1", ["a", "b", "c"], 0.0, accept=False)
    standby = StandbyStore("b")
    ack = standby.on_snapshot("r1", 0, 0, "a", "a:1", ("b", "c"), packed(data))
    assert (ack.seq, ack.need_snapshot) == (0, False)
    log_a.changed("r1", "x")
    log_a.changed("r1", "w")
    log_a.changed("r1", "x")
    (batch,) = log_a.flush()
    # (in the order first changed: x's second change keeps its place)
    assert isinstance(batch, rlog.SendLog) and batch.seq == 1 and batch.task_ids == ("x", "w")
    assert log_a.flush() == []  # nothing new: no batch
    x_done = TaskDelta("x", "DONE", 1, "b", 3, ("b",), 0, 0, 1, 0)
    ack = standby.on_log(log_batch(1, (x_done,)), "a:1", [b"v"])
    assert ack is not None and (ack.seq, ack.need_snapshot) == (1, False)
    assert standby.replicas["r1"].run_data()["tasks"]["x"]["state"] == "DONE"
    assert standby.replicas["r1"].run_data()["tasks"]["x"]["value"] == b"v"
    assert standby.replicas["r1"].run_data()["tasks"]["x"]["locations"] == ["b"]
    # A duplicate batch is harmless; the owner learns how far the standby got.
    ack = standby.on_log(log_batch(1, (x_done,)), "a:1", [b"v"])
    assert ack is not None and ack.seq == 1 and not ack.need_snapshot
    assert log_a.on_ack("r1", "b", 1, False, 0.2) == []


def test_gap_asks_for_a_snapshot_and_catches_up() -> None:
    sched = owner_with_chain()
    standby = StandbyStore("b")
    standby.on_snapshot("r1", 0, 0, "a", "a:1", ("b",), packed(sched.snapshot("r1")))
    ack = standby.on_log(log_batch(3, standbys=("b",)), "a:1", [])  # 1 and 2 lost
    assert ack is not None and ack.need_snapshot and ack.seq == 0
    log_a = rlog.ReplicationLog("a", 1)
    log_a.track("r1", ["a", "b"], 0.0, accept=False)
    for _ in range(3):
        log_a.changed("r1", "x")
        log_a.flush()
    out = log_a.on_ack("r1", "b", ack.seq, ack.need_snapshot, 1.0)
    assert out == [rlog.SendSnapshot("r1", "b", 3, ("b",))]
    later = sched.snapshot("r1")
    later["state"] = "DONE"
    ack = standby.on_snapshot("r1", 0, 3, "a", "a:1", ("b",), packed(later))
    assert ack.seq == 3 and standby.replicas["r1"].run_data()["state"] == "DONE"
    ack2 = standby.on_log(log_batch(4, (), "DONE", standbys=("b",)), "a:1", [])
    assert ack2 is not None and ack2.seq == 4 and not ack2.need_snapshot


def test_laggard_gets_a_snapshot_unasked() -> None:
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    log_a.track("r", ["a", "b"], 0.0, accept=False)
    log_a.on_ack("r", "b", 0, False, 0.0)
    log_a.changed("r", "t")
    log_a.flush()  # seq 1, never acked
    assert log_a.tick(0.5) == []
    assert log_a.tick(1.6) == [rlog.SendSnapshot("r", "b", 1, ("b",))]
    log_a.on_ack("r", "b", 1, False, 1.7)
    assert log_a.tick(5.0) == []


def test_caught_up_runs_leave_tick_and_flush_until_they_change() -> None:
    """Finished runs stay tracked, so tick() and flush() walk only runs with work: a caught-up run
    drops out and comes back on its next change, with the laggard resend as before."""
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    for i in range(50):
        log_a.track(f"r{i}", ["a", "b"], 0.0, accept=True)
        log_a.on_ack(f"r{i}", "b", 0, False, 0.0)
    assert log_a.tick(0.1) == [] and not log_a._watch
    assert log_a.flush() == []
    log_a.changed("r7", "t")
    out = log_a.flush()
    assert [(o.run_id, o.seq) for o in out] == [("r7", 1)]
    assert list(log_a._watch) == ["r7"] and not log_a._dirty
    assert log_a.tick(1.0) == []  # b is short of seq 1 since now
    resent = log_a.tick(2.0)
    assert [(type(o).__name__, o.run_id, o.node) for o in resent] == [("SendSnapshot", "r7", "b")]
    log_a.on_ack("r7", "b", 1, False, 2.0)
    assert log_a.tick(2.1) == [] and not log_a._watch


def test_stale_term_is_ignored_and_answered_with_the_higher_term() -> None:
    sched = owner_with_chain()
    standby = StandbyStore("c")
    standby.on_snapshot("r1", 1, 5, "b", "b:1", ("c",), packed(sched.snapshot("r1")))
    ack = standby.on_snapshot("r1", 0, 9, "a", "a:1", ("c",), packed(sched.snapshot("r1")))
    assert ack.term == 1  # the deposed owner hears of term 1 and steps down
    assert standby.replicas["r1"].owner == "b" and standby.replicas["r1"].seq == 5
    ack2 = standby.on_log(log_batch(6, (), "FAILED", standbys=("c",)), "a:1", [])
    assert ack2 is not None and ack2.term == 1
    assert standby.replicas["r1"].run_data()["state"] == "RUNNING"
    assert not standby.new_owner("r1", 0, "a")
    # A higher term from another owner supersedes our replica: kept, naming the new owner,
    # until the new owner's state reaches us; its old owner's log batches are still refused.
    assert standby.new_owner("r1", 2, "d", "d:1")
    replica = standby.replicas["r1"]
    assert (replica.owner, replica.owner_address, replica.term, replica.superseded) == (
        "d",
        "d:1",
        1,
        2,
    )
    ack3 = standby.on_log(log_batch(6, (), "FAILED", standbys=("c",)), "b:1", [])
    assert ack3 is not None and ack3.term == 2 and replica.seq == 5
    # The new owner's snapshot at its term replaces it.
    standby.on_snapshot("r1", 2, 0, "d", "d:1", ("c",), packed(sched.snapshot("r1")))
    assert (standby.replicas["r1"].term, standby.replicas["r1"].superseded) == (2, 0)


def test_a_superseded_replica_is_taken_over_if_the_new_owner_dies_too() -> None:
    """The owner a died, standby b took over at term 1; c heard of it before b's snapshot came.
    c dropped its replica then, so when b died too the run was lost (issue 19). Now c keeps it
    and takes over, two terms above b's: b's own standbys, if any got b's state, take over one
    above, so no two takeovers share a term."""
    data = owner_with_chain().snapshot("r1")
    c = StandbyStore("c")
    c.on_snapshot("r1", 0, 3, "a", "a:1", ("b", "c"), packed(data))
    assert c.new_owner("r1", 1, "b", "b:1")
    view = {"a": DEAD, "b": ALIVE, "c": ALIVE}
    assert c.takeover_due(view.get) == []  # b owns it and is alive
    view["b"] = SUSPECT
    assert c.takeover_due(view.get) == []
    view["b"] = DEAD
    assert c.takeover_due(view.get) == ["r1"]
    assert c.replicas["r1"].base_term() == 2  # the takeover goes to term 3
    assert c.replicas["r1"].run_data()["tasks"]  # all of it, as a's
    # A deposed owner's drop (a's, term 0) says nothing of b's choice; b's own drop does.
    c.drop("r1", 0)
    assert "r1" in c.replicas
    c.drop("r1", 1)
    assert "r1" not in c.replicas


def test_the_takeover_order_holds_for_superseded_replicas() -> None:
    """a's standbys (b, c, d) in order; b took over; c and d both hold a's state, superseded:
    when b dies only c takes over, as b's own order (c, d) says."""
    data = owner_with_chain().snapshot("r1")
    stores = {n: StandbyStore(n) for n in "cd"}
    for store in stores.values():
        store.on_snapshot("r1", 0, 0, "a", "a:1", ("b", "c", "d"), packed(data))
        store.new_owner("r1", 1, "b", "b:1")
    view = {"a": DEAD, "b": DEAD, "c": ALIVE, "d": ALIVE}
    assert stores["c"].takeover_due(view.get) == ["r1"]
    assert stores["d"].takeover_due(view.get) == []
    view["c"] = DEAD
    assert stores["d"].takeover_due(view.get) == ["r1"]


def test_takeover_order_and_no_double_takeover_within_one_side() -> None:
    data = owner_with_chain().snapshot("r1")
    b, c = StandbyStore("b"), StandbyStore("c")
    for store in (b, c):
        store.on_snapshot("r1", 0, 0, "a", "a:1", ("b", "c"), packed(data))
    view = {"a": ALIVE, "b": ALIVE, "c": ALIVE}
    assert b.takeover_due(view.get) == [] and c.takeover_due(view.get) == []
    view["a"] = SUSPECT  # not dead yet: nobody moves
    assert b.takeover_due(view.get) == [] and c.takeover_due(view.get) == []
    view["a"] = DEAD
    assert b.takeover_due(view.get) == ["r1"]
    assert c.takeover_due(view.get) == []  # b is ahead of c and alive: c waits
    view["b"] = SUSPECT
    assert c.takeover_due(view.get) == []  # a suspect is not dead
    replica = b.take("r1")
    assert replica is not None and b.term("r1") == 1 and b.takeover_due(view.get) == []
    # b dies during or after its takeover: only now does c take over (term from b's view: c
    # learned b's term 1 from b's ReconcileRun, dropping its replica unless b re-replicated).
    view["b"] = DEAD
    assert c.takeover_due(view.get) == ["r1"]


def test_merge_keeps_survivors_adopts_running_and_requeues_the_rest() -> None:
    sched = owner_with_chain()
    run = sched.run_state("r1")
    assert run is not None
    x_node = run.tasks["x"].node
    assert x_node is not None
    sched.handle(ev.TaskSucceeded("r1", "x", 1, x_node, 10), 0.1)  # replicated
    data = sched.snapshot("r1")  # what the standby holds when the owner dies
    w_node, w_attempt = run.tasks["w"].node, run.tasks["w"].attempt
    assert w_node is not None
    # Since the last batch: y finished on b (its value is there); w is still running on w_node.
    # b holds x too (fetched as y's input), so x survives even if x_node was the dead owner.
    holdings = {"b": Holdings({"x": 10, "y": 7}, {}), "c": Holdings({}, {})}
    holdings[w_node] = Holdings(dict(holdings[w_node].held), {"w": w_attempt})
    merged = merge(data, holdings)
    tasks = merged["tasks"]
    assert tasks["x"]["state"] == "DONE" and "b" in tasks["x"]["locations"]
    assert tasks["y"]["state"] == "DONE" and tasks["y"]["node"] == "b"
    assert tasks["y"]["completions"] == 1 and tasks["y"]["size"] == 7
    assert tasks["z"]["state"] == "READY"
    assert (tasks["w"]["state"], tasks["w"]["node"], tasks["w"]["attempt"]) == (
        "RUNNING", w_node, w_attempt)  # fmt: skip
    # Restore into a standby's scheduler at term 1 (the old owner a is dead in its view).
    new = OwnerScheduler("b", now=1.0)
    for n in ["b", "c"]:
        new.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 1.0)
    new.handle(ev.NodeUpdate("a", "a:1", False, {"cpu": 4.0}, {}, 2), 1.0)
    out = new.restore_run(merged, 1.0, term=1)
    new.validate()
    dispatches = [i for i in out if isinstance(i, ev.Dispatch)]
    assert [(item.task_id, d.term) for d in dispatches for item in d.items] == [("z", 1)]
    # New attempts never collide with the old owner's; the adopted attempt still reports here.
    assert dispatches[0].items[0].attempt == ATTEMPT_STRIDE + 1
    new.handle(ev.TaskSucceeded("r1", "w", w_attempt, w_node, 4), 1.1)
    status = new.run_status("r1")
    assert status is not None and status.term == 1 and status.counts["DONE"] == 3
    # A report of an old-term attempt of z (dispatched by the dead owner, not replicated) is stale.
    new.handle(ev.TaskSucceeded("r1", "z", 1, "c", 4), 1.2)
    assert new.run_status("r1").counts["DONE"] == 3  # type: ignore[union-attr]
    new.validate()


def test_merge_recomputes_a_done_task_whose_copies_died() -> None:
    sched = owner_with_chain()
    run = sched.run_state("r1")
    assert run is not None
    x_node = run.tasks["x"].node
    assert x_node is not None
    sched.handle(ev.TaskSucceeded("r1", "x", 1, x_node, 10), 0.1)
    data = sched.snapshot("r1")
    merged = merge(data, {})  # nobody holds x any more, and it was not inline
    assert merged["tasks"]["x"]["state"] == "READY"
    assert merged["tasks"]["y"]["state"] == "PENDING"
    assert merged["tasks"]["x"]["losses"] == 1


def test_step_down_drops_the_run_without_cancels() -> None:
    sched = owner_with_chain()
    assert sched.step_down("r1")
    assert sched.run_status("r1") is None and sched.runs() == []
    for n in ["a", "b", "c"]:
        assert sched.outstanding(n) == {}
    sched.validate()
    assert not sched.step_down("r1")


class EagerStandby:
    """The standby as it was before replicas stayed packed (reference for the lazy one): unpack
    each snapshot on arrival, apply each log batch to it at once (one run, one term)."""

    def __init__(self) -> None:
        self.seq = -1
        self.data: dict[str, Any] | None = None

    def on_snapshot(self, seq: int, raw: bytes) -> int:
        if self.data is not None and self.seq > seq:
            return self.seq
        self.seq = seq
        self.data = decode_run(raw)
        return seq

    def on_log(self, msg: ReplicateLog, frames: list[bytes]) -> tuple[int, bool]:
        if self.data is None or msg.seq > self.seq + 1:
            return (self.seq if self.data is not None else -1), True
        if msg.seq <= self.seq:
            return self.seq, False
        records = self.data["tasks"]
        for d in msg.tasks:
            fields = {
                "task_id": d.task_id,
                "state": d.state,
                "attempt": d.attempt,
                "node": d.node,
                "size": d.size,
                "locations": list(d.locations),
                "failures": d.failures,
                "losses": d.losses,
                "completions": d.completions,
                "value": bytes(frames[d.frame]) if 0 <= d.frame < len(frames) else None,
            }
            rec = records.get(d.task_id)
            if rec is None:
                continue
            for key, value in fields.items():
                if key != "task_id" and (key != "value" or value is not None):
                    rec[key] = value
            if fields["state"] != "DONE":
                rec["value"] = None
        error = info_to_data(msg.error)
        self.data.update({"state": msg.run_state, "released": msg.released, "error": error})
        self.seq = msg.seq
        return msg.seq, False

    def run(self) -> dict[str, Any]:
        """The data as a takeover sees it: a failed or cancelled run's open tasks CANCELLED (the
        owner logs no row for a task its run's end cancelled before it went out)."""
        assert self.data is not None
        data = {**self.data, "tasks": {t: dict(r) for t, r in self.data["tasks"].items()}}
        if data["state"] in ("FAILED", "CANCELLED"):
            for rec in data["tasks"].values():
                if rec["state"] not in ("DONE", "FAILED", "CANCELLED"):
                    rec["state"] = "CANCELLED"
        return data


# -- the packed replica against the eager standby, as a state machine ----------------------------

TASKS = ("w", "x", "y", "z")  # owner_with_chain's run
NO_VALUE, OUT_OF_RANGE = -1, 7  # a delta's frame: none, or past the batch's frames (at most 6)

# One delta, as drawn: (task, state, attempt, node, size, locations, failures, losses, completions,
# value), the value being a frame's bytes (also on a state that is not DONE: cleared anyway), or
# NO_VALUE or OUT_OF_RANGE. A task the snapshot does not have ("ghost") is skipped by both.
DELTAS = st.tuples(
    st.sampled_from([*TASKS, "ghost"]),
    st.sampled_from(["DONE", "READY", "RUNNING", "FAILED"]),
    st.integers(1, 4),
    st.sampled_from([None, "b", "c"]),
    st.integers(0, 9),
    st.lists(st.sampled_from(["b", "c", "d"]), max_size=2, unique=True).map(
        lambda v: tuple(sorted(v))
    ),
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(0, 3),
    st.one_of(st.binary(max_size=4), st.sampled_from([NO_VALUE, OUT_OF_RANGE])),
)
# A batch: several deltas (of one task, too), the run's state, released, whether it has an error.
BATCHES = st.tuples(
    st.lists(DELTAS, max_size=6),
    st.sampled_from(["RUNNING", "DONE", "FAILED"]),
    st.booleans(),
    st.booleans(),
)
# The tasks a snapshot holds as DONE, with their values.
DONE_VALUES = st.dictionaries(st.sampled_from(TASKS), st.binary(min_size=3, max_size=3))
LOST = st.integers(0, 9).map(lambda roll: roll == 0)  # one batch in ten never arrives: a gap


def build_batch(seq: int, drawn: tuple[Any, ...]) -> tuple[ReplicateLog, list[bytes]]:
    deltas, run_state, released, with_error = drawn
    frames: list[bytes] = []
    tasks = []
    for *fields, value in deltas:
        frame = value if isinstance(value, int) else len(frames)
        if isinstance(value, bytes):
            frames.append(value)
        tasks.append(TaskDelta(*fields, frame))
    error = ErrorInfo("HandoffError", None, str(seq), "", "", 0, {}, {}, "") if with_error else None
    msg = ReplicateLog("r1", 0, seq, ("b", "c"), tuple(tasks), run_state, released, error)
    return msg, frames


def restored(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What a standby taking the run over at term 1 starts with: the instructions and the run."""
    new = OwnerScheduler("b", now=0.0)
    for n in ["b", "c"]:
        new.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
    holdings = {"b": Holdings({}, {}), "c": Holdings({}, {})}
    out = new.restore_run(merge(data, holdings), 1.0, term=1)  # merge works on a copy
    return repr(out), new.snapshot("r1")


class PackedReplicaMachine(RuleBasedStateMachine):
    """Same snapshots and log batches to the packed replica (``StandbyStore``) and to the eager
    standby: duplicates, gaps, lost and out-of-order snapshots, several deltas of one task in one
    batch and across batches, values kept by a DONE delta without one. After every step the run
    rebuilt from the replica equals what the eager standby holds (rebuilding is repeatable), and
    so did every ack; taken over and restored into a scheduler, both give the same run (then a
    new standby goes on from the owner's newest snapshot)."""

    sent = Bundle("sent")

    def __init__(self) -> None:
        super().__init__()
        self.base = owner_with_chain().snapshot("r1")
        assert tuple(sorted(self.base["tasks"])) == TASKS
        self.lazy, self.eager = StandbyStore("b"), EagerStandby()
        self.seq = 0  # the owner's newest batch
        self.taken_at = -1  # the owner's newest batch when the run was last taken over

    def snapshot_at(self, seq: int, done: dict[str, bytes]) -> None:
        tasks = {}
        for task_id, rec in self.base["tasks"].items():  # copies of the records, then packed
            tasks[task_id] = {**rec, "history": []}
            if task_id in done:
                tasks[task_id].update(state="DONE", value=done[task_id])
        raw = packed({**self.base, "tasks": tasks})
        ack = self.lazy.on_snapshot("r1", 0, seq, "a", "a:1", ("b", "c"), raw)
        assert ack.seq == self.eager.on_snapshot(seq, raw)

    def deliver(self, batch: tuple[ReplicateLog, list[bytes]], answer: dict[str, bytes]) -> None:
        msg, frames = batch
        ack = self.lazy.on_log(msg, "a:1", frames)
        assert ack is not None
        assert (ack.seq, ack.need_snapshot) == self.eager.on_log(msg, frames)
        if ack.need_snapshot:
            self.snapshot_at(self.seq, answer)  # the owner answers a gap with its newest seq

    @initialize(done=DONE_VALUES)
    def first_snapshot(self, done: dict[str, bytes]) -> None:
        self.snapshot_at(0, done)

    @rule(target=sent, drawn=BATCHES, lost=LOST, answer=DONE_VALUES)
    def next_batch(
        self, drawn: tuple[Any, ...], lost: bool, answer: dict[str, bytes]
    ) -> tuple[ReplicateLog, list[bytes]]:
        self.seq += 1
        batch = build_batch(self.seq, drawn)
        if not lost:
            self.deliver(batch, answer)
        return batch

    @rule(batch=sent, answer=DONE_VALUES)
    def send_again(self, batch: tuple[ReplicateLog, list[bytes]], answer: dict[str, bytes]) -> None:
        self.deliver(batch, answer)  # a duplicate, a stale batch, or a lost one arriving late

    @rule(back=st.integers(-1, 3), done=DONE_VALUES)
    def catch_up_snapshot(self, back: int, done: dict[str, bytes]) -> None:
        self.snapshot_at(max(0, self.seq - back), done)  # maybe late, or one ahead

    @precondition(lambda self: self.seq > self.taken_at)  # something new to take over
    @rule(done=DONE_VALUES)
    def take_over(self, done: dict[str, bytes]) -> None:
        self.taken_at = self.seq
        taken = self.lazy.take("r1")
        assert taken is not None and self.lazy.term("r1") == 1 and self.eager.data is not None
        assert restored(taken.run_data()) == restored(self.eager.run())
        # Then a new standby: the owner sends it its newest state first.
        self.lazy, self.eager = StandbyStore("b"), EagerStandby()
        self.snapshot_at(self.seq, done)

    @invariant()
    def replica_is_the_eager_run(self) -> None:
        replica = self.lazy.replicas["r1"]
        assert replica.seq == self.eager.seq
        assert replica.run_data() == self.eager.run()
        assert replica.run_data() == self.eager.run()  # a fresh copy each time


PackedReplicaMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
test_packed_replica_rebuilds_the_run_the_eager_standby_had = PackedReplicaMachine.TestCase


def test_a_flush_with_a_limit_splits_into_numbered_batches_of_every_change() -> None:
    """A flush of more changed tasks than its limit sends them over several batches in order (one
    encoded per loop iteration, issue 19); together they list each change once, as one flush would,
    and a change made meanwhile goes with the rest."""
    rng = random.Random(5)
    for _ in range(20):
        log_a = rlog.ReplicationLog("a", 1)
        log_a.track("r", ["a", "b"], 0.0, accept=False)
        changed = {f"t{rng.randrange(500)}" for _ in range(rng.randrange(1, 400))}
        for task_id in changed:
            log_a.changed("r", task_id)
        limit = rng.choice((1, 7, 64, 1000))
        sent: list[str] = []
        seqs: list[int] = []
        late = "late"
        while log_a.pending():
            batches = log_a.flush(limit)
            for batch in batches:
                assert isinstance(batch, rlog.SendLog) and len(batch.task_ids) <= limit
                sent += batch.task_ids
                seqs.append(batch.seq)
            if late:
                log_a.changed("r", late)
                changed.add(late)
                late = ""
        assert sorted(sent) == sorted(changed)  # each once
        assert seqs == list(range(1, len(seqs) + 1))
        assert log_a.flush(limit) == []
