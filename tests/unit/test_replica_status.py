"""A status asked of a node while a run's owner changes (issue 19, item 6; status19), on the
shells over a fake port: a node holding a replica of a run whose owner is not ALIVE answers a plain
status with the run's state as last replicated (state, per-task counts, term, the old owner, the
standby expected to take over), marked ``changing``, at once, also while it takes the run over; a
status long poll, a live owner and a node without a replica answer as before."""

from __future__ import annotations

import random

from fake_port import envelope
from test_daemon_ports import GRACE, dies, replica_of, standby_node
from test_snapshot_spliced import _frames, _prepared

from handoffd.daemon.replica_status import _task_states, count
from handoffd.protocol import messages as m
from handoffd.protocol.messages_snapshot import SNAPSHOT_TAILS_SINCE
from handoffd.protocol.snapshot import decode_run, encode_run


def _status(owner: object, port: object, wait: float = 0.0) -> m.RunStatusReply:
    owner.handle(m.GetRunStatus(7, "r1", wait), [], b"c", None)  # type: ignore[attr-defined]
    (reply,) = port.take_replies(m.RunStatusReply)  # type: ignore[attr-defined]
    return reply.msg  # type: ignore[no-any-return]


def test_a_standby_answers_the_replicated_state_while_the_owner_is_dead() -> None:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    port.replies.clear()
    dies(port, replication, "o")
    assert not replication.taking_over("r1")
    status = _status(owner, port)
    assert status.state == "RUNNING" and status.changing and status.known
    assert status.counts["DONE"] == 1 and sum(status.counts.values()) == 2
    assert (status.owner, status.term, status.standbys, status.next_owner) == ("o", 0, ("s",), "s")
    # Once it takes the run over (asking the nodes, rebuilding): still answered, it is next.
    port.advance(GRACE)
    assert replication.taking_over("r1") or replication.scheduler.term_of("r1") is not None
    if replication.scheduler.term_of("r1") is None:
        status = _status(owner, port)
        assert status.changing and status.next_owner == "s" and status.counts["DONE"] == 1


def test_a_live_owner_a_long_poll_and_no_replica_answer_as_before() -> None:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    port.replies.clear()
    owner.handle(m.GetRunStatus(1, "r1", 0.0), [], b"c", None)
    assert port.take_replies(m.RunStatusReply) == []  # the owner is ALIVE: pointed there
    (moved,) = port.take_replies(m.RunMoved)
    assert moved.msg.owner == "o"
    dies(port, replication, "o")
    owner.handle(m.GetRunStatus(2, "r1", 5.0), [], b"c", None)  # a wait: follows the run
    assert all(not getattr(r.msg, "changing", False) for r in port.replies)
    port.replies.clear()
    owner.handle(m.GetRunStatus(3, "other", 0.0), [], b"c", None)
    (reply,) = port.take_replies(m.RunStatusReply)
    assert reply.msg.state == "UNKNOWN" and not reply.msg.changing and not reply.msg.known


def test_a_suspect_owner_names_the_next_live_standby() -> None:
    port, replication, owner, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    port.replies.clear()
    port.set_status("o", m.SUSPECT)
    status = _status(owner, port)
    assert status.changing and status.owner == "o" and status.next_owner == "s"


def test_count_applies_the_newest_delta_and_the_runs_end() -> None:
    msg, frame = replica_of()
    first = count(frame, {}, None)
    assert first.state == "RUNNING" and first.counts["DONE"] == 1
    ended = count(frame, {}, ("CANCELLED", False, None))
    assert ended.state == "CANCELLED"
    assert ended.counts["DONE"] == 1 and ended.counts["CANCELLED"] == 1


def test_the_lean_read_of_a_snapshot_agrees_with_decoding_it() -> None:
    _, frame = replica_of()
    lean = _task_states(frame)
    data = decode_run(frame)
    assert lean == (data["state"], False, {t: r["state"] for t, r in data["tasks"].items()})
    assert _task_states(b"\x93\x01\x02") is None  # not a snapshot: decoded in full instead


def test_a_snapshot_of_tasks_as_built_is_counted_from_its_specs() -> None:
    """``RunSnapshot.tasks_built`` (protocol 7): no task rows to read lean, so the snapshot is
    decoded, each spec's task counted PENDING."""
    run = _prepared(_frames(random.Random(2), 12)).run
    assert run is not None
    frame = encode_run(run, columns=SNAPSHOT_TAILS_SINCE)
    assert _task_states(frame) is None  # (read in full)
    counted = count(frame, {}, None)
    assert counted.state == "RUNNING" and counted.counts["PENDING"] == 12
    assert counted == count(encode_run(run, columns=0), {}, None)
