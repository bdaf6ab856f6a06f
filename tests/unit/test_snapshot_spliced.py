"""A columns upload's snapshot specs spliced from the submission's own bytes
(``snapshot.spliced_columns``, ``upload_intake.Sent``): the same bytes as the columns packed
(``intake_columns.column_snapshot`` + ``pack_parts``) for what a client sends, the same run
decoded by a standby for a head encoded otherwise, a standby of 6 sent the tails cut apart
and one of 5 the spec rows, the tails as the upload's own bytes (protocol 7) and refused when
they disagree with their sizes, and a malformed upload still refused with no run built."""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Any

import msgpack
import pytest
from test_scheduler_builds import built_run, pure_run

import handoffd
from handoffd import upload
from handoffd.config import Limits
from handoffd.daemon import upload_intake as ui
from handoffd.daemon.intake_columns import column_snapshot
from handoffd.dag_columns import submission
from handoffd.protocol import messages as m
from handoffd.protocol import snapshot, snapshot_columns
from handoffd.protocol.codec import Codec
from handoffd.protocol.columns import pack
from handoffd.protocol.messages_snapshot import SNAPSHOT_HEADS_SINCE, SNAPSHOT_TAILS_SINCE
from handoffd.protocol.messages_submit import HEADS_SINCE, as_sent, sent_payloads
from handoffd.protocol.schema import MESSAGE_OFFSET
from handoffd.protocol.snapshot import decode_run, encode_run, heads_form, pack_parts
from handoffd.store.chunks import FAR_BYTES

pytestmark = pytest.mark.timeout(120)


def _frames(rng: random.Random, n: int, far: bool = False) -> list[bytes]:
    """A plain run of ``n`` functions as today's client sends it to a daemon of 6 (columns, each
    code head once, a tail a function), an argument past ``FAR_BYTES`` in some when ``far``."""
    # (functions pickled by value, as a script's are: their code goes as heads)
    codes = (lambda *args: None, lambda *args: args, lambda *args: len(args))
    dag = handoffd.DAG()
    ids = [f"t{i}" if rng.random() < 0.8 else f"t{i}-\u00e9" for i in range(n)]
    for i in range(n):
        deps = sorted({ids[rng.randrange(i)] for _ in range(rng.randrange(3))}) if i else []
        arg: Any = b"x" * (FAR_BYTES + 1) if far and rng.random() < 0.3 else i
        dag.add_function(
            handoffd.Function(
                id=ids[i],
                code=rng.choice(codes),
                args=deps,
                extra_args=[arg],
                cost=rng.choice(({"cpu": 1}, {"cpu": 1.0})),  # (what dag_columns takes)
                priority=rng.randrange(-2, 3),
            )
        )
    sent, payloads, _ = submission(dag, "binpack", 3, None, (), 0)
    request = m.SubmitAndWait(1, "r1", sent, 3, "binpack", None, 1.0, 1 << 20, True, ())
    request = as_sent(request, HEADS_SINCE)
    payloads = sent_payloads(sent, payloads, HEADS_SINCE)
    return [bytes(f) for f in Codec().encode(request, sender="c", frames=payloads)]


def _prepared(frames: list[bytes]) -> ui.Prepared:
    codec = Codec(upload.decode_limits(Limits()))
    return ui.prepare(upload.Whole(bytearray(upload.pack(frames))), codec, Limits(), None)


def _packed(prepared: ui.Prepared, blob: bool = True) -> tuple[bytes, bytes]:
    """The parts as the columns packed give them (``column_snapshot``, ``pack_parts``): with
    ``blob`` the tails as one blob and its sizes (protocol 7), else each tail a payload (6)."""
    run = prepared.run
    assert run is not None and prepared.specs is not None
    columns, far = column_snapshot(
        prepared.decoded.msg.tasks, prepared.specs, prepared.decoded.frames
    )
    assert columns is not None and far == ()
    if blob:
        tails = columns.payloads
        sizes = pack("q", [len(t) for t in tails])
        columns = dataclasses.replace(columns, payloads=(), tails=b"".join(tails), tail_sizes=sizes)
    return pack_parts(run, columns)


@pytest.fixture
def unpacked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the columns packed at intake (``column_snapshot`` called by the upload thread)."""
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return column_snapshot(*args)

    monkeypatch.setattr(ui, "column_snapshot", counted)
    return calls


@pytest.mark.parametrize("seed", range(16))
def test_spliced_specs_are_the_packed_columns_bytes(seed: int, unpacked: list[int]) -> None:
    rng = random.Random(seed)
    prepared = _prepared(_frames(rng, rng.randint(1, 80)))
    assert prepared.error is None and prepared.run is not None
    built = prepared.run.prebuilt
    assert built is not None
    assert not unpacked  # (spliced: the columns were not built and packed)
    as_packed = _packed(prepared)
    assert built.packed == (as_packed[0], None)  # (the tasks as built: not packed)
    assert built.far == () and built.columns == SNAPSHOT_TAILS_SINCE
    run = prepared.run
    # A standby of 7 reads the same run from the spliced snapshot as from every spec row.
    rows = decode_run(encode_run(run, columns=0))
    seven = encode_run(run, columns=SNAPSHOT_TAILS_SINCE)
    assert decode_run(seven) == rows
    assert encode_run(run, chunked=True, columns=SNAPSHOT_TAILS_SINCE) == seven
    assert rows == run.snapshot(history=False)
    # Its tasks as built: none packed, a flag (``RunSnapshot.tasks_built``).
    fields = msgpack.unpackb(seven, use_list=False)
    assert fields[13] == () and fields[-1] is True and len(fields) == 19
    # One of 6 gets today's columns (each tail a payload) and task rows, byte for byte as they
    # were packed.
    assert heads_form(built.packed[0]) == _packed(prepared, blob=False)[0]
    for chunked in (False, True):
        six = encode_run(run, chunked=chunked, columns=SNAPSHOT_HEADS_SINCE)
        assert len(_columns_of(six)) == 11 and decode_run(six) == rows
        assert six.endswith(_packed(prepared, blob=False)[0])  # (no tasks_built after)
        assert as_packed[1] in six  # (the task rows as built)
    # One of 5 is sent the spec rows (it would take the tails for the payloads).
    assert encode_run(run, columns=5) == encode_run(run, columns=0)


def _columns_of(frame: bytes) -> tuple[Any, ...]:
    """A snapshot frame's ``RunSnapshot.columns`` as its raw values."""
    return msgpack.unpackb(frame, use_list=False)[17]  # type: ignore[no-any-return]


def test_a_run_moved_on_is_sent_its_task_rows() -> None:
    prepared = _prepared(_frames(random.Random(11), 20))
    run = prepared.run
    assert run is not None and run.prebuilt is not None and run.prebuilt.packed[1] is None
    first = next(iter(run.tasks.values()))
    first.state = "READY"  # (as the owner's intake would: no longer untouched)
    run.intake = 1
    for version in (SNAPSHOT_HEADS_SINCE, SNAPSHOT_TAILS_SINCE):
        for chunked in (False, True):
            frame = encode_run(run, chunked=chunked, columns=version)
            fields = msgpack.unpackb(frame, use_list=False)
            assert len(fields[13]) == 20 and fields[-1] is not True
            assert decode_run(frame)["tasks"] == run.snapshot(history=False)["tasks"]
    # As built on purpose (the moved tasks follow in the log): a standby of 7 gets the flag.
    frame = encode_run(run, columns=SNAPSHOT_TAILS_SINCE, as_built=True)
    assert msgpack.unpackb(frame, use_list=False)[-1] is True
    assert decode_run(frame)["tasks"][first.id]["state"] == "PENDING"


def test_task_rows_besides_tasks_built_are_refused() -> None:
    prepared = _prepared(_frames(random.Random(12), 5))
    assert prepared.run is not None
    fields = list(msgpack.unpackb(encode_run(prepared.run, columns=SNAPSHOT_TAILS_SINCE)))
    rows = msgpack.unpackb(encode_run(prepared.run, columns=0))[13]
    fields[13] = rows
    with pytest.raises(snapshot.SnapshotError, match="as built"):
        decode_run(msgpack.packb(fields, use_bin_type=True))
    fields[-1] = False  # (the rows, not the flag: read as ever)
    assert decode_run(msgpack.packb(fields, use_bin_type=True)) == decode_run(
        encode_run(prepared.run, columns=0)
    )


def test_the_tails_are_the_uploads_own_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload's tails go to the snapshot as the slice of its bytes that holds them, their
    sizes the upload's own: no look at each frame (``snapshot.tails_of`` with ``Sent.cut``)."""
    seen: list[Any] = []
    real = snapshot_columns.tails_of

    def spied(frames: Any, n: int, cut: Any = None) -> Any:
        seen.append(cut)
        blob, sizes = real(frames, n, cut)
        seen.append(blob)
        return blob, sizes

    monkeypatch.setattr(snapshot_columns, "tails_of", spied)
    frames = _frames(random.Random(4), 30)
    prepared = _prepared(frames)
    assert prepared.run is not None and len(seen) == 2
    cut, blob = seen
    assert cut is not None and type(blob) is memoryview  # (a view of the upload, not a join)
    assert bytes(blob) == b"".join(frames[1:31])
    assert list(snapshot_columns.split_tails(bytes(blob), pack("q", [len(f) for f in frames[1:31]]), 30,
                                     "t")) == frames[1:31]  # fmt: skip


def test_tails_not_where_the_cut_says_are_joined() -> None:
    frames = [b"head", b"aa", b"bbb", b"c"]
    whole = upload.Whole(bytearray(upload.pack(frames))).checked()
    cut = (whole.data, whole.at, whole.sizes)
    blob, sizes = snapshot_columns.tails_of(whole.frames()[1:], 3, cut)
    assert type(blob) is memoryview and bytes(blob) == b"aabbbc" and list(sizes) == [2, 3, 1]
    other = [b"aX", b"bbb", b"c"]  # (not where the cut says: joined, not trusted)
    blob, sizes = snapshot_columns.tails_of(other, 3, cut)
    assert blob == b"aXbbbc" and list(sizes) == [2, 3, 1]
    blob, sizes = snapshot_columns.tails_of(other, 2, None)
    assert blob == b"aXbbb" and list(sizes) == [2, 3]


@pytest.mark.parametrize(
    "tails, sizes, n",
    [(b"abc", [1, 1], 2), (b"abc", [4, -1], 2), (b"abc", [3], 2), (b"", [0, 0, 1], 3)],
)
def test_tails_that_disagree_with_their_sizes_are_refused(
    tails: bytes, sizes: list[int], n: int
) -> None:
    prepared = _prepared(_frames(random.Random(6), n))
    assert prepared.run is not None and prepared.run.prebuilt is not None
    frame = encode_run(prepared.run, columns=SNAPSHOT_TAILS_SINCE)
    values = list(msgpack.unpackb(frame, use_list=False))
    columns = list(values[17])
    columns[-2:] = [tails, struct.pack(f"<{len(sizes)}q", *sizes)]
    values[17] = columns
    with pytest.raises(snapshot.SnapshotError, match="tail"):
        decode_run(msgpack.packb(values, use_bin_type=True))
    columns[-2:] = [b"".join(columns[8]) or b"x", struct.pack("<q", 1) * n]
    columns[8] = (b"x",) * n  # (payloads besides their tails)
    values[17] = columns
    with pytest.raises(snapshot.SnapshotError, match="payloads besides"):
        decode_run(msgpack.packb(values, use_bin_type=True))


def test_frames_given_as_a_list_of_bytes_are_spliced_alike(unpacked: list[int]) -> None:
    frames = _frames(random.Random(8), 25)
    codec = Codec(upload.decode_limits(Limits()))
    listed = ui.prepare(list(frames), codec, Limits(), None)
    assert listed.run is not None and listed.run.prebuilt is not None and not unpacked
    assert listed.run.prebuilt.packed == (_packed(listed)[0], None)  # (their tails joined)


def test_a_far_payload_is_packed_as_before(unpacked: list[int]) -> None:
    prepared = _prepared(_frames(random.Random(3), 30, far=True))
    assert prepared.run is not None and prepared.run.prebuilt is not None
    assert unpacked  # (a far payload: whole payloads, the far ones left out, as before)
    assert prepared.run.prebuilt.far


def _str8(text: str) -> bytes:
    """``text`` as msgpack's str 8, not the fixstr a packer writes for a short string."""
    raw = text.encode()
    return b"\xd9" + struct.pack("B", len(raw)) + raw


def _reencoded(head: bytes) -> bytes:
    """``head`` with its ids written as str 8 and its priorities' bin as bin 32: other bytes, the
    same values."""
    values = msgpack.unpackb(head, use_list=False)
    packer = msgpack.Packer(use_bin_type=True)
    ids_at = MESSAGE_OFFSET + 2
    priorities_at = MESSAGE_OFFSET + 9
    out = [packer.pack_array_header(len(values))]
    for at, value in enumerate(values):
        if at == ids_at:
            out.append(packer.pack_array_header(len(value)))
            out += [_str8(v) for v in value]
        elif at == priorities_at:
            out.append(b"\xc6" + struct.pack(">I", len(value)) + value)
        else:
            out.append(packer.pack(value))
    return b"".join(out)


@pytest.mark.parametrize("seed", range(6))
def test_a_head_encoded_otherwise_decodes_to_the_same_run(seed: int, unpacked: list[int]) -> None:
    frames = _frames(random.Random(100 + seed), 40)
    other = [_reencoded(frames[0]), *frames[1:]]
    assert other[0] != frames[0]
    a, b = _prepared(frames), _prepared(other)
    assert a.run is not None and b.run is not None and not unpacked
    assert b.run.prebuilt is not None and b.run.prebuilt.packed != a.run.prebuilt.packed
    assert b.run.prebuilt.packed[0] != _packed(b)[0]  # (spliced as it came)
    for version in (0, SNAPSHOT_HEADS_SINCE, SNAPSHOT_TAILS_SINCE):
        assert decode_run(encode_run(b.run, columns=version)) == decode_run(
            encode_run(a.run, columns=version)
        )


def test_marks_are_where_each_value_starts() -> None:
    frames = _frames(random.Random(5), 12)
    marks: list[int] = []
    values = ui.unpack_head(frames[0], marks)
    assert values is not None and len(marks) == len(values) + 1 and marks[-1] == len(frames[0])
    head = frames[0]
    for at, value in enumerate(values):
        assert msgpack.unpackb(head[marks[at] : marks[at + 1]], use_list=False) == value
    bad: list[int] = []
    assert ui.unpack_head(head[:-1], bad) is None and bad == []


@pytest.mark.parametrize("cut", ["dep_counts", "ids", "truncated"])
def test_a_malformed_upload_is_refused_with_no_run(cut: str) -> None:
    frames = _frames(random.Random(9), 20)
    values = list(msgpack.unpackb(frames[0], use_list=False))
    if cut == "dep_counts":  # (columns that disagree: a ColumnError, the upload dropped)
        values[MESSAGE_OFFSET + 3] = values[MESSAGE_OFFSET + 3][:-4]
        head = msgpack.packb(values, use_bin_type=True)
    elif cut == "ids":  # (an id that is no str: the codec's schema refuses it)
        values[MESSAGE_OFFSET + 2] = (b"t0", *values[MESSAGE_OFFSET + 2][1:])
        head = msgpack.packb(values, use_bin_type=True)
    else:
        head = frames[0][: len(frames[0]) // 2]
    prepared = _prepared([head, *frames[1:]])
    assert prepared.run is None and prepared.specs is None


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(4))
def test_a_takeover_rebuilds_the_same_run_from_every_form(seed: int, build: str) -> None:
    """Snapshot -> standby -> takeover: the run rebuilt from the spec rows, from the columns a
    standby of 6 gets and from protocol 7's (the tails as one blob, the tasks as built) is the
    same run, record for record, in both builds of the run's module."""
    rng = random.Random(200 + seed)
    run = _prepared(_frames(rng, rng.randint(1, 60))).run
    assert run is not None
    cls = (built_run if build == "compiled" else pure_run).RunState
    rebuilt = []
    for version in (0, SNAPSHOT_HEADS_SINCE, SNAPSHOT_TAILS_SINCE):
        for chunked in (False, True):
            taken = cls.from_snapshot(decode_run(encode_run(run, chunked=chunked, columns=version)))
            rebuilt.append(
                (
                    taken.snapshot(history=False),
                    [r.id for r in taken.ordered],
                    [(r.position, r.upward_rank, r.duration_key) for r in taken.tasks.values()],
                )
            )
    assert rebuilt[0][0] == run.snapshot(history=False)
    assert all(one == rebuilt[0] for one in rebuilt)


def test_a_big_run_a_standby_cannot_read_as_spliced_is_packed_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An untouched big run's snapshot is spliced on the loop only for a standby that reads its
    intake's form (``Prebuilt.columns``): for an older one the columns would be cut apart and the
    tasks packed (or the specs packed as rows) on the loop, so it goes to the thread."""
    from handoffd.daemon import replication

    monkeypatch.setattr(replication, "PACK_OFF_LOOP", 10)
    off_loop = replication.ReplicationIO._off_loop
    run = _prepared(_frames(random.Random(13), 12)).run
    assert run is not None and run.untouched() and run.prebuilt is not None
    assert not off_loop(run, SNAPSHOT_TAILS_SINCE)
    assert off_loop(run, SNAPSHOT_HEADS_SINCE) and off_loop(run, 5) and off_loop(run, 0)
    monkeypatch.setattr(replication, "PACK_OFF_LOOP", 13)
    assert not off_loop(run, SNAPSHOT_HEADS_SINCE)  # (small: on the loop as ever)
