"""A leave hands a value past a frame over in pieces (issue 19, helper snap19): the leaver sends
one ``ValuesHandedOver`` per piece, read by range from its store, at most ``WINDOW`` unanswered;
the receiver assembles them and keeps the value once whole, refusing a bad piece (CRC) and a
value past its ``max_value_bytes``. Both sides through a fake node, no sockets."""

from __future__ import annotations

import asyncio
import os
import zlib
from typing import Any

from handoffd.daemon import handover
from handoffd.protocol.messages_io import ValuesHandedOver, ValuesTaken
from handoffd.store.chunks import WINDOW
from handoffd.store.store import ResultStore


class FakeNode:
    def __init__(self, name: str, store: ResultStore) -> None:
        self.name, self.address, self.store = name, f"{name}:1", store
        self.sent: list[tuple[str, Any, list[Any]]] = []
        self.scheduler = None
        self.replication = None
        self.executor = None
        self.clock = 0.0

    def send(self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0) -> bool:
        self.sent.append((address, msg, list(frames or [])))
        return True

    def _clock(self) -> float:
        return self.clock


def test_a_big_value_goes_in_pieces_and_is_kept_whole() -> None:
    value = os.urandom(5 * handover.CHUNK + 77)  # 6 pieces
    leaver = FakeNode("l", ResultStore(64 << 20))
    leaver.store.put("r1", "p0", value)
    leaver.store.put("r1", "small", b"x" * 100)
    receiver = FakeNode("o", ResultStore(64 << 20))
    hand = handover.HandOver(leaver)
    taken = handover.HandOver(receiver)
    hand._target = lambda run_id: "o:1"  # type: ignore[method-assign]
    most = 0

    async def deliver() -> None:  # the network: the receiver answers what came, a turn later
        nonlocal most
        while True:
            await asyncio.sleep(0.001)
            most = max(most, len(leaver.sent))
            while leaver.sent:
                _, msg, frames = leaver.sent.pop(0)
                assert all(len(f) <= handover.CHUNK for f in frames)
                taken.on_values(msg, frames, "l:1")
            while receiver.sent:
                _, answer, _ = receiver.sent.pop(0)
                assert isinstance(answer, ValuesTaken)
                hand.on_taken(answer)

    async def main() -> int:
        task = asyncio.create_task(deliver())
        moved = await hand.leave()
        task.cancel()
        return moved

    assert asyncio.run(main()) == 2
    assert bytes(receiver.store.get("r1", "p0")) == value
    assert receiver.store.get("r1", "small") == b"x" * 100
    assert most <= WINDOW + 1  # never more pieces unanswered than the window (+ the small batch)


def test_a_bad_piece_or_a_value_past_the_limit_is_refused() -> None:
    value = os.urandom(3 * handover.CHUNK)
    receiver = FakeNode("o", ResultStore(64 << 20, max_value=len(value) - 1))
    taken = handover.HandOver(receiver)
    piece = value[: handover.CHUNK]
    crc = zlib.crc32(piece)
    msg = ValuesHandedOver(1, "r1", (handover._PIECE + "p0",), len(value), 0, handover.CHUNK, crc)
    taken.on_values(msg, [piece], "l:1")
    assert (
        not receiver.store.has("r1", "p0")
        and ("l:1", "r1", handover._PIECE + "p0") in taken._refused
    )
    receiver.store.max_value = None
    taken._refused.clear()
    bad = ValuesHandedOver(
        2, "r1", (handover._PIECE + "p1",), len(value), 0, handover.CHUNK, crc ^ 1
    )
    taken.on_values(bad, [piece], "l:1")
    rest = [
        ValuesHandedOver(3 + i, "r1", (handover._PIECE + "p1",), len(value), i, handover.CHUNK, 0)
        for i in (1, 2)
    ]
    for i, later in enumerate(rest, 1):
        part = value[i * handover.CHUNK : (i + 1) * handover.CHUNK]
        taken.on_values(later, [part], "l:1")  # (the rest of a refused value: dropped)
    assert not receiver.store.has("r1", "p1")
    answers = [m for _, m, _ in receiver.sent]
    assert [a.kept for a in answers] == [(), (), (), ()]  # every piece answered, nothing kept
