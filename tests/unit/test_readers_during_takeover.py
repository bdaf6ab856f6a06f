"""What a node answers a client about a run it does not own while the run's owner changes (issue 19,
item 6), on the shells over a fake port: a standby holding a replica of a run whose owner died
says "unknown here, but known" on every read (status, wait, results, output, task history), so
the client keeps following the run to its new owner; a node that only heard of an owner now DEAD
says nothing of the sort (the run was lost with its owner and standbys: ``UnknownRun`` at once,
not a client waiting minutes in vain)."""

from __future__ import annotations

from fake_port import FakePort, envelope
from test_daemon_ports import dies, replica_of, standby_node

from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import GetTaskOutput, TaskOutputReply
from handoffd.protocol.messages_observability import GetTaskHistory, TaskHistoryReply


def _standby_of_a_dead_owner() -> tuple[FakePort, object]:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    dies(port, replication, "o")  # (the takeover waits a grace: not under way yet)
    assert not replication.taking_over("r1")
    port.replies.clear()
    return port, owner


def test_a_standby_says_it_knows_the_run_on_every_read_while_its_owner_is_dead() -> None:
    port, owner = _standby_of_a_dead_owner()
    handle = owner.handle  # type: ignore[attr-defined]
    handle(m.GetRunStatus(1, "r1", 0.0), [], b"c", None)
    handle(m.WaitRun(2, "r1", 0.0, 1 << 20, False), [], b"c", None)
    handle(m.FetchResults(3, "r1", ("g", "h")), [], b"c", None)
    handle(GetTaskOutput(4, "r1", "", 0, 0.0), [], b"c", None)
    handle(GetTaskHistory(5, "r1"), [], b"c", None)
    (status,) = port.take_replies(m.RunStatusReply)
    # (a plain status is answered from the replica: tests/unit/test_replica_status.py)
    assert status.msg.known and status.msg.changing
    (outcome,) = port.take_replies(m.RunOutcome)
    assert outcome.msg.state == "UNKNOWN" and outcome.msg.known
    (results,) = port.take_replies(m.Results)
    assert results.msg.missing == ("g", "h") and results.msg.known
    (output,) = port.take_replies(TaskOutputReply)
    assert output.msg.state == "UNKNOWN" and output.msg.known
    (history,) = port.take_replies(TaskHistoryReply)
    assert history.msg.state == "UNKNOWN" and history.msg.known


def test_an_unknown_run_is_not_known_on_any_read() -> None:
    port, owner = _standby_of_a_dead_owner()
    handle = owner.handle  # type: ignore[attr-defined]
    handle(m.GetRunStatus(1, "nope", 0.0), [], b"c", None)
    handle(m.WaitRun(2, "nope", 0.0, 1 << 20, False), [], b"c", None)
    handle(m.FetchResults(3, "nope", ("g",)), [], b"c", None)
    handle(GetTaskOutput(4, "nope", "", 0, 0.0), [], b"c", None)
    handle(GetTaskHistory(5, "nope"), [], b"c", None)
    assert len(port.replies) == 5
    assert not any(getattr(r.msg, "known", False) for r in port.replies)


def test_an_owner_heard_of_counts_while_it_may_live_not_once_dead() -> None:
    port, replication, _, follower = standby_node()
    follower.run_owners["r2"] = (1, "o:1", "o")  # we ran tasks of r2 for o; no replica here
    assert replication.knows("r2")
    dies(port, replication, "o")
    assert not replication.knows("r2")
    # A run moved to a live owner we noted (a takeover's ReconcileRun) is known.
    port.join("t")
    replication._note_owner("r3", 2, "t", "t:1")
    assert replication.knows("r3")
    dies(port, replication, "t")
    assert not replication.knows("r3")
