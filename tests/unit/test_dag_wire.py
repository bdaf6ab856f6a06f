"""DAG.wire_tasks and the one-pass validation: same order, same first error, fresh every call."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handoffd
from handoffd.dag import Function


def f(*args, **kwargs):
    return (args, kwargs)


def _random_dag(seed: int, n: int) -> handoffd.DAG:
    rng = random.Random(seed)
    dag = handoffd.DAG()
    for i in range(n):
        deps = [f"f{rng.randrange(i)}" for _ in range(rng.randrange(4))] if i else []
        dag.add_function(Function(id=f"f{i}", code=f, args=deps))
    return dag


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
def test_one_pass_order_is_kahns_order(seed: int, n: int) -> None:
    dag = _random_dag(seed, n)
    ids = list(dag.functions)
    random.Random(seed).shuffle(ids)  # insertion order is not the dependency order
    shuffled = handoffd.DAG()
    for fid in ids:
        shuffled.add_function(dag[fid])
    assert shuffled.topological_order() == shuffled._kahn()
    rows, payloads = shuffled.wire_tasks()
    assert [r[0] for r in rows] == shuffled._kahn() and len(payloads) == n


def test_rows_hold_what_to_specs_gives() -> None:
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=f, extra_args=[1], cost={"cpu": 2, "memory": 10}))
    dag.add_function(Function(id="i", code=f, type="inline"))
    dag.add_function(
        Function(id="b", code=f, args=["a", "i"], timeout=3, max_retries=2, priority=5, node="n1")
    )
    rows, payloads = dag.wire_tasks()
    specs = dag.to_specs()
    for row, payload, spec in zip(rows, payloads, specs, strict=True):
        assert row == (
            spec.id, spec.deps, spec.cost, spec.argument_inclusion, spec.node,
            spec.collocate_with, spec.inline, spec.max_retries, spec.timeout, spec.priority,
        )  # fmt: skip
        assert payload == spec.payload
    assert rows[2][8] == 3.0 and type(rows[2][8]) is float
    assert rows[1][2] == {} and rows[0][2] == {"cpu": 2.0, "memory": 10.0}


def test_a_function_problem_is_reported_before_an_earlier_missing_dependency() -> None:
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=f, args=["nowhere"]))
    dag.add_function(Function(id="b", code=f, priority="high"))  # type: ignore[arg-type]
    with pytest.raises(handoffd.ValidationError) as info:
        dag.wire_tasks()
    assert (info.value.kind, info.value.function_id) == ("invalid_option", "b")
    dag["b"].priority = 0
    with pytest.raises(handoffd.ValidationError) as info:
        dag.wire_tasks()
    assert (info.value.kind, info.value.function_id) == ("missing_dependency", "a")


def test_changes_after_a_submission_show_in_the_next() -> None:
    dag = handoffd.DAG().add_function(Function(id="a", code=f))
    dag.add_function(Function(id="b", code=f))
    first, _ = dag.wire_tasks()
    assert [r[0] for r in first] == ["a", "b"]
    dag["a"].args.append("b")  # mutated in place: no add_function
    dag["b"].cost = {"cpu": 2}
    dag.add_function(Function(id="c", code=f, extra_args=[7]))
    rows, payloads = dag.wire_tasks()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("b", (), {"cpu": 2.0}),
        ("c", (), {"cpu": 1.0}),
        ("a", ("b",), {"cpu": 1.0}),
    ]
    assert handoffd.values.loads(payloads[1])[1] == [7]
    dag["c"].args.append("a")
    dag["b"].args.append("c")
    with pytest.raises(handoffd.ValidationError) as info:
        dag.wire_tasks()
    assert info.value.kind == "cycle"


def test_payload_literals_load_as_given_plain_or_not() -> None:
    local = 3
    literals = [[1, (2.5, "x")], lambda: local, {"k": [None]}]
    dag = handoffd.DAG()
    dag.add_function(Function(id="plain", code=f, extra_args=[1, [2, {"a": b"b"}]]))
    dag.add_function(Function(id="closure", code=f, extra_args=literals))
    dag.add_function(Function(id="kw", code=f, kwargs={"n": 1}))
    _, payloads = dag.wire_tasks()
    code, extra, kwargs = handoffd.values.loads(payloads[0])
    assert code(*extra) == ((1, [2, {"a": b"b"}]), {}) and kwargs == {}
    _, extra, _ = handoffd.values.loads(payloads[1])
    assert extra[0] == [1, (2.5, "x")] and extra[1]() == 3 and extra[2] == {"k": [None]}
    assert handoffd.values.loads(payloads[2])[2] == {"n": 1}


@pytest.mark.parametrize("size", [0, 255, 256, 70_000])
def test_payload_of_any_code_and_literal_size_loads(size: int) -> None:
    blob = b"x" * size

    def closure(*args):  # pickled by value: its code is large, beside small by-reference code
        return blob, args

    for code in (f, closure):
        payload = handoffd.values.dumps_call(handoffd.values.dumps_code(code), [blob], {"k": 1})
        loaded, extra, kwargs = handoffd.values.loads(payload)
        assert extra == [blob] and kwargs == {"k": 1}
        assert loaded(1) == (((1,), {}) if code is f else (blob, (1,)))


@pytest.mark.parametrize("args", [[1], ["a", None], [["a"]], "a", ("a", 2)])
def test_bad_args_are_reported_before_references(args: object) -> None:
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=f, args=["nowhere"]))
    dag.add_function(Function(id="b", code=f, args=args))  # type: ignore[arg-type]
    with pytest.raises(handoffd.ValidationError) as info:
        dag.validate()
    assert (info.value.kind, info.value.function_id) == ("invalid_args", "b")
