"""The local client socket's framing (transport/local_socket.py): what the daemon's loop cuts out
of a connection's bytes, and what it refuses. The two-frame shortcuts (``transport.local_frames``)
with both builds: the compiled one and its .py (``pure_build``)."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd.transport import local_frames
from handoffd.transport.local_socket import CHUNK, JOIN_BYTES, Malformed, pack, take

FRAMES = {"imported": local_frames, "pure": pure(local_frames, "local_frames_pure")}


def test_the_builds_are_the_compiled_one_and_the_py() -> None:
    check_builds(local_frames, FRAMES["pure"])
    assert local_frames.JOIN_BYTES == JOIN_BYTES  # (pack's: what small joins, pack would join)


@pytest.fixture(params=sorted(FRAMES))
def build(request: pytest.FixtureRequest) -> Any:
    return FRAMES[request.param]


def test_any_header_is_cut_the_same_by_both_builds_and_as_take_cuts_it() -> None:
    """Random and hostile headers (sizes past the read, past 2**63, summing past 2**64 back to
    the read's length): whole says None wherever take would not give exactly two frames."""
    rng = random.Random(5)
    edges = [0, 1, 19, 20, 21, 2**32, 2**63, 2**64 - 1, 2**64 - 20, 2**64 - 40]
    for _ in range(3000):
        n = rng.choice([19, 20, 21, 40, 300])
        count = rng.choice([2, 2, 2, 1, 3, 0, 2**32 - 1])
        size = rng.choice([*edges, rng.randrange(0, n + 1)])
        more = rng.choice([*edges, n - 20 - size, rng.randrange(0, n + 1)]) % 2**64
        head = struct.pack("!IQQ", count, size, more)
        data = (head + rng.randbytes(max(0, n - 20)))[:n]
        scratch = memoryview(bytearray(CHUNK))
        scratch[: len(data)] = data
        got = [FRAMES[b].whole(scratch, len(data)) for b in sorted(FRAMES)]
        assert got[0] == got[1]
        if got[0] is not None:
            assert take(bytearray(data), 1 << 30, 1 << 62) == ([got[0]], None)
    with pytest.raises(ValueError):  # never past the buffer's bytes
        local_frames.whole(memoryview(bytearray(100)), 101)
    with pytest.raises(ValueError):
        FRAMES["pure"].whole(memoryview(bytearray(100)), 101)


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


def test_the_clients_two_frame_shortcuts_are_pack_and_take_over_random_shapes(build: Any) -> None:
    _small, _whole = build.small, build.whole
    # LocalClient.send/recv take a small two-frame message around pack()/take(): the same bytes
    # out, the same frames in, and anything else is left to them (None)
    rng = random.Random(13)
    sizes = [0, 1, 19, 20, 255, 4096, JOIN_BYTES // 2, JOIN_BYTES - 1, JOIN_BYTES, 70_000]
    shortcuts = 0
    for _ in range(400):
        count = rng.choice([1, 2, 2, 2, 3])
        frames: list[Any] = [rng.randbytes(rng.choice(sizes)) for _ in range(count)]
        if rng.random() < 0.1:
            frames[0] = memoryview(frames[0])
        small = _small(frames)
        wire = b"".join(bytes(p) for p in pack(frames))
        plain = [bytes(f) for f in frames]
        if small is not None:
            shortcuts += 1
            assert small == wire
        else:  # only a small two-bytes-frame message is taken
            assert (
                count != 2
                or any(type(f) is not bytes for f in frames)
                or sum(map(len, plain)) >= JOIN_BYTES
            )
        # a read of exactly that message, or with the next one's start, or cut short
        for data in (wire, wire + wire[:7], wire[:-1], wire[:19]):
            if len(data) > CHUNK:
                continue
            scratch = memoryview(bytearray(CHUNK))
            scratch[: len(data)] = data
            whole = _whole(scratch, len(data))
            messages, _ = take(bytearray(data), 1 << 30, 1 << 62)
            if whole is not None:
                assert data is wire and count == 2 and [whole] == messages == [plain]
            else:
                assert data is not wire or count != 2
    assert shortcuts > 50


def test_many_small_frames_come_out_as_the_per_frame_cut_gives_them():
    """A message of many small frames (a big run's outcome) is cut from one copy of them all:
    the same frames, bytes each, in order, whatever their sizes and wherever the reads end."""
    rng = random.Random(13)
    for _ in range(40):
        count = rng.choice([1, 2, 63, 64, 65, 300, 2000])
        frames = [rng.randbytes(rng.choice([0, 1, 9, 200, 1500])) for _ in range(count)]
        other = [b"head", b"y" * rng.choice([10, 5000])]  # a few frames: cut one by one
        wire = _wire(frames) + _wire(other)
        cut = rng.randrange(len(wire) + 1)
        buf = bytearray(wire[:cut])
        got, error = take(buf, 1 << 20, 1 << 20)
        buf += wire[cut:]
        rest, error2 = take(buf, 1 << 20, 1 << 20)
        assert got + rest == [frames, other] and error is error2 is None and buf == b""
        assert all(type(f) is bytes for f in (got + rest)[0])


def _pack_by_frame(frames: list[Any]) -> bytes:
    """The wire bytes of ``frames`` written out: the count, each frame's byte size, the bytes."""
    sizes = [memoryview(f).nbytes for f in frames]
    head = len(sizes).to_bytes(4, "big") + b"".join(s.to_bytes(8, "big") for s in sizes)
    return head + b"".join(bytes(memoryview(f).cast("B")) for f in frames)


def test_pack_writes_any_mix_of_buffers_as_their_bytes():
    """Small frames joined in one call, a big one sent apart, buffers of wider items (whose len
    counts items) by their bytes: the same wire bytes, read back by take."""
    import array

    rng = random.Random(31)
    makers = [
        lambda: rng.randbytes(rng.randint(0, 40)),
        lambda: bytearray(rng.randbytes(rng.randint(0, 40))),
        lambda: memoryview(rng.randbytes(rng.randint(0, 40))),
        lambda: memoryview(array.array("q", range(rng.randint(0, 5)))),
        lambda: rng.randbytes(JOIN_BYTES + rng.randint(0, 10)),
    ]
    for _ in range(300):
        frames = [rng.choice(makers)() for _ in range(rng.randint(1, 12))]
        wire = b"".join(bytes(memoryview(p).cast("B")) for p in pack(frames))
        assert wire == _pack_by_frame(frames)
        got, error = take(bytearray(wire), 64, 1 << 20)
        assert error is None and got == [[bytes(memoryview(f).cast("B")) for f in frames]]
