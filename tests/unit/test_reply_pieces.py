"""A big reply encoded in pieces is the same bytes (``Codec.encode(piece=)``), encoded off the loop
with replies to its connection kept in order (``daemon.replies``), and the local socket's packing
joins small frames into the same bytes (issue 19, item 7: no loop stall)."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import msgpack
import pytest

from handoffd.daemon import replies
from handoffd.daemon.replies import Replies
from handoffd.protocol import codec as codec_mod
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec
from handoffd.transport import local_socket


def outcome(n: int, carried: int, request_id: int = 1) -> m.RunOutcome:
    placement = {f"t{i}": random.choice(["a", "bb", "node-c"]) for i in range(n)}
    ids = tuple(f"t{i}" for i in range(carried))
    pending = tuple(f"t{i}" for i in range(carried, n))
    return m.RunOutcome(
        request_id, "run", "DONE", {"DONE": n}, placement, "a", 3, ("b",), None, ids, pending, False
    )


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 2_047, 2_048, 2_049, 70_000])
@pytest.mark.parametrize("piece", [1, 16, 2_048])
def test_pieces_are_the_same_bytes(n: int, piece: int) -> None:
    codec = Codec()
    msg = outcome(n, n // 3)
    frames = [b"v1", b"v2"]
    whole = codec.encode(msg, sender="a", incarnation=4, frames=frames)
    pieces = codec.encode(msg, sender="a", incarnation=4, frames=frames, piece=piece)
    assert pieces[0] == whole[0]
    assert pieces[1:] == frames
    assert Codec().decode(pieces).msg == msg  # type: ignore[union-attr]


def test_pieces_give_the_gil_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each C call packs at most ``piece`` entries of a big field (the point of the pieces)."""
    sizes: list[int] = []
    real = msgpack.Packer

    class Counting(real):  # type: ignore[misc, valid-type]
        def pack(self, obj: Any) -> bytes:
            if isinstance(obj, (list, tuple, dict)):
                sizes.append(len(obj))
            return super().pack(obj)

    monkeypatch.setattr(codec_mod.msgpack, "Packer", Counting)
    Codec().encode(outcome(10_000, 3_000), sender="a", piece=500)
    assert sizes and max(sizes) <= 500, max(sizes)


def test_local_pack_joins_small_frames_into_the_same_bytes() -> None:
    big = b"B" * (local_socket.JOIN_BYTES + 1)
    frames: list[Any] = [b"head", *[bytes([i % 256]) * (i % 7) for i in range(5_000)], big]
    frames += [memoryview(b"xy"), memoryview(bytearray(b"z" * 70_000)), b"tail"]
    sizes = [memoryview(f).nbytes for f in frames]
    old = [
        local_socket._COUNT.pack(len(sizes)) + b"".join(local_socket._LEN.pack(n) for n in sizes)
    ]
    packed = local_socket.pack(frames)
    assert b"".join(packed) == b"".join(old + [bytes(f) for f in frames])
    assert len(packed) <= 6, len(packed)  # header, small run, big, small, big, small
    assert any(p is big for p in packed)  # a big frame is not copied


class Sent:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []
        self.threads: set[str] = set()

    def prepare(self, msg: Any, frames: Any) -> Any:
        def encode(piece: int) -> list[Any]:
            self.threads.add(threading.current_thread().name)
            return Codec().encode(msg, sender="a", frames=frames or (), piece=piece)

        return encode

    def send(self, conn: bytes, frames: list[Any]) -> None:
        self.got.append((conn, Codec().decode(frames).msg))  # type: ignore[union-attr]


def test_big_reply_off_the_loop_and_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "BIG_ENTRIES", 1_000)
    sent = Sent()

    async def go() -> None:
        out = Replies(sent.prepare, sent.send)
        out.reply(b"c1", outcome(5_000, 10, request_id=1))  # big: the thread
        out.reply(b"c1", m.RunStatusReply(2, "run", "DONE", {}, {}, "a", 1, (), None))  # behind it
        out.reply(b"c2", m.RunStatusReply(3, "run", "DONE", {}, {}, "a", 1, (), None))  # at once
        out.reply(b"c1", outcome(4_000, 10, request_id=4))  # big again, behind both
        assert [r.request_id for _, r in sent.got] == [3]
        for _ in range(500):
            if len(sent.got) == 4:
                break
            await asyncio.sleep(0.01)
        assert out.offloaded == 2
        out.close()

    asyncio.run(go())
    assert [(c, r.request_id) for c, r in sent.got] == [
        (b"c2", 3),
        (b"c1", 1),
        (b"c1", 2),
        (b"c1", 4),
    ]
    assert len(sent.got[1][1].placement) == 5_000
    assert "MainThread" in sent.threads and any(
        t.startswith("handoffd-replies") for t in sent.threads
    )


def test_without_a_loop_everything_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "BIG_ENTRIES", 10)
    sent = Sent()
    Replies(sent.prepare, sent.send).reply(b"c", outcome(100, 1))
    assert len(sent.got) == 1 and sent.threads == {"MainThread"}
