"""A standby's replica and the cyclic collector (issue 19 item 7: no stall past ~100 ms).

Every full collection walks each object the collector tracks. A replica of 200,000 tasks kept
~1 million of them (each task's newest delta as the message's objects), and the other standby of
a takeover had a 145 ms generation-2 collection that freed nothing. The deltas are kept packed
now: a replica of N deltas adds no tracked object per task, and rebuilds the same run.
"""

from __future__ import annotations

import gc

from handoffd.protocol.messages import ReplicateLog, TaskDelta
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.snapshot import encode_run_data
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

N = 3_000


def _standby() -> StandbyStore:
    sched = OwnerScheduler("a", now=0.0)
    sched.handle(ev.NodeUpdate("b", "b:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
    specs = tuple(TaskSpec(id=f"t{i}", deps=(), cost={"cpu": 1.0}, payload=b"p") for i in range(N))
    sched.handle(ev.RunSubmitted("r1", specs, RunOptions()), 0.0)
    standby = StandbyStore("b")
    standby.on_snapshot("r1", 0, 0, "a", "a:1", ("b",), encode_run_data(sched.snapshot("r1")))
    return standby


def _attempt(i: int) -> AttemptInfo:
    return AttemptInfo(1, "b", "DONE", 1.0, 2.0, 3.0 + i, 7, 1, 2, "", "", "", "done")


def _batch(seq: int, lo: int, hi: int) -> tuple[ReplicateLog, list[bytes]]:
    deltas = tuple(
        TaskDelta(f"t{i}", "DONE", 1, "b", 8, ("b", "c"), 0, 0, 1, i - lo, (_attempt(i),))
        for i in range(lo, hi)
    )
    frames = [b"value %d" % i for i in range(lo, hi)]
    return ReplicateLog("r1", 0, seq, ("b",), deltas, "RUNNING", False, None), frames


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_replica_of_n_deltas_adds_no_tracked_object_per_task() -> None:
    standby = _standby()
    before = _tracked()
    seq = 0
    for lo in range(0, N, 500):
        seq += 1
        msg, frames = _batch(seq, lo, lo + 500)
        standby.on_log(msg, "a:1", frames)
        del msg, frames
    added = _tracked() - before
    assert added < 100, f"{added} more objects tracked for {N} deltas"
    replica = standby.replicas["r1"]
    assert not gc.is_tracked(replica.deltas) and not gc.is_tracked(replica.values)
    # ... and rebuilds the run as the deltas say.
    tasks = replica.run_data()["tasks"]
    assert len(tasks) == N
    for i in (0, N // 2, N - 1):
        rec = tasks[f"t{i}"]
        assert (rec["state"], rec["node"], rec["size"]) == ("DONE", "b", 8)
        assert rec["locations"] == ["b", "c"] and rec["value"] == b"value %d" % i
        assert rec["attempts"] == [[1, "b", "DONE", 1.0, 2.0, 3.0 + i, 7, 1, 2, "", "", "", "done"]]


def test_a_done_delta_without_its_value_keeps_the_one_before() -> None:
    standby = _standby()
    msg, frames = _batch(1, 0, 2)
    standby.on_log(msg, "a:1", frames)
    again = tuple(
        TaskDelta(f"t{i}", "DONE", 1, "b", 8, ("c",), 0, 0, 1, -1) for i in range(0, 3)
    )  # t0, t1: their values stay; t2: none received, so the snapshot's
    standby.on_log(ReplicateLog("r1", 0, 2, ("b",), again, "RUNNING", False, None), "a:1", [])
    tasks = standby.replicas["r1"].run_data()["tasks"]
    assert [tasks[f"t{i}"]["value"] for i in range(3)] == [b"value 0", b"value 1", None]
    assert tasks["t0"]["locations"] == ["c"]
