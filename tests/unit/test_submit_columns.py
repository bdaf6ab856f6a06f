"""A submission as columns (``protocol.messages_submit.SubmitColumns``, ``daemon.intake_columns``)
against the same submission as ``TaskMeta`` records, which every daemon keeps reading: the same
specs, graph, run, snapshot parts and refusals, on random DAGs good and bad."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from handoffd.config import Limits
from handoffd.daemon import intake_columns, upload_intake
from handoffd.protocol import messages as m
from handoffd.protocol import snapshot
from handoffd.protocol.codec import Codec, Rows
from handoffd.protocol.columns import ColumnError
from handoffd.protocol.messages_submit import (
    COLUMNS_SINCE,
    SubmitColumns,
    TaskColumns,
    as_sent,
    as_submission,
    submit_columns,
)
from handoffd.scheduler.run import RunState

pytestmark = pytest.mark.timeout(120)

CODEC = Codec()


def _row(fid: Any, deps: Any, cost: Any = None, kind: str = "variadic", prio: int = 0) -> Any:
    return (fid, tuple(deps), {"cpu": 1.0} if cost is None else cost, kind, None, None, False, None, None, prio)  # fmt: skip


def _dag(rng: random.Random, n: int) -> list[Any]:
    costs = [{"cpu": 1.0}, {"cpu": 2.0, "memory": 100.0}, {"gpu": 1.0}]
    rows = []
    for i in range(n):
        deps = [f"t{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 3)))]
        if deps and rng.random() < 0.1:
            deps.append(deps[0])  # a repeated dependency
        kind = rng.choice(("variadic", "as_list"))
        rows.append(_row(f"t{i}", deps, rng.choice(costs), kind, rng.randint(-2, 2)))
    return rows


def _spoil(rng: random.Random, rows: list[Any]) -> str:
    """Make ``rows`` a bad DAG the client would refuse (a hostile or broken client sends it)."""
    how = rng.choice(["dup", "missing", "cycle", "cost", "kind", "empty", "nan", "control"])
    at = rng.randrange(1, len(rows))
    row = list(rows[at])
    if how == "dup":
        row[0] = rows[0][0]
    elif how == "missing":
        row[1] = (*row[1], "nowhere")
    elif how == "cycle":
        first = list(rows[0])
        first[1] = (row[0],)
        rows[0] = tuple(first)
        row[1] = (*row[1], rows[0][0])
    elif how == "cost":
        row[2] = {"cpu": -1.0}
    elif how == "kind":
        row[3] = "sideways"
    elif how == "empty":
        row[0] = ""
    elif how == "nan":
        row[2] = {"cpu": float("nan")}
    else:
        row[0] = "bad\x01id"
    rows[at] = tuple(row)
    return how


def _both(rows: list[Any], answer: bool = True, **options: Any) -> tuple[Any, Any, list[bytes]]:
    """The records' and the columns' submission of ``rows``, each through the codec as a daemon
    reads it (the columns turned into the submission they stand for, as the node does)."""
    payloads = [f"code{i}".encode() for i in range(len(rows))]
    outputs = options.get("outputs")
    if answer:
        msg: Any = m.SubmitAndWait(7, "r1", Rows(rows), 3, "binpack", outputs, 1.5, 99, True, ())
    else:
        msg = m.SubmitRun(7, "r1", Rows(rows), 3, "binpack", outputs)
    sent = as_sent(msg, COLUMNS_SINCE)
    assert type(sent) is SubmitColumns
    out = []
    for one in (msg, sent):
        decoded = CODEC.decode([bytes(f) for f in CODEC.encode(one, sender="c", frames=payloads)])
        assert decoded is not None
        got = decoded.msg
        out.append(as_submission(got) if type(got) is SubmitColumns else got)
    return out[0], out[1], payloads


def _prepared(msg: Any, frames: list[bytes]) -> upload_intake.Prepared:
    return upload_intake.prepare_whole(msg, frames, Limits(), None)


@pytest.mark.parametrize("seed", range(12))
def test_columns_build_what_the_records_build(seed: int) -> None:
    rng = random.Random(seed)
    rows = _dag(rng, rng.randint(2, 60))
    outputs = tuple(r[0] for r in rng.sample(rows, 2)) if seed % 3 == 0 else None
    records, cols, frames = _both(rows, answer=seed % 2 == 0, outputs=outputs)
    assert type(cols) is type(records)
    assert type(cols.tasks) is TaskColumns
    assert list(cols.tasks) == list(records.tasks)  # the records it makes on demand
    assert cols.tasks[-1] == records.tasks[-1] and cols.tasks[1:3] == records.tasks[1:3]
    for name in ("request_id", "run_id", "max_retries", "policy", "outputs", "packages"):
        assert getattr(cols, name) == getattr(records, name)
    assert intake_columns.column_graph(cols, frames, None) is not None  # (not the general path)
    a, b = _prepared(records, frames), _prepared(cols, frames)
    assert a.error is None and b.error is None
    assert a.specs is not None and b.specs is not None
    assert [vars(s) for s in a.specs] == [vars(s) for s in b.specs]
    assert a.graph is not None and b.graph is not None
    for field in dataclasses.fields(a.graph):
        assert getattr(a.graph, field.name) == getattr(b.graph, field.name), field.name
    assert a.run is not None and b.run is not None
    assert a.run.snapshot() == b.run.snapshot()
    assert a.run.prebuilt is not None and b.run.prebuilt is not None
    assert a.run.prebuilt.packed[1] == b.run.prebuilt.packed[1]
    assert a.run.prebuilt.probes == b.run.prebuilt.probes
    # The snapshot: the records' specs as rows, the columns' as columns to a standby that reads
    # them and as the same rows to one that does not; each read back to the same run.
    assert not a.run.prebuilt.columns and b.run.prebuilt.columns
    rows_frame = snapshot.encode_run(a.run)
    assert snapshot.encode_run(b.run) == rows_frame == snapshot.encode_run(a.run, columns=True)
    columns_frame = snapshot.encode_run(b.run, columns=True)
    assert columns_frame != rows_frame
    for chunked in (False, True):
        assert snapshot.encode_run(b.run, columns=True, chunked=chunked) == columns_frame
        assert snapshot.encode_run(b.run, chunked=chunked) == rows_frame
    data = snapshot.decode_run(rows_frame)
    assert snapshot.decode_run(columns_frame) == data == a.run.snapshot(history=False)
    # A takeover from either frame builds the same run.
    taken = RunState.from_snapshot(snapshot.decode_run(columns_frame))
    assert taken.snapshot() == RunState.from_snapshot(data).snapshot()


@pytest.mark.parametrize("seed", range(40))
def test_a_bad_dag_as_columns_gets_the_records_refusal(seed: int) -> None:
    rng = random.Random(1000 + seed)
    rows = _dag(rng, rng.randint(3, 30))
    how = _spoil(rng, rows)
    records, cols, frames = _both(rows)
    a, b = _prepared(records, frames), _prepared(cols, frames)
    assert a.error is not None, how
    assert b.error is not None, how
    assert type(b.error) is type(a.error)
    assert str(b.error) == str(a.error)
    assert vars(b.error) == vars(a.error)


def test_functions_that_set_more_go_as_records() -> None:
    plain = [_row("a", ()), _row("b", ("a",))]
    for at, value in ((4, "node1"), (5, "a"), (6, True), (7, 2), (8, 1.5)):
        row = list(plain[1])
        row[at] = value
        msg = m.SubmitRun(1, "r", Rows([plain[0], tuple(row)]), 3, "binpack", None)
        assert submit_columns(msg) is None and as_sent(msg, COLUMNS_SINCE) is msg
    lone = m.SubmitRun(1, "r", Rows([plain[0]]), 3, "binpack", None)
    assert as_sent(lone, COLUMNS_SINCE) is lone  # (one function: the one-task path)
    flagged = m.SubmitRun(1, "r", Rows([plain[0], (*plain[1][:6], 0, *plain[1][7:])]), 3, "binpack", None)  # fmt: skip
    assert submit_columns(flagged) is None  # inline=0 is no bool: the records' check says so


def _columns(**change: Any) -> SubmitColumns:
    msg = submit_columns(m.SubmitRun(1, "r", Rows([_row("a", ()), _row("b", ("a",))]), 3, "binpack", None))  # fmt: skip
    assert msg is not None
    return dataclasses.replace(msg, **change)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"dep_counts": b"\x00\x00\x00\x00\x02\x00\x00\x00"}, "SubmitColumns.deps"),
        ({"dep_counts": b"\x00\x00\x00\x00"}, "SubmitColumns.dep_counts"),
        ({"dep_counts": b"\xff\xff\xff\xff\x02\x00\x00\x00"}, "negative"),
        ({"cost_of": b"\x00\x00\x00\x00\x05\x00\x00\x00"}, "SubmitColumns.cost_of: index 5"),
        ({"inclusion": b"\x00\x03"}, "SubmitColumns.inclusion: index 3"),
        ({"priorities": b"\x00"}, "SubmitColumns.priorities"),
        ({"ids": ("a",)}, "SubmitColumns"),
    ],
)
def test_columns_that_disagree_are_refused_saying_which(change: Any, says: str) -> None:
    msg = _columns(**change)
    decoded = CODEC.decode(CODEC.encode(msg, sender="c", frames=[b"x", b"y"]))
    assert decoded is not None and decoded.msg == msg  # (the codec reads it: its fields are fine)
    with pytest.raises(ColumnError, match=says):
        as_submission(msg)


def test_a_columns_upload_is_read_as_its_submission() -> None:
    rows = _dag(random.Random(5), 40)
    msg = as_sent(m.SubmitRun(3, "r9", Rows(rows), 2, "spread", None), COLUMNS_SINCE)
    payloads = [b"p"] * len(rows)
    frames = [bytes(f) for f in CODEC.encode(msg, sender="c", frames=payloads)]
    prepared = upload_intake.prepare(frames, CODEC, Limits(), None)
    assert type(prepared.decoded.msg) is m.SubmitRun
    assert type(prepared.decoded.msg.tasks) is TaskColumns
    assert prepared.error is None and prepared.run is not None
    assert len(prepared.run.tasks) == len(rows)
    bad = dataclasses.replace(msg, cost_of=b"")
    frames = [bytes(f) for f in CODEC.encode(bad, sender="c", frames=payloads)]
    assert upload_intake.prepare(frames, CODEC, Limits(), None).decoded is None


def test_a_daemon_of_an_older_range_or_not_heard_yet_gets_records() -> None:
    """A daemon whose range ends below COLUMNS_SINCE would drop SubmitColumns as an unknown type
    (the client would wait for nothing): the client sends it the records; a connection with no
    answer yet (0) may be to such a daemon."""
    rows = [_row(f"t{i}", (), {"cpu": 1}) for i in range(3)]
    msg = m.SubmitRun(3, "r9", Rows(rows), 2, "spread", None)
    assert type(as_sent(msg, COLUMNS_SINCE)) is SubmitColumns
    for older in (0, COLUMNS_SINCE - 1):
        assert as_sent(msg, older) is msg
