"""A standby's codec reads a log batch's task deltas as checked rows (``protocol.rows``): the
same checks as the structs' decode, and the replica keeps the same bytes as from the structs."""

from __future__ import annotations

import random

import msgpack
import pytest

from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.rows import CheckedRows, as_row
from handoffd.protocol.schema import MESSAGE_OFFSET
from handoffd.replication.standby import Replica, StandbyStore

ROWS = {m.ReplicateLog: "tasks"}
OFFSET = MESSAGE_OFFSET
TASKS_AT = OFFSET + 4  # ReplicateLog.tasks in the decoded array


def _attempt(rng: random.Random, i: int) -> AttemptInfo:
    return AttemptInfo(
        i,
        rng.choice(["a", "b", ""]),
        rng.choice(["DONE", "FAILED", "ASSIGNED", "LOST"]),
        rng.random() * 1e9,
        rng.random(),
        rng.random(),
        rng.randrange(1 << 31),
        rng.randrange(1 << 40),
        rng.randrange(1 << 20),
        rng.choice(["", "ValueError"]),
        rng.choice(["", "boom \u00e9"]),
        "",
        rng.choice(["", "lost"]),
    )


def _delta(rng: random.Random, i: int, frames: int) -> m.TaskDelta:
    return m.TaskDelta(
        f"t{i}",
        rng.choice(["DONE", "FAILED", "READY", "CANCELLED"]),
        rng.randrange(4),
        rng.choice([None, "a", "b"]),
        rng.randrange(1 << 33),
        tuple(rng.sample(["tcp://a:1", "tcp://b:2", "tcp://c:3"], rng.randrange(3))),
        rng.randrange(3),
        rng.randrange(3),
        rng.randrange(3),
        rng.randrange(-1, frames + 1),
        tuple(_attempt(rng, j) for j in range(rng.randrange(3))),
    )


def _batch(seed: int, n: int = 40) -> tuple[m.ReplicateLog, list[bytes]]:
    rng = random.Random(seed)
    frames = [rng.randbytes(rng.randrange(1, 50)) for _ in range(n // 2)]
    tasks = tuple(_delta(rng, i, len(frames)) for i in range(n))
    msg = m.ReplicateLog("run", 3, 1, ("a", "b"), tasks, "RUNNING", False, None)
    return msg, frames


@pytest.mark.parametrize("seed", range(20))
def test_rows_are_the_structs_fields_and_keep_the_same_bytes(seed: int) -> None:
    msg, frames = _batch(seed)
    wire = codec.Codec().encode(msg, sender="owner", term=3, frames=frames)
    as_structs = codec.Codec().decode(wire)
    as_rows = codec.Codec(rows=ROWS).decode(wire)
    assert as_structs is not None and as_rows is not None
    assert type(as_rows.msg.tasks) is CheckedRows
    assert list(as_rows.msg.tasks) == [as_row(d) for d in as_structs.msg.tasks]
    assert as_rows.msg.run_id == msg.run_id and as_rows.msg.standbys == msg.standbys
    kept = []
    for decoded in (as_structs, as_rows):
        store = StandbyStore("b")
        store.on_snapshot("run", 3, 0, "owner", "tcp://owner:1", ("a", "b"), b"")
        ack = store.on_log(decoded.msg, "tcp://owner:1", decoded.frames, "owner")
        assert ack is not None and ack.seq == 1 and not ack.need_snapshot
        replica = store.replicas["run"]
        kept.append((dict(replica.deltas), dict(replica.values), replica.run_fields))
    assert kept[0] == kept[1]


def test_put_row_packs_what_put_packs() -> None:
    rng = random.Random(7)
    for i in range(200):
        d = _delta(rng, i, 3)
        a, b = Replica("r", 0, 0, "o", "x", (), b""), Replica("r", 0, 0, "o", "x", (), b"")
        a.put(d, b"v")
        b.put_row(as_row(d), b"v")
        assert a.deltas == b.deltas and a.values == b.values


def _raw(msg: m.ReplicateLog) -> list[object]:
    wire = codec.Codec().encode(msg, sender="owner", term=3)
    return list(msgpack.unpackb(wire[0], use_list=True))


def _both(raw: list[object]) -> tuple[object, object]:
    body = msgpack.packb(raw, use_bin_type=True)
    return codec.Codec().decode([body]), codec.Codec(rows=ROWS).decode([body])


def test_an_int_in_a_float_field_is_a_float_in_the_row() -> None:
    msg, _ = _batch(1, 4)
    raw = _raw(msg)
    for delta in raw[TASKS_AT]:  # type: ignore[attr-defined]
        for attempt in delta[10]:
            attempt[3] = 5  # dispatched
    structs, rows = _both(raw)
    assert structs is not None and rows is not None
    for d, row in zip(structs.msg.tasks, rows.msg.tasks, strict=True):  # type: ignore[attr-defined]
        assert row == as_row(d)
        for attempt in row[10]:
            assert type(attempt[3]) is float


@pytest.mark.parametrize("at", range(11))
def test_a_wrong_type_in_any_field_is_dropped_as_by_the_structs(at: int) -> None:
    msg, _ = _batch(2, 3)
    msg = m.ReplicateLog(
        msg.run_id,
        msg.term,
        msg.seq,
        msg.standbys,
        tuple(
            m.TaskDelta(*(getattr(d, f) for f in m.TaskDelta.__dataclass_fields__))
            for d in msg.tasks
        )[:1]
        + (
            m.TaskDelta("x", "DONE", 1, None, 1, (), 0, 0, 0, -1, (_attempt(random.Random(3), 1),)),
        ),
        msg.run_state,
        msg.released,
        msg.error,
    )
    raw = _raw(msg)
    raw[TASKS_AT][1][at] = b"\x00" if at not in (5, 10) else [b"\x00"]  # type: ignore[index]
    structs, rows = _both(raw)
    assert structs is None and rows is None
    for attempt_at in range(13):
        raw = _raw(msg)
        raw[TASKS_AT][1][10][0][attempt_at] = b"\x00"  # type: ignore[index]
        structs, rows = _both(raw)
        assert structs is None and rows is None, attempt_at


def test_a_delta_of_another_version_becomes_a_row_of_this_build() -> None:
    msg, _ = _batch(3, 6)
    raw = _raw(msg)
    deltas = raw[TASKS_AT]
    deltas[0].append("a newer sender's trailing field")  # type: ignore[index]
    del deltas[1][10]  # an older sender: no attempts  # type: ignore[index]
    deltas[2][10][0].append(99) if deltas[2][10] else None  # type: ignore[index]
    structs, rows = _both(raw)
    assert structs is not None and rows is not None
    assert list(rows.msg.tasks) == [as_row(d) for d in structs.msg.tasks]  # type: ignore[attr-defined]
    assert rows.msg.tasks[1][10] == ()  # type: ignore[attr-defined]


def test_rows_only_for_a_tuple_of_structs() -> None:
    with pytest.raises(TypeError):
        codec.Codec(rows={m.ReplicateLog: "standbys"})


def test_a_batch_of_another_length_is_read_as_structs_and_applied_alike() -> None:
    """An older sender's batch (no trailing ``frame_sizes``) is read by ``from_other``: its deltas
    come as structs, which the standby applies as before."""
    msg, _ = _batch(4, 8)
    raw = _raw(msg)
    del raw[-1]  # frame_sizes
    structs, rows = _both(raw)
    assert structs is not None and rows is not None
    assert rows.msg == structs.msg  # type: ignore[attr-defined]
    store = StandbyStore("b")
    store.on_snapshot("run", 3, 0, "owner", "tcp://owner:1", ("a", "b"), b"")
    assert store.on_log(rows.msg, "tcp://owner:1", [], "owner") is not None  # type: ignore[attr-defined]
    assert set(store.replicas["run"].deltas) == {d.task_id for d in msg.tasks}
