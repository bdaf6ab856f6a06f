"""The decorator API compiles calls into the Functions a user would write by hand (or a Rebuild
template when the model cannot say the call), generates ids, and names the call line in errors."""

from __future__ import annotations

import pickle
import sys

import cloudpickle
import pytest

import handoffd
from handoffd.decorator import Rebuild, Ref, RefSlot
from handoffd.worker import invoke

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@handoffd.function
def load(path):
    return f"data:{path}"


@handoffd.function(cost={"cpu": 2, "memory": 500}, max_retries=2, priority=3)
def train(data, lr=0.1):
    return (data, lr)


@handoffd.function
def combine(items, scale=1):
    return [scale, *items]


@handoffd.function
def takes_id(id, value):  # noqa: A002 - a user function may well have a parameter named id
    return (id, value)


def here() -> int:
    return sys._getframe(1).f_lineno


def run_payload(dag, fid, dep_values):
    """Call one function of ``dag`` the way a worker does: its wire payload and dependency values."""
    specs = {s.id: s for s in dag.to_specs()}
    spec = specs[fid]
    return invoke.call(spec.payload, dep_values, spec.argument_inclusion)


def test_outside_a_block_it_is_the_plain_function():
    assert load("x") == "data:x"
    assert train("d", lr=0.5) == ("d", 0.5)
    assert load.__name__ == "load"


def test_calls_compile_to_plain_functions_with_generated_ids():
    with handoffd.DAG() as dag:
        d = load("s3://x")
        m = train(d, lr=0.2)
        m2 = train(d)
    assert isinstance(d, Ref) and (d.id, m.id, m2.id) == ("load-1", "train-1", "train-2")
    assert dag["load-1"].args == [] and dag["load-1"].extra_args == ["s3://x"]
    fn = dag["train-1"]
    assert fn.args == ["load-1"] and fn.kwargs == {"lr": 0.2} and fn.extra_args == []
    assert fn.cost == {"cpu": 2, "memory": 500} and fn.max_retries == 2 and fn.priority == 3
    assert fn.code is train.fn  # the user's function itself, not a wrapper
    assert run_payload(dag, "train-1", ["D"]) == ("D", 0.2)


def test_id_option_and_options_method():
    with handoffd.DAG() as dag:
        d = load("a", id="data")
        m = train.options(id="model", priority=9, node="n1", timeout=5.0)(d)
        t = takes_id("mine", d)  # the function has an `id` parameter: it gets the value
    assert (d.id, m.id) == ("data", "model")
    assert dag["model"].priority == 9 and dag["model"].node == "n1"
    assert dag["model"].timeout == 5.0
    assert t.id == "takes_id-1"
    assert run_payload(dag, t.id, ["V"]) == ("mine", "V")


def test_list_of_refs_alone_is_as_list():
    with handoffd.DAG() as dag:
        parts = [load(i) for i in range(3)]
        c = combine(parts, scale=2)
    fn = dag[c.id]
    assert fn.argument_inclusion == "as_list" and fn.args == [p.id for p in parts]
    assert fn.code is combine.fn and fn.kwargs == {"scale": 2}
    assert run_payload(dag, c.id, ["a", "b", "c"]) == [2, "a", "b", "c"]


def test_mixed_shapes_go_through_a_rebuild_template():
    with handoffd.DAG() as dag:
        a = load("a")
        b = load("b")
        c = combine({"x": a, "y": [b, 7]}, scale=a)
        t = combine((a, b))  # a tuple of Refs stays a tuple
        lit_first = train("literal", lr=b)
    fn = dag[c.id]
    assert isinstance(fn.code, Rebuild) and fn.args == ["load-1", "load-2", "load-1"]
    assert fn.extra_args == [([{"x": RefSlot(0), "y": [RefSlot(1), 7]}], {"scale": RefSlot(2)})]
    # Rebuild and its template survive the worker's round trip (payload pickled, then called).
    assert pickle.loads(pickle.dumps(fn.extra_args)) == fn.extra_args

    def combine_dict(items, scale=1):
        return (items, scale)

    assert Rebuild(combine_dict)("A", "B", "A", fn.extra_args[0]) == (
        {"x": "A", "y": ["B", 7]},
        "A",
    )
    assert dag[t.id].code is not combine.fn  # not as_list: that would pass a list
    assert run_payload(dag, t.id, ["A", "B"]) == [1, "A", "B"]
    assert run_payload(dag, lit_first.id, ["B"]) == ("literal", "B")


def test_tuple_of_refs_arrives_as_a_tuple():
    @handoffd.function
    def kinds(items):
        return type(items).__name__, list(items)

    with handoffd.DAG() as dag:
        a = load("a")
        t = kinds((a, a))
    assert run_payload(dag, t.id, ["A", "A"]) == ("tuple", ["A", "A"])


def test_inline_and_collocate_with_a_ref():
    @handoffd.function(inline=True, cost={})
    def parse(x):
        return x.upper()

    with handoffd.DAG() as dag:
        d = load("a")
        p = parse(d)
        m = train.options(collocate_with=d)(p)
    assert dag[p.id].type == "inline" and dag[m.id].collocate_with == d.id
    dag.validate()


def test_generated_ids_skip_ids_already_taken():
    with handoffd.DAG():
        load("x", id="load-1")
        second = load("y")
    assert second.id == "load-2"


def test_refs_of_another_dag_are_refused_at_the_call_line():
    with handoffd.DAG():
        other = load("a")
    with handoffd.DAG():
        with pytest.raises(handoffd.ValidationError) as info:
            line = here() + 1
            train(other)
    assert info.value.kind == "missing_dependency"
    assert f"{__file__}:{line}" in str(info.value)


def test_bad_option_fails_at_the_call_line():
    with handoffd.DAG():
        with pytest.raises(handoffd.ValidationError) as info:
            line = here() + 1
            train.options(cost={"memory": "2GB"})("x")
    assert info.value.kind == "invalid_cost" and f"{__file__}:{line}" in str(info.value)
    with pytest.raises(TypeError, match="unknown option"):
        train.options(gpus=1)
    with pytest.raises(TypeError, match="id="):
        handoffd.function(id="x")(lambda: 1)


def test_duplicate_id_names_the_call_line():
    with handoffd.DAG():
        load("a", id="same")
        with pytest.raises(handoffd.ValidationError) as info:
            line = here() + 1
            load("b", id="same")
    assert info.value.kind == "duplicate_id" and f":{line}" in str(info.value)


def test_errors_found_at_the_block_end_name_the_call_line():
    with pytest.raises(handoffd.ValidationError) as info:
        with handoffd.DAG():
            a = load.options(node="n1")("a")
            line = here() + 1
            train.options(collocate_with=a, node="n2")("x")
    assert info.value.kind == "invalid_collocation"
    assert f"{__file__}:{line}" in str(info.value)


def test_unpicklable_literal_names_the_call_line():
    import threading

    with handoffd.DAG() as dag:
        line = here() + 1
        load(threading.Lock())
    with pytest.raises(handoffd.ValidationError) as info:
        dag.wire_tasks()
    assert info.value.kind == "unpicklable" and f"{__file__}:{line}" in str(info.value)


def test_a_ref_outside_its_block_is_a_clear_error():
    with handoffd.DAG():
        d = load("a")
    with pytest.raises(TypeError, match="outside a `with handoffd.DAG\\(\\)` block"):
        train(d)
    with pytest.raises(TypeError, match="cannot be iterated"):
        a, b = d  # noqa: F841


def test_nested_blocks_add_to_the_innermost_dag():
    with handoffd.DAG() as outer:
        a = load("a")
        with handoffd.DAG() as inner:
            b = load("b")
        c = load("c")
    assert list(outer.functions) == [a.id, c.id] and list(inner.functions) == [b.id]
    assert load("plain") == "data:plain"
