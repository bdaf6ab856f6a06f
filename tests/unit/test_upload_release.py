"""What an upload's preparation leaves behind is freed in the upload thread, in pieces
(``upload_intake._release``): freed at once, a 1,000,000-task submission's decoded message, frame
views and graph held the owner's loop 0.7 s when its last reference went there."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from handoffd.daemon import upload_intake
from handoffd.protocol.codec import Decoded


class _Row:
    __slots__ = ("id", "args", "__weakref__")

    def __init__(self, i: int) -> None:
        self.id = f"t{i}"
        self.args = (i, (f"a{i}", [i, i + 1]), {"cpu": 1.0})


class _Msg:
    def __init__(self, tasks: tuple[Any, ...]) -> None:
        self.tasks = tasks


def _decoded(n: int) -> Decoded:
    rows = tuple(_Row(i) for i in range(n))
    views = [memoryview(bytes([i % 256]) * 8) for i in range(n)]
    return Decoded(None, _Msg(rows), views)  # type: ignore[arg-type]


def test_release_frees_everything_a_piece_at_a_time() -> None:
    """Between two steps of ``_release`` (where the interpreter may hand the GIL to the loop) at
    most ``RELEASE_PIECE`` rows and ``RELEASE_PIECE`` frame views are freed."""
    n = 50_000
    decoded = _decoded(n)
    rows = [weakref.ref(r) for r in decoded.msg.tasks]
    views = [weakref.ref(v) for v in decoded.frames]
    parts = [decoded, None, [list(range(100))]]
    del decoded
    alive = n
    freed = []
    for _ in upload_intake._pieces(parts):
        now = sum(1 for r in rows if r() is not None)
        freed.append(alive - now)
        alive = now
        views_alive = sum(1 for v in views if v() is not None)
        assert (
            views_alive in (0, n)
            or views_alive % upload_intake.RELEASE_PIECE == n % upload_intake.RELEASE_PIECE
        )
    assert alive == 0 and parts == [] and not any(v() for v in views)
    assert max(freed) <= upload_intake.RELEASE_PIECE, max(freed)
    assert len(freed) >= n // upload_intake.RELEASE_PIECE


def test_a_shared_container_is_never_cut() -> None:
    rows = [_Row(i) for i in range(10_000)]
    shared = _decoded(0)._replace(frames=rows)
    upload_intake._release([shared])
    assert len(rows) == 10_000 and rows[-1].id == "t9999"


def test_the_loop_keeps_nothing_of_a_prepared_upload() -> None:
    prepared = upload_intake.Prepared(_decoded(10), specs=[], error=None)
    seen: list[Any] = []
    released: list[list[Any]] = []

    async def main() -> None:
        preparer = upload_intake.Preparer()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        future.set_result(prepared)
        preparer._pool = _Pool(released)  # type: ignore[assignment]
        preparer._finished(future, lambda p: seen.append(p.decoded))

    asyncio.run(main())
    assert seen and seen[0] is not None  # the loop used it first
    assert prepared.decoded is None and prepared.specs is None and prepared.run is None
    assert released and released[0][0] is seen[0]


class _Pool:
    def __init__(self, calls: list[list[Any]]) -> None:
        self.calls = calls

    def submit(self, fn: Any, parts: list[Any]) -> None:
        assert fn is upload_intake._release
        self.calls.append(list(parts))
