"""Plain functions' one pass (``scheduler.plain_graph``, ``graph.wire_graph``) against the
general path, on random submissions: the same specs, the same graph (links, ranks, placement
order), and for anything the general path refuses, no answer of its own (the general path then
says what is wrong, word for word). The compiled module and its .py give the same answers."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from test_scheduler_builds import pure_build

from handoffd import validation
from handoffd.errors import HandoffError
from handoffd.protocol import messages as m
from handoffd.scheduler import graph, plain_graph
from handoffd.scheduler.graph import TaskGraph, build_graph
from handoffd.scheduler.placement import order
from handoffd.spec import TaskSpec

pure = pure_build("plain_graph")


def _read(spec: TaskSpec) -> list[tuple[str, Any, type]]:
    """Every field of ``spec`` as read (stored or the class's default), with its type."""
    return [
        (f.name, getattr(spec, f.name), type(getattr(spec, f.name)))
        for f in dataclasses.fields(TaskSpec)
    ]


def _fields(g: TaskGraph) -> dict[str, Any]:
    fields = {name: getattr(g, name) for name in TaskGraph.__slots__}
    # (a task's consumers: a list of its own, or the one shared empty tuple of a run none of
    # whose tasks needs another, ``plain_graph.free_links``: the same ids, in order)
    fields["consumers"] = {k: list(v) for k, v in g.consumers.items()}
    return fields


def _meta(row: m.TaskMeta, **changes: Any) -> m.TaskMeta:
    names = ("id", "deps", "cost", "argument_inclusion", "node", "collocate_with", "inline")
    names += ("max_retries", "timeout", "priority")
    values = {name: getattr(row, name) for name in names}
    values.update(changes)
    return m.TaskMeta(*(values[name] for name in names))


def _submission(seed: int, bad: bool) -> tuple[m.SubmitRun, list[bytes]]:
    rng = random.Random(seed)
    n = rng.randint(2, 60)
    rows = []
    for i in range(n):
        deps = tuple(f"t{j}" for j in rng.sample(range(i), k=min(i, rng.randint(0, 3))))
        cost: dict[str, Any] = rng.choice([{"cpu": 1}, {"cpu": 1.0}, {"cpu": 2, "memory": 100.0}])
        priority = rng.choice([0, 0, 0, 1, -2, 5])
        rows.append(
            m.TaskMeta(
                f"t{i}", deps, dict(cost), "variadic", None, None, False, None, None, priority
            )
        )
    if bad:
        at = rng.randrange(n)
        row = rows[at]
        changes: dict[str, Any] = rng.choice(
            [
                {"id": rows[rng.randrange(n)].id if at else ""},  # a duplicate (or empty) id
                {"deps": (*row.deps, "nowhere")},  # an unknown dependency
                {"deps": (*row.deps, f"t{n - 1}")},  # a cycle (or a function needing itself)
                {"deps": [*row.deps]},  # a list, not a tuple: the checks decide
                {"cost": {"cpu": True}},
                {"cost": {"cpu": -1}},
                {"cost": {"cpu": [1]}},
                {"node": "n1"},
                {"inline": True, "cost": {}},
                {"max_retries": 2},
                {"priority": 1.5},
                {"argument_inclusion": "spread"},
            ]
        )
        rows[at] = _meta(row, **changes)
    outputs = rng.choice([None, None, ("t0",), ("t1", "t0"), ("t0", "absent")])
    return m.SubmitRun(1, "r", tuple(rows), 3, "binpack", outputs), [b"p%d" % i for i in range(n)]


def _general(msg: m.SubmitRun, frames: list[bytes]) -> Any:
    """What the general path makes of a submission: (specs, graph) or its error."""
    try:
        specs = tuple(validation.wire_specs(msg, frames))
        return specs, build_graph(specs, msg.outputs, order, acyclic=True)
    except HandoffError as exc:
        return exc


@pytest.mark.parametrize("seed", range(60))
def test_wire_graph_builds_what_the_general_path_builds(seed: int) -> None:
    msg, frames = _submission(seed, bad=seed % 2 == 1)
    expected = _general(msg, frames)
    found = graph.wire_graph(msg, frames, order)
    if isinstance(expected, HandoffError):
        assert found is None, expected  # (refused: the general path's error is the one heard)
        return
    if found is None:  # (only for a row the pass leaves to the general path)
        assert any(
            type(t.deps) is not tuple or t.node or t.inline or t.max_retries for t in msg.tasks
        )
        return
    specs, built = found
    assert specs == expected[0]
    assert _fields(built) == _fields(expected[1])
    # (one cost dict per shape of the run, not one per task)
    shapes = {tuple(s.cost.items()) for s in specs}
    assert len({id(s.cost) for s in specs}) <= len(shapes) + 1


def _specs(rng: random.Random) -> list[TaskSpec]:
    specs = []
    for i in range(rng.randint(2, 50)):
        deps = tuple(f"t{j}" for j in rng.sample(range(i), k=min(i, rng.randint(0, 4))))
        if deps and rng.random() < 0.3:
            deps = (*deps, deps[0])  # (a dependency named twice: one edge)
        specs.append(
            TaskSpec(
                f"t{i}",
                deps,
                rng.choice([{"cpu": 1.0}, {"cpu": 3.0, "gpu": 1.0}]),
                b"p",
                priority=rng.choice([0, 0, 2, -1]),
                node=rng.choice([None, None, "n1"]),
            )
        )
    rng.shuffle(specs)  # (dependencies named before their functions, too)
    return specs


@pytest.mark.parametrize("seed", range(40))
def test_the_plain_graph_is_the_walks_graph(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same links, ranks and placement order as the general walk, on random DAGs."""
    rng = random.Random(seed)
    specs = _specs(rng)
    outputs = rng.choice([None, (specs[0].id,)])
    plain = build_graph(specs, outputs, order)
    walked = graph._walk(specs, outputs, order)
    assert _fields(plain) == _fields(walked)
    cyclic = [*specs, TaskSpec("x", ("y",), {}, b"p"), TaskSpec("y", ("x",), {}, b"p")]
    with pytest.raises(HandoffError) as raised:
        build_graph(cyclic, outputs, order)
    assert raised.value.kind == "cycle"  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(20))
def test_both_builds_answer_alike(seed: int) -> None:
    rng = random.Random(seed)
    specs = _specs(rng)
    if rng.random() < 0.3:
        specs.append(TaskSpec(specs[0].id, (), {}, b"p"))  # a duplicate
    if rng.random() < 0.3:
        specs.append(TaskSpec("z", ("z",), {}, b"p"))  # a cycle
    ids, deps = [s.id for s in specs], [s.deps for s in specs]
    index = {s.id: i for i, s in enumerate(specs)}
    for check in (True, False):
        found = pure.links(specs, None, check)
        assert plain_graph.links(specs, None, check) == found
        # (from a columns submission's own ids and dependencies: the same links)
        for build in (plain_graph, pure):
            assert build.column_links(ids, deps, None, check) == found
            if len(index) == len(specs):
                assert build.column_links(ids, deps, index, check) == found
    assert plain_graph.sizes(specs) == pure.sizes(specs)
    n = len(specs)
    priorities = [rng.choice([0, 1]) for _ in range(n)]
    ranks = [rng.choice([1.0, 2.0]) for _ in range(n)]
    ranked = sorted(range(n), key=lambda i: (-priorities[i], -ranks[i], i))
    if rng.random() < 0.5:
        rng.shuffle(ranked)
    assert plain_graph.places(ranked, n, priorities, ranks) == pure.places(
        ranked, n, priorities, ranks
    )
    msg, frames = _submission(seed, bad=seed % 2 == 1)
    mine, theirs = plain_graph.wire_specs(msg.tasks, frames), pure.wire_specs(msg.tasks, frames)
    assert (mine is None) == (theirs is None)
    if mine is not None and theirs is not None:
        assert mine[0] == theirs[0] and mine[1] == theirs[1]


@pytest.mark.parametrize("seed", range(20))
def test_column_specs_are_the_constructors_specs_in_both_builds(seed: int) -> None:
    """``column_specs`` (what a columns submission's intake builds) makes, compiled and as .py,
    the specs ``TaskSpec(...)`` makes from the same columns: equal, the same fields in the same
    order in their ``__dict__``, the cost dict of a shape shared, the payload as bytes."""
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    ids = [f"t{i}" for i in range(n)]
    deps = [tuple(f"t{j}" for j in rng.sample(range(i), k=min(i, 3))) for i in range(n)]
    costs = [{"cpu": 1.0}, {"cpu": 2.0, "memory": 100.0}]
    cost_of = [rng.randrange(2) for _ in ids]
    kinds = ["variadic", "as_list"]
    inclusion = [rng.randrange(2) for _ in ids]
    priorities = [rng.choice([0, 0, 3, -1]) for _ in ids]
    payloads = [memoryview(b"p%d" % i) for i in range(n)] + [b"package"]
    expected = [
        TaskSpec(
            ids[i],
            deps[i],
            costs[cost_of[i]],
            bytes(payloads[i]),
            kinds[inclusion[i]],
            priority=priorities[i],
        )
        for i in range(n)
    ]
    for build in (plain_graph, pure):
        specs = build.column_specs(
            ids, deps, costs, cost_of, kinds, inclusion, priorities, payloads
        )
        assert specs == expected
        for spec, want in zip(specs, expected, strict=True):
            assert _read(spec) == _read(want)
            # (what it stores is the usual spec's, in field order, less fields at the default)
            kept = [(k, v) for k, v in vars(want).items() if k in vars(spec)]
            assert list(vars(spec).items()) == kept
            left = set(vars(want)) - set(vars(spec))
            assert left <= {*plain_graph.PLAIN_DEFAULTS, "argument_inclusion", "priority"}
            assert spec.cost is costs[cost_of[int(spec.id[1:])]]
            assert type(spec.payload) is bytes


@pytest.mark.parametrize("build", ["imported", "pure"])
def test_a_plain_spec_stores_only_what_is_not_a_default(build: str) -> None:
    """A W1 spec (variadic, priority 0) keeps id, deps, cost and payload; the rest it reads from
    the class, as the usual spec's equal values; another inclusion or priority is stored. The
    records' path (``wire_specs``) stores the same."""
    module = plain_graph if build == "imported" else pure
    costs = [{"cpu": 1.0}]
    specs = module.column_specs(
        ["a", "b", "c"],
        [(), ("a",), ()],
        costs,
        [0, 0, 0],
        ["variadic", "as_list"],
        [0, 1, 0],
        [0, 0, 2],
        [b"x", b"y", b"z"],
    )
    assert [list(vars(s)) for s in specs] == [
        ["id", "deps", "cost", "payload"],
        ["id", "deps", "cost", "payload", "argument_inclusion"],
        ["id", "deps", "cost", "payload", "priority"],
    ]
    usual = TaskSpec("a", (), costs[0], b"x")
    assert specs[0] == usual and _read(specs[0]) == _read(usual) and repr(specs[0]) == repr(usual)
    assert dataclasses.replace(specs[0], node="n1").node == "n1" and specs[0].node is None
    rows = [m.TaskMeta("a", (), {"cpu": 1}, "variadic", None, None, False, None, None, 0)]
    built = module.wire_specs(rows, [b"x"])
    assert built is not None and list(vars(built[0][0])) == ["id", "deps", "cost", "payload"]
    assert built[0][0] == usual


def test_links_of_specs_lets_the_loop_run_while_it_gathers_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``links`` reads the specs' ids and deps in a loop of its own (then ``column_links``): a
    big records run's loop lets the event loop run every ``YIELD_EVERY`` specs there too."""
    calls: list[int] = []
    monkeypatch.setattr(pure, "YIELD_EVERY", 4)
    monkeypatch.setattr(pure, "let_go", lambda: calls.append(1))
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(10)]  # (no deps)
    found = pure.links(specs, None, True)
    assert found is not None and found[0] == {s.id: () for s in specs}
    assert len(calls) == 2  # (after the 4th and the 8th)


def _walked(ranked: list[Any], n: int, priorities: list[int], ranks: list[float]) -> Any:
    """``places`` as its walk answers, task by task (the reference for its tied fast path)."""
    if len(ranked) != n:
        return None
    position, ordered, last = [-1] * n, [], -1
    for at, task in enumerate(ranked):
        i = int(task)
        if not 0 <= i < n or position[i] >= 0:
            return None
        if last >= 0 and (
            priorities[i] > priorities[last]
            or (priorities[i] == priorities[last] and ranks[i] > ranks[last])
        ):
            return None
        position[i] = at
        ordered.append(i)
        last = i
    return position, ordered


@pytest.mark.parametrize("seed", range(30))
def test_places_of_tied_tasks_are_the_walks_in_both_builds(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 50, 300])
    priorities = [rng.choice([0, 3])] * n
    ranks = [rng.choice([1.0, 2.5])] * n
    if seed % 5 == 1:
        priorities[rng.randrange(n)] = 1  # one task's priority off the others'
    if seed % 5 == 2:
        ranks[rng.randrange(n)] = 0.5  # one task's rank off the others'
    ranked: list[Any] = list(range(n))
    if seed % 3 == 1 and n > 1:
        a, b = rng.sample(range(n), 2)
        ranked[a], ranked[b] = ranked[b], ranked[a]  # tied keys in another order
    elif seed % 3 == 2:
        ranked[rng.randrange(n)] = rng.choice([n, -1, 0])  # not a permutation
    if seed % 7 == 3:
        ranked = ranked[:-1]  # too short
    expected = _walked(ranked, n, priorities, ranks)
    for build in (plain_graph, pure):
        assert build.places(ranked, n, priorities, ranks) == expected


@pytest.mark.parametrize("seed", range(8))
def test_column_specs_join_heads_and_tails_alike_in_both_builds(seed: int) -> None:
    """With code heads (protocol 6), a spec's payload is its head and its tail joined, as bytes:
    whatever the tail came as (bytes, as an upload's small frames are cut now; a view; a
    bytearray), empty heads and tails included, and whole where its ``head_of`` is -1."""
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    ids = [f"t{i}" for i in range(n)]
    heads = [rng.randbytes(rng.choice([0, 1, 40, 5000])) for _ in range(3)]
    head_of = [rng.choice([-1, 0, 1, 2]) for _ in ids]
    makers = [bytes, memoryview, bytearray, lambda b: memoryview(b).toreadonly()]
    tails = [rng.choice(makers)(rng.randbytes(rng.choice([0, 1, 17, 3000]))) for _ in ids]
    expected = [(heads[head_of[i]] if head_of[i] >= 0 else b"") + bytes(tails[i]) for i in range(n)]
    for build in (plain_graph, pure):
        specs = build.column_specs(
            ids,
            [()] * n,
            [{"cpu": 1.0}],
            [0] * n,
            ["variadic"],
            [0] * n,
            [0] * n,
            tails,
            heads,
            head_of,
        )
        assert [s.payload for s in specs] == expected
        assert all(type(s.payload) is bytes for s in specs)
