"""handoffd.Argument: a hooked argument expands into an inline serialize function (the consumer's
node decides at run time whether and where it runs: tests/unit/test_executor_hooks.py) and an
inline deserialize in the consumer, which passes a plain value through; neither when the consumer
is known to share the producer's node (unless always=True); malformed Arguments are refused with
a clear error."""

from __future__ import annotations

import gzip
import pickle
import sys

import cloudpickle
import pytest

import handoffd
from handoffd import Argument, Function
from handoffd.arguments import DeserializeHook, Encoded, HookFailed, SerializeHook
from handoffd.worker import invoke

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def produce():
    return list(range(100))


def total(xs, *rest):
    return sum(xs)


def pack(value):
    return gzip.compress(pickle.dumps(value))


def unpack(data):
    return pickle.loads(gzip.decompress(data))


def hooked(producer="p", **extra):
    return Argument(producer, serialize=pack, deserialize=unpack, **extra)


def two(consumer_args, **consumer):
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=produce, node=consumer.pop("producer_node", None)))
    dag.add_function(Function(id="c", code=total, args=consumer_args, **consumer))
    return dag


def test_hooked_argument_expands_into_serialize_and_deserialize():
    dag = two([hooked()])
    sub = dag.submitted()
    assert list(sub.functions) == ["p", "c:p:serialize", "c:p:deserialize", "c"]
    ser, de, c = sub["c:p:serialize"], sub["c:p:deserialize"], sub["c"]
    assert ser.args == ["p"] and ser.collocate_with is None and ser.type == "inline"
    assert isinstance(ser.code, SerializeHook)
    assert de.args == [ser.id] and de.type == "inline" and isinstance(de.code, DeserializeHook)
    assert c.args == [de.id]
    assert dag["c"].args == [hooked()]  # the user's DAG is unchanged
    rows, _ = dag.wire_tasks()
    assert [r[0] for r in rows] == ["p", "c:p:serialize", "c:p:deserialize", "c"]


def test_hooks_round_trip_through_payloads():
    specs = {s.id: s for s in two([hooked()]).to_specs()}
    value = list(range(100))
    data = invoke.call(specs["c:p:serialize"].payload, [value])
    assert isinstance(data, Encoded) and unpack(data.data) == value
    assert pickle.loads(pickle.dumps(data)).data == data.data  # it crosses nodes as a pickle
    assert invoke.call(specs["c:p:deserialize"].payload, [data]) == value
    # A plain value (the consumer's node held it): no hook runs, it passes through as it is.
    assert invoke.call(specs["c:p:deserialize"].payload, [value]) is not None
    calls = []
    spy = DeserializeHook(lambda d: calls.append(d), "p", "c")
    assert spy(value) is value and calls == []


def test_always_runs_both_hooks_on_a_plain_value():
    specs = {s.id: s for s in two([hooked(always=True)]).to_specs()}
    value = list(range(10))
    assert invoke.call(specs["c:p:deserialize"].payload, [value]) == value
    seen = []
    both = DeserializeHook(
        lambda d: seen.append(d) or "decoded", "p", "c", SerializeHook(pack, "p", "c")
    )
    assert both(value) == "decoded" and unpack(seen[0]) == value


def test_an_inline_function_may_not_pose_as_a_serialize_hook():
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=produce))
    dag.add_function(Function(id="x:serialize", code=total, args=["p"], type="inline", cost={}))
    with pytest.raises(handoffd.ValidationError, match="reserved for the serialize hooks") as info:
        dag.validate()
    assert info.value.kind == "invalid_id"


@pytest.mark.parametrize(
    "consumer",
    [
        {"producer_node": "n1", "node": "n1"},  # both pinned to one node
        {"collocate_with": "p"},  # one collocation group
    ],
)
def test_no_hooks_when_the_consumer_is_known_to_share_the_node(consumer):
    dag = two([hooked()], **consumer)
    assert list(dag.submitted().functions) == ["p", "c"]
    assert dag.submitted()["c"].args == ["p"]
    forced = two([hooked(always=True)], **consumer)
    assert "c:p:serialize" in forced.submitted()


def test_an_inline_producer_runs_in_the_consumers_job_so_no_hooks():
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=produce, type="inline", cost={}))
    dag.add_function(Function(id="c", code=total, args=[hooked()]))
    assert list(dag.submitted().functions) == ["p", "c"]
    dag["c"].args = [hooked(always=True)]
    sub = dag.submitted()
    assert sub["c:p:serialize"].type == "inline" and sub["c:p:serialize"].collocate_with is None


def test_argument_without_hooks_is_a_plain_dependency():
    dag = two([Argument("p"), "p"])
    assert dag.submitted()["c"].args == ["p", "p"]
    assert [r[1] for r in dag.wire_tasks()[0]] == [(), ("p", "p")]


def test_same_producer_hooked_twice_gets_two_pairs():
    dag = two([hooked(), hooked()])
    assert list(dag.submitted().functions) == [
        "p",
        "c:p:serialize",
        "c:p:deserialize",
        "c:p#1:serialize",
        "c:p#1:deserialize",
        "c",
    ]


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        (Argument("p", serialize=pack), "no deserialize="),
        (Argument("p", serialize="gzip", deserialize=unpack), "must be a callable"),
        (Argument("", serialize=pack, deserialize=unpack), "must name a function"),
        (Argument("p", pack, unpack, always="yes"), "True or False"),
    ],
)
def test_malformed_arguments_are_refused(arg, needle):
    with pytest.raises(handoffd.ValidationError, match=needle) as info:
        two([arg]).validate()
    assert info.value.kind == "invalid_args" and info.value.function_id == "c"


def test_argument_naming_a_missing_function():
    with pytest.raises(handoffd.ValidationError) as info:
        two([hooked("nope")]).validate()
    assert info.value.kind == "missing_dependency"


def test_hook_errors_name_the_hook_argument_and_consumer():
    def broken(value):
        raise ValueError("bad codec")

    with pytest.raises(HookFailed, match="serialize hook .*broken of argument 'p' of function 'c'"):
        SerializeHook(broken, "p", "c")(1)
    with pytest.raises(HookFailed, match="returned str; it must return bytes"):
        SerializeHook(str, "p", "c")(1)
    with pytest.raises(HookFailed, match="deserialize hook .*unpack of argument 'p'.*BadGzipFile"):
        DeserializeHook(unpack, "p", "c")(Encoded(b"not gzip"))


def test_decorated_calls_take_arguments_with_refs():
    @handoffd.function
    def make():
        return [1, 2]

    @handoffd.function
    def use(xs, scale=1):
        return sum(xs) * scale

    with handoffd.DAG() as dag:
        p = make()
        c = use(Argument(p, serialize=pack, deserialize=unpack), scale=3)
    assert dag[c.id].args == [Argument(p.id, pack, unpack)] and dag[c.id].code is use.fn
    assert f"{c.id}:{p.id}:serialize" in dag.submitted()
