"""The daemon's I/O shells on a fake port: no sockets, no event loop, no ``Node``.

``OwnerIO``, ``ResultFetcher`` and ``ReplicationIO`` are built from a ``FakePort`` (records what
they send and reply, fires timers when the test moves its clock) and real pure parts (the owner's
scheduler, the replication log, the standby store), linked by ``daemon.node.wire`` as the node
links them, in either order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from fake_port import FakePort, envelope

from handoffd.daemon.node import wire
from handoffd.daemon.owner import ACCEPT_NOTICE_DELAY, OwnerIO
from handoffd.daemon.owner_waits import REPLICATE_DELAY
from handoffd.daemon.ports import NoFollower
from handoffd.daemon.replication import RECONCILE_TIMEOUT, ReplicationIO
from handoffd.daemon.results import FETCH_TIMEOUT, ResultFetcher
from handoffd.membership.events import MemberChanged
from handoffd.protocol import columns
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.protocol.snapshot import encode_run
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.store import chunks
from handoffd.store.store import ResultStore

RETAIN = 30.0  # keep_results_s of the owners built here
KEEP_STATUS = 5.0
GRACE = 0.2


@dataclass
class Ledger:
    capacity: dict[str, float] = field(default_factory=dict)
    free: dict[str, float] = field(default_factory=dict)
    version: int = 1


@dataclass
class Follower:
    """The executing side as replication sees it: records what it is told to follow."""

    run_owners: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    learned: list[tuple[str, int, str, str]] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)  # task -> size, for every run

    def learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool:
        self.learned.append((run_id, term, address, name))
        self.run_owners[run_id] = (term, address, name)
        return True

    def on_reconcile(self, msg: m.ReconcileRun | m.ProbeHoldings) -> m.RunHoldings:
        self.learn_owner(msg.run_id, msg.term, msg.owner_address, msg.owner)
        held = tuple(m.HeldValue(t, s) for t, s in sorted(self.held.items()))
        return m.RunHoldings(msg.request_id, msg.run_id, msg.term, held, ())


@dataclass
class Replication:
    """The owner's view of replication, recording every call (``Replicator``)."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    hold_accepts: bool = False
    answers: dict[str, Any] = field(default_factory=dict)

    def run_accepted(self, run_id: str, answer: Any) -> None:
        self.calls.append(("run_accepted", run_id))
        if self.hold_accepts:
            self.answers[run_id] = answer
        else:
            answer()

    def run_changed(self, run_id: str) -> None:
        self.calls.append(("run_changed", run_id))

    def run_ended(self, run_id: str) -> None:
        self.calls.append(("run_ended", run_id))

    def released(self, run_id: str) -> None:
        self.calls.append(("released", run_id))

    def forget(self, run_id: str) -> None:
        self.calls.append(("forget", run_id))

    def fenced(self, run_id: str, term: int) -> bool:
        return False

    def redirect(self, msg: Any, conn: bytes) -> bool:
        return False

    def standbys(self, run_id: str) -> tuple[str, ...]:
        return ("s",)

    def taking_over(self, run_id: str) -> bool:
        return False

    def held(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> bool:
        return False


def meta(task_id: str, *deps: str, node: str | None = None) -> m.TaskMeta:
    return m.TaskMeta(task_id, deps, {"cpu": 1.0}, "variadic", node, None, False, None, None, 0)


def owner_on(port: FakePort, **kw: Any) -> OwnerIO:
    return OwnerIO(
        port,
        OwnerScheduler(port.name, now=port.now()),
        resources=Ledger(),  # no capacity here: every task runs on a member
        local_value=kw.pop("local_value", lambda run_id, task_id: None),
        keep_results_s=RETAIN,
        keep_status_s=KEEP_STATUS,
        **kw,
    )


def submit(owner: OwnerIO, port: FakePort, run_id: str = "r1", release: bool = True) -> None:
    msg = m.SubmitAndWait(7, run_id, (meta("f"),), 0, "binpack", None, 30.0, 1 << 20, release)
    owner.handle(msg, [b"code-of-f"], b"client", None)


def run_on_b(
    owner: OwnerIO, port: FakePort, run_id: str = "r1", value: bytes = b"42", size: int = 0
) -> None:
    """Node b accepts the dispatch of f and reports it DONE with ``value``, or with a ``size``
    and no value (kept on b only)."""
    (dispatch,) = port.take_dispatches()
    assert dispatch.address == "b:1" and dispatch.frames == [b"code-of-f"]
    (item,) = dispatch.msg.items
    accepted = m.DispatchReplied(run_id, (m.TaskAttempt("f", item.attempt),), (), {"cpu": 0.0}, 2)
    # as the executor's shell sends them: columns
    owner.handle(columns.replied_columns(accepted), [], b"", envelope("b"))
    frame, frames = (-1, []) if size else (0, [value])
    done = m.TaskReport("f", item.attempt, "DONE", size or len(value), frame, "", "", "", "")
    report = columns.report_columns(m.TasksReported(run_id, (done,), {"cpu": 1.0}, 3))
    owner.handle(report, frames, b"", envelope("b"))


# -- the owner's shell -----------------------------------------------------------------------------


def test_owner_dispatches_answers_the_outcome_and_frees_what_the_client_took() -> None:
    port = FakePort()
    owner = owner_on(port)
    owner.member_updates([port.join("b")])
    submit(owner, port)
    assert port.replies == []  # accepted, but a SubmitAndWait hears RunAccepted only later
    port.advance(REPLICATE_DELAY + ACCEPT_NOTICE_DELAY)  # replicated first: it outlasted the delay
    (accepted,) = port.take_replies(m.RunAccepted)
    assert (accepted.conn, accepted.msg.request_id, accepted.msg.owner) == (b"client", 7, "a")
    run_on_b(owner, port)
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.state == "DONE" and outcome.msg.task_ids == ("f",)
    assert outcome.frames == [b"42"] and outcome.msg.released
    assert outcome.msg.placement == {}  # released: the client reads no placement (owner_waits)
    # The outcome carried every result with release: b frees the run now, not after RETAIN.
    assert [s.address for s in port.take(m.FreeRun)] == ["b:1"]
    # The status stays answerable for KEEP_STATUS, then the run is forgotten.
    port.advance(KEEP_STATUS / 2)
    owner.tick(port.now())
    assert owner.scheduler.run_status("r1") is not None
    port.advance(KEEP_STATUS)
    owner.tick(port.now())
    assert owner.scheduler.run_status("r1") is None and owner.retention.tracked() == 0


def test_owner_frees_uncollected_results_after_the_retention_time() -> None:
    port = FakePort()
    owner = owner_on(port)
    replication = Replication()
    owner.replication = replication
    owner.member_updates([port.join("b")])
    submit(owner, port, release=False)
    run_on_b(owner, port)
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.released is False and outcome.msg.placement == {"f": "b"}
    port.advance(RETAIN - 1)
    owner.tick(port.now())
    assert port.take(m.FreeRun) == [] and ("released", "r1") not in replication.calls
    port.advance(1)
    owner.tick(port.now())
    assert [s.address for s in port.take(m.FreeRun)] == ["b:1"]
    assert ("released", "r1") in replication.calls and ("forget", "r1") not in replication.calls
    port.advance(KEEP_STATUS)
    owner.tick(port.now())
    assert replication.calls[-1] == ("forget", "r1") and owner.scheduler.runs() == []


def test_owner_answers_the_client_only_once_replication_holds_the_run() -> None:
    port = FakePort()
    owner = owner_on(port)
    replication = Replication(hold_accepts=True)
    owner.replication = replication
    owner.member_updates([port.join("b")])
    msg = m.SubmitRun(3, "r1", (meta("f"),), 0, "binpack", None)
    owner.handle(msg, [b"code-of-f"], b"client", None)
    assert port.take_dispatches()  # dispatch does not wait for the standbys
    assert port.replies == []
    replication.answers.pop("r1")()
    (reply,) = port.take_replies(m.RunAccepted)
    assert reply.msg == m.RunAccepted(3, "r1", "a")


def test_owner_answers_a_short_execute_with_its_outcome_and_never_replicates_it() -> None:
    port = FakePort()
    owner = owner_on(port)
    replication = Replication(hold_accepts=True)  # the standbys would never ack
    owner.replication = replication
    owner.member_updates([port.join("b")])
    submit(owner, port)  # SubmitAndWait with release: execute()
    port.advance(REPLICATE_DELAY / 2)
    run_on_b(owner, port)
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.state == "DONE" and outcome.frames == [b"42"] and outcome.msg.released
    port.advance(REPLICATE_DELAY + ACCEPT_NOTICE_DELAY)
    assert ("run_accepted", "r1") not in replication.calls and port.replies == []
    assert len(owner.waiting.short) == 0


def test_owner_replicates_an_execute_that_outlasts_the_delay_before_answering() -> None:
    port = FakePort()
    owner = owner_on(port)
    replication = Replication(hold_accepts=True)
    owner.replication = replication
    owner.member_updates([port.join("b")])
    submit(owner, port)
    port.advance(REPLICATE_DELAY / 2)
    assert replication.calls == []
    port.advance(REPLICATE_DELAY)
    assert replication.calls == [("run_accepted", "r1")]
    run_on_b(owner, port)
    assert port.replies == []  # DESIGN 3.5: not before the standbys hold it
    replication.answers.pop("r1")()
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.state == "DONE" and outcome.msg.released


@pytest.mark.parametrize("release", [True, False])
def test_owner_replicates_a_run_whose_answer_is_not_final(release: bool) -> None:
    """Without release the run stays for the client to read; with a result the outcome cannot
    carry (held on b only) the client fetches it later: both need the standbys first."""
    port = FakePort()
    owner = owner_on(port)
    replication = Replication(hold_accepts=True)
    owner.replication = replication
    owner.member_updates([port.join("b")])
    submit(owner, port, release=release)
    if not release:
        assert replication.calls == [("run_accepted", "r1")]  # at once, as before
    run_on_b(owner, port, size=7)  # DONE, its value only on b: pending in the outcome
    assert ("run_accepted", "r1") in replication.calls and port.replies == []
    replication.answers.pop("r1")()
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.pending == ("f",) and not outcome.msg.released
    assert outcome.msg.placement == {"f": "b"}  # not released: the client may read it


@dataclass
class Redirecting(Replication):
    """Replication that knows every run id as another node's (``Replicator.redirect``)."""

    redirected: list[Any] = field(default_factory=list)

    def redirect(self, msg: Any, conn: bytes) -> bool:
        self.redirected.append(msg)
        return True


@pytest.mark.parametrize("kind", [m.SubmitRun, m.SubmitAndWait])
def test_owner_leaves_a_submission_of_a_run_another_node_owns_to_replication(kind: Any) -> None:
    """A submission's short way in (``OwnerIO.handle``, by exact type) still asks replication
    first: a run id known as another node's is redirected, never started twice."""
    port = FakePort()
    owner = owner_on(port)
    replication = Redirecting()
    owner.replication = replication
    owner.member_updates([port.join("b")])
    rest = (30.0, 1 << 20, True) if kind is m.SubmitAndWait else ()
    msg = kind(7, "r1", (meta("f"),), 0, "binpack", None, *rest)
    owner.handle(msg, [b"code-of-f"], b"client", None)
    assert replication.redirected == [msg]
    assert owner.scheduler.runs() == [] and port.take_dispatches() == []


def test_owner_takes_a_retried_submission_as_a_wait_on_the_same_run() -> None:
    """The same run id submitted again (a client retrying after a lost reply): one run, one
    dispatch, and both requests answered with its outcome."""
    port = FakePort()
    owner = owner_on(port)
    owner.member_updates([port.join("b")])
    msg = m.SubmitAndWait(7, "r1", (meta("f"),), 0, "binpack", None, 30.0, 1 << 20, False)
    owner.handle(msg, [b"code-of-f"], b"client", None)
    again = m.SubmitAndWait(8, "r1", (meta("f"),), 0, "binpack", None, 30.0, 1 << 20, False)
    owner.handle(again, [b"code-of-f"], b"client", None)
    run_on_b(owner, port)  # (one dispatch: it unpacks exactly one)
    outcomes = port.take_replies(m.RunOutcome)
    assert sorted(o.msg.request_id for o in outcomes) == [7, 8]
    assert all(o.msg.state == "DONE" for o in outcomes)


def test_owner_rejects_a_bad_submission_with_a_clear_reason() -> None:
    port = FakePort()
    owner = owner_on(port)
    msg = m.SubmitRun(3, "r1", (meta("f", "missing"),), 0, "binpack", None)
    owner.handle(msg, [b"code-of-f"], b"client", None)
    (reply,) = port.take_replies(m.RunRejected)
    error = reply.msg.error
    assert (error.kind, error.validation_kind, error.function_id) == (
        "ValidationError",
        "missing_dependency",
        "f",
    )
    assert "'missing'" in error.message
    assert owner.scheduler.runs() == [] and port.sent == []


# -- the results shell -----------------------------------------------------------------------------


def done_elsewhere(port: FakePort) -> OwnerScheduler:
    """An owner's scheduler whose run r1 has f DONE, its value (too big to send along) held only on
    node b, built through the owner's shell."""
    owner = owner_on(FakePort(states=dict(port.states)))
    owner.member_updates([owner.port.join("b")])
    submit(owner, owner.port)
    run_on_b(owner, owner.port, size=1 << 20)
    return owner.scheduler


def test_results_fetch_a_value_from_its_holder_for_the_client() -> None:
    port = FakePort()
    port.join("b")
    fetcher = ResultFetcher(port, done_elsewhere(port), lambda run_id, task_id: None)
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",)), b"client")
    (fetch,) = port.take(FetchChunks)
    assert fetch.address == "b:1" and fetch.msg.reply_to == "a:1" and fetch.msg.key == "f"
    rid, size = fetch.msg.request_id, fetch.msg.chunk_bytes
    assert fetcher.on_values(ValueChunk(rid, "r1", "f", 0, 1, size, -1), [b"v"])
    (answer,) = port.take_replies(m.Results)
    assert answer.msg == m.Results(9, "r1", ("f",), ()) and answer.frames == [b"v"]
    # A late or foreign answer is not ours: the node's executor gets it.
    assert not fetcher.on_values(m.ValuesFetched(1, "r1", ("f",), ()), [b"v"])


def test_results_bigger_than_a_chunk_are_pulled_in_chunks_and_assembled() -> None:
    port = FakePort()
    port.join("b")
    chunk = 64 << 10
    fetcher = ResultFetcher(
        port, done_elsewhere(port), lambda run_id, task_id: None, chunk_bytes=chunk
    )
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",)), b"client")
    (fetch,) = port.take(FetchChunks)
    value = bytes(range(256)) * (10 * chunk // 256) + b"tail"  # 11 chunks, the last short
    held = ResultStore(1 << 30)
    held.put("r1", "f", value)
    asks = [fetch.msg]
    while asks:
        ask = asks.pop(0)
        for answer, frames in chunks.serve(held, ask):
            assert fetcher.on_values(answer, frames)
        asks += [s.msg for s in port.take(FetchChunks)]
    (answer,) = port.take_replies(m.Results)
    assert answer.msg == m.Results(9, "r1", ("f",), ()) and bytes(answer.frames[0]) == value


def test_results_fetch_that_times_out_reports_the_value_missing() -> None:
    port = FakePort()
    port.join("b")
    fetcher = ResultFetcher(port, done_elsewhere(port), lambda run_id, task_id: None)
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",)), b"client")
    assert len(port.take(FetchChunks)) == 1
    port.advance(FETCH_TIMEOUT)
    (answer,) = port.take_replies(m.Results)
    assert answer.msg == m.Results(9, "r1", (), ("f",))


def test_results_served_from_the_local_store_without_asking_anyone() -> None:
    port = FakePort(name="b", address="b:1")
    store = {("r1", "f"): b"here"}
    fetcher = ResultFetcher(port, done_elsewhere(port), lambda r, t: store.get((r, t)))
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",)), b"client")
    assert port.sent == []
    (answer,) = port.take_replies(m.Results)
    assert answer.frames == [b"here"]
    assert fetcher.outcome_values("r1", 1 << 20) == (["f"], [b"here"], [])


# -- the replication shell -------------------------------------------------------------------------


def replica_of(run_id: str = "r1") -> tuple[m.ReplicateRun, bytes]:
    """What owner ``o`` sends its standby ``s``: its run (g DONE on n, its value kept there; h
    behind it, READY) as a snapshot, built through o's shell."""
    port = FakePort(name="o", address="o:1")
    owner = owner_on(port)
    owner.member_updates([port.join("n")])
    tasks = (meta("g", node="n"), meta("h", "g", node="n"))
    owner.handle(m.SubmitRun(1, run_id, tasks, 0, "binpack", None), [b"g", b"h"], b"c", None)
    (dispatch,) = port.take_dispatches()
    (item,) = dispatch.msg.items
    accepted = m.DispatchReplied(run_id, (m.TaskAttempt("g", item.attempt),), (), {"cpu": 0.0}, 2)
    owner.handle(accepted, [], b"", envelope("n"))
    done = m.TaskReport("g", item.attempt, "DONE", 1 << 20, -1, "", "", "", "")
    owner.handle(m.TasksReported(run_id, (done,), {"cpu": 0.0}, 3), [], b"", envelope("n"))
    run = owner.scheduler.run_state(run_id)
    assert run is not None and run.tasks["g"].state == "DONE" and run.tasks["h"].state != "DONE"
    msg = m.ReplicateRun(run_id, run.term, 0, "o", "o:1", ("s",))
    return msg, encode_run(run)


def standby_node() -> tuple[FakePort, ReplicationIO, OwnerIO, Follower]:
    """Standby ``s`` of owner ``o``'s run, with node ``n``: the shells built replication first
    (construction order does not matter), then wired as the node wires them."""
    port = FakePort(name="s", address="s:1")
    for name in ("o", "n"):
        port.join(name)
    scheduler = OwnerScheduler("s", now=port.now())
    replication = ReplicationIO(port, scheduler, replicas=1, grace=GRACE)
    owner = OwnerIO(
        port,
        scheduler,
        resources=Ledger(),
        local_value=lambda run_id, task_id: None,
        keep_results_s=RETAIN,
    )
    follower = Follower()
    wire(scheduler, owner, replication, follower)
    owner.member_updates(port.members())
    return port, replication, owner, follower


def dies(port: FakePort, replication: ReplicationIO, name: str) -> None:
    old, state = port.set_status(name, m.DEAD)
    replication.member_changed(MemberChanged(name, old, m.DEAD, state))
    replication.members_changed()


def test_standby_acks_a_snapshot_at_once_and_follows_its_owner() -> None:
    port, replication, _, follower = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    (ack,) = port.take(m.ReplicaAcked)
    assert ack.address == "o:1" and ack.msg == m.ReplicaAcked("r1", 0, 0, False)
    assert follower.learned == [("r1", 0, "o:1", "o")]
    assert "r1" in replication.standby.replicas


def test_takeover_on_a_fake_port_confirms_asks_merges_and_resumes() -> None:
    port, replication, owner, follower = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    port.sent.clear()
    dies(port, replication, "o")
    assert port.take(m.ReconcileRun) == []  # not before the grace
    assert replication.taking_over("r1") is False
    port.advance(GRACE)
    asked = port.take(m.ReconcileRun)
    assert sorted(s.address for s in asked) == ["n:1", "s:1"]
    assert {s.msg.term for s in asked} == {1} and {s.term for s in asked} == {1}
    assert replication.taking_over("r1")
    request_id = asked[0].msg.request_id
    # n still holds g's value; we (s) hold nothing.
    held = m.RunHoldings(request_id, "r1", 1, (m.HeldValue("g", 1 << 20),), ())
    replication.handle(held, [], envelope("n"))
    assert owner.scheduler.term_of("r1") is None  # still waiting for our own answer
    replication.handle(m.RunHoldings(request_id, "r1", 1, (), ()), [], envelope("s"))
    assert owner.scheduler.term_of("r1") == 1 and not replication.taking_over("r1")
    # Resumed: h (its input g survived on n) is dispatched to n at the new term.
    (dispatch,) = port.take_dispatches()
    assert dispatch.address == "n:1" and dispatch.term == 1
    assert [i.task_id for i in dispatch.msg.items] == ["h"]
    assert replication.takeover_seconds["r1"] == 0.0  # the fake clock did not move
    # The new owner replicates to its own standby (n, the one member alive).
    (snapshot,) = port.take(m.ReplicateRun)
    assert snapshot.address == "n:1" and snapshot.msg.owner == "s"
    assert follower.learned == [("r1", 0, "o:1", "o")]


def test_takeover_carries_on_without_answers_after_the_timeout() -> None:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")
    port.advance(GRACE)
    assert replication.taking_over("r1")
    port.advance(RECONCILE_TIMEOUT)
    # Nobody answered: g's only copy is unknown, so g runs again, on n.
    assert owner.scheduler.term_of("r1") == 1
    (dispatch,) = port.take_dispatches()
    assert [i.task_id for i in dispatch.msg.items] == ["g"]


def test_a_refuted_death_within_the_grace_takes_nothing_over() -> None:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")
    old, state = port.set_status("o", m.ALIVE)
    replication.member_changed(MemberChanged("o", old, m.ALIVE, state))
    port.advance(GRACE + RECONCILE_TIMEOUT)
    assert port.take(m.ReconcileRun) == [] and owner.scheduler.term_of("r1") is None
    assert "r1" in replication.standby.replicas


def test_a_standby_stands_back_when_another_takes_over_first() -> None:
    port, replication, owner, follower = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")
    port.advance(GRACE)
    (mine, *_) = port.take(m.ReconcileRun)
    # n took the run over at term 2 and asks us: we follow it and drop our own takeover.
    replication.handle(m.ReconcileRun(5, "r1", 2, "n", "n:1"), [], envelope("n", 2))
    assert not replication.taking_over("r1")
    (answer,) = port.take(m.RunHoldings)
    assert answer.address == "n:1" and answer.msg.term == 2
    replication.handle(m.RunHoldings(mine.msg.request_id, "r1", 1, (), ()), [], envelope("s"))
    port.advance(RECONCILE_TIMEOUT)
    assert owner.scheduler.term_of("r1") is None and port.take_dispatches() == []
    assert follower.run_owners["r1"] == (2, "n:1", "n")


def test_an_owner_fenced_by_a_higher_term_steps_down_and_forgets_the_run() -> None:
    port = FakePort()
    owner = owner_on(port)
    replication = ReplicationIO(port, owner.scheduler, replicas=1, grace=GRACE)
    wire(owner.scheduler, owner, replication, NoFollower())
    owner.member_updates([port.join("b"), port.join("s")])
    submit(owner, port)
    (dispatch,) = port.take_dispatches()
    attempt = dispatch.msg.items[0].attempt
    done = m.TaskReport("f", attempt, "DONE", 2, 0, "", "", "", "")
    # A report at term 1 about our term-0 run: someone else owns it now.
    owner.handle(m.TasksReported("r1", (done,), {"cpu": 1.0}, 3), [b"42"], b"", envelope("b", 1))
    assert owner.scheduler.term_of("r1") is None and owner.retention.tracked() == 0
    assert port.take_replies(m.RunOutcome) == []


def test_the_wiring_links_exactly_the_public_hooks() -> None:
    port, replication, owner, follower = standby_node()
    assert owner.replication is replication and replication.owner is owner
    assert replication.follower is follower
    assert owner.scheduler.on_change == replication.task_changed
    assert owner.scheduler.on_changes == replication.tasks_changed


def test_an_unwired_replication_shell_says_so_when_a_takeover_would_restore() -> None:
    port = FakePort(name="s", address="s:1")
    for name in ("o", "n"):
        port.join(name)
    replication = ReplicationIO(port, OwnerScheduler("s", now=0.0), replicas=1, grace=GRACE)
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")
    port.advance(GRACE)
    with pytest.raises(RuntimeError, match="no owner shell wired"):
        port.advance(RECONCILE_TIMEOUT)


def test_owner_feeds_its_own_resources_once_per_ledger_version() -> None:
    """A reply or report of ours already gave the scheduler this version of our ledger: the
    ledger's own notice of it (``own_resources``) is no scheduler batch (it would change
    nothing); a newer version, or another capacity, is one."""
    port = FakePort()
    ledger = Ledger({"cpu": 2.0}, {"cpu": 2.0}, 1)
    owner = OwnerIO(
        port,
        OwnerScheduler(port.name, now=port.now()),
        resources=ledger,
        local_value=lambda run_id, task_id: None,
        keep_results_s=RETAIN,
    )
    batches = owner.placement_seconds  # one observation per scheduler batch
    replied = m.DispatchReplied("r1", (), (), {"cpu": 1.0}, 2)  # our executor claimed a cpu
    owner.handle(columns.replied_columns(replied), [], b"", envelope(port.name))
    assert batches.count == 1 and owner.scheduler.nodes()[port.name].free == {"cpu": 1.0}
    ledger.free, ledger.version = {"cpu": 1.0}, 2
    owner.own_resources({"cpu": 1.0}, 2)
    assert batches.count == 1
    ledger.free, ledger.version = {"cpu": 2.0}, 3
    owner.own_resources({"cpu": 2.0}, 3)
    assert batches.count == 2 and owner.scheduler.nodes()[port.name].free == {"cpu": 2.0}
    ledger.capacity = {"cpu": 1.0}  # (same version, other capacity: fed)
    owner.own_resources({"cpu": 1.0}, 3)
    assert batches.count == 3 and owner.scheduler.nodes()[port.name].capacity == {"cpu": 1.0}


def reports_of_b(port: FakePort, run_id: str = "r1") -> tuple[Any, Any]:
    """Node b's answer to the dispatch of f and its report of f DONE, as columns."""
    (dispatch,) = port.take_dispatches()
    (item,) = dispatch.msg.items
    accepted = m.DispatchReplied(run_id, (m.TaskAttempt("f", item.attempt),), (), {"cpu": 0.0}, 2)
    done = m.TaskReport("f", item.attempt, "DONE", 2, 0, "", "", "", "")
    report = columns.report_columns(m.TasksReported(run_id, (done,), {"cpu": 1.0}, 3))
    return columns.replied_columns(accepted), report


def test_owner_feeds_the_reports_of_one_drain_as_one_scheduler_batch() -> None:
    """With ``batch_reports`` (the node's), what executing nodes' messages say waits until the
    transport's drain ends (``flush``): one placement pass for all of them."""
    port = FakePort()
    owner = owner_on(port)
    owner.batch_reports = True
    owner.member_updates([port.join("b")])
    submit(owner, port, release=False)  # (a release would be a batch of its own)
    replied, report = reports_of_b(port)
    batches = owner.placement_seconds.count
    owner.handle(replied, [], b"", envelope("b"))
    owner.handle(report, [b"42"], b"", envelope("b"))
    state = owner.scheduler.run_status("r1")
    assert owner.placement_seconds.count == batches and state is not None
    assert state.state == "RUNNING"  # nothing fed before the drain ended
    owner.flush()
    state = owner.scheduler.run_status("r1")
    assert owner.placement_seconds.count == batches + 1 and state is not None
    assert state.state == "DONE"
    owner.flush()  # nothing left: no batch
    assert owner.placement_seconds.count == batches + 1


def test_owner_feeds_held_reports_before_anything_else_of_the_drain() -> None:
    """A client's cancel read after a report in the same drain reaches the scheduler after it:
    the run ended DONE first, the cancel changes nothing (fed in the order received)."""
    port = FakePort()
    owner = owner_on(port)
    owner.batch_reports = True
    owner.member_updates([port.join("b")])
    submit(owner, port, release=False)
    replied, report = reports_of_b(port)
    owner.handle(replied, [], b"", envelope("b"))
    owner.handle(report, [b"42"], b"", envelope("b"))
    owner.handle(m.CancelRun(9, "r1"), [], b"client", None)
    state = owner.scheduler.run_status("r1")
    assert state is not None and state.state == "DONE"
    (status,) = port.take_replies(m.RunStatusReply)
    assert status.msg.state == "DONE"


def test_owner_lists_the_runs_it_owns_with_their_state_and_counts() -> None:
    port = FakePort()
    owner = owner_on(port)
    owner.member_updates([port.join("b")])
    submit(owner, port, release=False)
    owner.handle(m.ListRuns(5), [], b"client", None)
    (listed,) = port.take_replies(m.RunList)
    (summary,) = listed.msg.runs
    assert (listed.msg.request_id, summary.run_id, summary.state, summary.owner) == (
        5,
        "r1",
        "RUNNING",
        "a",
    )
    assert sum(summary.counts.values()) == 1
