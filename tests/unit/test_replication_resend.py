"""The owner resends a standby a snapshot unasked only when its acks stopped (intake19b).

A big run's log batches reach a standby on a loaded machine more than ``resend_after`` before it
acks them; resending it the whole run then (encoded on the owner's loop, applied again on the
standby) only put it further behind, again and again.
"""

from __future__ import annotations

import random

from handoffd.replication import log as rlog


def _snapshots(out: list[object]) -> list[tuple[str, str]]:
    return [(o.run_id, o.node) for o in out if isinstance(o, rlog.SendSnapshot)]


def test_a_slow_standby_that_keeps_acking_is_not_resent_a_snapshot() -> None:
    rng = random.Random(19)
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    log_a.track("r", ["a", "b"], 0.0, accept=False)
    log_a.on_ack("r", "b", 0, False, 0.0)
    for i in range(10):
        log_a.changed("r", f"t{i}")
        log_a.flush()
    acked = 0
    now = 0.0
    for _ in range(400):
        now += rng.uniform(0.05, 0.3)
        log_a.changed("r", f"t{rng.randrange(50)}")
        log_a.flush()
        # b acks in order, 10 batches (up to 3 s) behind the head: always behind, never stuck
        seq = log_a._runs["r"].seq
        while acked < seq - 10:
            acked += 1
            log_a.on_ack("r", "b", acked, False, now)
        assert _snapshots(log_a.tick(now)) == []
    assert acked < log_a._runs["r"].seq  # it was behind when the last tick looked


def test_a_standby_whose_acks_stop_is_resent_snapshots_each_after_twice_the_wait() -> None:
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    log_a.track("r", ["a", "b"], 0.0, accept=False)
    log_a.on_ack("r", "b", 0, False, 0.0)
    log_a.changed("r", "t")
    log_a.flush()
    sent = [t / 10 for t in range(0, 200) if _snapshots(log_a.tick(t / 10))]
    assert sent == [1.0, 3.0, 7.0, 15.0]  # 1, 2, 4, 8 s without an ack
    log_a.on_ack("r", "b", 1, False, 20.0)
    assert log_a.tick(20.0) == [] and not log_a._runs["r"].awaiting
    # caught up, then behind and silent again: the first wait again
    log_a.changed("r", "t")
    log_a.flush()
    assert log_a.tick(21.0) == [] and _snapshots(log_a.tick(22.0)) == [("r", "b")]


def test_our_own_stall_is_not_a_standby_silence() -> None:
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    log_a.track("r", ["a", "b"], 0.0, accept=False)
    log_a.on_ack("r", "b", 0, False, 0.0)
    log_a.changed("r", "t")
    log_a.flush()
    assert log_a.tick(0.1) == [] and log_a.tick(0.2) == []  # b behind since 0.1
    # our loop held 1.8 s, b's acks unread meanwhile: its silence is timed from now
    assert log_a.tick(2.0) == []
    assert [log_a.tick(t) for t in (2.3, 2.6, 2.9)] == [[], [], []]
    assert _snapshots(log_a.tick(3.0)) == [("r", "b")]


def test_no_resend_while_the_accept_waits_for_the_first_acks() -> None:
    log_a = rlog.ReplicationLog("a", 2, accept_timeout=2.0, resend_after=1.0)
    out = log_a.track("r", ["a", "b", "c"], 0.0, accept=True)
    assert len(_snapshots(out)) == 2
    log_a.changed("r", "t")
    log_a.flush()
    assert [_snapshots(log_a.tick(t / 10)) for t in range(1, 20)] == [[]] * 19
    log_a.on_ack("r", "b", 0, False, 1.95)
    out = log_a.tick(2.0)  # the deadline: b acked, the client is answered; c stays a standby
    assert [type(o).__name__ for o in out] == ["Accept"] and log_a.standbys("r") == ("b", "c")


def test_an_ack_of_a_resent_snapshot_keeps_the_backoff() -> None:
    log_a = rlog.ReplicationLog("a", 1, resend_after=1.0)
    log_a.track("r", ["a", "b"], 0.0, accept=False)
    log_a.on_ack("r", "b", 0, False, 0.0)
    log_a.changed("r", "t1")
    log_a.flush()  # seq 1
    assert log_a.tick(0.0) == [] and _snapshots(log_a.tick(1.0)) == [("r", "b")]
    log_a.changed("r", "t2")
    log_a.flush()  # seq 2
    log_a.on_ack("r", "b", 1, False, 1.5)  # the resent snapshot's ack; then silent again
    sent = [t / 10 for t in range(15, 60) if _snapshots(log_a.tick(t / 10))]
    assert sent == [3.5]  # 2 s after the last progress (the second wait), not 1 s
