"""A standby keeps a log batch's task deltas packed as they came (``Codec(packed=...)``,
``Replica.keep``) and reads them only when it needs the run: a takeover after any prefix of batches
rebuilds exactly the run the deltas applied on arrival (as checked rows, ``put_rows``) rebuild,
also when the oldest batches are folded in on the way (``FOLD_BYTES``), from a rebuild's copy
(``frozen``) and in the status counts (``replica_status.count``)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import pytest
from test_replication_rows import _attempt

from handoffd.daemon import replica_status
from handoffd.daemon.replication_rebuild import frozen
from handoffd.protocol import codec, columns
from handoffd.protocol import messages as m
from handoffd.protocol.rows import CheckedRows, read_packed
from handoffd.protocol.schema import MESSAGE_OFFSET, Invalid, struct_record
from handoffd.protocol.snapshot import SnapshotError, encode_run_data
from handoffd.replication import standby as sb
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

ROWS = {m.ReplicateLog: "tasks"}
TASKS_AT = MESSAGE_OFFSET + 4  # ReplicateLog.tasks in the decoded array
OWNER = "tcp://owner:1"


def _snapshot(n: int) -> bytes:
    sched = OwnerScheduler("owner", now=0.0)
    sched.handle(ev.NodeUpdate("b", "b:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
    specs = tuple(
        TaskSpec(id=f"t{i}", deps=(f"t{i - 1}",) if i % 3 else (), cost={"cpu": 1.0}, payload=b"p")
        for i in range(n)
    )
    sched.handle(ev.RunSubmitted("r", specs, RunOptions()), 0.0)
    return encode_run_data(sched.snapshot("r"))


def _wire(rng: random.Random, seq: int, n: int, last: bool) -> list[Any]:
    """Batch ``seq`` as an owner sends it: random moves of random tasks (some named twice, some
    not in the run), DONE ones with a value frame, a big frame apart, or none (value kept)."""
    values: list[bytes] = []
    deltas = []
    for _ in range(rng.randrange(1, 12)):
        state = rng.choice(["DONE", "DONE", "FAILED", "READY", "RUNNING", "CANCELLED"])
        frame = -1
        if state == "DONE" and rng.random() < 0.8:
            frame = len(values)
            big = rng.random() < 0.05
            values.append(rng.randbytes(columns.JOIN_BELOW + 3 if big else rng.randrange(0, 40)))
        task = f"t{rng.randrange(n + 2)}"  # (t{n}, t{n+1}: not in the run, skipped)
        deltas.append(
            m.TaskDelta(
                task,
                state,
                rng.randrange(4),
                rng.choice([None, "a", "b"]),
                rng.randrange(1 << 33),
                tuple(rng.sample(["tcp://a:1", "tcp://b:2", "tcp://c:3"], rng.randrange(3))),
                rng.randrange(3),
                rng.randrange(3),
                rng.randrange(3),
                frame,
                tuple(_attempt(rng, j) for j in range(rng.randrange(3))),
            )
        )
    sizes, frames = columns.join_frames(values)
    run_state = rng.choice(["FAILED", "CANCELLED", "DONE"]) if last else "RUNNING"
    msg = m.ReplicateLog(
        "r", 2, seq, ("b",), tuple(deltas), run_state, last and rng.random() < 0.5, None, sizes
    )
    return codec.Codec().encode(msg, sender="owner", term=2, frames=frames)


def _eager(store: StandbyStore, wire: list[Any]) -> None:
    """The batch applied on arrival, as checked rows (what the node did before)."""
    decoded = codec.Codec(rows=ROWS).decode(wire)
    assert decoded is not None and type(decoded.msg.tasks) is CheckedRows
    msg = decoded.msg
    frames = columns.split_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
    ack = store.on_log(msg, OWNER, frames, "owner")
    assert ack is not None and not ack.need_snapshot


def _packed(store: StandbyStore, wire: list[Any]) -> None:
    """The batch as the node takes it in now (``ReplicationIO.handle``)."""
    decoded = codec.Codec(packed=ROWS).decode(wire)
    assert decoded is not None and type(decoded.msg.tasks) is bytes
    msg = decoded.msg
    columns.check_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
    ack = store.on_log(msg, OWNER, decoded.frames, "owner", joined=True)
    assert ack is not None and not ack.need_snapshot and ack.seq == msg.seq


def _stores(snapshot: bytes) -> tuple[StandbyStore, StandbyStore]:
    out = StandbyStore("b"), StandbyStore("b")
    for store in out:
        store.on_snapshot("r", 2, 0, "owner", OWNER, ("b",), snapshot)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_a_takeover_after_any_prefix_rebuilds_the_run_applied_on_arrival(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    n = rng.randrange(5, 40)
    snapshot = _snapshot(n)
    # Folding the oldest batches in at any size, or never (the limit's floor: FOLD_BYTES).
    monkeypatch.setattr(sb, "FOLD_BYTES", [0, 300, 2_000, 1 << 30][seed % 4])
    monkeypatch.setattr(sb, "FOLD_SNAPSHOTS", 0)
    eager, lazy = _stores(snapshot)
    batches = rng.randrange(1, 30)
    for seq in range(1, batches + 1):
        wire = _wire(rng, seq, n, last=seq == batches and rng.random() < 0.5)
        _eager(eager, wire)
        _packed(lazy, wire)
        a, b = eager.replicas["r"], lazy.replicas["r"]
        if rng.random() < 0.5 and seq != batches:
            continue  # (a cut here or not)
        want = a.run_data()
        assert b.run_data() == want
        assert frozen(b).run_data() == want
        assert (b.seq, b.run_fields) == (a.seq, a.run_fields)
        assert b.settled() == (a.deltas, a.values)
        counts = replica_status.count(b.snapshot, dict(b.deltas), b.run_fields, tuple(b.batches))
        assert counts == replica_status.count(a.snapshot, dict(a.deltas), a.run_fields)
    kept = lazy.replicas["r"].batches
    if sb.FOLD_BYTES == 0:
        assert not kept  # every batch folded in as it came
    elif sb.FOLD_BYTES == 1 << 30:
        assert len(kept) == batches  # none


def test_a_batch_left_out_or_misapplied_is_seen() -> None:
    """The comparison above can fail: a replica missing one batch, or with one applied twice
    out of order, rebuilds another run."""
    rng = random.Random(5)
    snapshot = _snapshot(10)
    eager, lazy = _stores(snapshot)
    wires = []
    for seq in range(1, 4):
        wire = _wire(rng, seq, 10, last=False)
        wires.append(wire)
        _eager(eager, wire)
        _packed(lazy, wire)
    replica = lazy.replicas["r"]
    assert replica.run_data() == eager.replicas["r"].run_data()
    kept = list(replica.batches)
    replica.batches = [kept[0], kept[2]]  # the middle one dropped
    dropped = replica.run_data()
    replica.batches = [kept[1], kept[0], kept[2]]  # two swapped
    swapped = replica.run_data()
    want = eager.replicas["r"].run_data()
    assert dropped != want or swapped != want


def test_a_copy_taken_while_the_loop_folds_is_whole() -> None:
    """A rebuild's copy takes the batches before the dicts (``frozen``, ``settled``): a batch the
    loop folds in between is in both, and applied again it changes nothing."""
    rng = random.Random(11)
    eager, lazy = _stores(_snapshot(12))
    for seq in range(1, 8):
        wire = _wire(rng, seq, 12, last=False)
        _eager(eager, wire)
        _packed(lazy, wire)
    replica = lazy.replicas["r"]
    batches = list(replica.batches)
    sb.fold(replica.deltas, replica.values, replica.batches[:3])  # the loop folds 3 meanwhile
    del replica.batches[:3]
    copy = dataclasses.replace(
        replica, batches=batches, deltas=dict(replica.deltas), values=dict(replica.values)
    )
    assert copy.run_data() == eager.replicas["r"].run_data() == replica.run_data()


def test_packed_deltas_are_checked_when_read() -> None:
    """A malformed delta is taken in packed (the check would cost what keeping it packed saves)
    and refused when read: the rebuild fails as for a malformed snapshot, and a replica whose
    batch is folded in on the way is dropped and asks for a snapshot."""
    rng = random.Random(9)
    wire = _wire(rng, 1, 10, last=False)
    raw = list(msgpack.unpackb(wire[0], use_list=True))
    raw[TASKS_AT][0][2] = "not an int"
    bad = [msgpack.packb(raw, use_bin_type=True), *wire[1:]]
    assert codec.Codec(rows=ROWS).decode(bad) is None
    decoded = codec.Codec(packed=ROWS).decode(bad)
    assert decoded is not None and type(decoded.msg.tasks) is bytes
    with pytest.raises(Invalid):
        read_packed(struct_record(m.TaskDelta), decoded.msg.tasks)
    _, store = _stores(_snapshot(10))
    _packed(store, bad)
    with pytest.raises(SnapshotError):
        store.replicas["r"].run_data()
    store.replicas["r"].kept_bytes = 1 << 40  # the next batch folds it in
    decoded = codec.Codec(packed=ROWS).decode(_wire(rng, 2, 10, last=False))
    assert decoded is not None
    ack = store.on_log(decoded.msg, OWNER, decoded.frames, "owner", joined=True)
    assert ack is not None and ack.need_snapshot and "r" not in store.replicas


def test_the_packed_codec_reads_every_other_field_as_the_rows_codec() -> None:
    rng = random.Random(3)
    for seq in range(1, 20):
        wire = _wire(rng, seq, 10, last=seq == 19)
        rows, packed = codec.Codec(rows=ROWS).decode(wire), codec.Codec(packed=ROWS).decode(wire)
        assert rows is not None and packed is not None
        assert packed.envelope == rows.envelope and packed.frames == rows.frames
        assert read_packed(struct_record(m.TaskDelta), packed.msg.tasks) == rows.msg.tasks
        fields = [f for f in m.ReplicateLog.__dataclass_fields__ if f != "tasks"]
        assert [getattr(packed.msg, f) for f in fields] == [getattr(rows.msg, f) for f in fields]
    # Trailing bytes, a cut message: dropped, as a whole decode drops them.
    for body in (wire[0] + b"\x00", wire[0][:-3]):
        assert codec.Codec(packed=ROWS).decode([body, *wire[1:]]) is None
        assert codec.Codec(rows=ROWS).decode([body, *wire[1:]]) is None
    # Any other message decodes as with the shared records.
    other = codec.Codec().encode(m.ReplicaAcked("r", 2, 5, False), sender="b", term=2)
    assert codec.Codec(packed=ROWS).decode(other) == codec.Codec().decode(other)


def test_frames_checked_as_split_would() -> None:
    sizes, frames = columns.join_frames([b"ab", b"c", b"x" * columns.JOIN_BELOW, b"de"])
    columns.check_frames(sizes, frames, "t")
    assert columns.split_frames(sizes, frames, "t")[1] == b"c"
    for bad in ([frames[0][:-1], frames[1]], [frames[0]], [frames[0] + b"!", frames[1]], []):
        with pytest.raises(columns.ColumnError):
            columns.split_frames(sizes, list(bad), "t")
        with pytest.raises(columns.ColumnError):
            columns.check_frames(sizes, bad, "t")


def test_a_rebuild_reads_the_kept_batches_as_rows_without_repacking_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run_data`` applies each task's newest row of the batches kept as it is: no delta is
    packed again on the way (``settled`` packs each row once more, and run_data unpacked it)."""
    rng = random.Random(13)
    eager, lazy = _stores(_snapshot(15))
    for seq in range(1, 6):
        wire = _wire(rng, seq, 15, last=False)
        _eager(eager, wire)
        _packed(lazy, wire)
    want = eager.replicas["r"].run_data()
    replica = lazy.replicas["r"]
    assert replica.batches

    def packed_again(value: Any) -> bytes:
        raise AssertionError("a kept delta packed again by the rebuild")

    monkeypatch.setattr(sb, "_pack", packed_again)
    assert replica.run_data() == want
