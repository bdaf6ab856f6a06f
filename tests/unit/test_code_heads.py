"""A function's code once a run (protocol 6): ``SubmitColumns.heads`` / ``head_of`` and
``SnapshotColumns.heads`` / ``head_of``. The client sends each distinct code head once and a tail
per function; the owner's specs, the general path, the snapshot to a standby of 6 (heads kept as
they came) or of 5 (spec rows, whole payloads) and a takeover from either all see exactly the
payloads the records' path sends; a malformed heads field is refused saying what is wrong."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import pytest

import handoffd
from handoffd import dag_columns, values
from handoffd.config import Limits
from handoffd.daemon import upload_intake
from handoffd.protocol import messages as m
from handoffd.protocol import snapshot
from handoffd.protocol.codec import Codec
from handoffd.protocol.columns import ColumnError, pack
from handoffd.protocol.messages_snapshot import SNAPSHOT_HEADS_SINCE, SnapshotColumns
from handoffd.protocol.messages_submit import (
    HEADS_SINCE,
    SubmitColumns,
    TaskColumns,
    as_sent,
    as_submission,
    sent_payloads,
)
from handoffd.protocol.schema import record_for_type, struct_record
from handoffd.scheduler.run import RunState

pytestmark = pytest.mark.timeout(120)

CODEC = Codec()


def _double(x: int) -> int:
    return 2 * x


def _add(*xs: int) -> int:
    return sum(xs)


def _closure(k: int) -> Any:
    def scaled(x: int = 1, *rest: int) -> int:
        return k * x + sum(rest)

    return scaled


def _dag(rng: random.Random, n: int) -> handoffd.DAG:
    """Functions of several codes: two module functions, closures over two constants (two codes,
    each shared by many functions), a lambda; with and without literals, some linked."""
    codes = [_double, _add, _closure(3), _closure(5), lambda *xs: len(xs)]
    dag = handoffd.DAG()
    for i in range(n):
        deps = [f"f{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 2)))]
        extra = rng.choice(([], [i], [i, "s"], [[1, 2]]))
        code = rng.choice(codes)
        if code is _double and (deps or len(extra) != 1):
            code = _add
        dag.add_function(handoffd.Function(id=f"f{i}", code=code, args=deps, extra_args=extra))
    return dag


def _options() -> dict[str, Any]:
    return {"policy": "binpack", "max_retries": 3, "outputs": None, "packages": ()}


def _built(dag: handoffd.DAG) -> tuple[Any, list[bytes], list[bytes]]:
    """The columns and tails the client builds, and the whole payloads the records' path sends."""
    dag.wire_tasks(allow_empty=False, **_options())  # (each code's head cached, as next found)
    rows, whole = dag.wire_tasks(allow_empty=False, **_options())
    built = dag_columns.plain_columns(dag, priority=0, **_options())
    assert built is not None
    return built[0], built[1], whole


def _received(sent: Any, tails: list[bytes], daemon_max: int) -> tuple[Any, list[Any]]:
    """What a daemon of ``daemon_max`` makes of the client's submission: the message and frames."""
    msg = as_sent(m.SubmitRun(1, "r1", sent, 3, "binpack", None), daemon_max)  # type: ignore[arg-type]
    frames = sent_payloads(sent, tails, daemon_max)
    decoded = CODEC.decode([bytes(f) for f in CODEC.encode(msg, sender="c", frames=frames)])
    assert decoded is not None and type(decoded.msg) is SubmitColumns
    return as_submission(decoded.msg), decoded.frames


@pytest.mark.parametrize("seed", range(12))
def test_heads_give_the_owner_and_its_standbys_the_whole_payloads(seed: int) -> None:
    rng = random.Random(seed)
    sent, tails, whole = _built(_dag(rng, rng.randint(2, 50)))
    assert 1 <= len(sent.heads) <= 5  # each distinct code once
    assert sum(map(len, tails)) + sum(map(len, sent.heads)) < sum(map(len, whole))
    new, new_frames = _received(sent, tails, HEADS_SINCE)
    old, old_frames = _received(sent, tails, HEADS_SINCE - 1)
    assert new.tasks.head_of is not None and old.tasks.head_of is None
    assert list(new.tasks.whole(new_frames)) == whole == old_frames
    a = upload_intake.prepare_whole(old, old_frames, Limits(), None)
    b = upload_intake.prepare_whole(new, new_frames, Limits(), None)
    assert a.error is None and b.error is None and a.run is not None and b.run is not None
    assert [s.payload for s in b.specs] == whole  # type: ignore[union-attr]
    assert [vars(s) for s in a.specs] == [vars(s) for s in b.specs]  # type: ignore[union-attr]
    assert b.run.prebuilt is not None and b.run.prebuilt.columns == SNAPSHOT_HEADS_SINCE
    # A standby of 6 gets the heads as they came (smaller); one of 5 (or older) the spec rows.
    rows_frame = snapshot.encode_run(b.run)
    assert snapshot.encode_run(b.run, columns=SNAPSHOT_HEADS_SINCE - 1) == rows_frame
    assert snapshot.encode_run(a.run, columns=SNAPSHOT_HEADS_SINCE - 1) != rows_frame  # columns
    heads_frame = snapshot.encode_run(b.run, columns=SNAPSHOT_HEADS_SINCE)
    for chunked in (False, True):
        assert (
            snapshot.encode_run(b.run, columns=SNAPSHOT_HEADS_SINCE, chunked=chunked) == heads_frame
        )
    assert len(heads_frame) < len(rows_frame)
    data = snapshot.decode_run(heads_frame)
    assert data == snapshot.decode_run(rows_frame) == b.run.snapshot(history=False)
    assert [s["payload"] for s in data["specs"]] == whole
    taken = RunState.from_snapshot(data)
    assert [s.payload for s in taken.specs] == whole


def test_a_lone_function_with_a_head_is_read_whole_by_the_general_path() -> None:
    code = values.dumps_code(_double)
    head, tail = values.call_head(code), values.call_tail([4], {})
    msg = SubmitColumns(
        1, "r1", ("a",), pack("i", [0]), (), ({"cpu": 1.0},), pack("i", [0]),
        ("variadic",), pack("B", [0]), pack("q", [0]), 3, "binpack", None, False, 0.0, 0,
        False, (), (head,), pack("i", [0]),
    )  # fmt: skip
    prepared = upload_intake.prepare_whole(as_submission(msg), [tail], Limits(), None)
    assert prepared.error is None and prepared.specs is not None
    assert prepared.specs[0].payload == head + tail == values.dumps_call(code, [4], {})


def test_a_big_head_goes_whole_in_its_frames() -> None:
    big = [b"x" * (dag_columns.HEAD_BYTES + 1)]
    dag = handoffd.DAG()
    for i in range(3):
        dag.add_function(handoffd.Function(id=f"b{i}", code=lambda b=big: len(b[0])))
    dag.add_function(handoffd.Function(id="d", code=_double, extra_args=[1]))
    sent, tails, whole = _built(dag)
    assert len(sent.heads) == 1
    received, frames = _received(sent, tails, HEADS_SINCE)
    assert type(received.tasks) is TaskColumns and received.tasks.head_of == [-1, -1, -1, 0]
    assert tails[:3] == whole[:3] and list(received.tasks.whole(frames)) == whole


def test_the_new_fields_golden_bytes() -> None:
    """``SubmitColumns`` and ``SnapshotColumns`` with heads, as the wire carries them (the whole
    message set is pinned in golden/messages.json; these pin non-empty heads)."""
    msg = SubmitColumns(
        5, "r", ("a", "b"), pack("i", [0, 0]), (), ({"cpu": 1.0},), pack("i", [0, 0]),
        ("variadic",), pack("B", [0, 0]), pack("q", [0, 0]), 0, "binpack", None, True, 1.0, 9,
        True, (), (b"HEAD",), pack("i", [0, -1]),
    )  # fmt: skip
    record = record_for_type(SubmitColumns.TYPE)  # type: ignore[attr-defined]
    assert record is not None
    wire = msgpack.packb(record.to_wire(msg), use_bin_type=True)
    assert wire.hex() == GOLDEN_SUBMIT
    snap = SnapshotColumns(
        ("a", "b"), pack("i", [0, 0]), (), ({"cpu": 1.0},), pack("i", [0, 0]), ("variadic",),
        pack("B", [0, 0]), pack("q", [0, 0]), (b"t0", b"whole"), (b"HEAD",), pack("i", [0, -1]),
    )  # fmt: skip
    wire = msgpack.packb(struct_record(SnapshotColumns).to_wire(snap), use_bin_type=True)
    assert wire.hex() == GOLDEN_SNAPSHOT


# the heads (91 c4 04 HEAD) and head_of (0, -1) are the message's last two fields
GOLDEN_SUBMIT = (
    "dc001405a17292a161a162c4080000000000000000909181a3637075cb3ff0000000000000c40800"
    "0000000000000091a87661726961646963c4020000c4100000000000000000000000000000000000"
    "a762696e7061636bc0c3cb3ff000000000000009c39091c40448454144c40800000000ffffffff"
)
# (protocol 7's trailing ``tails`` and ``tail_sizes``, empty: c4 00 each)
GOLDEN_SNAPSHOT = (
    "9d92a161a162c4080000000000000000909181a3637075cb3ff0000000000000c408000000000000"
    "000091a87661726961646963c4020000c4100000000000000000000000000000000092c4027430c4"
    "0577686f6c6591c40448454144c40800000000ffffffffc400c400"
)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"head_of": pack("i", [0, 1])}, "SubmitColumns.head_of: index 1 out of range"),
        ({"head_of": pack("i", [0, -2])}, "SubmitColumns.head_of: index -2 out of range"),
        ({"head_of": pack("i", [0])}, "SubmitColumns.head_of: 4 bytes, expected 2 x 4"),
        ({"heads": ()}, "SubmitColumns.head_of: index 0 out of range"),
    ],
)
def test_a_malformed_head_of_is_refused_saying_what(change: Any, says: str) -> None:
    good = SubmitColumns(
        1, "r", ("a", "b"), pack("i", [0, 0]), (), ({"cpu": 1.0},), pack("i", [0, 0]),
        ("variadic",), pack("B", [0, 0]), pack("q", [0, 0]), 0, "binpack", None, False, 0.0, 0,
        False, (), (b"H",), pack("i", [0, -1]),
    )  # fmt: skip
    as_submission(good)
    bad = dataclasses.replace(good, **change)
    decoded = CODEC.decode(CODEC.encode(bad, sender="c", frames=[b"x", b"y"]))
    assert decoded is not None
    with pytest.raises(ColumnError, match=says):
        as_submission(decoded.msg)
    # A head of the wrong type: the codec refuses the message (dropped and counted by the node).
    frames = CODEC.encode(good, sender="c", frames=[b"x", b"y"])
    wrong = msgpack.unpackb(frames[0], use_list=True)
    wrong[-2] = ["not bytes"]
    assert CODEC.decode([msgpack.packb(wrong, use_bin_type=True), *frames[1:]]) is None
