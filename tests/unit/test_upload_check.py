"""An upload's frame list is checked off the loop (issue 19 item 7): ``Uploads.add`` hands the
last piece's upload on unchecked, ``Whole.frames`` checks it in the upload thread in short C
calls (``upload.check``) with the verdict of the one-call check it replaced, and the last piece
is answered (``checked``) before the submission itself is handled (``done``)."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from array import array
from typing import Any

import msgpack
import pytest
from test_upload import pieces

from handoffd import upload
from handoffd.config import Limits
from handoffd.daemon import upload_intake
from handoffd.protocol import codec
from handoffd.protocol import messages as m


def _whole_check(data: bytes) -> tuple[int, list[int]]:
    """The check as it was, one ``unpackb`` and one array of every size (the reference)."""
    view = memoryview(data)
    if len(view) < 8:
        raise ValueError("short")
    size = int.from_bytes(view[:8], "big")
    if size > len(view) - 8:
        raise ValueError("past the end")
    sizes = msgpack.unpackb(view[8 : 8 + size], max_array_len=len(view))
    try:
        packed = array("q", sizes) if isinstance(sizes, list) else None
    except (TypeError, OverflowError):
        packed = None
    if packed is None or (sizes and min(packed) < 0):
        raise ValueError("not sizes")
    if not sizes or 8 + size + sum(packed) != len(view):
        raise ValueError("do not add up")
    return 8 + size, sizes


def _verdict(check: Any, data: bytes) -> Any:
    try:
        at, sizes = check(data)
    except ValueError:
        return "refused"
    return at, list(sizes)


def _mangled(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one random defect (or none)."""
    head = int.from_bytes(data[:8], "big")
    sizes = msgpack.unpackb(data[8 : 8 + head])
    body = data[8 + head :]
    kind = rng.randrange(9)
    if kind == 0 and sizes:
        sizes[rng.randrange(len(sizes))] = rng.choice(
            [-1, 1.5, "x", [1], None, True, 1 << 63, (1 << 64) - 1]
        )
    elif kind == 1:
        sizes = rng.choice([{}, "sizes", 7, [], None])
    elif kind == 2:
        body = body[:-1] if body else b"x"
    elif kind == 3:
        return data[: rng.randrange(len(data))]
    elif kind == 4:
        packed = msgpack.packb(sizes)
        return (len(packed) + 1).to_bytes(8, "big") + packed + b"\xc0" + body  # a byte left over
    elif kind == 5:
        packed = msgpack.packb(sizes)
        return len(packed).to_bytes(8, "big") + packed[:-1] + body  # the list cut short
    elif kind == 6:
        return (1 << 40).to_bytes(8, "big") + data[8:]
    packed = msgpack.packb(sizes)
    return len(packed).to_bytes(8, "big") + packed + body


@pytest.mark.parametrize("seed", range(30))
def test_the_check_in_pieces_gives_the_verdict_of_the_whole_check(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(upload, "_SIZES_PIECE", rng.choice([1, 2, 7, 64, 16384]))
    # Both ways of unpacking the sizes: in pieces, and a short frame list in one call.
    monkeypatch.setattr(upload, "_ONE_CALL_BYTES", (0, 1 << 16)[seed % 2])
    for _ in range(40):
        frames = [bytes(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 300))]
        data = upload.pack(frames) if frames else (1).to_bytes(8, "big") + msgpack.packb([])
        mangled = rng.random() < 0.6
        if mangled:
            data = _mangled(rng, data)
        expected = _verdict(_whole_check, data)
        assert _verdict(upload.check, data) == expected
        if expected != "refused":
            assert upload.Whole(data).frames() == upload.views(data, *expected)
        if not mangled and frames:
            assert upload.Whole(data).frames() == frames


@pytest.mark.parametrize("one_call", [0, 1 << 16])
def test_sizes_that_add_up_but_are_not_sizes_are_refused_either_way(
    one_call: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "_ONE_CALL_BYTES", one_call)
    for sizes in ([3, -1, 3], [True, 4], [2.0, 3], [5, None], [5, "0"], [1 << 63]):
        packed = msgpack.packb(sizes)
        data = len(packed).to_bytes(8, "big") + packed + b"x" * 5
        if sizes[0] is True:  # (a bool counts as 1: these add up and pass, as before)
            assert upload.check(data) == (8 + len(packed), array("q", [1, 4]))
            continue
        with pytest.raises(ValueError, match="not a list of sizes"):
            upload.check(data)


def test_the_last_piece_is_not_checked_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def on_the_loop(data: Any) -> Any:
        raise AssertionError("upload.check ran in Uploads.add")

    monkeypatch.setattr(upload, "check", on_the_loop)
    uploads = upload.Uploads(Limits())
    parts = pieces([b"body", b"x" * 3000], 500)
    for chunk, piece in parts:
        error, received, whole = uploads.add(b"c", chunk, piece, 0.0)
    assert (error, received) == ("", len(parts)) and whole is not None
    assert uploads.held(b"c") == 0


def _run_preparer(whole: upload.Whole) -> list[tuple[str, Any]]:
    """What the loop hears of ``whole`` from a Preparer, in order, and on which thread."""
    heard: list[tuple[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        me = threading.get_ident()

        def checked(error: str) -> None:
            assert threading.get_ident() == me
            heard.append(("checked", error))
            if error:
                loop.call_later(0.2, finished.set_result, None)  # (done never comes)

        def done(prepared: upload_intake.Prepared) -> None:
            assert threading.get_ident() == me
            heard.append(("done", prepared.decoded))
            finished.set_result(None)

        preparer = upload_intake.Preparer()
        preparer.submit(whole, codec.Codec(Limits()), Limits(), None, done, checked)
        await asyncio.wait_for(finished, 30)

    asyncio.run(main())
    return heard


def test_a_refused_upload_is_answered_and_never_handled() -> None:
    bad = upload.pack([b"body", b"frame"])[:-1]
    heard = _run_preparer(upload.Whole(bad))
    assert len(heard) == 1 and heard[0][0] == "checked"
    assert "do not add up" in heard[0][1]


def test_a_good_upload_is_answered_before_it_is_handled() -> None:
    frames = codec.encode(m.Ping(7, ()), sender="c")  # not a submission
    heard = _run_preparer(upload.Whole(upload.pack(frames)))
    assert [h[0] for h in heard] == ["checked", "done"]
    assert heard[0][1] == ""
    assert heard[1][1] is not None and heard[1][1].msg == m.Ping(7, ())


def test_the_frames_are_cut_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame views are tracked by the collector: cut outside ``prepare``'s pause, 1,000,000 of
    them set off collections, each holding the GIL (the loop waiting)."""
    cut_with: list[bool] = []
    views = upload.views

    def spy(*args: Any) -> Any:
        cut_with.append(gc.isenabled())
        return views(*args)

    monkeypatch.setattr(upload, "views", spy)
    frames = codec.encode(m.Ping(7, ()), sender="c")
    told: list[str] = []
    assert gc.isenabled()
    prepared = upload_intake._prepare_checked(
        upload.Whole(upload.pack(frames)), codec.Codec(Limits()), Limits(), None, told.append
    )
    assert told == [""] and prepared is not None and prepared.decoded.msg == m.Ping(7, ())
    assert cut_with == [False]


def test_a_prepared_submission_reaches_the_owner_without_a_copy() -> None:
    """The specs are made a tuple in the thread: the owner's ``RunSubmitted`` takes that very
    tuple (``tuple(specs)`` of a tuple is itself), not a copy made on the loop (a 1M-item copy
    per big submission)."""
    import handoffd

    dag = handoffd.DAG()
    for i in range(5):
        dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
    rows, payloads = dag.wire_tasks()
    msg = m.SubmitRun(1, "r1", codec.Rows(rows), 0, "binpack", None, ())
    frames = codec.encode(msg, sender="c", frames=payloads)
    prepared = upload_intake._prepare_checked(
        upload.Whole(upload.pack(frames)), codec.Codec(Limits()), Limits(), None, None
    )
    assert prepared is not None and prepared.error is None
    assert type(prepared.specs) is tuple
    assert [s.id for s in prepared.specs] == [f"t{i}" for i in range(5)]
    assert tuple(prepared.specs) is prepared.specs
