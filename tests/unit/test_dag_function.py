"""A Function holds only what it was given (``handoffd.dag_function``): its mutable defaults made
on their first read and kept, the dataclass's fields, repr, equality and replace unchanged, and the
client's checks of a big plain DAG (``plain``, ``validate``, ``dag_columns``) reading a function
without making its defaults."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import pytest

import handoffd
from handoffd import dag_columns
from handoffd.client_one import plain_function
from handoffd.dag import plain

pytestmark = pytest.mark.timeout(60)

_W1_HELD = {"id", "code", "extra_args"}


def _noop(i: Any) -> Any:
    return i


def _every_field(**changes: Any) -> handoffd.Function:
    """A function with every field given as the defaults are."""
    fields: dict[str, Any] = {
        "id": "a",
        "code": _noop,
        "args": [],
        "extra_args": [1],
        "kwargs": {},
        "cost": {"cpu": 1},
        "argument_inclusion": "variadic",
        "node": None,
        "collocate_with": None,
        "type": "regular",
        "max_retries": None,
        "timeout": None,
        "priority": 0,
        "parallelism": 1,
        "batch_size": None,
        "batch_timeout": None,
        "init": None,
    }
    fields.update(changes)
    return handoffd.Function(**fields)


def test_a_function_holds_only_what_it_was_given() -> None:
    fn = handoffd.Function(id="a", code=_noop, extra_args=[1])
    assert set(vars(fn)) == _W1_HELD
    pinned = handoffd.Function("b", _noop, node="n1", priority=2)
    assert set(vars(pinned)) == {"id", "code", "node", "priority"}


def test_mutable_defaults_are_made_on_read_and_kept() -> None:
    one, two = handoffd.Function("a", _noop), handoffd.Function("b", _noop)
    assert one.args == [] and one.args is one.args and one.args is not two.args
    one.args.append("b")
    one.kwargs["k"] = 1
    one.cost["memory"] = 64
    one.extra_args.append(5)
    assert (one.args, one.kwargs, one.cost, one.extra_args) == (
        ["b"],
        {"k": 1},
        {"cpu": 1, "memory": 64},
        [5],
    )
    assert (two.args, two.kwargs, two.cost, two.extra_args) == ([], {}, {"cpu": 1}, [])
    one.args = ["c"]
    assert one.args == ["c"]


def test_the_dataclass_is_as_before() -> None:
    fn = handoffd.Function(id="a", code=_noop, extra_args=[1])
    full = _every_field()
    assert fn == full and repr(fn) == repr(full)
    assert [f.name for f in dataclasses.fields(handoffd.Function)] == list(
        inspect.signature(handoffd.Function).parameters
    )
    assert dataclasses.replace(fn, node="n1") == _every_field(node="n1")
    assert pickle.loads(pickle.dumps(fn)) == fn
    assert copy.deepcopy(full) == full
    assert handoffd.Function("a", _noop, [], [1]) == fn  # positional, in the fields' order
    assert fn.inline is False and handoffd.Function("i", _noop, type="inline").inline


@pytest.mark.parametrize(
    "given",
    [
        {"priority": False},  # an equal value of another type is kept as given
        {"priority": 1.0},
        {"args": "a"},
        {"args": None},
        {"extra_args": (1,)},
        {"argument_inclusion": ["variadic"]},  # unhashable: told apart, not raised
        {"argument_inclusion": "spread"},
        {"code": None},
        {"cost": {"cpu": 2}},
        {"timeout": 1.0},
    ],
)
def test_a_value_given_is_kept_and_checked(given: dict[str, Any]) -> None:
    fn = handoffd.Function("a", **{"code": _noop, **given})
    for name, value in given.items():
        assert getattr(fn, name) is value
    assert not plain(fn)


def test_plain_checks_do_not_make_the_defaults() -> None:
    dag = handoffd.DAG()
    for i in range(5):
        dag.add_function(handoffd.Function(id=f"n{i}", code=_noop, extra_args=[i]))
    dag.add_function(handoffd.Function(id="sum", code=_noop, args=["n0", "n1"]))
    assert all(plain(fn) for fn in dag)
    dag.validate()
    built = dag_columns.plain_columns(
        dag, policy="binpack", max_retries=3, outputs=None, packages=(), priority=0
    )
    assert built is not None and list(built[0].ids) == ["n0", "n1", "n2", "n3", "n4", "sum"]
    assert all(set(vars(dag[f"n{i}"])) == _W1_HELD for i in range(5))
    assert set(vars(dag["sum"])) == {"id", "code", "args"}
    one = handoffd.DAG().add_function(handoffd.Function(id="x", code=_noop, extra_args=[1]))
    assert plain_function(one) is one["x"] and set(vars(one["x"])) == _W1_HELD


def test_a_function_read_or_given_in_full_builds_the_same_columns() -> None:
    def dag_of(make: Any) -> handoffd.DAG:
        dag = handoffd.DAG()
        for i in range(4):
            dag.add_function(make(i))
        return dag

    options: dict[str, Any] = {
        "policy": "binpack",
        "max_retries": 3,
        "outputs": None,
        "packages": (),
        "priority": 0,
    }
    lean = dag_of(lambda i: handoffd.Function(id=f"n{i}", code=_noop, extra_args=[i]))
    full = dag_of(lambda i: _every_field(id=f"n{i}", extra_args=[i]))
    read = dag_of(lambda i: handoffd.Function(id=f"n{i}", code=_noop, extra_args=[i]))
    for fn in read:
        assert fn.cost == {"cpu": 1} and fn.kwargs == {}  # (made by the reads)
    built = []
    for dag in (lean, full, read):
        made = dag_columns.plain_columns(dag, **options)
        assert made is not None
        columns, payloads = made
        built.append(([getattr(columns, name) for name in columns.__slots__], payloads))
    assert built[0] == built[1] == built[2]
    read["n2"].kwargs["k"] = 1  # a default made, then changed: no longer plain
    assert dag_columns.plain_columns(read, **options) is None
