"""The owner's pack of a log batch into columns from typed buffers (``protocol.log_pack``): the
bytes of session 32's packer (``log_pack_v32``, kept here as the reference) for the same rows, in
the compiled build and its .py; a packer reused batch after batch packs each as a fresh one; a
task's record put straight in the columns (``put_record``, the scheduler's ``delta_columns``)
gives the bytes of its row; the owner whose standbys all read columns packs them from the
records, the same bytes as from the rows."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import log_pack_v32 as reference
import pytest
from fake_port import FakePort
from pure_build import check_builds, pure
from scheduler_harness import Cluster
from test_log_columns import _row
from test_replication_feed import random_moves, random_specs

from handoffd.daemon import replication as shell
from handoffd.protocol import log_columns as lc
from handoffd.protocol import log_pack
from handoffd.protocol import messages as m

PURE = pure(log_pack, "handoffd_log_pack_pure_typed")
BUILDS = (log_pack, PURE)


def _batch(rng: random.Random) -> list[list[Any]]:
    """Random delta rows in ``delta_rows``' wire form, of the shapes the buffers must get right:
    past their first capacity, past 256 distinct strings (the index's width), every column one
    value, no/one/mixed attempts, floats that compare oddly (NaN, -0.0), bools and int64's ends
    in int fields."""
    n = rng.choice([1, 2, 5, 80, 255, 256, 257, 300, 700])
    shape = rng.choice(["none", "one", "mixed"])
    names = rng.choice([2, 256, 257, 400])
    rows = [
        _row(rng, f"t{i}", {"none": 0, "one": 1}.get(shape, rng.randrange(3)), names)
        for i in range(n)
    ]
    if rng.random() < 0.2:
        rows = [list(rows[0]) for _ in rows]  # (every column one value)
    for row in rng.sample(rows, min(len(rows), rng.randrange(4))):
        row[rng.choice([2, 4, 6, 7, 8, 9])] = rng.choice([True, False, (1 << 63) - 1, -(1 << 63)])
        for attempt in row[10]:
            attempt[rng.choice([3, 4, 5])] = rng.choice([math.nan, -0.0, 0.0, 1, math.inf])
            attempt[rng.choice([0, 6, 7, 8])] = rng.choice([True, 0, -1])
        if rng.random() < 0.3:
            row[5] = [f"{rng.randrange(1000)}:{rng.randrange(9)}" for _ in range(rng.randrange(4))]
    return rows


def _spoilt(rng: random.Random, rows: list[list[Any]]) -> list[list[Any]]:
    """The rows with one value the columns cannot carry (None from every packer)."""
    rows = [list(row) for row in rows]
    row = rng.choice(rows)
    at = rng.randrange(8)
    if at == 0:
        row[rng.choice([2, 4, 6, 7, 8, 9])] = rng.choice([1.5, 1 << 63, -(1 << 63) - 1, "1", None])
    elif at == 1:
        row[rng.choice([1, 3])] = rng.choice([5, b"x", 1.0])
    elif at == 2:
        row[5] = rng.choice([[1], ("a", 2), "ab", None])
    elif at == 3:
        row[0] = 7
    elif at == 4:
        row.pop()  # (a row of another width)
    elif at == 5 and row[10]:
        row[10] = [list(row[10][0][:-1])]  # (a short attempt row)
    elif at == 6 and row[10]:
        row[10][0] = [*row[10][0][:3], "not a float", *row[10][0][4:]]
    else:
        row[10] = [[1.5, *a[1:]] for a in row[10]] or [[1.5, *_row(rng, "x", 1, 2)[10][0][1:]]]
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_the_typed_pack_gives_session_32s_bytes(seed: int) -> None:
    """Both builds pack the rows session 32's packer packed into the same bytes, and refuse
    (None) what it refused."""
    check_builds(log_pack, PURE)
    rng = random.Random(seed)
    for _ in range(3):
        rows = _batch(rng)
        want = reference.pack_columns(rows)
        assert want is not None
        for build in BUILDS:
            assert build.pack_columns(rows) == want, build.__file__
        bad = _spoilt(rng, rows)
        assert reference.pack_columns(bad) is None
        for build in BUILDS:
            assert build.pack_columns(bad) is None, build.__file__
    assert all(build.pack_columns([]) is None for build in BUILDS)


@pytest.mark.parametrize("distinct", [255, 256, 257, 258])
def test_an_index_at_the_edge_of_a_byte(distinct: int) -> None:
    """A string column of exactly 256 values goes as uint8 indices, of 257 as int32."""
    rng = random.Random(distinct)
    rows = [_row(rng, f"t{i}", 1, 2) for i in range(300)]
    for i, row in enumerate(rows):
        row[10][0][10] = f"m{i % distinct}"
    want = reference.pack_columns(rows)
    assert want is not None
    for build in BUILDS:
        assert build.pack_columns(rows) == want, build.__file__


@pytest.mark.parametrize("build", BUILDS, ids=["compiled", "py"])
def test_a_reused_packer_packs_each_batch_as_a_fresh_one(build: Any) -> None:
    """One ``LogColumns`` reset between batches (as the scheduler keeps it): each batch's bytes
    are a fresh packer's, after a batch that grew its buffers (also past the size it keeps), one
    that was refused half way, and one of many distinct strings."""
    rng = random.Random(5)
    columns = build.LogColumns()
    sizes = [700, 3, 1, 300, 40, 2, 257, 5]
    if build is log_pack:
        sizes[1:1] = [17_000, 4]  # (past the buffers' kept size: they start again small)
    for size in sizes:
        rows = [_row(rng, f"t{i}", rng.randrange(3), rng.choice([2, 300])) for i in range(size)]
        if rng.random() < 0.3:  # (a batch refused half way through: its rest left in the columns)
            columns.reset()
            bad = _spoilt(rng, rows)
            try:
                for row in bad:
                    if not columns.put_row(row):
                        break
            except (TypeError, OverflowError):
                pass
        columns.reset()
        for row in rows:
            assert columns.put_row(row)
        assert columns.packed() == reference.pack_columns(rows)
    columns.reset()
    assert columns.packed() is None  # (no task)


@pytest.mark.parametrize("build", BUILDS, ids=["compiled", "py"])
def test_a_record_put_in_the_columns_gives_its_rows_bytes(build: Any) -> None:
    """``put_record`` takes a record's fields as they are (its locations a tuple in any order,
    its attempts a list of tuples) and packs the bytes of the row ``delta_rows`` makes of it
    (the locations sorted)."""
    rng = random.Random(8)
    for _ in range(20):
        rows = _batch(rng)
        for row in rows:
            row[5] = rng.choice([[], ["b:1"], ["a:1", "b:2"], ["a:1", "b:2", "c:3"]])
        columns = build.LogColumns()
        for row in rows:
            shuffled = tuple(rng.sample(row[5], len(row[5])))
            ints = [int(row[i]) for i in (2, 4, 6, 7, 8, 9)]  # (a record's fields are ints)
            attempt, size, failures, losses, completions, frame = ints
            assert columns.put_record(
                row[0],
                row[1],
                attempt,
                row[3],
                size,
                shuffled,
                failures,
                losses,
                completions,
                frame,
                [tuple(a) for a in row[10]],
            )
        for row in rows:
            for i in (2, 4, 6, 7, 8, 9):
                row[i] = int(row[i])
        assert columns.packed() == reference.pack_columns(rows)
    columns = build.LogColumns()
    assert not columns.put_record(5, "DONE", 1, None, 0, (), 0, 0, 0, -1, [])  # (an id)
    assert not columns.put_record("t", "DONE", 1, None, 0, ("a", 1), 0, 0, 0, -1, [])


class _Spy:
    """The scheduler as the replication shell sees it, each ``delta_columns`` answer checked
    against the rows ``delta_rows`` makes at the same moment, packed by session 32's packer."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)

    def delta_columns(self, run_id: str, task_ids: Any) -> Any:
        task_ids = list(task_ids)
        got = self.scheduler.delta_columns(run_id, task_ids)
        rows = self.scheduler.delta_rows(run_id, task_ids)
        if rows is None:
            assert got is None
        else:
            assert got == (reference.pack_columns(rows[0]), rows[1])
        self.calls += 1
        return got


def _replicating(c: Cluster, port: FakePort) -> tuple[shell.ReplicationIO, _Spy]:
    """The owner's replication of ``c``'s scheduler through ``port`` to 2 standbys, its scheduler
    seen through a ``_Spy``."""
    rep = shell.ReplicationIO(port, c.sched, replicas=2, grace=0.1)  # type: ignore[arg-type]
    spy = _Spy(c.sched)
    rep.scheduler = spy  # type: ignore[assignment]
    c.sched.on_change = rep.task_changed
    c.sched.on_changes = rep.tasks_changed
    return rep, spy


@pytest.mark.parametrize("seed", range(12))
def test_standbys_that_all_read_columns_are_sent_them_from_the_records(seed: int) -> None:
    """An owner whose two standbys speak 8 packs each batch from the scheduler's records: the
    bytes session 32's packer makes of the rows, every batch as columns, frames as the rows'."""
    rng = random.Random(seed)
    c = Cluster({"n1": 2.0, "n2": 3.0}, window=rng.choice((1, 4)))
    port = FakePort(name="owner", address="owner:1")
    port.join("s1")
    port.join("s2")
    rep, spy = _replicating(c, port)
    out = c.submit("r", random_specs(rng))
    rep.run_accepted("r", lambda: None)
    random_moves(
        c, port, rng, out, rng.randrange(20, 80), value=lambda r: r.choice([b"v", b"", None])
    )
    port.advance(1.0)
    logs = [s.msg for s in port.sent if isinstance(s.msg, m.ReplicateLog)]
    assert logs and spy.calls
    for msg in logs:
        assert msg.columns and not msg.tasks
        rows = lc.read_columns(msg.columns)
        assert len(rows) == len(set(row[0] for row in rows))


def test_a_standby_of_7_among_them_gets_the_rows_built_as_before() -> None:
    """One standby of 7: the owner builds the rows (``delta_rows``), never asks for columns from
    the records, and the other standby is sent the columns packed from those rows."""
    rng = random.Random(3)
    c = Cluster({"n1": 2.0, "n2": 3.0}, window=4)
    port = FakePort(name="owner", address="owner:1")
    port.join("new")
    old = port.join("old")
    port.states["old"] = dataclasses.replace(old, protocol_max=lc.LOG_COLUMNS_SINCE - 1)
    rep, spy = _replicating(c, port)
    out = c.submit("r", random_specs(rng))
    rep.run_accepted("r", lambda: None)
    random_moves(c, port, rng, out, 40, value=lambda r: r.choice([b"v", None]))
    port.advance(1.0)
    sent = [s for s in port.sent if isinstance(s.msg, m.ReplicateLog)]
    assert sent and not spy.calls
    assert all(bool(s.msg.columns) == s.address.startswith("new") for s in sent)


def _record_put(build: Any, fields: list[Any]) -> Any:
    """A record's fields put in a fresh packer: its bytes, or the error's type."""
    columns = build.LogColumns()
    attempt, size, failures, losses, completions, frame = fields
    try:
        assert columns.put_record(
            "t", "DONE", attempt, None, size, (), failures, losses, completions, frame, []
        )
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc)
    return columns.packed()


@pytest.mark.parametrize(
    "value",
    [1.7, -1.7, 2.0, True, 7, -(1 << 63), "12", b"1", None, math.nan, math.inf, 1e30, 1 << 63],
    ids=repr,
)
def test_a_records_int_field_is_taken_alike_by_both_builds(value: Any) -> None:
    """An int field of ``put_record`` is taken as the compiled build's C conversion takes it (the
    compiled record's C field stores it so): a float truncated (the bytes of a record holding
    its int), a string refused, each error the same in both builds; the .py once refused a float
    the compiled build packed."""
    for at in range(6):
        fields: list[Any] = [value if i == at else i + 2 for i in range(6)]
        got = [_record_put(build, fields) for build in BUILDS]
        assert got[0] == got[1], (at, got)
        if isinstance(value, float) and math.isfinite(value) and abs(value) < 2.0**62:
            fields[at] = int(value)
            assert got[0] == _record_put(log_pack, fields)


# Task ids at each edge of msgpack's str headers (fixstr below 32 bytes, str8 below 256, str16
# below 65,536, then str32), empty, and of multi-byte UTF-8 (bytes, not characters, counted).
_IDS = ["", "t", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65_535, "x" * 65_536]
_IDS += ["é" * 16, "é" * 15 + "x", "ü" * 128, "任务" * 11, "\U0001f600" * 8]


@pytest.mark.parametrize("build", BUILDS, ids=["compiled", "py"])
def test_each_id_is_packed_as_msgpack_packs_it(build: Any) -> None:
    """The ids, written into one buffer as each is put (``_Strs``), are the bytes msgpack makes of
    the list of them: each header's width by the id's UTF-8 bytes, the array's header by their
    count (past 15 and 65,535); one the codec cannot pack (a lone surrogate) refuses the batch as
    before (None: the rows go)."""
    rng = random.Random(11)
    for count in (1, 15, 16, 300, 65_536):
        rows = [_row(rng, "t", 0, 2) for _ in range(min(count, 300))]
        rows = [list(rows[i % len(rows)]) for i in range(count)]
        for i, row in enumerate(rows):
            row[0] = _IDS[i % len(_IDS)] + str(i) if count > 16 else _IDS[i % len(_IDS)]
        want = reference.pack_columns(rows)
        assert want is not None
        assert build.pack_columns(rows) == want
    columns = build.LogColumns()
    row = _row(rng, "t", 1, 2)
    assert columns.put_row(row)
    assert not columns.put_row(["a\udc80", *row[1:]])
    assert build.pack_columns([row, ["a\udc80", *row[1:]]]) is None
    assert reference.pack_columns([row, ["a\udc80", *row[1:]]]) is None


@pytest.mark.parametrize("build", BUILDS, ids=["compiled", "py"])
def test_a_string_column_in_runs_of_one_value(build: Any) -> None:
    """A string column whose value changes every so often (runs of 1 to 600 entries, past a
    buffer's growth, back to a value seen before, equal values that are other objects, and past
    256 values) packs the reference's bytes: each run's index written when the value changes."""
    rng = random.Random(12)
    for _ in range(30):
        rows = []
        nodes = rng.choice([3, 40, 300])
        while len(rows) < rng.choice([1, 50, 700, 2000]):
            node = f"n{rng.randrange(nodes)}"
            base = _row(rng, f"t{len(rows)}", rng.randrange(2), 2)
            for _ in range(rng.choice([1, 2, 7, 255, 600])):
                row = list(base)
                row[0] = f"t{len(rows)}"
                row[3] = "".join(node) if rng.random() < 0.5 else node  # (equal, not the same)
                row[5] = [node]
                rows.append(row)
        want = reference.pack_columns(rows)
        assert want is not None
        assert build.pack_columns(rows) == want


def _other(value: str) -> str:
    """``value`` as another object (a success table's own copy of a node's name)."""
    return "".join(list(value))


@pytest.mark.parametrize("build", BUILDS, ids=["compiled", "py"])
def test_a_value_equal_to_the_one_before_but_another_object_is_its_entry(build: Any) -> None:
    """``put_record`` given a string field or a locations tuple that is the one before, a copy of
    it (equal, another object: every other task of a W1 batch), or one that differs from it in a
    character, an item, its length or an item's type, packs the rows' bytes, or refuses (False)
    what session 32's packer refuses."""
    rng = random.Random(36)
    names = ["x:1", "x:2", "x:12", "y:1", "\u00e9:1"]
    for _ in range(40):
        columns = build.LogColumns()
        rows: list[list[Any]] = []
        state, node = "DONE", "x:1"
        where: tuple[str, ...] = ("x:1",)
        for i in range(rng.choice([1, 3, 40, 300])):
            pick = rng.random()
            if pick < 0.3:  # (a copy of each)
                state, node = _other(state), _other(node)
                where = tuple(_other(n) for n in where)
            elif pick < 0.5:  # (another value of the same length, or one item more or less)
                node = rng.choice(names)
                state = rng.choice(["DONE", "DONF", "FAILED"])
                where = tuple(sorted(set(rng.sample(names, rng.randrange(0, 3)))))
            row = _row(rng, f"t{i}", 1, 2)
            row[1], row[3], row[5] = state, node, list(where)
            attempt = row[10][0]
            attempt[1], attempt[12] = node, _other(state)
            rows.append(row)
            assert columns.put_record(
                f"t{i}",
                state,
                row[2],
                node,
                row[4],
                where,
                row[6],
                row[7],
                row[8],
                row[9],
                [tuple(attempt)],
            )
        assert columns.packed() == reference.pack_columns(rows)
        # an item of another type after a tuple of strings, a bytes field after an equal string
        assert not columns.put_record("u", "DONE", 1, None, 0, (*where, 7), 0, 0, 0, -1, [])
        assert not columns.put_record("u", b"DONE", 1, None, 0, (), 0, 0, 0, -1, [])
