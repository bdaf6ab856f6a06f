"""A dispatch's owner name (the envelope's sender, claims19): an executor that follows the winner
of two takeovers at one term refuses the yielding claimant's dispatch at that term at once and
tells it who holds the run (``FollowOwner``). Before, it took the dispatch and pointed the run's
reports at the yielding owner until the winner's lost-dispatch probe pointed them back, so the
attempts the yielding owner sent stood idle meanwhile (race19's note: "a dispatch carries no owner
name"). And the yielding owner's standbys drop its replica when it steps down."""

from __future__ import annotations

from typing import Any

from test_executor_state import RUN, accepted, item, make, of, refused
from test_takeover_held_reports import Owner, taking_over

from handoffd.daemon.executor_events import Dispatched, OwnerSeen, SendMessage
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.replication.standby import StandbyStore


def _dispatch(st: ExecutorState, task: str, term: int, address: str, name: str) -> list[Any]:
    msg = m.DispatchTasks(RUN, address, (item(task),))
    return st.handle(Dispatched(msg, [b"payload"], term, name), 0.0)


def test_the_yielding_claimants_dispatch_is_refused_and_it_is_told_the_winner() -> None:
    st = make({"cpu": 2.0})
    st.handle(OwnerSeen(RUN, 1, "w:1", "w"), 0.0)  # we follow w's takeover at term 1
    out = _dispatch(st, "a", 1, "l:1", "l")  # l's takeover at term 1 too: l < w yields
    assert refused(out) == {"a": "the claim at term 1 yields to w's"}
    (follow,) = [s for s in of(out, SendMessage) if isinstance(s.msg, m.FollowOwner)]
    assert follow.address == "l:1" and follow.msg == m.FollowOwner(RUN, 1, "w", "w:1")
    assert st.run_owners[RUN] == (1, "w:1", "w") and not st.tasks  # reports still go to w
    out = _dispatch(st, "b", 1, "w:1", "w")  # the winner's own
    assert accepted(out) == ["b"]


def test_a_higher_claim_at_our_term_or_an_unnamed_one_is_taken_as_before() -> None:
    st = make({"cpu": 2.0})
    st.handle(OwnerSeen(RUN, 1, "l:1", "l"), 0.0)  # we followed the lower claim first
    out = _dispatch(st, "a", 1, "w:1", "w")
    assert accepted(out) == ["a"] and st.run_owners[RUN] == (1, "w:1", "w")
    out = _dispatch(st, "b", 1, "x:1", "")  # (no name: a test port, an old peer)
    assert accepted(out) == ["b"] and st.run_owners[RUN] == (1, "x:1", "w")
    out = _dispatch(st, "c", 2, "l:1", "l")  # a higher term wins whatever the name
    assert accepted(out) == ["c"] and st.run_owners[RUN] == (2, "l:1", "l")


class _SteppingOwner(Owner):
    def step_down(self, run_id: str) -> bool:  # (as OwnerIO's: the scheduler forgets the run)
        return bool(self.sched.step_down(run_id))


def test_the_yielding_owners_standbys_drop_its_replica_at_its_term() -> None:
    """b took r1 over at term 1 and replicates it to c; z's takeover at term 1 outranks it: b
    steps down, and c is told to drop b's replica at term 1 (before, at term 0: ignored, so c
    kept b's state and would take the run over from it if b died)."""
    port, replication, owner, later = taking_over()
    stepping = _SteppingOwner(port, owner.sched, replication)
    replication.owner = stepping
    port.advance(2.0)  # AnswersDue: Restore
    later.finish()
    later.finish()  # built: adopted at term 1, replicated to c
    assert replication.scheduler.term_of("r1") == 1 and replication.standbys("r1") == ("c",)
    port.sent.clear()
    replication.handle(m.FollowOwner("r1", 1, "z", "z:1"), [], None)
    assert replication.scheduler.term_of("r1") is None  # stepped down
    drops = port.take(m.DropReplica)
    assert [(d.address, d.msg, d.term) for d in drops] == [("c:1", m.DropReplica("r1", 1), 1)]
    standby = StandbyStore("c")
    standby.on_snapshot("r1", 1, 0, "b", "b:1", ("c",), b"")
    standby.drop("r1", drops[0].msg.term, "b")
    assert "r1" not in standby.replicas


def test_a_higher_terms_owner_leaves_our_standbys_their_replica() -> None:
    port, replication, owner, later = taking_over()
    replication.owner = _SteppingOwner(port, owner.sched, replication)
    port.advance(2.0)
    later.finish()
    later.finish()
    port.sent.clear()
    replication.handle(m.FollowOwner("r1", 2, "a", "a:1"), [], None)
    assert replication.scheduler.term_of("r1") is None
    assert [d.msg.term for d in port.take(m.DropReplica)] == [0]  # (as before: kept, win19)
