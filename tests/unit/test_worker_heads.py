"""``_heads.headed`` compiled and as its ``.py`` run as plain Python give ``values.one_int_run``'s
answer for every list of bytes payloads: runs of one-int calls of one function (ints of every
width, the 32-bit edges), and the same runs with one payload changed anywhere (a byte of its
start, of its close, its length, a byte more or less in its int, an int's pickle opcode), one
of another function, another
literal form (two ints, a string, a big int), a payload not bytes, and empty or one-payload
lists. And ``calls``, the payloads a received dispatch's one-int calls stand for, is
``column_codes.call_payloads`` byte for byte in both builds."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd import values
from handoffd.protocol.column_codes import call_payloads
from handoffd.worker import _heads, _pipe

pytestmark = pytest.mark.timeout(120)

PURE = pure(_heads, "handoffd_worker_heads_pure")


def f(i: int) -> int:
    return i


def other(i: int) -> int:
    return i + 1


def _code(fn: Any) -> bytes:
    code = values.dumps_code(fn)
    values.dumps_call(code, [0], {})  # (its head kept: the next calls take the one-int form)
    return code


CODE, OTHER = _code(f), _code(other)
_EDGES = (0, 1, -1, 255, 256, 65535, -(2**31), 2**31 - 1, 2**24, -(2**24))


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(_heads, PURE)


def _run(rng: random.Random) -> list[Any]:
    n = rng.choice((1, 2, 3, rng.randint(4, 70)))
    ints = [
        rng.choice(_EDGES) if rng.random() < 0.3 else rng.randint(-(2**31), 2**31 - 1)
        for _ in range(n)
    ]
    payloads: list[Any] = [values.dumps_call(CODE, [i], {}) for i in ints]
    if rng.random() < 0.6:
        return payloads
    at = rng.randrange(n)
    one = payloads[at]
    cut = len(one) - 4 - len(values._ONE_INT_CLOSE)
    change = rng.randrange(10)
    if change == 0:  # a byte of its start
        k = rng.randrange(cut)
        payloads[at] = one[:k] + bytes([one[k] ^ 1]) + one[k + 1 :]
    elif change == 1:  # a byte of its close
        k = rng.randrange(cut + 4, len(one))
        payloads[at] = one[:k] + bytes([one[k] ^ 0x40]) + one[k + 1 :]
    elif change == 2:  # one byte longer or shorter
        payloads[at] = one + b"." if rng.random() < 0.5 else one[:-1]
    elif change == 3:
        payloads[at] = values.dumps_call(OTHER, [rng.randint(0, 9)], {})
    elif change == 4:
        payloads[at] = values.dumps_call(CODE, [1, 2], {})
    elif change == 5:
        payloads[at] = values.dumps_call(CODE, ["abcd"], {})
    elif change == 6:
        payloads[at] = values.dumps_call(CODE, [2**40], {})
    elif change == 7:  # the int's own opcode (BININT, 'J') changed: the start differs there
        payloads[at] = one[: cut - 1] + b"K" + one[cut:]
    elif change == 8:  # a byte more or less where its int is: its start and close still fit
        payloads[at] = (
            one[: cut + 1] + one[cut:] if rng.random() < 0.5 else one[:cut] + one[cut + 1 :]
        )
    else:  # not bytes (a run never holds one: answered None, never read as a call)
        payloads[at] = bytearray(one) if rng.random() < 0.5 else memoryview(one)
    return payloads


@pytest.mark.parametrize("seed", range(6))
def test_both_builds_answer_as_one_int_run(seed: int) -> None:
    rng = random.Random(seed)
    headed_runs = 0
    for _ in range(400):
        payloads = _run(rng)
        expected = (
            values.one_int_run(payloads)
            if all(type(p) is bytes for p in payloads)
            else None  # (one_int_run reads any bytes-like; a run sends only bytes)
        )
        for build in (_heads, PURE):
            got = build.headed(payloads)
            assert got == expected, (build.__file__, len(payloads))
            if got is not None:
                start, ints = got
                assert type(start) is bytes and type(ints) is bytearray
                # (nothing lost: each payload is the start, its 4 bytes and the close)
                assert [
                    start + bytes(ints[4 * i : 4 * i + 4]) + values._ONE_INT_CLOSE
                    for i in range(len(payloads))
                ] == payloads
        headed_runs += expected is not None
    assert headed_runs > 100  # (the runs were mostly HEADED: the loop's path was taken)


def test_empty_and_other_forms() -> None:
    for build in (_heads, PURE):
        assert build.headed([]) is None
        assert build.headed([b""]) is None
        assert build.headed([values.dumps_call(CODE, [1, 2], {})] * 3) is None
        # the close and an opening, nothing between them and the int: no start to share
        bare = values._ONE_INT_OPEN + bytes(4) + values._ONE_INT_CLOSE
        assert build.headed([bare, bare]) == values.one_int_run([bare, bare])


def test_the_pipe_writes_headed_from_it() -> None:
    """``_pipe.run_message`` of one-int calls is HEADED, its start and ints those found here."""
    payloads = [values.dumps_call(CODE, [i], {}) for i in range(5)]
    data = _pipe.run_message(7, False, [f"t{i}" for i in range(5)], payloads)
    assert data is not None and data[:1] == _pipe.HEADED
    start, ints = _heads.headed(payloads)  # type: ignore[misc]
    assert data.endswith(start + bytes(ints))


@pytest.mark.parametrize("seed", range(3))
def test_both_builds_make_calls_as_call_payloads(seed: int) -> None:
    """``calls`` (a received dispatch's payloads, ``columns.received_dispatch``) is
    ``column_codes.call_payloads`` byte for byte, and ``headed``'s inverse."""
    rng = random.Random(seed)
    for _ in range(200):
        start = rng.choice(
            (b"", b"S", bytes(rng.randrange(256) for _ in range(rng.randint(1, 600))))
        )
        ints = [rng.randint(-(2**31), 2**31 - 1) for _ in range(rng.choice((0, 1, 2, 40)))]
        column = struct.pack(f"<{len(ints)}i", *ints)
        expected = call_payloads(start or b"S", column, len(ints), "X")
        for build in (_heads, PURE):
            got = build.calls(start or b"S", column)
            assert got == expected and all(type(p) is bytes for p in got), build.__file__
    payloads = [values.dumps_call(CODE, [i], {}) for i in range(-3, 30)]
    start, ints = _heads.headed(payloads)  # type: ignore[misc]
    assert _heads.calls(start, bytes(ints)) == payloads == PURE.calls(start, bytes(ints))
