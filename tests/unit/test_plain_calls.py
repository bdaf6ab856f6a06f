"""A worker's plain call (``invoke.call_plain``, a job without inputs): what it returns, raises and
decodes is ``invoke.run``'s on every payload, and a one-int payload whose code part was seen before
is read without unpickling (its function decoded once, not once per argument)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd import values
from handoffd.worker import invoke

pytestmark = pytest.mark.timeout(60)


def ident(*args: Any, **kwargs: Any) -> tuple:
    return args, kwargs


def negate(x: int) -> int:
    return -x


def lists(xs: list, *rest: Any) -> tuple:
    return xs, rest


def boom(x: int) -> int:
    raise KeyError(x)


def _outcome(call: Any, payload: bytes, inclusion: str) -> tuple:
    try:
        return ("ok", call(payload, inclusion))
    except Exception as exc:  # (the same error, raised by the same line of user code or Python)
        return ("error", type(exc), str(exc))


def _literals(rng: random.Random) -> tuple[list, dict]:
    pick = rng.random()
    edges = (0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1)
    if pick < 0.6:  # one int: the fast path's shape, its edges and beyond
        return [rng.choice(edges) if rng.random() < 0.4 else rng.randint(-(2**40), 2**40)], {}
    if pick < 0.7:
        return [rng.randint(0, 9), rng.randint(0, 9)], {}
    if pick < 0.8:
        return [True], {}  # a bool is not an int here
    if pick < 0.9:
        return [rng.randint(0, 9)], {"k": 1}
    return ["s" * rng.randint(0, 300)], {}


def test_a_plain_call_does_what_run_does_on_random_payloads() -> None:
    rng = random.Random(1322)
    codes = [values.dumps_code(fn) for fn in (ident, negate, lists, boom)]
    codes.append(values.dumps_code(lambda *a: sum(map(len, map(str, a)))))
    codes.append(values.dumps_code(lambda *a, _pad="x" * 70_000: len(a)))  # a BINBYTES code part
    for _ in range(3000):
        code = rng.choice(codes)
        args, kwargs = _literals(rng)
        if code == codes[1] and (len(args) != 1 or kwargs or type(args[0]) is str):
            continue
        payload = values.dumps_call(code, args, kwargs)
        payload = bytes(bytearray(payload))  # a new object, as a job's slice of its message
        inclusion = "as_list" if code == codes[2] else "variadic"
        expected = _outcome(lambda p, i: invoke.run(p, [], i), payload, inclusion)
        assert _outcome(invoke.call_plain, payload, inclusion) == expected


def test_a_one_int_call_of_the_last_code_is_not_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoke, "_code_parts", {})
    code = values.dumps_code(negate)
    for _ in range(2):  # (learns the code part from the first one-int payload written as such)
        assert invoke.call_plain(values.dumps_call(code, [5], {})) == -5
    decoded: list[bytes] = []
    decode = invoke.decode_payload
    monkeypatch.setattr(invoke, "decode_payload", lambda p: decoded.append(p) or decode(p))
    for i in (0, 7, 300, 70_000, -(2**31), 2**31 - 1):
        assert invoke.call_plain(values.dumps_call(code, [i], {})) == -i
    assert decoded == []
    assert invoke.call_plain(values.dumps_call(code, [2**31], {})) == -(2**31)  # not a BININT
    assert len(decoded) == 1  # anything else still goes through decode_payload


def test_functions_taking_turns_are_each_read_without_unpickling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(invoke, "_code_parts", {})  # (room for all three whatever ran before)
    fns = [negate, lambda x: x + 1, lambda x, _pad="p" * 40: x * 2]
    codes = [values.dumps_code(fn) for fn in fns]
    for code, fn in zip(codes * 2, fns * 2, strict=True):  # (a first payload is pickled whole)
        assert invoke.call_plain(values.dumps_call(code, [4], {})) == fn(4)
    decoded: list[bytes] = []
    decode = invoke.decode_payload
    monkeypatch.setattr(invoke, "decode_payload", lambda p: decoded.append(p) or decode(p))
    for i in range(30):
        fn, code = fns[i % 3], codes[i % 3]
        assert invoke.call_plain(values.dumps_call(code, [i], {})) == fn(i)
    assert decoded == []


def test_a_look_alike_payload_is_not_read_as_a_one_int_call() -> None:
    # Literals that end like a one-int call's but are not: the code part must end where they start.
    tricky = values.dumps_call(values.dumps_code(ident), [b"C\x0c\x80\x05]J\x01\x00\x00\x00"], {})
    assert invoke.call_plain(tricky) == invoke.run(tricky, [])
    assert not invoke._code_part(tricky, len(tricky) - invoke._LITERALS_SIZE)
    code = values.dumps_code(negate)
    payload = values.dumps_call(code, [3], {})
    assert invoke._code_part(payload, len(payload) - invoke._LITERALS_SIZE)
    assert not invoke._code_part(payload, len(payload) - invoke._LITERALS_SIZE - 1)
