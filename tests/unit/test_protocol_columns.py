"""Columns on the wire (issue 13, item 5): the column messages read back exactly as the per-task
messages they stand for, through the codec; malformed columns raise a ColumnError that says which
column and what was expected."""

from __future__ import annotations

import dataclasses
import random

import pytest
from core_strategies import seeded, size
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd.daemon.dispatch import HereTable, dispatch_here, dispatch_message, dispatch_tasks
from handoffd.daemon.reports import answered, report_events
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.columns import (
    ColumnError,
    DispatchTable,
    ReportTable,
    dispatch_columns,
    dispatch_items,
    join_frames,
    pack,
    replied_columns,
    replied_pairs,
    report_columns,
    reports_as_columns,
    split_frames,
)
from handoffd.protocol.messages_columns import DispatchColumns, ReportColumns, ReportFailure
from handoffd.scheduler import events as ev

CODEC = codec.Codec()


def wire(msg: object, frames: list[bytes] | None = None) -> tuple[object, list[bytes]]:
    """``msg`` through the codec, as a peer receives it."""
    decoded = CODEC.decode(CODEC.encode(msg, sender="n", frames=frames or []))
    assert decoded is not None, msg
    return decoded.msg, [bytes(f) for f in decoded.frames]


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
costs = st.dictionaries(st.sampled_from(["cpu", "gpu", "memory"]), st.floats(0.5, 64), max_size=3)


@st.composite
def input_refs(draw: st.DrawFn, count: int) -> tuple[m.InputRef, ...]:
    refs = []
    for i in range(count):
        kind = draw(st.sampled_from(["value", "inline"]))
        parent = draw(st.integers(-1, i - 1))
        locations = tuple(draw(st.lists(st.sampled_from(["a:1", "b:2", "c:3"]), max_size=3)))
        refs.append(
            m.InputRef(
                kind,
                draw(names),
                () if kind == "inline" else locations,
                draw(st.integers(0, 3)) if kind == "inline" else draw(st.integers(-1, 3)),
                draw(st.sampled_from(["variadic", "flat"])) if kind == "inline" else "variadic",
                parent,
            )
        )
    return tuple(refs)


@st.composite
def dispatches(draw: st.DrawFn) -> m.DispatchTasks:
    items = []
    for _ in range(draw(st.integers(0, 5))):
        items.append(
            m.DispatchItem(
                draw(names),
                draw(st.integers(0, 1 << 40)),
                draw(costs),
                draw(st.sampled_from(["variadic", "flat"])),
                draw(st.none() | st.floats(0.01, 1e6)),
                draw(st.integers(0, 3)),
                draw(input_refs(draw(st.integers(0, 4)))),
                draw(st.integers(-100, 100)),
                draw(st.floats(0, 1e6)),
            )
        )
    packages = tuple(draw(st.lists(st.text("0123456789abcdef", min_size=4), max_size=2)))
    return m.DispatchTasks("r", "o:1", tuple(items), packages)


@settings(max_examples=150, deadline=None)
@given(dispatches())
def test_a_dispatch_as_columns_reads_back_as_the_same_items(msg: m.DispatchTasks) -> None:
    columns, _ = wire(dispatch_columns(msg))
    assert isinstance(columns, DispatchColumns)
    assert dispatch_items(columns) == msg


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.binary(min_size=70, max_size=90), max_size=8))
def test_small_frames_travel_packed_and_come_back_apart(frames: list[bytes]) -> None:
    sizes, sent = join_frames(frames, below=64)
    assert len(sent) <= len(frames)
    if sum(len(f) < 64 for f in frames) >= 2:
        assert len(sent) == 1 + sum(len(f) >= 64 for f in frames)
    assert split_frames(sizes, sent, "X") == frames


def _joined_as_before(frames: list[bytes], below: int) -> tuple[bytes, list[bytes]]:
    """``join_frames`` as it was before its all-small path: what receivers were built for."""
    small = [f for f in frames if len(f) < below]
    if len(small) < 2:
        return b"", frames
    sizes = [len(f) if len(f) < below else -1 for f in frames]
    return pack("q", sizes), [b"".join(small), *(f for f in frames if len(f) >= below)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40) | st.binary(min_size=64, max_size=90), max_size=8),
    st.booleans(),
)
def test_joined_frames_are_the_bytes_they_always_were(frames: list[bytes], small: bool) -> None:
    if small:  # (the all-small path: every frame under ``below``)
        frames = [f[:63] for f in frames]
    assert join_frames(frames, below=64) == _joined_as_before(frames, 64)


def test_the_owner_builds_columns_straight_from_the_schedulers_dispatch() -> None:
    inner = ev.ValueRef("v", ("b", "nowhere"), None)
    inline = ev.InlineRef("i", b"inline-code", "flat", (inner, ev.ValueRef("w", (), b"held")))
    items = (
        ev.DispatchedTask("t1", 3, b"code", {"cpu": 1.0}, "variadic", None, (inline,), 2, 7.5),
        ev.DispatchedTask("t2", 4, b"code", {"cpu": 2.0, "gpu": 1.0}, "flat", 9.0, (), 0, 0.0),
    )
    addresses = {"b": "b:1"}
    msg, frames = dispatch_message(ev.Dispatch("n", "r", 1, items), "o:1", addresses.get, ("abcd",))
    got, received = wire(msg, frames)
    assert isinstance(got, DispatchColumns) and len(received) == 1  # three small frames packed
    logical = split_frames(got.frame_sizes, received, "DispatchColumns")
    tasks = dispatch_items(got)
    assert tasks.packages == ("abcd",) and tasks.owner_address == "o:1"
    t1, t2 = tasks.items
    assert (t1.task_id, t1.attempt, t1.cost, t1.timeout, t1.priority, t1.rank) == (
        "t1",
        3,
        {"cpu": 1.0},
        None,
        2,
        7.5,
    )
    assert t2.cost == {"cpu": 2.0, "gpu": 1.0} and t2.timeout == 9.0 and t2.inputs == ()
    assert logical[t1.payload_frame] == b"code" and t1.payload_frame == t2.payload_frame
    i, v, w = t1.inputs
    assert (i.kind, i.parent, logical[i.frame], i.argument_inclusion) == (
        "inline",
        -1,
        b"inline-code",
        "flat",
    )
    # a holder without an address is left out; a held value travels in a frame
    assert (v.kind, v.parent, v.locations, v.frame) == ("value", 0, ("b:1",), -1)
    assert (w.parent, w.locations, logical[w.frame]) == (0, (), b"held")


# Names of any Unicode (NUL, controls, separators, astral planes, never a lone surrogate): the
# scheduler-side cases below are built from one drawn seed (``core_strategies.seeded``), a
# Hypothesis draw per field was most of these tests' time.
_ODD = "\x00\x7f\x80 :é\u00dfЖ中\u2028\ufeff\uffff😀\U0010ffff"


def _name(rng: random.Random) -> str:
    out = []
    for _ in range(size(rng, 0, 6)):
        r = rng.random()
        if r < 0.5:
            out.append(rng.choice("abcxyz019_-"))
        elif r < 0.8:
            out.append(rng.choice(_ODD))
        else:  # any code point but the surrogates
            c = rng.randint(0, 0x10FFFF - 0x800)
            out.append(chr(c if c < 0xD800 else c + 0x800))
    return "".join(out)


def _edgy(rng: random.Random, low: float, high: float) -> float:
    return rng.choice((low, high, rng.uniform(low, high), rng.uniform(low, min(high, low + 1))))


def scheduler_refs(rng: random.Random, depth: int = 0) -> tuple[ev.InputRef, ...]:
    """A task's inputs as the scheduler gives them: values (held here or not, on nodes with or
    without an address) and inline functions (serialize hooks among them) with their own inputs."""
    refs: list[ev.InputRef] = []
    blobs = [b"a", b"bb", b"c" * 70]  # shared objects: frames are kept once per message
    for _ in range(size(rng, 0, 3 if depth < 2 else 0)):
        if rng.random() < 0.5:
            value = rng.choice([None, *blobs])
            holders = tuple(rng.choice(["b", "c", "nowhere"]) for _ in range(size(rng, 0, 3)))
            refs.append(ev.ValueRef(_name(rng), holders, value))
        else:
            task_id = _name(rng) + rng.choice(["", ":serialize"])
            inclusion = rng.choice(["variadic", "as_list"])
            inner = scheduler_refs(rng, depth + 1)
            refs.append(ev.InlineRef(task_id, rng.choice(blobs), inclusion, inner))
    return tuple(refs)


def scheduler_dispatch(rng: random.Random) -> ev.Dispatch:
    items = tuple(
        ev.DispatchedTask(
            _name(rng),
            rng.choice((0, 1 << 40, rng.randint(0, 1 << 40), rng.randint(0, 9))),
            rng.choice([b"code", b"other"]),
            {k: rng.choice([0.0, 1, 2.5]) for k in rng.sample(["cpu", "gpu"], size(rng, 0, 2))},
            rng.choice(["variadic", "as_list"]),
            None if rng.random() < 0.5 else _edgy(rng, 0.01, 1e6),
            scheduler_refs(rng),
            rng.randint(-100, 100),
            _edgy(rng, 0.0, 1e6),
        )
        for _ in range(size(rng, 0, 4))
    )
    return ev.Dispatch("n", "r", 1, items)


def scheduler_dispatches() -> st.SearchStrategy[ev.Dispatch]:
    return seeded(scheduler_dispatch)


@settings(max_examples=200, deadline=None)
@given(scheduler_dispatches())
def test_a_dispatch_to_our_own_node_is_what_its_columns_read_back_as(dispatch: ev.Dispatch) -> None:
    """``dispatch_tasks`` (our own executor, no encoding) == ``dispatch_message`` read back."""
    addresses = {"b": "b:1", "c": "c:1"}
    columns, frames = dispatch_message(dispatch, "o:1", addresses.get, ("abcd",))
    got, received = wire(columns, frames)
    assert isinstance(got, DispatchColumns)
    direct, direct_frames = dispatch_tasks(dispatch, "o:1", addresses.get, ("abcd",))
    assert direct == dispatch_items(got)
    assert direct_frames == split_frames(got.frame_sizes, received, "DispatchColumns")


@settings(max_examples=200, deadline=None)
@given(scheduler_dispatches())
def test_our_own_nodes_table_reads_as_its_columns_read_back(dispatch: ev.Dispatch) -> None:
    """``dispatch_here`` (our own executor, nothing packed): for plain inputs a table that reads
    as the received columns' ``DispatchTable`` does, in what the executor's intake reads, and
    whose per-task form and frames are ``dispatch_tasks``'s; else ``dispatch_tasks``'s message."""
    _check_here_table(dispatch)


@settings(max_examples=200, deadline=None)
@given(scheduler_dispatches(), st.lists(st.tuples(st.booleans(), st.booleans()), min_size=4))
def test_our_own_nodes_table_of_tasks_sharing_payload_and_cost_objects(
    dispatch: ev.Dispatch, picks: list[tuple[bool, bool]]
) -> None:
    """As above when tasks share their payload and cost objects (a run's tasks of one function:
    ``_here_table`` takes the previous task's again by identity) or hold equal but distinct ones
    (kept apart, as ``dispatch_tasks`` keeps them)."""
    code, other = b"code", bytes(bytearray(b"code"))  # equal bytes, two objects
    cost, same = {"cpu": 1.0}, {"cpu": 1.0}
    items = tuple(
        dataclasses.replace(
            item,
            payload=other if p else code,
            cost=same if c else cost,
            argument_inclusion=dispatch.items[0].argument_inclusion,
        )
        for item, (p, c) in zip(dispatch.items, picks, strict=False)
    )
    _check_here_table(ev.Dispatch("n", "r", 1, items))


def _check_here_table(dispatch: ev.Dispatch) -> None:
    addresses = {"b": "b:1", "c": "c:1"}
    direct, direct_frames = dispatch_tasks(dispatch, "o:1", addresses.get, ("abcd",))
    msg, frames = dispatch_here(dispatch, "o:1", addresses.get, ("abcd",))
    assert frames == direct_frames
    inline = any(isinstance(r, ev.InlineRef) for i in dispatch.items for r in i.inputs)
    if inline:
        assert msg == direct
        return
    assert isinstance(msg, HereTable) and msg.plain and not msg.far
    assert msg.tasks() == direct
    columns, sent = dispatch_message(dispatch, "o:1", addresses.get, ("abcd",))
    got, _ = wire(columns, sent)
    read = DispatchTable(got)
    n = len(read)
    assert len(msg) == n and (msg.run_id, msg.owner_address, msg.packages) == (
        "r",
        "o:1",
        ("abcd",),
    )
    for name in (
        "task_ids",
        "attempts",
        "costs",
        "priorities",
        "ranks",
        "counts",
        "input_task_ids",
    ):
        assert list(getattr(msg, name)) == list(getattr(read, name)), name
    assert [msg.inclusions[k] for k in msg.inclusion] == [
        read.inclusions[k] for k in read.inclusion
    ]
    assert [msg.timeout(i) for i in range(n)] == [read.timeout(i) for i in range(n)]
    # frame numbers are the table's own (dispatch_tasks's), each naming the same bytes
    logical = split_frames(got.frame_sizes, sent, "DispatchColumns")
    assert [frames[f] for f in msg.payloads] == [logical[f] for f in read.payloads]
    assert [f < 0 or frames[f] for f in msg.frames] == [f < 0 or logical[f] for f in read.frames]
    for j in range(len(msg.frames)):
        assert msg.locations(j) == read.locations(j)


def test_our_own_nodes_table_looks_holders_up_only_when_asked() -> None:
    asked: list[str] = []

    def address_of(name: str) -> str | None:
        asked.append(name)
        return {"b": "b:1"}.get(name)

    refs = (ev.ValueRef("v", ("b", "gone"), None), ev.ValueRef("w", ("b",), b"held"))
    task = ev.DispatchedTask("t", 1, b"code", {"cpu": 1.0}, "variadic", None, refs)
    msg, frames = dispatch_here(ev.Dispatch("n", "r", 1, (task,)), "o:1", address_of)
    assert isinstance(msg, HereTable) and not asked
    assert frames == [b"held", b"code"] and msg.frames == [-1, 0] and msg.payloads == [1]
    assert msg.locations(0) == ("b:1",)  # (a holder with no address left out)
    assert asked == ["b", "gone"]


def report(task_id: str, state: str, frame: int = -1, kind: str = "") -> m.TaskReport:
    return m.TaskReport(task_id, 2, state, 5, frame, kind, "E" if kind else "", "boom", "tb")


def test_reports_as_columns_become_the_same_scheduler_events() -> None:
    reports = (report("a", "DONE", 0), report("b", "FAILED", kind="error"), report("c", "DONE"))
    msg = m.TasksReported("r", reports, {"cpu": 1.0}, 4, ("printed", "", ""))
    got, frames = wire(report_columns(msg), [b"42"])
    assert isinstance(got, ReportColumns)
    table = ReportTable(got)
    assert table.reports() == tuple(
        r if r.state == "FAILED" else m.TaskReport(r.task_id, 2, "DONE", 5, r.frame, "", "", "", "")
        for r in reports
    )
    events: list[object] = []
    report_events("r", "n", table, frames, events)
    assert events == [  # report order kept: the stretches of DONE between FAILED as columns
        ev.TasksSucceeded("r", "n", ["a"], [2], [5], [b"42"], [-1.0]),
        ev.TaskErrored("r", "b", 2, "n", "error", "E", "boom", "tb"),
        ev.TasksSucceeded("r", "n", ["c"], [2], [5], [None], [-1.0]),
    ]
    assert got.outputs == ("printed", "", "")


@st.composite
def report_batches(draw: st.DrawFn) -> list[tuple[m.TaskReport, bytes | None, str]]:
    """An executor's batch for one owner: each (report without a frame, inline value, output);
    only a FAILED report says why (the columns carry no text for the others)."""
    entries = []
    for i in range(draw(st.integers(1, 6))):
        state = draw(st.sampled_from(["DONE", "DONE", "FAILED", "RUNNING"]))
        why = ("error", "E", draw(names), "tb") if state == "FAILED" else ("", "", "", "")
        report = m.TaskReport(
            f"t{i}",
            draw(st.integers(0, 9)),
            state,
            draw(st.integers(0, 99)),
            -1,
            *why,
            draw(st.integers(0, 1 << 20)),
            draw(st.floats(0, 1e9)),
            draw(st.floats(0, 1e9)),
            draw(st.integers(0, 99)),
            draw(st.floats(-1, 10)),
        )
        value = draw(st.none() | st.binary(max_size=8))
        output = draw(st.sampled_from(["", "x"]))
        entries.append((report, value if state == "DONE" else None, output))
    return entries


@settings(max_examples=100, deadline=None)
@given(report_batches())
def test_reports_built_as_columns_are_the_columns_of_the_message(
    entries: list[tuple[m.TaskReport, bytes | None, str]],
) -> None:
    """The executor builds a batch for another node's owner straight as columns
    (``reports_as_columns``): the same message and frames as the per-task ``TasksReported``,
    each report naming its value's frame, turned into columns."""
    reports, values, outputs = zip(*entries, strict=True)
    printed = outputs if any(outputs) else ()
    framed, frames = [], []
    for r, value in zip(reports, values, strict=True):
        framed.append(r if value is None else dataclasses.replace(r, frame=len(frames)))
        if value is not None:
            frames.append(value)
    per_task = m.TasksReported("r", tuple(framed), {"cpu": 1.0}, 4, printed)
    sizes, sent = join_frames(frames)
    got = reports_as_columns("r", reports, values, printed, {"cpu": 1.0}, 4)
    assert got == (report_columns(per_task, sizes), sent)
    back, received = wire(got[0], got[1])
    assert isinstance(back, ReportColumns)
    assert ReportTable(back).reports() == per_task.reports
    assert split_frames(back.frame_sizes, received, "ReportColumns") == frames


def test_a_report_of_successes_only_becomes_one_column_event() -> None:
    reports = (report("a", "DONE", 1), report("b", "DONE"), report("c", "DONE", 0))
    got, frames = wire(report_columns(m.TasksReported("r", reports, {"cpu": 1.0}, 4)), [b"1", b"2"])
    events: list[object] = []
    report_events("r", "n", ReportTable(got), frames, events)  # type: ignore[arg-type]
    assert events == [
        ev.TasksSucceeded(
            "r", "n", ("a", "b", "c"), [2] * 3, [5] * 3, [b"2", None, b"1"], [-1.0] * 3
        )
    ]
    assert all(type(v) is bytes for v in events[0].values if v is not None)  # type: ignore[attr-defined]


def test_an_answer_as_columns_becomes_the_same_event() -> None:
    reply = m.DispatchReplied(
        "r",
        (m.TaskAttempt("a", 1), m.TaskAttempt("b", 7)),
        (m.Refusal("c", 2, "no room"),),
        {"cpu": 0.0},
        9,
    )
    got, _ = wire(replied_columns(reply))
    assert answered("n", got) == ev.DispatchAnswered(  # type: ignore[arg-type]
        "n", "r", (("a", 1), ("b", 7)), (("c", 2, "no room"),)
    )


# -- malformed columns: a clear error naming the column ------------------------------------------


def columns_of(**change: object) -> DispatchColumns:
    item = m.DispatchItem("t", 1, {"cpu": 1.0}, "variadic", None, 0, ())
    msg = dispatch_columns(m.DispatchTasks("r", "o:1", (item, item), ()))
    fields = {f: getattr(msg, f) for f in msg.__dataclass_fields__}
    return DispatchColumns(**{**fields, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"attempts": pack("q", [1])}, "DispatchColumns.attempts: 8 bytes, expected 2 x 8"),
        ({"costs": b"\x00" * 3}, "DispatchColumns.costs (1 kinds per task): 3 bytes"),
        ({"inclusion": pack("B", [0, 5])}, "DispatchColumns.inclusion: index 5 out of range"),
        ({"inclusion": pack("B", [3, 5])}, "DispatchColumns.inclusion: index 3 out of range"),
        ({"input_counts": pack("i", [1, 0])}, "DispatchColumns.input_task_ids: 0 entries"),
        ({"input_counts": pack("i", [-1, 1])}, "DispatchColumns.input_counts: a negative count"),
        ({"timeouts": b""}, "DispatchColumns.timeouts: 0 bytes"),
    ],
)
def test_a_malformed_dispatch_says_which_column(change: dict[str, object], says: str) -> None:
    msg, _ = wire(columns_of(**change))  # well-typed msgpack: the codec lets it through
    with pytest.raises(ColumnError, match=f"^{_escape(says)}"):
        dispatch_items(msg)  # type: ignore[arg-type]


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_malformed_reports_and_answers_say_which_column() -> None:
    good = report_columns(m.TasksReported("r", (report("a", "DONE"),), {}, 1))
    fields = {f: getattr(good, f) for f in good.__dataclass_fields__}
    with pytest.raises(ColumnError, match="ReportColumns.sizes: 16 bytes, expected 1 x 8"):
        ReportTable(ReportColumns(**{**fields, "sizes": pack("q", [1, 2])}))  # type: ignore[arg-type]
    with pytest.raises(ColumnError, match="ReportColumns.states: index 7"):
        ReportTable(ReportColumns(**{**fields, "states": pack("B", [7])}))  # type: ignore[arg-type]
    failure = ReportFailure(0, "error", "E", "m", "")
    with pytest.raises(ColumnError, match="index 0 is not a FAILED report"):
        ReportTable(ReportColumns(**{**fields, "failures": (failure,)}))  # type: ignore[arg-type]
    failed = {**fields, "states": pack("B", [2])}
    with pytest.raises(ColumnError, match="not one record per FAILED report"):
        ReportTable(ReportColumns(**failed))  # type: ignore[arg-type]
    with pytest.raises(ColumnError, match="ReportColumns.outputs: 2 entries, expected 1"):
        ReportTable(ReportColumns(**{**fields, "outputs": ("x", "y")}))  # type: ignore[arg-type]
    reply = replied_columns(m.DispatchReplied("r", (m.TaskAttempt("a", 1),), (), {}, 1))
    bad = {f: getattr(reply, f) for f in reply.__dataclass_fields__}
    bad["accepted_attempts"] = b"\x01"
    with pytest.raises(ColumnError, match="RepliedColumns.accepted: 1 bytes"):
        replied_pairs(type(reply)(**bad))


@pytest.mark.parametrize(
    ("sizes", "frames", "says"),
    [
        ([3, 3], [b"abcde"], "exceed the first frame"),
        ([2, -1], [b"ab"], "more separate frames"),
        ([1], [b"ab"], "do not cover"),
        ([-2], [b"ab"], "neither a size nor -1"),
    ],
)
def test_packed_frames_that_do_not_add_up_are_refused(
    sizes: list[int], frames: list[bytes], says: str
) -> None:
    with pytest.raises(ColumnError, match=says):
        split_frames(pack("q", sizes), frames, "ReportColumns")


def test_wrong_types_in_a_column_are_refused_by_the_codec() -> None:
    """A column of the wrong msgpack type never reaches the column readers: the codec drops it
    (counted by reason), as it does any field of the wrong type."""
    good = columns_of()
    frames = CODEC.encode(good, sender="n")
    import msgpack

    values = list(msgpack.unpackb(frames[0], use_list=False))
    values[7 + 3] = [1, 2]  # attempts: an array instead of bytes
    before = CODEC.stats.dropped.get("field_type", 0)
    assert CODEC.decode([msgpack.packb(values)]) is None
    assert CODEC.stats.dropped.get("field_type", 0) == before + 1


def test_tasks_of_one_cost_share_it_and_inputs_stay_with_their_task() -> None:
    """The reader makes a task's cost once per distinct row and skips empty input lists: tasks
    of one cost, of another, with and without inputs (holders of one, two, none), interleaved,
    read back as sent."""
    one = m.InputRef("value", "x", ("a:1",), -1, "variadic", -1)
    two = m.InputRef("value", "y", ("a:1", "b:2"), -1, "variadic", -1)
    none = m.InputRef("inline", "z", (), 0, "flat", -1)
    small, big = {"cpu": 1.0}, {"cpu": 2.0, "memory": 8.0}
    specs = [(small, ()), (big, (one,)), (small, (two, none)), (big, ()), (small, (one, two))]
    items = tuple(
        m.DispatchItem(f"t{i}", i, cost, "variadic", None if i % 2 else 3.0, 0, refs, i, 1.0)
        for i, (cost, refs) in enumerate(specs)
    )
    msg = m.DispatchTasks("r", "o:1", items)
    read = dispatch_items(dispatch_columns(msg))
    assert read == msg
    assert read.items[0].cost is read.items[2].cost and read.items[1].cost is read.items[3].cost
    assert read.items[0].cost is not read.items[1].cost


@pytest.mark.parametrize(
    "cost", [{"cpu": 1.0}, {"cpu": 1.0, "memory": 0.0}, {"cpu": -0.0, "gpu": 2.0}, {}]
)
def test_a_table_of_one_cost_reads_one_dict_for_all(cost: dict[str, float]) -> None:
    """Every task of the same cost row (the message's bytes): one dict, the row as the
    per-row read makes it (kinds of zero left out), for all; a table with one other row in it
    reads each distinct row's as before."""
    other = {"cpu": 0.5}
    for costs in ([cost] * 6, [cost] * 5 + [other]):
        items = tuple(
            m.DispatchItem(f"t{i}", 1, c, "variadic", None, 0, (), 0, 0.0)
            for i, c in enumerate(costs)
        )
        table = DispatchTable(dispatch_columns(m.DispatchTasks("r", "o:1", items)))
        want = [{k: q for k, q in c.items() if q} for c in costs]
        assert table.costs == want
        assert all(c is table.costs[0] for c in table.costs[:5])
        assert len({id(c) for c in table.costs}) == len({tuple(sorted(c.items())) for c in want})
