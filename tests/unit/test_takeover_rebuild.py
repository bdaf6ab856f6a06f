"""A takeover's run built off the loop (``daemon.replication_rebuild.build_run``: the replica's data
merged in place, ``takeover.merge_run``) is the run built whole on the loop
(``restore_run(takeover.merge(data, holdings))``): same tasks, books, ready queue and first
dispatches, over random DAGs, progress and node answers. And the snapshot decoded row by row
(``protocol.snapshot._unpack``) is the one ``msgpack.unpackb`` gives, and one packed in short
calls for a thread (``encode_run(chunked=True)``) is the one packed whole."""

from __future__ import annotations

import random

import msgpack
import pytest
from later_offload import replication_shell, standby_tasks
from scheduler_harness import Cluster, dispatches, spec

from handoffd.daemon.replication_rebuild import Offload, ReplicaRebuild, build_run, frozen
from handoffd.protocol.snapshot import SnapshotError, decode_run, encode_run
from handoffd.replication.standby import Replica
from handoffd.replication.takeover import Holdings, merge
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.ready import entries
from handoffd.scheduler.run import RunState

NODES = ("n1", "n2", "n3")


def _progressed(rng: random.Random) -> Cluster:
    """A run of a random DAG (groups, outputs) some way through: dispatched, done, failed (not
    yet gone from the owner)."""
    c = _progress(rng)
    while c.sched.run_state("r") is None:
        c = _progress(rng)
    return c


def _progress(rng: random.Random) -> Cluster:
    c = Cluster(dict.fromkeys(NODES, 3.0), window=rng.choice((1, 3)))
    n = rng.randint(5, 60)
    specs = []
    for i in range(n):
        deps = tuple(f"t{j}" for j in rng.sample(range(i), k=min(i, rng.randint(0, 3))))
        kw = {}
        if i and rng.random() < 0.1:
            kw["collocate_with"] = f"t{rng.randrange(i)}"
        specs.append(spec(f"t{i}", *deps, cpu=rng.choice((0.5, 1.0)), **kw))
    outputs = tuple(f"t{i}" for i in rng.sample(range(n), k=2)) if rng.random() < 0.5 else None
    try:
        out = c.submit("r", specs, outputs=outputs, max_retries=2)
    except Exception:  # noqa: BLE001 - an invalid random DAG (collocation): try a plain one
        return _progress(rng)
    out = c.accept_all(out)
    for _ in range(rng.randint(0, 40)):
        run = c.sched.run_state("r")
        if run is None or run.state != "RUNNING":
            break
        out_now = [
            (r.node, r.id, r.attempt)
            for r in run.tasks.values()
            if r.state in ("ASSIGNED", "RUNNING") and r.node is not None
        ]
        if not out_now:
            break
        node, tid, attempt = rng.choice(out_now)
        if (run.run_id, tid, attempt) not in c.costs:
            break
        if rng.random() < 0.85:
            value = b"v" if rng.random() < 0.3 else None
            out = c.succeed(node, "r", tid, attempt, size=rng.randint(1, 100), value=value)
        else:
            out = c.error(node, "r", tid, attempt)
        c.accept_all(out)
    return c


def _holdings(rng: random.Random, data: dict) -> dict[str, Holdings]:
    answers = {}
    for node in rng.sample(NODES, k=rng.randint(0, len(NODES))):
        held, running = {}, {}
        for tid, t in data["tasks"].items():
            if t["state"] == "DONE" and node in t["locations"] and rng.random() < 0.8:
                held[tid] = t["size"] or 7
            elif t["state"] in ("ASSIGNED", "RUNNING") and t["node"] == node:
                if rng.random() < 0.5:
                    running[tid] = t["attempt"]
                elif rng.random() < 0.5:
                    held[tid] = 5  # it finished after the last batch
            elif rng.random() < 0.03:
                held[tid] = 3  # a stray copy
        answers[node] = Holdings(held, running)
    return answers


def _standby(alive: tuple[str, ...]) -> OwnerScheduler:
    new = OwnerScheduler("standby", now=5.0, term=1, window=2)
    for n in alive:
        new.handle(ev.NodeUpdate(n, n, True, {"cpu": 3.0}, {"cpu": 3.0}, 1), 5.0)
    return new


def _books(s: OwnerScheduler) -> tuple:
    run = s.run_state("r")
    assert run is not None
    return (
        s.snapshot("r"),
        run.remaining,
        dict(run.tally),
        dict(run.placed),
        dict(run.unfinished),
        entries(run),
        sorted((r.id, r.queued, r.in_heap) for r in run.tasks.values()),
        len(s._ready) if hasattr(s, "_ready") else None,
    )


@pytest.mark.parametrize("seed", range(60))
def test_a_run_built_off_the_loop_is_the_run_built_whole(seed: int) -> None:
    rng = random.Random(seed)
    c = _progressed(rng)
    run = c.sched.run_state("r")
    assert run is not None
    # What a standby holds: the snapshot as packed for it, decoded.
    data = decode_run(encode_run(run))
    holdings = _holdings(rng, data)
    alive = tuple(sorted(holdings)) or ("n1",)
    whole, sliced = _standby(alive), _standby(alive)
    out_whole = whole.restore_run(merge(data, holdings), 5.0, term=2)
    built = build_run(data, holdings, sliced.order)
    out_sliced = sliced.restore_run(built, 5.0, term=2)
    whole.validate()
    sliced.validate()
    assert _books(sliced) == _books(whole)
    assert repr(out_sliced) == repr(out_whole)
    assert [d.node for d in dispatches(out_sliced)] == [d.node for d in dispatches(out_whole)]
    assert decode_run(encode_run(run)) == data  # the replica's data was left as it was


@pytest.mark.parametrize("seed", range(20))
def test_a_snapshot_decoded_row_by_row_is_the_one_decoded_whole(seed: int) -> None:
    rng = random.Random(seed)
    run = _progressed(rng).sched.run_state("r")
    raw = encode_run(run)
    whole = msgpack.unpackb(raw, raw=False, use_list=False, strict_map_key=True, max_ext_len=0)
    from handoffd.protocol.snapshot import _unpack

    assert _unpack(raw) == whole
    assert encode_run(run, chunked=True) == raw  # (packed in a thread by the owner: the same)
    assert _unpack(memoryview(raw)) == whole
    # Damaged: cut short, trailing bytes, not an array, a task list that is no array.
    for bad in (raw[: rng.randrange(1, len(raw))], raw + b"\x01", msgpack.packb(5)):
        with pytest.raises(SnapshotError):
            decode_run(bad)
    fields = list(whole)
    fields[13] = 7
    with pytest.raises(SnapshotError):
        decode_run(msgpack.packb(fields, use_bin_type=True))


def test_a_rebuild_reads_a_frozen_replica_and_reports_a_bad_one() -> None:
    run = _progressed(random.Random(3)).sched.run_state("r")
    replica = Replica("r", 1, 4, "a", "a:1", ("b",), encode_run(run))
    copy = frozen(replica)
    replica.deltas["t0"] = b""  # a batch after the copy
    assert "t0" not in copy.deltas
    seen: list[str] = []
    rebuild = ReplicaRebuild(Offload(), copy)
    rebuild.then(lambda: seen.append("done"))
    assert seen == ["done"] and rebuild.error is None
    assert rebuild.run is not None
    assert rebuild.run.snapshot() == RunState.from_snapshot(copy.run_data()).snapshot()
    broken = ReplicaRebuild(Offload(), Replica("r", 1, 4, "a", "a:1", ("b",), b"\x01\x02"))
    assert broken.run is None and isinstance(broken.error, SnapshotError)


def test_a_big_run_packed_in_short_calls_is_packed_the_same() -> None:
    c = Cluster(dict.fromkeys(NODES, 8.0))
    specs = [spec(f"t{i}", *([f"t{i - 1}"] if i % 7 else [])) for i in range(5000)]
    c.accept_all(c.submit("r", specs))
    run = c.sched.run_state("r")
    assert run is not None
    raw = encode_run(run)
    assert encode_run(run, chunked=True) == raw
    assert decode_run(raw)["tasks"] == decode_run(encode_run(run, chunked=True))["tasks"]


@pytest.mark.parametrize("seed", range(8))
def test_a_snapshot_packed_off_the_loop_goes_before_the_batches_held_meanwhile(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner packs a big run's snapshot in a thread while the run moves on: the batches
    flushed meanwhile wait and follow it, so the standby's replica ends up as the run is."""

    from handoffd.protocol import messages as m

    c, port, later, replication = replication_shell(monkeypatch, NODES)  # every run is "big" here
    rng = random.Random(seed)
    specs = [spec(f"t{i}", *([f"t{i - 1}"] if i % 3 else [])) for i in range(30)]
    out = c.submit("r", specs)
    replication.run_accepted("r", lambda: None)
    assert later.jobs and not port.take(m.ReplicateRun)  # being packed
    for _ in range(rng.randint(1, 6)):  # the run moves on, batches are flushed meanwhile
        out = c.accept_all(out)
        run = c.sched.run_state("r")
        assert run is not None
        running = [(r.node, r.id, r.attempt) for r in run.tasks.values() if r.state == "ASSIGNED"]
        for node, tid, attempt in rng.sample(running, k=min(len(running), 3)):
            out = out + c.succeed(node, "r", tid, attempt, value=b"v")
        port.advance(0.05)
    held_before = [s for s in port.sent if isinstance(s.msg, m.ReplicateLog)]
    assert not held_before  # every batch waits for the snapshot
    later.finish()
    out = c.accept_all(out)
    port.advance(0.05)  # and one more batch, sent at once
    got = standby_tasks(port)  # as the standby reads them
    run = c.sched.run_state("r")
    assert run is not None
    want = decode_run(encode_run(run))["tasks"]
    fields = ("state", "attempt", "node", "locations", "completions", "value")
    assert {t: [got[t][f] for f in fields] for t in got} == {
        t: [want[t][f] for f in fields] for t in want
    }


@pytest.mark.parametrize("seed", range(10))
def test_the_ready_heap_and_the_walks_are_done_before_the_adoption(seed: int) -> None:
    """``build_run`` (the thread) leaves the run's READY tasks queued in its heap and lists what
    the adoption must walk (tasks out, nodes): on the loop, ``restore_run`` walks only those."""
    rng = random.Random(seed)
    run = _progressed(rng).sched.run_state("r")
    assert run is not None
    data = decode_run(encode_run(run))
    holdings = _holdings(rng, data)
    new = _standby(tuple(sorted(holdings)) or ("n1",))
    ready = build_run(data, holdings, new.order)
    built = ready.run
    queued = [r.order for r in built.ordered if r.state == "READY"]
    if built.state != "RUNNING":
        queued = []
    assert built.ready_line[built.ready_at :] == queued and not built.ready_heap
    assert all(r.queued == r.in_heap == (r.order in set(queued)) for r in built.ordered)
    assert ready.queued[0] == len(queued)
    assert {r.id for r in ready.active} == {
        r.id for r in built.tasks.values() if r.state in ("ASSIGNED", "RUNNING") and r.node
    }
    assert set(ready.nodes) >= {n for r in built.tasks.values() for n in r.locations}
    new.restore_run(ready, 5.0, term=2)
    new.validate()
