"""The owner's intake of a submission builds its TaskSpecs without the frozen dataclass's
``__init__`` (``spec.built_spec``) and its graph without a second cycle walk when the submission's
check already made one (``build_graph(acyclic=True)``): the same specs and graphs, and a cyclic
submission still refused (issue 13, the owner's per-task cost)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from handoffd.config import Limits
from handoffd.daemon import upload_intake
from handoffd.errors import ValidationError
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Rows
from handoffd.scheduler import graph
from handoffd.scheduler.graph import TaskGraph, build_graph
from handoffd.scheduler.placement import order
from handoffd.spec import RunOptions, TaskSpec, built_spec


def _fields(g: TaskGraph) -> dict[str, Any]:
    return {name: getattr(g, name) for name in TaskGraph.__slots__}


def _random_fields(rng: random.Random, i: int, ids: list[str]) -> tuple[Any, ...]:
    deps = tuple(rng.sample(ids, k=min(len(ids), rng.randint(0, 3))))
    return (
        f"t{i}",
        deps,
        {"cpu": rng.choice([0.0, 0.5, 1.0])} if rng.random() < 0.9 else {},
        bytes([i % 256]) * rng.randint(0, 9),
        rng.choice(["variadic", "as_list"]),
        rng.choice([None, None, "n1"]),
        None,
        False,
        rng.choice([None, 0, 3]),
        rng.choice([None, 2.5]),
        rng.randint(-3, 3),
    )


@pytest.mark.parametrize("seed", range(20))
def test_built_spec_is_the_dataclass_built_the_usual_way(seed: int) -> None:
    rng = random.Random(seed)
    values = _random_fields(rng, seed, ["a", "b", "c"])
    usual, built = TaskSpec(*values), built_spec(*values)
    assert type(built) is TaskSpec
    assert built == usual and repr(built) == repr(usual)
    assert list(vars(built).items()) == list(vars(usual).items())  # (same fields, same order)
    assert dataclasses.astuple(built) == dataclasses.astuple(usual)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(20))
def test_run_options_are_the_dataclass_built_the_usual_way(seed: int) -> None:
    rng = random.Random(seed)
    packages = tuple(f"{i:064x}" for i in range(rng.randint(0, 2)))
    outputs = rng.choice([None, (), ("a",), ("a", "b")])
    msg = m.SubmitAndWait(
        1,
        "r",
        (),
        rng.randint(0, 5),
        rng.choice(["binpack", "spread"]),
        outputs,
        1.0,
        0,
        True,
        list(packages),
    )
    usual = RunOptions(
        max_retries=msg.max_retries, policy=msg.policy, outputs=outputs, packages=packages
    )
    built = upload_intake.run_options(msg)
    assert type(built) is RunOptions
    assert built == usual and repr(built) == repr(usual)
    assert list(vars(built).items()) == list(vars(usual).items())  # (every field, in order)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.policy = "spread"  # type: ignore[misc]


def _prepare(rows: list[tuple[Any, ...]]) -> upload_intake.Prepared:
    codec = Codec()
    payloads = [f"p{i}".encode() for i in range(len(rows))]
    request = m.SubmitAndWait(1, "r1", Rows(rows), 3, "binpack", None, 1.0, 1 << 20, True, ())
    frames = [bytes(f) for f in codec.encode(request, sender="c", frames=payloads)]
    return upload_intake.prepare(frames, codec, Limits(), None)


def _rows(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """TaskMeta rows of a random DAG (dependencies on earlier functions only)."""
    rows = []
    for i in range(n):
        earlier = [f"t{j}" for j in range(max(0, i - 6), i)]
        deps = tuple(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3))))
        rows.append((f"t{i}", deps, {"cpu": 1.0}, "variadic", None, None, False, None, None, 0))
    return rows


@pytest.mark.parametrize("seed", range(10))
def test_the_intake_builds_the_specs_and_graph_it_built_before(seed: int) -> None:
    rng = random.Random(seed)
    rows = _rows(rng, rng.randint(2, 60))
    prepared = _prepare(rows)
    assert prepared.error is None and prepared.specs is not None and prepared.graph is not None
    usual = tuple(TaskSpec(r[0], r[1], r[2], f"p{i}".encode(), *r[3:]) for i, r in enumerate(rows))
    assert prepared.specs == usual
    assert _fields(prepared.graph) == _fields(build_graph(usual, None, None))


def test_an_acyclic_graph_is_not_walked_for_cycles_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def walked(*_: Any) -> Any:
        raise AssertionError("the cycle walk ran for a submission already checked")

    specs = [TaskSpec("a", (), {"cpu": 1.0}, b"p"), TaskSpec("b", ("a",), {"cpu": 1.0}, b"p")]
    expected = _fields(build_graph(specs, None, order))
    monkeypatch.setattr(graph, "topological", walked)
    assert _fields(build_graph(specs, None, order, acyclic=True)) == expected
    # Unchecked callers still check (``_acyclic``, the walk only to name a cycle it found).
    checked: list[Any] = []
    monkeypatch.setattr(graph, "_acyclic", lambda *args: checked.append(args) or True)
    assert _fields(build_graph(specs, None, order)) == expected and len(checked) == 1
    rows = [(s.id, s.deps, s.cost, "variadic", None, None, False, None, None, 0) for s in specs]
    assert _prepare(rows).error is None  # (the intake passes acyclic)


@pytest.mark.parametrize("seed", range(15))
def test_acyclic_builds_the_graph_the_walk_builds(seed: int) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    specs = []
    for i in range(rng.randint(2, 40)):
        fields = list(_random_fields(rng, i, ids))
        fields[5] = None  # (no pins: a pin to a node of a collocation group is checked apart)
        fields[7] = i > 0 and rng.random() < 0.2  # some inline functions (they need the order)
        specs.append(TaskSpec(*fields))
        ids.append(fields[0])
    if all(s.inline for s in specs):
        specs.append(TaskSpec("last", (), {}, b"p"))
    try:
        expected = _fields(build_graph(specs, None, order))
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            build_graph(specs, None, order, acyclic=True)
        assert raised.value.kind == exc.kind
        return
    assert _fields(build_graph(specs, None, order, acyclic=True)) == expected


def test_a_cyclic_submission_is_still_refused_by_the_intake() -> None:
    rows = [
        ("a", ("c",), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
        ("b", ("a",), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
        ("c", ("b",), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
        ("d", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
    ]
    prepared = _prepare(rows)
    assert isinstance(prepared.error, ValidationError) and prepared.error.kind == "cycle"
    assert prepared.run is None


def _run(rng: random.Random, n: int) -> Any:
    from handoffd.scheduler.run import RunState
    from handoffd.spec import RunOptions

    specs: list[TaskSpec] = []
    for i in range(n):
        earlier = [s.id for s in specs[-5:]]
        deps = tuple(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3))))
        cost = {"cpu": rng.choice([0.5, 1.0])} if rng.random() < 0.9 else {}
        task_id = f"t{i}" + "x" * rng.choice([0, 0, 40, 300])  # (fixstr, str8, str16 headers)
        node = rng.choice([None, None, "n1"])
        specs.append(TaskSpec(task_id, deps, cost, b"p", node=node))
    return RunState("r", specs, RunOptions(), graph=build_graph(specs, None))


@pytest.mark.parametrize("seed", range(12))
def test_an_untouched_runs_task_rows_pack_to_the_bytes_of_its_rows(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``snapshot.pack_parts`` at intake: the same bytes as every row built and packed, without
    building them (ids of every msgpack str header's length)."""
    from handoffd.protocol import snapshot

    rng = random.Random(seed)
    run = _run(rng, rng.choice([1, 2, 17, 300, 2100, 4500]))
    assert run.untouched()
    rows_packed = snapshot._pack_rows(snapshot._task_rows(run))
    assert snapshot._untouched_tasks(run, chunk=rng.choice([16, 100, 2048])) == rows_packed
    specs_packed = snapshot._pack_rows(snapshot._spec_rows(run.specs))

    def built(*_: Any) -> Any:
        raise AssertionError("an untouched run's task rows were built")

    monkeypatch.setattr(snapshot, "_task_rows", built)
    assert snapshot.pack_parts(run) == (specs_packed, rows_packed)


def test_a_touched_run_and_rows_that_differ_are_packed_row_by_row() -> None:
    from handoffd.protocol import snapshot

    run = _run(random.Random(1), 50)
    last = run.tasks[list(run.tasks)[-1]]
    last.failures = 1  # (not as built: the shortcut must notice)
    assert snapshot._untouched_tasks(run) is None
    assert snapshot.pack_parts(run)[1] == snapshot._pack_rows(snapshot._task_rows(run))
    long_ids = _run(random.Random(2), 3)
    assert snapshot._untouched_tasks(long_ids) == snapshot._pack_rows(snapshot._task_rows(long_ids))


def test_a_record_as_built_is_the_row_the_shortcut_packs() -> None:
    """``snapshot._AS_BUILT`` is what a new ``TaskRecord`` holds, in both scheduler builds."""
    from pure_build import pure

    from handoffd.protocol import snapshot
    from handoffd.scheduler import run as built_run

    pure_run = pure(built_run, "handoffd_run_pure_intake")
    for module in (built_run, pure_run):
        rec = module.TaskRecord(TaskSpec("t", (), {"cpu": 1.0}, b"p"), 0, 0.0)
        assert snapshot._task_row("t", rec)[1:] == snapshot._AS_BUILT
        assert snapshot._tasks_packed(SimpleRun({"t": rec})) == snapshot._pack_rows(
            [snapshot._task_row("t", rec)]
        )


class SimpleRun:
    def __init__(self, tasks: dict[str, Any]) -> None:
        self.tasks = tasks


@pytest.mark.parametrize("seed", range(12))
def test_a_run_that_moved_on_packs_to_the_bytes_of_its_rows(seed: int) -> None:
    """The snapshot packed in a thread for a run that has moved on (``encode_run(chunked=True)``):
    tasks as built from one row's bytes, the others row by row, the same bytes as all rows."""
    from handoffd.protocol import snapshot

    rng = random.Random(seed)
    run = _run(rng, rng.choice([1, 5, 300, 2500]))
    run.start(1.0, rng.choice([None, 0, 3, 200]))
    ready = [r for r in run.tasks.values() if r.state == "READY"]
    for rec in rng.sample(ready, k=len(ready) // 2):
        run.assign(rec, rng.choice(["n1", "n2"]), 2.0)
        if rng.random() < 0.5:
            run.succeeded(rec, rec.node, rng.randint(0, 99), rng.choice([None, b"v"]), 3.0)
    expected = snapshot._pack_rows(snapshot._task_rows(run))
    assert snapshot._tasks_packed(run, chunk=rng.choice([16, 100, 2048])) == expected
    assert snapshot.encode_run(run, chunked=True) == snapshot.encode_run(run)


@pytest.mark.parametrize("seed", range(4))
def test_ready_tasks_as_built_pack_without_a_row_each(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run just taken in (its tasks READY or PENDING, none sent out: what its standbys first
    get) packs each such task as its id between a row's bytes, not row by row, to the same bytes;
    a task that moved on (ASSIGNED, DONE, a retry's READY) still gets its row."""
    from handoffd.protocol import snapshot

    rng = random.Random(seed)
    run = _run(rng, rng.choice([5, 300, 2500]))
    run.start(1.0, None)
    moved = {r.id for r in rng.sample(list(run.tasks.values()), k=len(run.tasks) // 3)}
    for rec in run.tasks.values():
        if rec.id in moved and rec.state == "READY":
            run.assign(rec, "n1", 2.0)
    expected = snapshot._pack_rows(snapshot._task_rows(run))
    rows: list[str] = []
    task_row = snapshot._task_row
    monkeypatch.setattr(
        snapshot, "_task_row", lambda task_id, r: rows.append(r.state) or task_row(task_id, r)
    )
    assert snapshot._tasks_packed(run, chunk=rng.choice([16, 2048])) == expected
    assert "READY" not in rows and "PENDING" not in rows
    assert len(rows) == sum(r.state not in ("READY", "PENDING") for r in run.tasks.values())
