"""A run the owner never replicates (a short run answered before its replication delay:
``daemon.owner_waits``; most one-task calls) is nothing to the replication shell: its moves, its
change, its release and its standbys ask nothing of the log or the leases, and a run that is
replicated beside it is fed, flushed, leased and dropped as alone (``ReplicationIO`` reads the
log's tracked runs first: ``ReplicationLog.tracking``)."""

from __future__ import annotations

from typing import Any

import pytest
from fake_port import FakePort
from scheduler_harness import Cluster, spec

from handoffd.daemon import replication as shell
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.replication import log as rlog

pytestmark = pytest.mark.timeout(60)


def _shell(lease: float | None = None) -> tuple[shell.ReplicationIO, FakePort, Cluster]:
    c = Cluster({"n1": 2.0})
    port = FakePort(name="owner", address="owner:1")
    port.join("s")
    rep = shell.ReplicationIO(port, c.sched, replicas=1, grace=0.1, lease=lease)  # type: ignore[arg-type]
    c.sched.on_change = rep.task_changed
    c.sched.on_changes = rep.tasks_changed
    return rep, port, c


def _log_state(rep: shell.ReplicationIO) -> Any:
    log = rep.log
    runs = {r: (list(p.changes.items()), p.run_dirty, p.seq) for r, p in log._runs.items()}
    return runs, list(log._dirty), list(log._holding), list(log._watch)


def test_a_run_never_tracked_is_nothing_to_the_log_or_its_timer() -> None:
    rep, port, _c = _shell(lease=1.0)
    rep.tasks_changed([("short", ["t0", "t1"], True), ("short", "t0", False)])
    rep.run_changed("short")
    rep.released("short")
    rep.forget("short")
    assert rep.standbys("short") == ()
    assert _log_state(rep) == ({}, [], [], [])
    assert not rep._flush_scheduled and port.pending() == []
    assert port.sent == []
    assert rep.leases.leases is not None and rep.leases.leases.watching() == []


def test_a_tracked_run_beside_an_untracked_one_is_fed_leased_and_dropped_as_alone() -> None:
    rep, port, c = _shell(lease=1.0)
    c.submit("r", [spec("t0"), spec("t1")])
    rep.run_accepted("r", lambda: None)
    assert rep.standbys("r") == ("s",)
    assert rep.leases.leases is not None and rep.leases.leases.watching() == ["r"]
    port.take(m.ReplicateRun)
    lo, hi = codec.default_codec.versions
    term = c.sched.term_of("r") or 0
    rep.handle(m.ReplicaAcked("r", term, 0, False), [], codec.Envelope(lo, hi, 0, "s", 1, term, 0))
    before = _log_state(rep)
    rep.tasks_changed([("short", ["t0"], False), ("r", ["t0"], False), ("short", "t1", True)])
    rep.run_changed("short")
    rep.released("short")  # (the tracked run keeps its replica, batch and lease)
    assert rep.standbys("short") == ()
    runs, dirty, holding, watch = _log_state(rep)
    assert runs["r"][0] == [("t0", None)] and dirty == ["r"] and "short" not in runs
    assert (holding, watch) == (before[2], before[3])
    assert rep.leases.leases.watching() == ["r"] and rep._flush_scheduled
    port.advance(0.1)
    sent = port.take(m.ReplicateLog)
    assert [(s.address, s.msg.run_id, s.msg.seq) for s in sent] == [("s:1", "r", 1)]
    rep.released("r")
    assert not rep.log.tracked("r") and rep.leases.leases.watching() == []
    assert [(s.address, s.msg.run_id) for s in port.take(m.DropReplica)] == [("s:1", "r")]


def test_the_shell_reads_the_logs_own_tracked_runs() -> None:
    rep, _port, c = _shell()
    assert rep._tracking is rep.log.tracking
    c.submit("r", [spec("t0")])
    rep.run_accepted("r", lambda: None)
    assert "r" in rep._tracking and rep.log.untrack("r") != [] and "r" not in rep._tracking
    assert rep.log.untrack("r") == []  # (no longer tracked: nothing to drop)


def test_untrack_of_an_unknown_run_leaves_the_others_as_they_were() -> None:
    log = rlog.ReplicationLog("owner", 1)
    log.track("r", ["owner", "s"], 0.0, accept=False)
    log.changed("r", "t0")
    log.changed("r", "t1", held_at=0.0)
    runs = (list(log._dirty), list(log._holding), list(log._watch))
    assert log.untrack("other") == []
    assert (list(log._dirty), list(log._holding), list(log._watch)) == runs


class _Follower:
    def __init__(self) -> None:
        self.run_owners: dict[str, tuple[int, str, str]] = {}


@pytest.mark.parametrize("known", ["nowhere", "moved", "replica", "follower", "taking", "building"])
def test_a_submission_is_started_only_when_its_run_id_is_known_nowhere_here(known: str) -> None:
    """``_known_submission``'s short answer (a new run id: start it) only when no book here
    knows the id: one that does points the client at the run's owner (``RunMoved``)."""
    from types import SimpleNamespace

    rep, port, _c = _shell()
    follower = _Follower()
    rep.follower = follower  # type: ignore[assignment]
    if known == "moved":
        rep._moved["x"] = (3, "o", "o:1")
    elif known == "replica":
        rep.standby.on_snapshot("x", 3, 0, "o", "o:1", ("owner",), b"\x90")
    elif known == "follower":
        follower.run_owners["x"] = (3, "o:1", "o")
    elif known == "taking":
        rep.takeovers._jobs["x"] = object()  # type: ignore[assignment]
    elif known == "building":
        rep._restoring["x"] = object()
    msg = SimpleNamespace(request_id=7, run_id="x")
    moved = rep._known_submission(msg, b"conn")  # type: ignore[arg-type]
    replies = port.take_replies(m.RunMoved)
    assert moved == (known != "nowhere")
    if known == "nowhere":
        assert replies == []
    elif known in ("taking", "building"):  # (ours in a moment: the client asks us again)
        assert [(r.msg.owner, r.msg.owner_address) for r in replies] == [("owner", "owner:1")]
    else:
        assert [(r.msg.owner, r.msg.owner_address, r.msg.term) for r in replies] == [
            ("o", "o:1", 3)
        ]


def test_a_tick_with_no_run_watched_answers_nothing_and_still_times_the_next() -> None:
    """The stall check of the next tick (``STALL_TICKS``) counts from this one."""
    log = rlog.ReplicationLog("owner", 1, resend_after=1.0)
    assert log.tick(5.0) == [] and log._last_tick == 5.0
    log.track("r", ["owner", "s"], 5.5, accept=False)
    assert log.tick(6.0) == [] and log._last_tick == 6.0
    assert log._runs["r"].awaiting == {"s": (-1, 6.0, 0)}  # (behind: timed from now)
