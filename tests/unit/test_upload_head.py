"""An upload's head unpacked a task row at a time (``upload_intake.unpack_head``, so the upload
thread never holds the GIL for all rows at once) is exactly what one ``unpackb`` gives."""

from __future__ import annotations

import random

import msgpack

from handoffd.daemon.upload_intake import unpack_head
from handoffd.protocol import messages as m


def test_the_head_in_pieces_is_the_head_whole_and_garbage_is_left_to_the_codec() -> None:
    rng = random.Random(3)
    rows = [
        (f"t{i}", tuple(f"t{rng.randrange(i)}" for _ in range(i % 3)) if i else (), {"cpu": 1.0})
        for i in range(5000)
    ]
    for type_id in (m.SubmitRun.TYPE, m.SubmitAndWait.TYPE, 37):  # type: ignore[attr-defined]
        head = msgpack.packb([1, 2, type_id, "c", 0, 0, 0, 7, "run", rows, 3, "spread", None])
        assert unpack_head(head) == msgpack.unpackb(head, use_list=False)
    head = msgpack.packb([1, 2, m.SubmitRun.TYPE, "c", 0, 0, 0, 7, "run", "not rows", 3])  # type: ignore[attr-defined]
    assert unpack_head(head) is None
    for bad in (b"", b"\x93\x01", head[:-1], head + b"\x00", msgpack.packb([1, 2, 3])):
        assert unpack_head(bad) is None
