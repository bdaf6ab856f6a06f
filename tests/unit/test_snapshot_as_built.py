"""A big run's first snapshot goes as its intake packed it (``replication_rebuild.as_built``):
spliced on the loop, not packed task by task in the offload thread (which held the GIL against
the owner's loop in the run's first tens of ms), and the tasks dispatched before it follow in the
next log batch, whole. The standby's replica ends up as the run is (READY and PENDING aside: no
standby is told of that move, a takeover's merge settles it); a run with a task failed or
cancelled without a dispatch, or with more dispatched than one batch carries, is packed as
before."""

from __future__ import annotations

import random

import pytest
from later_offload import replication_shell, standby_tasks
from scheduler_harness import Cluster, spec

from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import decode_run, encode_run, far_specs, pack_parts
from handoffd.scheduler.intake import Prebuilt
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions

NODES = ("n1", "n2", "n3")
FIELDS = ("state", "attempt", "node", "locations", "completions", "value", "failures")


def _submitted(c: Cluster, n: int = 30, **options):  # type: ignore[no-untyped-def]
    """A run as the upload thread hands it over: its snapshot's parts packed as built."""
    specs = [spec(f"t{i}", *([f"t{i - 1}"] if i % 3 else [])) for i in range(n)]
    twin = RunState("r", specs, RunOptions(**options), order=c.sched.order)  # (never taken in)
    out = c.submit("r", specs, **options)
    run = c.sched.run_state("r")
    assert run is not None
    run.prebuilt = Prebuilt(pack_parts(twin), (), far_specs(twin.specs))
    return run, out


def _fields(tasks: dict) -> dict:  # type: ignore[type-arg]
    settled = {"READY": "PENDING"}  # (a move no standby hears of)
    return {
        t: [settled.get(v[f], v[f]) if f == "state" else v[f] for f in FIELDS]
        for t, v in tasks.items()
    }


@pytest.mark.parametrize("seed", range(10))
def test_a_moved_on_run_s_first_snapshot_goes_as_built_and_its_dispatches_follow(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    c, port, later, replication = replication_shell(monkeypatch, NODES)
    run, out = _submitted(c)
    for _ in range(rng.randint(1, 4)):  # the run moves on before its standby hears of it
        out = c.accept_all(out)
        running = [(r.node, r.id, r.attempt) for r in run.tasks.values() if r.state == "ASSIGNED"]
        for node, tid, attempt in rng.sample(running, k=min(len(running), rng.randint(0, 4))):
            out = out + c.succeed(node, "r", tid, attempt, value=b"v")
    assert run.placed and not run.untouched()
    replication.run_accepted("r", lambda: None)
    assert not later.jobs  # not packed in the thread: sent at once, as built
    (snapshot,) = [s for s in port.sent if isinstance(s.msg, m.ReplicateRun)]
    as_sent = decode_run(bytes(snapshot.frames[0]))["tasks"]
    assert {t["state"] for t in as_sent.values()} == {"PENDING"}
    assert {t["attempt"] for t in as_sent.values()} == {0}
    port.advance(0.001)  # the next flush: every task dispatched so far, whole
    (first,) = [s.msg for s in port.sent if isinstance(s.msg, m.ReplicateLog)]
    assert first.seq == snapshot.msg.seq + 1
    assert _fields(standby_tasks(port)) == _fields(decode_run(encode_run(run))["tasks"])
    for _ in range(rng.randint(0, 3)):  # and the log goes on from there
        out = c.accept_all(out)
        running = [(r.node, r.id, r.attempt) for r in run.tasks.values() if r.state == "ASSIGNED"]
        for node, tid, attempt in rng.sample(running, k=min(len(running), 3)):
            out = out + c.succeed(node, "r", tid, attempt, value=b"w")
        port.advance(0.05)
    port.advance(1.0)  # (held moves out to a node flushed too)
    assert _fields(standby_tasks(port)) == _fields(decode_run(encode_run(run))["tasks"])


def test_a_run_with_a_task_failed_before_its_first_snapshot_is_packed_in_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task failed (as one failed without any dispatch would be) is not as built: packed."""
    c, port, later, replication = replication_shell(monkeypatch, NODES)
    run, out = _submitted(c, max_retries=0)
    c.accept_all(out)
    rec = next(r for r in run.tasks.values() if r.state == "ASSIGNED")
    c.error(rec.node, "r", rec.id, rec.attempt)
    assert run.tally["FAILED"] == 1
    replication.run_accepted("r", lambda: None)
    assert later.jobs and not [s for s in port.sent if isinstance(s.msg, m.ReplicateRun)]
    later.finish()
    (snapshot,) = [s for s in port.sent if isinstance(s.msg, m.ReplicateRun)]
    as_sent = decode_run(bytes(snapshot.frames[0]))["tasks"]
    assert as_sent[rec.id]["state"] == "FAILED"


def test_a_run_with_more_dispatched_than_a_batch_carries_is_packed_in_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handoffd.daemon import replication_rebuild

    c, port, later, replication = replication_shell(monkeypatch, NODES)
    run, out = _submitted(c)
    c.accept_all(out)
    monkeypatch.setattr(replication_rebuild, "AS_BUILT_MOVED", len(run.placed) - 1)
    replication.run_accepted("r", lambda: None)
    assert later.jobs
    later.finish()
    port.advance(1.0)
    assert _fields(standby_tasks(port)) == _fields(decode_run(encode_run(run))["tasks"])
