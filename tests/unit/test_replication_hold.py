"""The replication log holds a task's move out to a node (dispatch, start) for the task's next move
(``ReplicationLog.changed(held_at=...)``, ``rlog.HOLD``): a short task goes to the standbys once, as
DONE, and no change is ever lost or sent later than ``hold`` after it was made."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd.replication import log as rlog


def _log(hold: float = 0.05) -> rlog.ReplicationLog:
    log_a = rlog.ReplicationLog("a", 2, hold=hold)
    log_a.track("r", ["a", "b", "c"], 0.0, accept=False)
    return log_a


def _tasks(out: list[object]) -> list[tuple[int, tuple[str, ...]]]:
    return [(o.seq, o.task_ids) for o in out if isinstance(o, rlog.SendLog)]


def test_a_task_done_within_the_hold_is_sent_once() -> None:
    log_a = _log()
    log_a.changed("r", "t", held_at=0.0)  # dispatched
    assert log_a.due() == pytest.approx(0.05)
    assert log_a.flush(now=0.01) == []  # nothing else changed: no batch, no seq used
    log_a.changed("r", "t", held_at=0.015)  # started: still the first time counts
    log_a.changed("r", "t")  # done
    assert _tasks(log_a.flush(now=0.02)) == [(1, ("t",))]
    assert log_a.due() is None and log_a.flush(now=1.0) == []


def test_a_held_move_goes_alone_after_the_hold() -> None:
    log_a = _log()
    log_a.changed("r", "t", held_at=0.0)
    log_a.changed("r", "u", held_at=0.03)
    log_a.changed("r", "v")
    assert _tasks(log_a.flush(now=0.01)) == [(1, ("v",))]  # the others are not due
    assert _tasks(log_a.flush(now=0.05)) == [(2, ("t",))]
    assert log_a.due() == pytest.approx(0.08)
    assert _tasks(log_a.flush(now=0.09)) == [(3, ("u",))]
    # A flush without ``now`` sends everything (as before the hold).
    log_a.changed("r", "w", held_at=0.1)
    assert _tasks(log_a.flush()) == [(4, ("w",))]


def test_untrack_forgets_held_changes() -> None:
    log_a = _log()
    log_a.changed("r", "t", held_at=0.0)
    log_a.untrack("r")
    assert log_a.due() is None and log_a.flush(now=1.0) == []
    assert not log_a.changed("r", "t", held_at=1.0)


@pytest.mark.parametrize("seed", range(30))
def test_held_changes_are_never_lost_nor_late(seed: int) -> None:
    """Random moves (held or not) of random tasks of two runs and flushes at random times, some
    with a limit: every move is in a batch sent at or after it; without a limit, a move that is
    not held goes with the next flush and a held one no later than the first flush ``hold``
    after it. Batches of a run are numbered 1, 2, ... with no gap."""
    rng = random.Random(seed)
    hold = rng.choice((0.0, 0.01, 0.05))
    log_a = rlog.ReplicationLog("a", 1, hold=hold)
    for run_id in ("r", "s"):
        log_a.track(run_id, ["a", "b"], 0.0, accept=False)
    now = 0.0
    moves: list[tuple[str, str, float, bool]] = []  # run, task, when, held
    sent: list[tuple[str, str, float]] = []  # run, task, flushed at
    seqs: dict[str, list[int]] = {"r": [], "s": []}
    limited = rng.random() < 0.3
    for _ in range(rng.randrange(20, 200)):
        now += rng.choice((0.001, 0.004, 0.02))  # (each step its own time)
        if rng.random() < 0.7:
            run_id, task_id = rng.choice("rs"), f"t{rng.randrange(12)}"
            held = rng.random() < 0.6
            assert log_a.changed(run_id, task_id, held_at=now if held else None)
            moves.append((run_id, task_id, now, held))
            due = log_a.due()
            assert due is None or due <= now + hold
        else:
            for batch in log_a.flush(rng.choice((1, 3)) if limited else None, now):
                assert isinstance(batch, rlog.SendLog)
                seqs[batch.run_id].append(batch.seq)
                sent += [(batch.run_id, t, now) for t in batch.task_ids]
    while log_a.pending() or log_a.due() is not None:  # and the rest, as the shell flushes them
        now = max(now, log_a.due() or now)
        for batch in log_a.flush(rng.choice((1, 3)) if limited else None, now):
            assert isinstance(batch, rlog.SendLog)
            seqs[batch.run_id].append(batch.seq)
            sent += [(batch.run_id, t, now) for t in batch.task_ids]
    for run_id, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), run_id
    flushes = sorted({at for _, _, at in sent})
    for run_id, task_id, when, held in moves:
        after = [at for r, t, at in sent if r == run_id and t == task_id and at >= when]
        assert after, (run_id, task_id, when, held)  # never lost
        if limited:
            continue
        first = min(after)
        if held:
            latest = min((f for f in flushes if f >= when + hold), default=first)
            assert first <= latest + 1e-9
        else:
            assert first == min(f for f in flushes if f >= when)


def test_the_owner_sends_a_short_task_once_and_the_replica_ends_as_the_run() -> None:
    """Through the owner's shell (``ReplicationIO`` on a fake port): tasks dispatched and done
    within the hold go to the standby once, as DONE; the ones still out follow ``HOLD`` later;
    the standby's replica is then the owner's run."""
    from fake_port import FakePort
    from scheduler_harness import Cluster, spec

    from handoffd.config import Limits
    from handoffd.daemon import replication as shell
    from handoffd.protocol import messages as m
    from handoffd.protocol.codec import Codec
    from handoffd.protocol.columns import split_frames
    from handoffd.protocol.log_columns import read_columns
    from handoffd.protocol.snapshot import decode_run, encode_run
    from handoffd.replication.standby import StandbyStore

    c = Cluster({"n1": 3.0, "n2": 3.0}, window=1)
    port = FakePort(name="owner", address="owner:1")
    port.join("s")
    replication = shell.ReplicationIO(port, c.sched, replicas=1, grace=0.1)  # type: ignore[arg-type]
    c.sched.on_change = replication.task_changed
    c.accept_all(c.submit("r", [spec(f"t{i}") for i in range(12)]))
    replication.run_accepted("r", lambda: None)
    (snapshot,) = port.take(m.ReplicateRun)
    run = c.sched.run_state("r")
    assert run is not None

    def out_now() -> list[tuple[str, str, int]]:
        return sorted(
            (r.node, r.id, r.attempt) for r in run.tasks.values() if r.state == "ASSIGNED"
        )

    first = out_now()  # (ASSIGNED in the snapshot)
    assert 0 < len(first) < 12

    def finish(tasks: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
        for node, task_id, attempt in tasks:
            c.accept_all(c.succeed(node, "r", task_id, attempt, value=b"v"))
        return [t for t in out_now() if t not in first]

    def _rows(msg: Any) -> Any:  # (a standby of protocol 8 is sent the columns)
        return read_columns(msg.columns) if msg.columns else msg.tasks

    batches: list[Any] = []
    second = finish(first[:3])  # done: urgent; their successors dispatched: held
    assert second
    port.advance(shell.FLUSH_INTERVAL)
    (batch,) = port.take(m.ReplicateLog)
    batches.append(batch)
    assert sorted(d[0] for d in _rows(batch.msg)) == sorted(t for _, t, _ in first[:3])  # (rows)
    assert {d[1] for d in _rows(batch.msg)} == {"DONE"}
    finish(second)  # done within the hold: each goes once, as DONE
    port.advance(shell.FLUSH_INTERVAL)
    (batch,) = port.take(m.ReplicateLog)
    batches.append(batch)
    assert sorted(d[0] for d in _rows(batch.msg)) == sorted(t for _, t, _ in second)
    assert {d[1] for d in _rows(batch.msg)} == {"DONE"}
    third = [t for t in out_now() if t not in first]  # dispatched meanwhile, held
    assert third and not port.sent
    port.advance(rlog.HOLD)
    (batch,) = port.take(m.ReplicateLog)
    batches.append(batch)
    assert sorted(d[0] for d in _rows(batch.msg)) == sorted(t for _, t, _ in third)
    assert {d[1] for d in _rows(batch.msg)} == {"ASSIGNED"}
    standby = StandbyStore("s")
    wire = Codec(Limits())
    standby.on_snapshot("r", 0, 0, "owner", "owner:1", ("s",), snapshot.frames[0])
    for s in batches:
        decoded = wire.decode(wire.encode(s.msg, sender="owner", frames=s.frames))
        assert decoded is not None
        frames = split_frames(decoded.msg.frame_sizes, list(decoded.frames), "ReplicateLog")
        ack = standby.on_log(decoded.msg, "owner:1", frames)
        assert ack is not None and not ack.need_snapshot
    got = standby.replicas["r"].run_data()["tasks"]
    want = decode_run(encode_run(run))["tasks"]
    fields = ("state", "attempt", "node", "locations", "completions", "value")
    assert {t: [got[t][f] for f in fields] for t in got} == {
        t: [want[t][f] for f in fields] for t in want
    }
