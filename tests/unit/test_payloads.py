"""Call payloads pickle each callable once per DAG; literals go through plain pickle when plain."""

from __future__ import annotations

import builtins
import copyreg
import pickle
from dataclasses import dataclass
from typing import Any

import pytest

from handoffd import DAG, Function, resources, values
from handoffd.worker import invoke


@dataclass
class Box:
    v: int


def add(a, b=0):
    return a + b


def test_payloads_round_trip_and_share_the_callable():
    dag = DAG()
    for i in range(5):
        dag.add_function(Function(id=f"f{i}", code=add, extra_args=[i], kwargs={"b": 10}))
    dag.add_function(Function(id="bare1", code=add, args=["f0"]))
    dag.add_function(Function(id="bare2", code=add, args=["f1"]))
    specs = {s.id: s for s in dag.to_specs()}
    assert [invoke.call(specs[f"f{i}"].payload, []) for i in range(5)] == [10, 11, 12, 13, 14]
    assert specs["bare1"].payload is specs["bare2"].payload
    assert invoke.call(specs["bare1"].payload, [4]) == 4
    # each payload loads like the old (code, extra_args, kwargs) triple
    code, extra, kwargs = pickle.loads(specs["f3"].payload)
    assert code is add and extra == [3] and kwargs == {"b": 10}


def test_non_plain_literals_still_ship_by_value():
    lam = lambda x: x + 1  # noqa: E731 - a lambda on purpose: only cloudpickle ships it
    payload = values.dumps_call(values.dumps_code(add), [Box(2)], {"b": lam})
    code, extra, kwargs = pickle.loads(payload)
    assert extra == [Box(2)] and kwargs["b"](1) == 2
    assert values._plain([1, "a", (2.0, None, b"x"), {"k": [True]}])
    assert not values._plain([Box(1)])


def test_parse_cached_matches_parse():
    assert resources.parse_cached({"cpu": 1}) == resources.parse({"cpu": 1}) == {"cpu": 1.0}
    first = resources.parse_cached({"cpu": 2, "memory": 10})
    first["cpu"] = 99.0  # callers get their own dict
    assert resources.parse_cached({"cpu": 2, "memory": 10}) == {"cpu": 2.0, "memory": 10.0}
    for bad in ({"cpu": True}, {"cpu": "1"}, {"cpu": -1}, {"cpu": [1]}, {1: 1}, "cpu"):
        with pytest.raises(resources.ResourceError):
            resources.parse(bad)  # type: ignore[arg-type]
        with pytest.raises(resources.ResourceError):
            resources.parse_cached(bad)  # type: ignore[arg-type]


def test_a_job_decodes_its_payload_once_and_calls_with_its_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[bytes] = []
    decode = invoke.decode_payload
    monkeypatch.setattr(invoke, "decode_payload", lambda p: decoded.append(p) or decode(p))
    payload = values.dumps_call(values.dumps_code(add), [], {"b": 10})
    one = ("value", values.dumps(1))
    assert invoke.run(payload, [one]) == 11
    assert decoded == [payload]
    lists = values.dumps_call(values.dumps_code(lambda xs: sum(xs)), [], {})
    assert invoke.run(lists, [one, one], "as_list") == 2
    assert invoke.run(payload, [("inline", payload, "variadic", [one])]) == 21  # (1 + 10) + 10


def test_the_last_code_is_found_by_comparing_not_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Counted(dict):
        gets = 0

        def get(self, key, default=None):
            Counted.gets += 1
            return super().get(key, default)

    monkeypatch.setattr(values, "_code_cache", Counted())
    code = values.dumps_code(add)
    first = values.load_code(bytes(bytearray(code)))  # each a new bytes object, as a job's slice
    assert values.load_code(bytes(bytearray(code))) is first is add
    assert Counted.gets == 1
    other = values.dumps_code(Box)
    assert values.load_code(other) is Box and values.load_code(bytes(bytearray(code))) is add
    assert Counted.gets == 3


def test_a_payload_names_its_call_wrapper_by_extension_code_not_by_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = values.dumps_call(values.dumps_code(add), [3], {})
    imported: list[str] = []
    real_import = builtins.__import__

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", counting)
    for _ in range(2):  # the first load fills copyreg's cache; neither looks the module up
        assert invoke.decode_payload(bytes(bytearray(payload)))[1] == (3,)
    assert "handoffd.values" not in imported


def test_a_payload_is_written_as_every_build_reads_it_and_read_by_extension_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = values.dumps_call(values.dumps_code(add), [1], {"b": 2})
    assert payload.startswith(values._CALL_GLOBAL)  # the wire's bytes: _call as a global
    assert values.loads_call(payload) == pickle.loads(payload) == (add, [1], {"b": 2})
    # a process where the code was taken before us reads the global as written
    monkeypatch.setattr(values, "_read_start", None)
    copyreg.remove_extension("handoffd.values", "_call", values.CALL_CODE)
    copyreg.add_extension("someone.else", "thing", values.CALL_CODE)
    try:
        assert values.loads_call(payload) == (add, [1], {"b": 2})
        assert values._read_start is values._CALL_GLOBAL
    finally:
        copyreg.remove_extension("someone.else", "thing", values.CALL_CODE)
    monkeypatch.setattr(values, "_read_start", None)
    assert values.loads_call(payload) == (add, [1], {"b": 2})  # (ours again, for other tests)
    assert values._read_start == b"\x80\x05\x82" + bytes((values.CALL_CODE,))


def test_one_int_argument_is_written_without_a_pickler_and_loads_as_pickle_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """([one int], {}) literals are written by hand once the code's head is known: the payload
    loads (pickle and loads_call) to the same call as the general way's, for ints across the
    4-byte range; bools, bigger ints and other shapes go the general way."""
    import random as _random

    rng = _random.Random(20)
    monkeypatch.setattr(values, "_heads", {})
    code = values.dumps_code(add)
    general = values.dumps_call(code, [7], {})  # (the first: the head made)
    assert values.dumps_call(code, [7], {}) != general  # the hand-written literals
    edges = [0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, -(2**31)]
    for v in edges + [rng.randint(-(2**31), 2**31 - 1) for _ in range(500)]:
        payload = values.dumps_call(code, [v], {})
        fn, extra_args, kwargs = pickle.loads(payload)
        assert (extra_args, kwargs) == ([v], {}) and type(extra_args[0]) is int
        assert values.loads_call(payload)[1:] == ([v], {})
        assert fn(extra_args[0], 1) == v + 1
    for other in ([True], [2**31], [-(2**31) - 1], [1, 2], [1.0], ["1"]):
        payload = values.dumps_call(code, other, {})
        _, extra_args, kwargs = pickle.loads(payload)
        assert extra_args == other and [type(a) for a in extra_args] == [type(a) for a in other]


def test_call_tail_of_one_int_is_what_dumps_call_writes_after_the_head() -> None:
    """A columns submission's tail (``call_tail``) joined to its head loads as ``dumps_call``'s
    payload, across the 4-byte range and past it (a bigger int, a bool: the general way)."""
    import random as _random

    rng = _random.Random(21)
    code = values.dumps_code(add)
    head = values.call_head(code)
    edges = [0, 1, -1, 255, 65536, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**70, True, False]
    for v in edges + [rng.randint(-(2**40), 2**40) for _ in range(500)]:
        tail = values.call_tail([v], {})
        assert head + tail == values.dumps_call(code, [v], {})
        fn, extra_args, kwargs = values.loads_call(head + tail)
        assert (extra_args, kwargs) == ([v], {}) and type(extra_args[0]) is type(v)
        assert fn(extra_args[0], 1) == v + 1
