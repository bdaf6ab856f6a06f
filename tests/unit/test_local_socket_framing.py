"""The local client socket's framing (transport/local_socket.py): what the daemon's loop cuts out
of a connection's bytes, and what it refuses."""

from __future__ import annotations

import pytest

from handoffd.transport.local_socket import Malformed, pack, take


def _wire(frames: list[bytes]) -> bytearray:
    return bytearray(b"".join(bytes(p) for p in pack(frames)))


def test_messages_come_out_whole_and_in_order_from_any_cut():
    one, two = [b"body", b"", b"x" * 70_000], [memoryview(b"second")]
    wire = _wire(one) + _wire([bytes(f) for f in two])
    for cut in range(0, len(wire), 997):
        buf = bytearray(wire[:cut])
        got, error = take(buf, 8, 1 << 20)
        buf += wire[cut:]
        rest, error2 = take(buf, 8, 1 << 20)
        assert got + rest == [one, [b"second"]] and error is error2 is None
        assert buf == b""


@pytest.mark.parametrize(
    "frames, why",
    [([], "0 frames"), ([b"a"] * 9, "9 frames"), ([b"a", b"y" * 2000], "2000 bytes")],
)
def test_a_message_over_the_limits_is_refused_from_its_header(frames, why):
    buf = _wire(frames)[:12]  # the header is enough to tell
    if frames:
        buf = _wire(frames)[: 4 + 8 * len(frames)]
    good = _wire([b"fine"])
    messages, error = take(good + buf, 8, 1000)
    assert messages == [[b"fine"]]  # what came before it is delivered
    assert isinstance(error, Malformed) and why in str(error)


def test_a_read_holding_many_messages_gives_them_all_in_one_call():
    buf = bytearray().join(_wire([str(i).encode()]) for i in range(5000))
    messages, error = take(buf, 8, 1000)
    assert error is None and buf == b""
    assert [m[0] for m in messages] == [str(i).encode() for i in range(5000)]
