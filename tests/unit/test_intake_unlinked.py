"""A columns run none of whose tasks needs another (W1's shape) is built from its columns without
a per-task look-up structure it does not need (``intake_columns.column_graph``): its ids checked
distinct by a set, its links made by ``plain_graph.free_links`` (no consumer row a task), every
task wanted as a view of its ids, and the ranking's priorities and sizes read from the columns;
and a column of a few possible indices is checked by counting them (``column_codes._indices``).
The run, its graph, its order and its snapshot are the records' build's, in both builds of
``plain_graph``; what is malformed is refused as before.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import random
import tracemalloc
from typing import Any

import pytest
from test_scheduler_builds import pure_build
from test_submit_columns import _both as submit_both
from test_submit_columns import _prepared

from handoffd.daemon import intake_columns, upload_intake
from handoffd.errors import ValidationError
from handoffd.protocol import column_codes, snapshot
from handoffd.protocol.column_codes import ColumnError
from handoffd.scheduler import graph, outbox, placement, plain_graph
from handoffd.scheduler.run import RunState
from handoffd.spec import TaskSpec

BUILDS = {"compiled": plain_graph, "pure": pure_build("plain_graph")}
OUTBOXES = (outbox, pure_build("outbox"))
COSTS = [{"cpu": 1.0}, {"cpu": 2.0, "memory": 100.0}, {"gpu": 1.0}, {}]


def _rows(rng: random.Random, n: int, tied: bool = False) -> list[Any]:
    costs = rng.sample(COSTS, 1 if tied else rng.randint(1, len(COSTS)))
    prios = (
        [rng.choice([0, 3, -(1 << 63), (1 << 63) - 1])]
        if tied
        else rng.choice([[0], [0, 1], [-2, 0, 5]])
    )
    kinds = rng.choice([["variadic"], ["variadic", "as_list"]])
    return [
        (f"t{i}", (), rng.choice(costs), rng.choice(kinds), None, None, False, None, None,
         rng.choice(prios))
        for i in range(n)
    ]  # fmt: skip


def _both(rows: list[Any], outputs: Any = None) -> tuple[Any, Any, list[bytes]]:
    """The records' and the columns' submission of ``rows`` (a ``SubmitRun``), as the daemon reads each."""
    return submit_both(rows, False, outputs=outputs)


def _boom(*args: Any) -> Any:
    raise AssertionError("not on this path")


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("seed", range(24))
def test_an_unlinked_columns_run_is_the_records_run(
    seed: int, build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a third of the seeds tie every task on priority and size: ranked without the core's
    # ``order``, against the records' build, which asks it)
    rng = random.Random(seed)
    rows = _rows(rng, rng.randint(2, 80), tied=seed % 3 == 0)
    records, cols, frames = _both(rows)
    monkeypatch.setattr(intake_columns, "plain_graph", BUILDS[build])
    a = _prepared(records, frames)
    # The columns' build resolves no link and reads no spec for the ranking. (A compiled
    # plain_graph's calls of its own cpdef column_links are C calls the patch cannot see: the
    # pure build's case sees those.)
    monkeypatch.setattr(BUILDS[build], "column_links", _boom)
    monkeypatch.setattr(graph.plain_graph, "sizes", _boom)
    tied = seed % 3 == 0
    if tied:  # (nor the core's ranking, nor the records' probes: both read from the columns)
        monkeypatch.setattr(placement, "order", _boom)
        monkeypatch.setattr(upload_intake, "probes", _boom)
    b = _prepared(cols, frames)
    monkeypatch.undo()
    assert a.error is None and b.error is None
    assert a.specs is not None and b.specs is not None and a.graph and b.graph
    assert [vars(s) for s in a.specs] == [vars(s) for s in b.specs]
    for field in dataclasses.fields(a.graph):
        if field.name == "consumers":  # (lists of their own, or the one shared empty tuple)
            assert {k: list(v) for k, v in a.graph.consumers.items()} == {
                k: list(v) for k, v in b.graph.consumers.items()
            }
            assert list(a.graph.consumers) == list(b.graph.consumers)
            continue
        assert getattr(a.graph, field.name) == getattr(b.graph, field.name), field.name
    assert b.graph.wanted == {r[0] for r in rows} and len(b.graph.wanted) == len(rows)
    assert type(b.graph.wanted) is type({}.keys())  # (a view of the ids: no set of its own)
    assert a.run is not None and b.run is not None
    assert [r.id for r in a.run.ordered] == [r.id for r in b.run.ordered]
    assert [(r.position, r.upward_rank, r.order) for r in b.run.tasks.values()] == [
        (r.position, r.upward_rank, r.order) for r in a.run.tasks.values()
    ]
    assert a.run.snapshot() == b.run.snapshot()
    assert a.run.prebuilt.packed[1] == b.run.prebuilt.packed[1]
    assert a.run.prebuilt.probes == b.run.prebuilt.probes
    data = snapshot.decode_run(snapshot.encode_run(b.run, columns=True))
    assert data == a.run.snapshot(history=False)
    taken = RunState.from_snapshot(data)
    assert taken.snapshot() == a.run.snapshot()
    assert "t0" in taken.wanted and "t0" in b.run.wanted and "x" not in b.run.wanted
    _alike_dispatches(rows, a.run, b.run)


def _alike_dispatches(rows: list[Any], a: Any, b: Any) -> None:
    """The columns' run says what all its tasks share (``RunState.alike``) exactly when they
    do, its records have the records' build's pins, and a block of its tasks is dispatched
    (``Placed.add_all``) as the records' run's, which reads every spec."""
    kinds = {r[3] for r in rows}
    prios = {r[9] for r in rows}
    alike = (prios.pop(), kinds.pop()) if len(kinds) == len(prios) == 1 else None
    assert a.alike is None and b.alike == alike
    assert [r.pin for r in b.tasks.values()] == [r.pin for r in a.tasks.values()]
    for module, recs_of in itertools.product(OUTBOXES, (list, lambda r: list(r)[1::2])):
        ours, theirs = module.Placed(), module.Placed()
        ours.add("x", 1, b"p", {}, "variadic", None, (), 0, 1.0)  # (a group before the block)
        theirs.add("x", 1, b"p", {}, "variadic", None, (), 0, 1.0)
        ours.add_all(b, recs_of(b.ordered))
        theirs.add_all(a, recs_of(a.ordered))
        assert ours.tasks() == theirs.tasks() and ours.runs() == theirs.runs()
        assert ours.flat == theirs.flat and ours.inputs == theirs.inputs


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_free_links_are_the_column_links_of_tasks_without_dependencies(build: str) -> None:
    module = BUILDS[build]
    ids = [f"t{i}" for i in range(50)]
    for given in (None, dict.fromkeys(ids, ())):
        effective, consumers, rows = module.free_links(ids, given)
        found = module.column_links(ids, [()] * 50, None, True)
        assert effective == found[0] and list(effective) == ids == list(consumers)
        assert {k: list(v) for k, v in consumers.items()} == found[1]
        assert [list(r) for r in rows] == found[2]
        # Nothing made a task: the consumers are the effective dependencies' dict (the given
        # one), every value the one empty tuple, every row the one empty row.
        assert consumers is effective and (given is None or effective is given)
        assert {id(c) for c in consumers.values()} == {id(())}
        assert len({id(r) for r in rows}) == 1


@pytest.mark.parametrize("seed", range(40))
def test_column_probes_are_the_first_task_of_each_cost_shape(seed: int) -> None:
    rng = random.Random(seed)
    # (maps equal in items count as one shape; a map no task uses has no probe)
    maps = [{"cpu": 1.0}, {"cpu": 1.0}, {"gpu": 2.0}, {}, {"cpu": 1.0, "memory": 5.0}]
    costs = rng.sample(maps, rng.randint(1, intake_columns.PROBED_COSTS))
    n = rng.randint(1, 60)
    used = rng.sample(range(len(costs)), rng.randint(1, len(costs)))
    cost_of = [rng.choice(used) for _ in range(n)]
    ids = [f"t{i}" for i in range(n)]
    tasks: Any = type("Cols", (), {"cost_of": cost_of, "ids": ids})()
    seen: set[Any] = set()
    walked = []
    for i in range(n):  # (``intake._ungrouped_probes``' rule: no pins, a shape once)
        shape = (None, tuple(costs[cost_of[i]].items()))
        if shape not in seen:
            seen.add(shape)
            walked.append(ids[i])
    assert intake_columns.column_probes(tasks, costs) == tuple(walked)
    assert intake_columns.column_probes(tasks, maps * 2) is None  # (past PROBED_COSTS)


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_links_of_specs_none_needing_another_are_free_links_a_duplicate_none(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = BUILDS[build]
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(30)]
    ids = [s.id for s in specs]
    effective, consumers, rows = module.links(specs, None, True)
    found = module.column_links(ids, [()] * 30, None, True)
    assert effective == found[0] and consumers is effective and list(effective) == ids
    assert {k: list(v) for k, v in consumers.items()} == found[1]
    assert [list(r) for r in rows] == found[2]
    specs[7] = TaskSpec("t3", (), {"cpu": 1.0}, b"p")
    assert module.links(specs, None, True) is None
    monkeypatch.setattr(graph, "plain_graph", module)
    with pytest.raises(ValidationError) as caught:  # (the walk names it, as before)
        graph.build_graph(specs, None, None)
    assert caught.value.kind == "duplicate_id"


@pytest.mark.parametrize("how", ["dup", "empty", "dep", "output"])
def test_an_unlinked_run_that_is_not_plain_gets_the_records_refusal(how: str) -> None:
    rows = _rows(random.Random(3), 20)
    outputs = None
    if how == "dup":
        rows[5] = (rows[0][0], *rows[5][1:])
    elif how == "empty":
        rows[5] = ("", *rows[5][1:])
    elif how == "dep":
        rows[5] = (rows[5][0], ("nowhere",), *rows[5][2:])
    else:
        outputs = ("nowhere",)
    records, cols, frames = _both(rows, outputs)
    assert intake_columns.column_graph(cols, frames, None) is None
    a, b = _prepared(records, frames), _prepared(cols, frames)
    assert a.error is not None and b.error is not None and b.run is None
    assert str(a.error) == str(b.error)


def _checked(values: list[int], limit: int, low: int) -> str:
    try:
        column_codes._indices(values, limit, "X.col", low)
    except ColumnError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("seed", range(30))
def test_a_few_indices_are_counted_and_refused_as_before(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    low = rng.choice([0, -1])
    limit = rng.randint(low, low + 4)  # (a run's few cost maps, inclusions or code heads)
    n = rng.randint(1, 300)
    values = [rng.randrange(low, limit) if limit > low else 0 for _ in range(n)]
    bad = limit <= low or rng.random() < 0.5
    if bad and limit > low:
        values[rng.randrange(n)] = rng.choice([low - 1, limit, limit + 300, 1000])
    expected = ""
    wrong = next((v for v in values if not low <= v < limit), None)
    if wrong is not None:
        expected = f"X.col: index {wrong} out of range [{low}, {limit})"
    assert _checked(values, limit, low) == expected
    if wrong is None:  # (counted: neither min nor max compares every value)
        monkeypatch.setattr(column_codes, "min", _boom, raising=False)
        monkeypatch.setattr(column_codes, "max", _boom, raising=False)
        assert _checked(values, limit, low) == ""
    assert _checked([], limit, low) == ""


def _live_bytes_a_spec(build: Any, n: int) -> float:
    ids = [f"t{i}" for i in range(n)]
    payloads = [bytes([i % 256]) * 8 for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        made = build.column_specs(ids, [()] * n, [{"cpu": 1.0}], [0] * n, ["variadic"], [0] * n,
                                  [0] * n, payloads)  # fmt: skip
        live = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(made) == n
    return live / n


def test_a_compiled_column_spec_is_made_as_object_new_makes_it() -> None:
    """The compiled build makes each spec with object's own ``tp_new`` (one C call): the same
    object as ``object.__new__`` gives the pure build, its fields in the instance's value slots
    (no ``__dict__`` made: an allocation without them held a dict a spec), equal, frozen."""
    compiled, pure = BUILDS["compiled"], BUILDS["pure"]
    made = compiled.column_specs(["a", "b"], [(), ("a",)], [{"cpu": 1.0}], [0, 0], ["variadic"],
                                 [0, 0], [0, 3], [b"x", b"y"])  # fmt: skip
    usual = [TaskSpec("a", (), {"cpu": 1.0}, b"x"), TaskSpec("b", ("a",), {"cpu": 1.0}, b"y", priority=3)]  # fmt: skip
    assert made == usual and [type(s) for s in made] == [TaskSpec, TaskSpec]
    assert [gc.is_tracked(s) for s in made] == [gc.is_tracked(s) for s in usual]
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].id = "c"  # type: ignore[misc]
    assert _live_bytes_a_spec(compiled, 3000) == pytest.approx(
        _live_bytes_a_spec(pure, 3000), rel=0.02
    )
