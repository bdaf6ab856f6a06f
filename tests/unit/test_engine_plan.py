"""The engine plan (shared by the Dask and Ray adapters) rebuilds each call exactly as a handoffd
worker does, and maps costs to Ray's options; no engine needed."""

from __future__ import annotations

import pytest

import handoffd
from handoffd import Function
from handoffd.engines.plan import plan
from handoffd.engines.ray import ray_options


def add(*xs, bonus=0):
    return sum(xs) + bonus


def test_steps_skip_inline_functions_and_read_through_them():
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=add, extra_args=[1]))
    dag.add_function(Function(id="i", code=add, args=["a", "a"], type="inline", cost={}))
    dag.add_function(Function(id="c", code=add, args=["i", "a"], kwargs={"bonus": 10}))
    dag.add_function(
        Function(id="l", code=lambda xs, tag: (tag, xs), args=["a", "c"],
                 argument_inclusion="as_list", extra_args=["t"])
    )  # fmt: skip
    p = plan(dag)
    assert [s.id for s in p.steps] == ["a", "c", "l"] and p.results == ["a", "c", "l"]
    c = p.steps[1]
    assert c.deps == ["a"]  # one value, read by the inline function twice and by c once
    assert c.call(1) == (1 + 1) + 1 + 10
    assert p.steps[2].call(1, 13) == ("t", [1, 13])


def test_options_come_from_the_function_and_the_run():
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=add, node="n1", priority=4, timeout=2.0))
    dag.add_function(Function(id="b", code=add, collocate_with="a", max_retries=0))
    dag.add_function(Function(id="c", code=add, args=["b"], collocate_with="b"))
    a, b, c = plan(dag, max_retries=5, outputs=["c"]).steps
    assert (a.node, a.priority, a.timeout, a.retries) == ("n1", 4, 2.0, 5)
    assert b.retries == 0 and a.group == b.group == c.group is not None
    assert plan(dag, outputs=["c"]).results == ["c"]


def test_invalid_dags_are_refused_with_the_clients_rules():
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=add, args=["missing"]))
    with pytest.raises(handoffd.ValidationError, match="missing"):
        plan(dag)
    with pytest.raises(handoffd.ValidationError) as info:
        plan(handoffd.DAG())
    assert info.value.kind == "empty_dag"


def test_ray_options_map_costs():
    dag = handoffd.DAG()
    dag.add_function(
        Function(id="t", code=add, cost={"cpu": 2, "gpu": 1, "memory": 500, "fpga": 2},
                 max_retries=1)
    )  # fmt: skip
    options = ray_options(plan(dag).steps[0])
    assert options == {
        "num_cpus": 2.0,
        "num_gpus": 1.0,
        "memory": 500 * 1024 * 1024,
        "resources": {"fpga": 2.0},
        "max_retries": 1,
        "retry_exceptions": True,
        "name": "t",
    }
