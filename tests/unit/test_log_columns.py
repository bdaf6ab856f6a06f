"""A replication log batch's deltas as columns (protocol 8: ``ReplicateLog.columns``,
``protocol.log_columns``): read back they are the very rows of the row form; a standby fed the
columns holds, after any prefix of the log, the replica a standby fed today's rows holds (a
takeover rebuilds the same run, also through folds, a rebuild's copy and the status counts); the
owner sends them only to a standby whose protocol reaches 8, the rows to one of 7, and a standby
of 8 still reads an owner of 7; a malformed columns batch is refused, never raised past the
standby."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from fake_port import FakePort
from fake_port import envelope as fake_envelope
from pure_build import check_builds, pure
from scheduler_harness import Cluster
from test_replication_feed import random_moves, random_specs
from test_standby_packed import OWNER, ROWS, _eager, _snapshot, _stores, _wire

from handoffd.daemon import replica_status
from handoffd.daemon import replication as shell
from handoffd.daemon.replication_rebuild import frozen
from handoffd.protocol import codec, columns, log_pack
from handoffd.protocol import log_columns as lc
from handoffd.protocol import messages as m
from handoffd.protocol.messages import ErrorInfo, TaskDelta
from handoffd.protocol.rows import read_packed
from handoffd.protocol.schema import WireRows, struct_record
from handoffd.protocol.snapshot import SnapshotError
from handoffd.replication import standby as sb
from handoffd.replication.standby import StandbyStore

DELTA = struct_record(TaskDelta)
NODE_CODEC = codec.Codec(packed=ROWS)  # the node's (daemon.node)
PURE = pure(log_pack, "handoffd_log_pack_pure")


def _types(value: Any) -> Any:
    """A row's types, nested ones too (an int and a float of one value are told apart)."""
    if isinstance(value, tuple):
        return (type(value), tuple(_types(v) for v in value))
    return type(value)


def _rows_of(wire: list[Any]) -> Any:
    decoded = NODE_CODEC.decode(wire)
    assert decoded is not None and type(decoded.msg.tasks) is bytes
    return read_packed(DELTA, decoded.msg.tasks)


def _as_columns(wire: list[Any]) -> list[Any]:
    """The same batch as an owner of protocol 8 sends it: the deltas as columns."""
    decoded = codec.Codec(rows=ROWS).decode(wire)
    assert decoded is not None
    msg = decoded.msg
    packed = lc.pack_columns(lc.as_rows(msg.tasks))
    assert packed is not None
    msg = dataclasses.replace(msg, tasks=WireRows(()), columns=packed)
    return codec.Codec().encode(msg, sender="owner", term=2, frames=decoded.frames)


def _columns(store: StandbyStore, wire: list[Any]) -> None:
    decoded = NODE_CODEC.decode(wire)
    assert decoded is not None and decoded.msg.columns
    msg = decoded.msg
    columns.check_frames(msg.frame_sizes, decoded.frames, "ReplicateLog")
    ack = store.on_log(msg, OWNER, decoded.frames, "owner", joined=True)
    assert ack is not None and not ack.need_snapshot and ack.seq == msg.seq


def _row(rng: random.Random, task_id: str, attempts: int, names: int) -> list[Any]:
    def attempt(i: int) -> list[Any]:
        return [
            i,
            rng.choice(["a", "b", ""]),
            rng.choice(["DONE", "FAILED"]),
            rng.random() * 1e9,
            rng.choice([0.0, rng.random()]),
            float(rng.randrange(3)),
            rng.randrange(1 << 31),
            rng.choice([0, rng.randrange(1 << 62)]),
            rng.randrange(3),
            rng.choice(["", "ValueError"]),
            f"m{rng.randrange(names)}",  # (many distinct: a wide index)
            "",
            rng.choice(["", "lost \u00e9"]),
        ]

    return [
        task_id,
        rng.choice(["DONE", "FAILED", "READY"]),
        rng.randrange(1, 3),
        rng.choice([None, "a", "b"]),
        rng.randrange(1 << 40),
        sorted(rng.sample(["x:1", "y:2", "z:3"], rng.randrange(3))),
        -rng.randrange(2),
        0,
        rng.randrange(2),
        rng.randrange(-1, 5),
        [attempt(j) for j in range(attempts)],
    ]


@pytest.mark.parametrize("seed", range(30))
def test_columns_read_back_as_the_rows(seed: int) -> None:
    """Every field's value and type as the row form's checked read gives it: random batches as
    the standby tests send them, and batches of one, of many distinct strings (the index past a
    byte), of no attempts, of one attempt each and of mixed counts, of identical rows."""
    rng = random.Random(seed)
    for seq in range(1, 8):
        rows = _rows_of(_wire(rng, seq, 20, last=False))
        back = lc.read_columns(lc.pack_columns(lc.as_rows(rows)) or b"")
        assert back == rows and _types(back) == _types(rows)
    n = rng.choice([1, 2, 257, 300])
    shape = rng.choice(["none", "one", "mixed"])
    wide = [
        _row(rng, f"t{i}", {"none": 0, "one": 1}.get(shape, rng.randrange(3)), 300)
        for i in range(n)
    ]
    if rng.random() < 0.3:
        wide = [list(wide[0]) for _ in wide]  # (every column one value)
    want = read_packed(DELTA, msgpack.packb(wide, use_bin_type=True))
    back = lc.read_columns(lc.pack_columns(wide) or b"")
    assert back == want and _types(back) == _types(want)


@pytest.mark.parametrize("seed", range(10))
def test_the_compiled_pack_is_its_py(seed: int) -> None:
    """The compiled packer gives the bytes its .py gives, and None where it does."""
    check_builds(log_pack, PURE)
    rng = random.Random(seed)
    for seq in range(1, 6):
        rows = lc.as_rows(_rows_of(_wire(rng, seq, 20, last=False)))
        assert log_pack.pack_columns(rows) == PURE.pack_columns(rows)
    rows = [_row(rng, f"t{i}", rng.randrange(3), 300) for i in range(rng.choice([1, 300]))]
    assert log_pack.pack_columns(rows) == PURE.pack_columns(rows)
    bad = [*rows[:-1], [*rows[-1][:3], 7, *rows[-1][4:]]]  # (a node that is not a string)
    assert log_pack.pack_columns(bad) is None and PURE.pack_columns(bad) is None


def test_what_columns_cannot_carry_goes_as_rows() -> None:
    rng = random.Random(1)
    row = _row(rng, "t", 1, 3)
    assert lc.pack_columns([]) is None
    assert lc.pack_columns([row[:-1]]) is None  # (a row of another width)
    assert lc.pack_columns([[*row[:4], 1 << 63, *row[5:]]]) is None  # past int64
    assert lc.pack_columns([[*row[:2], 1.5, *row[3:]]]) is None  # a float in an int field
    assert lc.pack_columns([[7, *row[1:]]]) is None  # an id that is not a string
    assert lc.pack_columns([[*row[:3], 5, *row[4:]]]) is None  # a node that is not a string
    assert lc.pack_columns([[*row[:5], [1], *row[6:]]]) is None  # a location not a string
    assert lc.pack_columns([[*row[:10], [row[10][0][:-1]]]]) is None  # a short attempt row
    assert lc.pack_columns([row]) is not None


@pytest.mark.parametrize("seed", range(16))
def test_a_takeover_after_any_prefix_of_columns_rebuilds_the_rows_run(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three standbys of one run: fed today's rows applied on arrival (the reference), fed the
    columns, and fed either form batch by batch (an owner of 7 and one of 8 in turn, as across a
    takeover); folding the oldest kept batches at any size, or never."""
    rng = random.Random(seed)
    n = rng.randrange(5, 40)
    snapshot = _snapshot(n)
    monkeypatch.setattr(sb, "FOLD_BYTES", [0, 300, 2_000, 1 << 30][seed % 4])
    monkeypatch.setattr(sb, "FOLD_SNAPSHOTS", 0)
    eager, cols = _stores(snapshot)
    mixed = StandbyStore("b")
    mixed.on_snapshot("r", 2, 0, "owner", OWNER, ("b",), snapshot)
    batches = rng.randrange(1, 30)
    for seq in range(1, batches + 1):
        wire = _wire(rng, seq, n, last=seq == batches and rng.random() < 0.5)
        as_columns = _as_columns(wire)
        _eager(eager, wire)
        _columns(cols, as_columns)
        if rng.random() < 0.5:
            _columns(mixed, as_columns)
        else:
            decoded = NODE_CODEC.decode(wire)
            assert decoded is not None
            assert mixed.on_log(decoded.msg, OWNER, decoded.frames, "owner", joined=True)
        if rng.random() < 0.5 and seq != batches:
            continue  # (a cut here or not)
        a = eager.replicas["r"]
        want = a.run_data()
        for b in (cols.replicas["r"], mixed.replicas["r"]):
            assert b.run_data() == want
            assert frozen(b).run_data() == want
            assert (b.seq, b.run_fields) == (a.seq, a.run_fields)
            assert b.settled() == (a.deltas, a.values)
            counts = replica_status.count(
                b.snapshot, dict(b.deltas), b.run_fields, tuple(b.batches)
            )
            assert counts == replica_status.count(a.snapshot, dict(a.deltas), a.run_fields)
    kept = cols.replicas["r"].batches
    if sb.FOLD_BYTES == 1 << 30:
        assert len(kept) == batches and all(batch[3] for batch in kept)  # (kept as columns)


# -- the owner: each standby the form its protocol reads ------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicateLog7:
    """``ReplicateLog`` as a build of protocol 7 knows it: no ``columns``."""

    run_id: str
    term: int
    seq: int
    standbys: tuple[str, ...]
    tasks: tuple[TaskDelta, ...]
    run_state: str
    released: bool
    error: ErrorInfo | None
    frame_sizes: bytes = b""


ReplicateLog7.TYPE = 61  # type: ignore[attr-defined]
SEVEN = {**m.MESSAGES, 61: ReplicateLog7}
CODEC7 = codec.Codec(versions=(3, 7), messages=SEVEN, packed={ReplicateLog7: "tasks"})


def _as_today(msg: Any) -> m.ReplicateLog:
    """A message read by a build of 7 as that build's standby applies it (its fields, no more)."""
    assert type(msg) is ReplicateLog7
    return m.ReplicateLog(*(getattr(msg, f.name) for f in dataclasses.fields(msg)))


def _drive(seed: int) -> tuple[FakePort, Any]:
    """A run's moves on an owner whose two standbys speak 8 ("new") and 7 ("old")."""
    rng = random.Random(seed)
    c = Cluster({"n1": 2.0, "n2": 3.0}, window=rng.choice((1, 4)))
    port = FakePort(name="owner", address="owner:1")
    port.join("new")
    old = port.join("old")
    port.states["old"] = dataclasses.replace(old, protocol_max=lc.LOG_COLUMNS_SINCE - 1)
    rep = shell.ReplicationIO(port, c.sched, replicas=2, grace=0.1)  # type: ignore[arg-type]
    c.sched.on_change = rep.task_changed
    c.sched.on_changes = rep.tasks_changed
    out = c.submit("r", random_specs(rng))
    rep.run_accepted("r", lambda: None)
    random_moves(
        c, port, rng, out, rng.randrange(20, 80), value=lambda r: r.choice([b"v", b"", None])
    )
    port.advance(1.0)
    return port, c


@pytest.mark.parametrize("seed", range(12))
def test_each_standby_is_sent_the_form_it_reads_and_both_hold_one_replica(seed: int) -> None:
    """The owner of 8 sends "new" the columns and "old" (protocol 7) the rows, each read by
    that build's codec; after every batch the two replicas rebuild the same run, and the same
    as the rows applied on arrival."""
    port, _ = _drive(seed)
    stores = {name: StandbyStore(name) for name in ("new", "old", "ref")}
    logs = 0
    for sent in port.sent:
        name = sent.address.split(":")[0]
        if isinstance(sent.msg, m.ReplicateRun):
            msg = sent.msg
            args = (msg.run_id, msg.term, msg.seq, msg.owner, msg.owner_address, msg.standbys)
            stores[name].on_snapshot(*args, sent.frames[0])
            if name == "old":
                stores["ref"].on_snapshot(*args, sent.frames[0])
            continue
        if not isinstance(sent.msg, m.ReplicateLog):
            continue
        wire = codec.Codec().encode(sent.msg, sender="owner", term=sent.term, frames=sent.frames)
        if name == "new":
            assert sent.msg.columns and not sent.msg.tasks
            decoded = NODE_CODEC.decode(wire)
            assert decoded is not None
            ack = stores["new"].on_log(decoded.msg, OWNER, decoded.frames, "owner", joined=True)
        else:
            assert not sent.msg.columns
            logs += 1
            decoded = CODEC7.decode(wire)
            assert decoded is not None and type(decoded.msg) is ReplicateLog7
            msg = _as_today(decoded.msg)
            ack = stores["old"].on_log(msg, OWNER, decoded.frames, "owner", joined=True)
            rows = codec.Codec(rows=ROWS).decode(wire)
            assert rows is not None
            frames = columns.split_frames(rows.msg.frame_sizes, rows.frames, "ReplicateLog")
            stores["ref"].on_log(rows.msg, OWNER, frames, "owner")
        assert ack is not None and not ack.need_snapshot
        new, old = stores["new"].replicas["r"], stores["old"].replicas["r"]
        if new.seq == old.seq:
            want = stores["ref"].replicas["r"].run_data()
            assert new.run_data() == old.run_data() == want
    assert logs and stores["new"].replicas["r"].seq == stores["old"].replicas["r"].seq == logs


@pytest.mark.parametrize("seed", range(6))
def test_a_standby_of_8_reads_an_owner_of_7(seed: int) -> None:
    """An owner of 7 sends ``ReplicateLog`` without ``columns`` (its 9 fields): this build's
    node codec reads it and applies its rows; the replica is the columns-fed one's."""
    rng = random.Random(seed)
    snapshot = _snapshot(20)
    from7, cols = _stores(snapshot)
    for seq in range(1, 12):
        wire = _wire(rng, seq, 20, last=seq == 11)
        decoded = codec.Codec().decode(wire)
        assert decoded is not None
        fields = [getattr(decoded.msg, f.name) for f in dataclasses.fields(ReplicateLog7)]
        old = ReplicateLog7(*fields)
        sent = codec.Codec(versions=(3, 7), messages=SEVEN).encode(
            old, sender="owner", term=2, frames=decoded.frames
        )
        assert len(msgpack.unpackb(sent[0])) == 7 + 9
        got = NODE_CODEC.decode(sent)
        assert got is not None and got.msg.columns == b""
        ack = from7.on_log(got.msg, OWNER, got.frames, "owner", joined=True)
        assert ack is not None and not ack.need_snapshot
        _columns(cols, _as_columns(wire))
        assert from7.replicas["r"].run_data() == cols.replicas["r"].run_data()


# -- malformed columns ------------------------------------------------------------------------


def _mutations(packed: bytes) -> list[tuple[str, bytes]]:
    value = list(msgpack.unpackb(packed, use_list=True))
    out = [("not msgpack", b"\xc1" + packed), ("cut", packed[:-2]), ("a map", b"\x80")]

    def changed(what: str, edit: Any) -> None:
        copy = msgpack.unpackb(packed, use_list=True)
        edit(copy)
        out.append((what, msgpack.packb(copy, use_bin_type=True)))

    changed("count", lambda v: v.__setitem__(0, v[0] + 1))
    changed("an id", lambda v: v[1].__setitem__(0, 5))
    changed("a column short", lambda v: v[2].pop())
    changed("attempt columns short", lambda v: v[4].pop())
    changed("a number column's bytes", lambda v: v[2].__setitem__(1, b"\x00" * 5))
    changed("a keyed column's shape", lambda v: v[2].__setitem__(0, ["DONE"]))
    changed("an index past the values", lambda v: v[2][0].__setitem__(1, b"\x09" * v[0]))
    changed("an index of another length", lambda v: v[2][0].__setitem__(1, b"\x00"))
    changed("no index for two values", lambda v: v[2][0].__setitem__(1, b""))
    changed("a state of another type", lambda v: v[2][0].__setitem__(0, [1, 2]))
    changed("a location not a string", lambda v: v[2][4].__setitem__(0, [[1]]))
    changed("attempt counts", lambda v: v.__setitem__(3, b"\xff" * 8))
    changed("attempt counts past the rows", lambda v: v.__setitem__(3, b"\x05" + b"\x00" * 7))
    assert len(value) == 5
    return out


def test_malformed_columns_are_refused_not_raised() -> None:
    rng = random.Random(4)
    rows = [_row(rng, f"t{i}", 1, 2) for i in range(6)]
    rows[0][1], rows[1][1] = "DONE", "FAILED"  # (two states: an index)
    packed = lc.pack_columns(rows)
    assert packed is not None
    lc.read_columns(packed)
    for what, bad in _mutations(packed):
        with pytest.raises(columns.ColumnError):
            lc.read_columns(bad)
            raise AssertionError(f"{what}: read")


def _bad_wire(rng: random.Random, seq: int) -> list[Any]:
    wire = _as_columns(_wire(rng, seq, 10, last=False))
    raw = list(msgpack.unpackb(wire[0], use_list=True))
    raw[7 + 9] = raw[7 + 9][:-3]  # (the columns' bytes cut)
    return [msgpack.packb(raw, use_bin_type=True), *wire[1:]]


def test_a_malformed_columns_batch_is_refused_when_read(caplog: pytest.LogCaptureFixture) -> None:
    """Kept as it came (a check would cost what keeping it packed saves) and refused when read:
    a rebuild fails as for a malformed snapshot; a fold drops the replica and asks for a
    snapshot, and the node's shell says so in its log."""
    rng = random.Random(9)
    _, store = _stores(_snapshot(10))
    _columns(store, _bad_wire(rng, 1))
    with pytest.raises(SnapshotError, match="malformed log batch"):
        store.replicas["r"].run_data()
    store.replicas["r"].kept_bytes = 1 << 40  # (the next batch folds it in)
    decoded = NODE_CODEC.decode(_as_columns(_wire(rng, 2, 10, last=False)))
    assert decoded is not None
    ack = store.on_log(decoded.msg, OWNER, decoded.frames, "owner", joined=True)
    assert ack is not None and ack.need_snapshot and "r" not in store.replicas
    # The shell: the same, through ``ReplicationIO.handle``, logged.
    port = FakePort(name="b", address="b:1")
    port.join("owner")
    rep = shell.ReplicationIO(port, Cluster({"n1": 1.0}).sched, replicas=1, grace=0.1)  # type: ignore[arg-type]
    rep.standby.on_snapshot("r", 2, 0, "owner", "owner:1", ("b",), _snapshot(10))
    for seq, wire in ((1, _bad_wire(rng, 1)), (2, _as_columns(_wire(rng, 2, 10, last=False)))):
        decoded = NODE_CODEC.decode(wire)
        assert decoded is not None
        if seq == 2:
            rep.standby.replicas["r"].kept_bytes = 1 << 40
        with caplog.at_level(logging.WARNING, logger="handoffd.replication"):
            rep.handle(decoded.msg, decoded.frames, fake_envelope("owner", 2))
    assert "r" not in rep.standby.replicas
    assert "a malformed log batch from owner" in caplog.text
    port.advance(0.0)
    acks = [s.msg for s in port.take(m.ReplicaAcked)]
    assert acks and acks[-1].need_snapshot


def test_rows_and_columns_in_one_batch_are_refused() -> None:
    rng = random.Random(2)
    wire = _wire(rng, 1, 10, last=False)
    decoded = codec.Codec().decode(wire)
    assert decoded is not None
    packed = lc.pack_columns(lc.as_rows(_rows_of(wire)))
    assert packed is not None and decoded.msg.tasks
    both = dataclasses.replace(decoded.msg, columns=packed)
    got = NODE_CODEC.decode(codec.Codec().encode(both, sender="owner", term=2, frames=wire[1:]))
    assert got is not None
    _, store = _stores(_snapshot(10))
    with pytest.raises(columns.ColumnError, match="both as rows and as columns"):
        store.on_log(got.msg, OWNER, got.frames, "owner", joined=True)
    assert store.replicas["r"].seq == 0  # (nothing applied)
