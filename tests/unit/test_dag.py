"""DAG model: building, every validation kind, order, critical path and the wire view."""

from __future__ import annotations

import threading

import pytest

import handoffd
from handoffd.dag import Function
from handoffd.worker import invoke


def f(*args, **kwargs):
    return (args, kwargs)


def fn(fid: str, **kw) -> Function:
    kw.setdefault("code", f)
    return Function(id=fid, **kw)


def build(*functions: Function) -> handoffd.DAG:
    dag = handoffd.new()
    for function in functions:
        dag.add_function(function)
    return dag


def expect(kind: str, function_id: str | None, dag: handoffd.DAG, **validate_kw) -> str:
    with pytest.raises(handoffd.ValidationError) as info:
        dag.validate(**validate_kw)
    assert info.value.kind == kind, info.value
    assert info.value.function_id == function_id, info.value
    return info.value.message


def test_function_defaults_follow_the_contract():
    function = Function(id="x", code=f)
    assert function.args == [] and function.extra_args == [] and function.kwargs == {}
    assert function.cost == {"cpu": 1}
    assert function.argument_inclusion == "variadic" and function.type == "regular"
    assert function.node is None and function.collocate_with is None
    assert function.max_retries is None and function.timeout is None and function.priority == 0
    # Default cost maps are not shared between functions.
    assert Function(id="y", code=f).cost is not function.cost


def test_add_function_chains_and_container_protocol():
    dag = handoffd.DAG()
    assert dag.add_function(fn("a")) is dag
    dag.add_function(fn("b", args=["a"])).add_function(fn("c", args=["b"]))
    assert len(dag) == 3
    assert [x.id for x in dag] == ["a", "b", "c"]
    assert dag["b"].args == ["a"]
    assert "c" in dag and "z" not in dag
    assert list(dag.functions) == ["a", "b", "c"]
    with pytest.raises(TypeError):
        dag.functions["d"] = fn("d")  # type: ignore[index]
    assert "3 functions" in repr(dag) and "a, b, c" in repr(dag)


def test_duplicate_id_rejected_at_add_time():
    dag = build(fn("a"))
    with pytest.raises(handoffd.ValidationError) as info:
        dag.add_function(fn("a", code=lambda: 1))
    assert info.value.kind == "duplicate_id" and info.value.function_id == "a"
    assert len(dag) == 1 and dag["a"].code is f


def test_duplicate_id_caught_by_validate_when_an_id_is_changed_later():
    dag = build(fn("a"), fn("b"))
    dag["b"].id = "a"
    expect("duplicate_id", "a", dag)


def test_missing_dependency():
    message = expect("missing_dependency", "b", build(fn("a"), fn("b", args=["a", "ghost"])))
    assert "'ghost'" in message


def test_collocate_with_missing_function_is_missing_dependency():
    message = expect("missing_dependency", "a", build(fn("a", collocate_with="ghost")))
    assert "collocate_with" in message and "'ghost'" in message


def test_cycle_reports_the_whole_path():
    dag = build(
        fn("src"), fn("a", args=["src", "c"]), fn("b", args=["a"]), fn("c", args=["b"]), fn("d")
    )
    message = expect("cycle", "a", dag)
    assert "a -> b -> c -> a" in message


def test_self_dependency_is_a_cycle():
    message = expect("cycle", "a", build(fn("a", args=["a"])))
    assert "a -> a" in message


def test_cycle_downstream_of_a_valid_prefix_and_long_cycles():
    n = 5000
    functions = [fn("f0", args=[f"f{n - 1}"])] + [
        fn(f"f{i}", args=[f"f{i - 1}"]) for i in range(1, n)
    ]
    message = expect("cycle", "f0", build(*functions))
    assert message.count(" -> ") == n
    assert "f0 -> f1 -> f2" in message and f"f{n - 1} -> f0" in message


@pytest.mark.parametrize(
    "cost",
    [
        {"cpu": -1},
        {"cpu": "two"},
        {"cpu": float("nan")},
        {"memory": "2GB"},
        {"cpu": float("inf")},
        {"": 1},
        {"gpu": True},
        ["cpu", 1],
    ],
)
def test_invalid_cost(cost):
    message = expect("invalid_cost", "x", build(fn("ok"), fn("x", cost=cost)))
    assert "cost" in message


def test_valid_costs_including_custom_kinds():
    build(fn("a", cost={"cpu": 4, "memory": 2000, "gpu": 0}), fn("b", cost={"fpga": 2})).validate()


@pytest.mark.parametrize(
    "extra",
    [{"node": "n1"}, {"cost": {"cpu": 2}}, {"collocate_with": "a"}, {"cost": {"gpu": 1}}],
)
def test_invalid_inline(extra):
    message = expect("invalid_inline", "i", build(fn("a"), fn("i", type="inline", **extra)))
    assert "inline" in message


def test_collocating_with_an_inline_function_is_invalid_inline():
    expect("invalid_inline", "b", build(fn("i", type="inline"), fn("b", collocate_with="i")))


def test_conflicting_pins_through_collocation():
    dag = build(
        fn("a", node="n1"), fn("b", collocate_with="a"), fn("c", collocate_with="b", node="n2")
    )
    message = expect("invalid_collocation", "c", dag)
    assert "'n1'" in message and "'n2'" in message
    expect("invalid_collocation", "s", build(fn("s", collocate_with="s")))


def test_invalid_code():
    expect("invalid_code", "x", build(fn("x", code=42)))
    expect("invalid_code", "y", build(fn("y", code="print('hi')")))


def test_bad_option_values():
    expect("invalid_argument_inclusion", "x", build(fn("x", argument_inclusion="splat")))
    expect("invalid_type", "x", build(fn("x", type="lazy")))
    expect("invalid_args", "x", build(fn("load"), fn("x", args="load")))
    expect("invalid_args", "x", build(fn("x", extra_args=5)))
    expect("invalid_args", "x", build(fn("x", kwargs={1: 2})))
    expect("invalid_option", "x", build(fn("x", max_retries=-1)))
    expect("invalid_option", "x", build(fn("x", timeout=0)))
    expect("invalid_option", "x", build(fn("x", priority=1.5)))
    with pytest.raises(handoffd.ValidationError) as info:
        handoffd.DAG().add_function(Function(id="", code=f))
    assert info.value.kind == "invalid_id"

    class Name(str):
        pass

    # add_function calls the full check only for an id that is not a non-empty str as such
    for bad in (5, None, b"x", Name("")):
        with pytest.raises(handoffd.ValidationError) as info:
            handoffd.DAG().add_function(Function(id=bad, code=f))  # type: ignore[arg-type]
        assert info.value.kind == "invalid_id"
    assert Name("n") in handoffd.DAG().add_function(Function(id=Name("n"), code=f))


def test_unknown_node_only_checked_against_given_nodes():
    dag = build(fn("a", node="gpu-box"), fn("b"))
    dag.validate()
    dag.validate(nodes={"gpu-box", "n2"})
    message = expect("unknown_node", "a", dag, nodes={"n1", "n2"})
    assert "'gpu-box'" in message and "n1" in message


def test_validation_error_is_a_handoff_error_with_a_helpful_message():
    with pytest.raises(handoffd.HandoffError) as info:
        build(fn("b", args=["a"])).validate()
    assert "missing_dependency" in str(info.value) and "'b'" in str(info.value)


def test_topological_order_puts_dependencies_first_and_keeps_insertion_ties():
    dag = build(
        fn("sink", args=["left", "right"]),
        fn("left", args=["root"]),
        fn("right", args=["root"]),
        fn("root"),
        fn("lonely"),
    )
    order = dag.topological_order()
    assert order == ["root", "lonely", "left", "right", "sink"]


def test_upward_ranks_and_critical_path():
    dag = build(fn("a"), fn("b", args=["a"]), fn("c", args=["a"]), fn("d", args=["b", "c"]))
    assert dag.upward_ranks() == {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}
    assert dag.critical_path_length() == 3.0
    estimates = {"a": 1.0, "b": 10.0, "c": 2.0, "d": 1.0}
    assert dag.upward_ranks(estimates)["a"] == 12.0
    assert dag.critical_path_length(lambda function: 2.0) == 6.0
    assert handoffd.DAG().critical_path_length() == 0.0


def test_to_specs_payload_round_trips_through_invoke():
    offset = 7
    dag = build(
        fn("a", code=lambda: 1),
        fn("i", code=lambda a: a + offset, args=["a"], type="inline"),
        fn(
            "b",
            code=lambda xs, scale, mode="slow": (sum(xs) * scale, mode),
            args=["a", "i"],
            extra_args=[3],
            kwargs={"mode": "fast"},
            argument_inclusion="as_list",
            cost={"cpu": 2, "memory": 0},
            max_retries=4,
            timeout=2,
            priority=5,
            node="n1",
        ),
    )
    specs = {s.id: s for s in dag.to_specs()}
    b = specs["b"]
    assert b.deps == ("a", "i") and b.cost == {"cpu": 2.0}
    assert (b.argument_inclusion, b.node, b.max_retries, b.timeout, b.priority) == (
        "as_list",
        "n1",
        4,
        2.0,
        5,
    )
    assert specs["i"].inline and specs["i"].cost == {}
    assert invoke.call(b.payload, [1, 8], "as_list") == (27, "fast")
    assert invoke.call(specs["i"].payload, [1]) == 8


def test_unpicklable_code_names_the_function():
    lock = threading.Lock()
    dag = build(fn("ok"), fn("bad", code=lambda: lock))
    with pytest.raises(handoffd.ValidationError) as info:
        dag.to_specs()
    assert info.value.kind == "unpicklable" and info.value.function_id == "bad"
    dag2 = build(fn("bad2", extra_args=[threading.Lock()]))
    with pytest.raises(handoffd.ValidationError) as info:
        dag2.to_specs()
    assert info.value.kind == "unpicklable" and info.value.function_id == "bad2"


def test_validating_ten_thousand_functions_is_not_recursive():
    # A chain deeper than the recursion limit proves the algorithms are iterative. Speed is measured
    # by bench/bench_dag.py, not asserted here (shared, noisy cores).
    n = 10_000
    dag = handoffd.DAG()
    dag.add_function(fn("f0"))
    for i in range(1, n):
        dag.add_function(fn(f"f{i}", args=[f"f{i - 1}"] + ([f"f{i - 2}"] if i > 1 else [])))
    dag.validate()
    order = dag.topological_order()
    assert dag.critical_path_length() == n
    assert order == [f"f{i}" for i in range(n)]
