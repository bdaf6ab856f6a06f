"""The dispatch intake (``daemon.executor_intake``): a received ``DispatchColumns``, read into a
``columns.DispatchTable``, is taken in straight from its columns when its inputs are plain values,
and does exactly what the same dispatch as ``DispatchTasks`` does: the same answers, fetches (from
the holders the columns name, in turn), jobs with the same inputs, the same reports and input_lost
failures. What is not plain (inline inputs, serialization hooks, frames out of range) takes the
per-item path. Malformed columns are refused when the table is read, before the executor."""

from __future__ import annotations

from typing import Any

import pytest
from test_executor_state import (
    ME,
    OWNER,
    PEER,
    PEER2,
    RUN,
    here,
    item,
    make,
    of,
    reports,
    sent,
    settle,
    whole,
)

from handoffd.daemon.executor_events import (
    Dispatched,
    Execute,
    FetchTimedOut,
    SendMessage,
    TaskEnded,
    ValuesFreed,
)
from handoffd.daemon.executor_records import NO_MISSING, dispatch_replied, replied_message
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import (
    ColumnError,
    DispatchTable,
    dispatch_columns,
    pack,
    replied_columns,
)
from handoffd.protocol.messages_chunks import FetchChunks
from handoffd.protocol.messages_columns import DispatchColumns
from handoffd.worker._records import expand
from handoffd.worker.pool import Outcome


def ref(dep: str, *holders: str, frame: int = -1, parent: int = -1, kind: str = "value") -> Any:
    return m.InputRef(kind, dep, holders, frame, "variadic", parent)


HERE = ref("h1", ME)  # a value in our store
FAR = ref("f1", PEER, PEER2)  # a value on two peers
FAR2 = ref("f2", ME, PEER2)  # a value a holder names us for, but we do not hold
SENT = ref("s1", frame=1)  # a value sent along in frame 1
SHAPES: dict[str, list[m.DispatchItem]] = {
    "no inputs": [item("a"), item("b")],
    "values here": [item("a", inputs=(HERE,)), item("b", inputs=(HERE, HERE))],
    "values on peers": [item("a", inputs=(FAR, HERE, FAR2)), item("b", inputs=(FAR2,))],
    "values sent along": [item("a", inputs=(SENT, HERE)), item("b", inputs=(FAR, SENT))],
    "queued behind the ledger": [item(f"q{i}", inputs=(HERE, FAR)) for i in range(5)],
    "inline input": [item("a", inputs=(ref("i", frame=1, kind="inline"), ref("h1", ME, parent=0)))],
    "input frame out of range": [item("a", inputs=(ref("x", frame=7),)), item("b")],
    "payload frame out of range": [
        m.DispatchItem("a", 1, {"cpu": 1.0}, "variadic", None, 4, ()),
        item("b", inputs=(HERE,)),
    ],
}
FRAMES = [b"payload", b"sent-value"]


def pair() -> tuple[ExecutorState, ExecutorState]:
    a, b = make(), make()
    for st in (a, b):
        st.store.put(RUN, "h1", b"here-value")
    return a, b


def table(items: list[m.DispatchItem], run: str = RUN) -> DispatchTable:
    return DispatchTable(dispatch_columns(m.DispatchTasks(run, OWNER, tuple(items))))


def both(a: ExecutorState, b: ExecutorState, ev_a: Any, ev_b: Any, now: float) -> list[Any]:
    out_a = settle(a, a.handle(ev_a, now), now)
    out_b = settle(b, b.handle(ev_b, now), now)
    assert out_a == out_b
    return out_a


@pytest.mark.parametrize(
    ("shape", "way"),
    [(s, "columns") for s in sorted(SHAPES)]
    + [(s, "here") for s in sorted(SHAPES) if "out of range" not in s],
)
def test_a_table_does_what_the_same_dispatch_as_items_does(shape: str, way: str) -> None:
    """``way``: "columns" received from another node, "here" from the owner on our own node
    (``dispatch_here``: its frames are its own, so never out of range)."""
    items = SHAPES[shape]
    a, b = pair()
    msg = m.DispatchTasks(RUN, OWNER, tuple(items))
    other = (
        Dispatched(table(items), FRAMES, 1)
        if way == "columns"
        else Dispatched(*here(msg, FRAMES), 1)
    )
    out = both(a, b, Dispatched(msg, FRAMES, 1), other, 0.0)
    assert set(a.tasks) == set(b.tasks)
    # the first holder of each value we lack (never ourselves) times out: the next one is asked
    fetches = [i for i in of(out, SendMessage) if isinstance(i.msg, FetchChunks)]
    for ins in fetches:
        assert ins.address != ME
    if shape == "values on peers":
        assert {(i.address, i.msg.key) for i in fetches} == {(PEER, "f1"), (PEER2, "f2")}
        first = next(i for i in fetches if i.msg.key == "f1")
        timed_out = FetchTimedOut(first.msg.request_id)
        again = both(a, b, timed_out, timed_out, 10.0)
        retry = [i for i in of(again, SendMessage) if isinstance(i.msg, FetchChunks)]
        assert [(i.address, i.msg.key) for i in retry] == [(PEER2, "f1")]
        fetches = [i for i in fetches if i.msg.key != "f1"] + retry
    for ins in fetches:
        value = whole(ins.msg, b"fetched-" + ins.msg.key.encode())
        out += both(a, b, value, value, 10.0)
    # every job, as it ends: the same inputs handed over, the same reports
    done: dict[str, m.TaskReport] = {}
    while True:
        jobs = [job for ex in of(out, Execute) for job in expand(ex.jobs)]
        if not jobs:
            break
        out = []
        for job in jobs:
            if shape == "values on peers" and job.key[1] == "a":
                assert [v for _, v in job.inputs] == [b"fetched-f1", b"here-value", b"fetched-f2"]
            ended = TaskEnded(Outcome(job.key, True, b"r-" + job.key[1].encode(), duration=1e-3))
            out += both(a, b, ended, ended, 20.0)
            done.update(reports(out))
    assert not a.tasks and not b.tasks
    refused = {"input frame out of range": {"a"}, "payload frame out of range": {"a"}}
    expected = {i.task_id for i in items} - refused.get(shape, set())
    assert {t for t, r in done.items() if r.state == "DONE"} == expected


def test_plain_values_are_kept_as_columns_not_a_record_per_input() -> None:
    st = make()
    st.store.put(RUN, "h1", b"here-value")
    items = [item("a", inputs=(SENT, FAR, HERE)), item("b", {"cpu": 9.0})]
    st.handle(Dispatched(table(items), FRAMES, 1), 0.0)
    task = st.tasks[(RUN, "a", 1)]
    assert task.inputs == ()  # no InputRef built
    assert task.flat == (1, "f1", "h1")  # in argument order: a frame, then store keys
    assert task.needs == ("f1", "h1")
    assert task.source is None  # the holders were read while gathering: the table may go
    assert (RUN, "b", 1) not in st.tasks  # (refused: more than the node's capacity)


@pytest.mark.parametrize("way", ["table", "items"])
def test_a_task_waiting_for_values_has_its_own_missing_set(way: str) -> None:
    """A task with nothing to fetch holds the one shared immutable ``NO_MISSING``; a task that
    waits for a value gets its own set, so one's arrival is never another's."""
    st = make({"cpu": 4.0})
    st.store.put(RUN, "h1", b"here-value")
    items = [item("a", inputs=(FAR,)), item("b", inputs=(FAR, FAR2)), item("c", inputs=(HERE,))]
    msg = table(items) if way == "table" else m.DispatchTasks(RUN, OWNER, tuple(items))
    st.handle(Dispatched(msg, FRAMES, 1), 0.0)
    a, b, c = (st.tasks[(RUN, t, 1)] for t in "abc")
    assert a.missing == {"f1"} and b.missing == {"f1", "f2"} and a.missing is not b.missing
    assert c.missing is NO_MISSING and not NO_MISSING and c.running


def test_plain_items_are_taken_in_in_one_pass_too() -> None:
    st = make()
    st.store.put(RUN, "h1", b"here-value")
    plain = item("a", inputs=(SENT, FAR, HERE))
    bad = item("b", inputs=(ref("x", frame=7),))
    out = st.handle(Dispatched(m.DispatchTasks(RUN, OWNER, (plain, bad)), FRAMES, 1), 0.0)
    (reply,) = sent(out, m.DispatchReplied)
    assert [r.reason for r in reply.refused] == ["bad input reference"]
    task = st.tasks[(RUN, "a", 1)]
    assert task.flat == (1, "f1", "h1") and task.needs == ("f1", "h1")
    assert task.inputs == plain.inputs  # (the holders of f1)
    assert task.frames == {0: b"payload", 1: b"sent-value"}


def test_an_inline_input_goes_the_per_item_way() -> None:
    st = make()
    st.store.put(RUN, "h1", b"here-value")
    inline = [item("a", inputs=(ref("i", frame=1, kind="inline"), ref("h1", ME, parent=0)))]
    st.handle(Dispatched(table(inline), FRAMES, 1), 0.0)
    task = st.tasks[(RUN, "a", 1)]
    assert task.flat is None and len(task.inputs) == 2


def test_a_queued_consumer_whose_input_was_freed_fails_with_input_lost() -> None:
    st = make({"cpu": 1.0, "memory": 8.0})
    st.store.put(RUN, "h1", b"here-value")
    other = {"cpu": 1.0, "memory": 1.0}  # (another cost: not chained behind a)
    items = [item("a"), item("b", other, inputs=(HERE,))]
    out = settle(st, st.handle(Dispatched(table(items), FRAMES, 1), 0.0))
    (ex,) = of(out, Execute)
    assert [j.key[1] for j in expand(ex.jobs)] == ["a"]  # b waits in the local queue (ledger full)
    st.handle(ValuesFreed(m.FreeValues(RUN, ("h1",)), 1), 0.0)
    out = settle(st, st.handle(TaskEnded(Outcome((RUN, "a", 1), True, b"r", duration=1.0)), 0.0))
    got = reports(out)
    assert got["a"].state == "DONE"
    assert (got["b"].state, got["b"].kind) == ("FAILED", "input_lost")


def test_a_stale_term_refuses_the_whole_table() -> None:
    st = make()
    st.handle(Dispatched(table([item("a")]), FRAMES, 3), 0.0)
    out = st.handle(Dispatched(table([item("b"), item("c")]), FRAMES, 2), 0.0)
    (reply,) = sent(out, m.DispatchReplied)
    assert not reply.accepted
    assert [(r.task_id, r.reason[:10]) for r in reply.refused] == [
        ("b", "stale term"),
        ("c", "stale term"),
    ]


def _columns(**change: object) -> DispatchColumns:
    items = (item("a", inputs=(HERE, FAR)), item("b", inputs=(FAR,)))
    msg = dispatch_columns(m.DispatchTasks(RUN, OWNER, items))
    fields = {f: getattr(msg, f) for f in msg.__dataclass_fields__}
    return DispatchColumns(**{**fields, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"input_parents": pack("i", [-1, 1, -1])}, "input_parents: 1 is not an earlier input"),
        ({"input_parents": pack("i", [-1, -1, 5])}, "input_parents: 5 is not an earlier input"),
        ({"input_frames": pack("i", [-1, -1])}, "input_frames: 8 bytes, expected 3 x 4"),
        ({"holders": pack("i", [0, 1, 9, 1, 2])}, "holders: index 9 out of range"),
        ({"input_holders": pack("i", [1, 2, 9])}, "holders: 20 bytes, expected 12 x 4"),
        ({"input_kinds": pack("B", [0, 0, 7])}, "input_kinds: index 7 out of range"),
    ],
)
def test_bad_columns_are_refused_when_the_table_is_read(change: dict, says: str) -> None:
    with pytest.raises(ColumnError, match=says):
        DispatchTable(_columns(**change))


def test_the_table_of_good_columns_reads_back_the_dispatch() -> None:
    items = (item("a", inputs=(HERE, FAR)), item("b", inputs=(FAR,)))
    msg = m.DispatchTasks(RUN, OWNER, items)
    got = DispatchTable(dispatch_columns(msg))
    assert got.tasks() == msg
    assert got.plain
    assert [got.locations(j) for j in range(3)] == [(ME,), (PEER, PEER2), (PEER, PEER2)]


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        ([], []),
        ([("a", 1), ("b", 7)], []),
        ([], [("c", 2, "no room")]),
        ([("a", 1)], [("c", 2, "x")]),
    ],
)
def test_an_answer_is_built_as_the_columns_the_per_task_message_becomes(
    accepted: list[tuple[str, int]], refused: list[tuple[str, int, str]]
) -> None:
    free = {"cpu": 1.5}
    direct = replied_message(RUN, accepted, refused, free, 4)
    assert direct == replied_columns(dispatch_replied(RUN, accepted, refused, free, 4))


def test_a_plain_input_spilled_from_memory_is_read_back_from_its_file(tmp_path: Any) -> None:
    from handoffd.daemon.executor_records import Task, job_inputs
    from handoffd.store.store import ResultStore

    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    store.put(RUN, "a", b"a" * 60)
    store.put(RUN, "b", b"b" * 60)  # "a" is spilled
    store.settle()
    assert store.peek((RUN, "a")) is None
    task = Task(
        run_id=RUN,
        task_id="t",
        attempt=0,
        owner_address="o",
        cost={"cpu": 1.0},
        argument_inclusion="",
        timeout=None,
        payload=b"p",
        payload_frame=0,
        inputs=(),
        frames={0: b"p", 1: b"f"},
        needs=("a", "b"),
        flat=("a", 1, "b"),
        gpus=[],
        qkey=(0, 0.0, 0),
    )
    assert job_inputs(task, store) == [("value", b"a" * 60), ("value", b"f"), ("value", b"b" * 60)]
    store.drop(RUN, "a")
    with pytest.raises(LookupError, match="'a' vanished"):
        job_inputs(task, store)
    store.close()


@pytest.mark.parametrize("gpus", [None, [1]])
def test_a_task_built_by_position_is_the_one_built_by_name(gpus: list[int] | None) -> None:
    """``_task`` passes every ``Task`` field by position: a field moved or added shows here."""
    from handoffd.daemon.executor_intake import _task
    from handoffd.daemon.executor_records import Task

    cost, kept, source = {"gpu": 1.0}, {2: b"p", 0: b"f"}, (object(), 3)
    head = ("t", 2, cost, "named", 1.5, (1, -2.0, 3))
    built = _task(RUN, OWNER, head, gpus, 2, kept, (0, "a"), ("a",), source)
    named = Task(
        run_id=RUN,
        task_id="t",
        attempt=2,
        owner_address=OWNER,
        cost={"gpu": 1.0},
        gpus=gpus or [],
        argument_inclusion="named",
        timeout=1.5,
        payload=b"p",
        inputs=(),
        frames=kept,
        claimed=gpus is not None,
        payload_frame=2,
        needs=("a",),
        flat=(0, "a"),
        source=source,
        qkey=(1, -2.0, 3),
    )
    assert built == named and built.cost is not cost and built.missing == set()
