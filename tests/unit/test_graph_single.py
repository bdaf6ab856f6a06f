"""A run of one function (every one-task ``execute``, W3) gets its graph without the general walk
(``graph._single``), and that graph is the one the walk builds (issue 13, single-task latency)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd.errors import ValidationError
from handoffd.scheduler import graph
from handoffd.scheduler.graph import TaskGraph, build_graph
from handoffd.scheduler.placement import order
from handoffd.spec import TaskSpec


def _fields(g: TaskGraph) -> dict[str, Any]:
    return {name: getattr(g, name) for name in TaskGraph.__slots__}


def test_a_one_function_run_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    def walked(*_: Any) -> Any:
        raise AssertionError("a one-function run went through the general walk")

    monkeypatch.setattr(graph, "_walk", walked)
    g = build_graph([TaskSpec("f", (), {"cpu": 1.0}, b"p", node="n1")], None, order)
    assert [s.id for s in g.regular] == ["f"] and g.placement_order == [0] and g.wanted == {"f"}


@pytest.mark.parametrize("seed", range(40))
def test_the_shortcut_builds_the_graph_the_walk_builds(seed: int) -> None:
    rng = random.Random(seed)
    cost = {"cpu": rng.choice([0.0, 0.5, 1.0, 2.0])}
    if rng.random() < 0.5:
        cost["memory"] = float(rng.randint(1, 4096))
    spec = TaskSpec(
        rng.choice(["f", "task-1", "x" * 40]),
        (),
        cost if rng.random() < 0.9 else {},
        b"payload",
        node=rng.choice([None, None, "n1"]),
        max_retries=rng.choice([None, 0, 5]),
        timeout=rng.choice([None, 1.5]),
        priority=rng.randint(-5, 100),
    )
    outputs = rng.choice([None, (), (spec.id,), ("other",), [spec.id, "other"]])
    ranking = rng.choice([order, None])
    assert _fields(build_graph([spec], outputs, ranking)) == _fields(
        graph._walk([spec], outputs, ranking)
    )


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (TaskSpec("f", ("f",), {"cpu": 1.0}, b"p"), "cycle"),
        (TaskSpec("f", ("g",), {"cpu": 1.0}, b"p"), "missing_dependency"),
        (TaskSpec("f", (), {"cpu": 1.0}, b"p", collocate_with="g"), "missing_dependency"),
        (TaskSpec("f", (), {"cpu": 1.0}, b"p", collocate_with=""), "missing_dependency"),
        (TaskSpec("f", (), {"cpu": 1.0}, b"p", node="n1", inline=True), "invalid_inline"),
    ],
)
def test_a_one_function_run_the_walk_refuses_is_still_refused(spec: TaskSpec, kind: str) -> None:
    with pytest.raises(ValidationError) as raised:
        build_graph([spec], None, order)
    assert raised.value.kind == kind


def test_an_inline_function_alone_is_walked() -> None:
    g = build_graph([TaskSpec("f", (), {}, b"p", inline=True)], None, order)
    assert g.regular == [] and list(g.inline) == ["f"]


@pytest.mark.parametrize("backend", ["cython", "python"])
@pytest.mark.parametrize("seed", range(30))
def test_a_lone_task_is_ranked_as_the_core_ranks_it(backend: str, seed: int) -> None:
    """``_single`` answers a plain lone task's ranking itself: what each core backend answers
    (and a priority or size the core would refuse still goes to it)."""
    rng = random.Random(seed)
    cost: dict[str, Any] = {}
    for kind in rng.sample(["cpu", "memory", "gpu"], rng.randint(0, 3)):
        cost[kind] = rng.choice([0, 1, 3, 0.0, 0.25, 2.0, 1e300, 4096.0])
    priority = rng.choice([0, -1, 7, 2**63 - 1, -(2**63), rng.randint(-(10**6), 10**6)])
    spec = TaskSpec("f", (), cost, b"p", priority=priority)

    def ranked(*args: Any) -> tuple[list[int], list[float]]:
        return order(*args, backend=backend)

    walked = _fields(graph._walk([spec], None, ranked))
    assert _fields(build_graph([spec], None, ranked)) == walked
    assert graph._plain_rank(spec)  # (these are all plain: the shortcut answered)


@pytest.mark.parametrize("priority", [2**63, -(2**63) - 1, True, 1.5])
def test_a_priority_the_core_refuses_is_still_refused(priority: Any) -> None:
    spec = TaskSpec("f", (), {"cpu": 1.0}, b"p", priority=priority)
    assert not graph._plain_rank(spec)
    with pytest.raises(ValueError):
        build_graph([spec], None, order)
