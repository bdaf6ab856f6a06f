"""Values bigger than a frame move in chunks (``store.chunks``): the assembler takes chunks in any
order, ignores duplicates, names what is missing, and refuses a chunk of the wrong size, a bad
CRC or a changed total; a pull keeps a bounded number of chunks in flight; the holder serves
ranges, spilled values included."""

from __future__ import annotations

import random
import time
import zlib

import pytest

from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.store import chunks
from handoffd.store.chunks import MISSING, WINDOW, Assembly, Pull, serve
from handoffd.store.store import ResultStore

CHUNK = 64 << 10


def _value(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _pieces(value: bytes, chunk: int) -> list[bytes]:
    return [value[i : i + chunk] for i in range(0, len(value), chunk)] or [b""]


def test_chunks_in_any_order_with_duplicates_make_the_value() -> None:
    value = _value(10 * CHUNK + 123)
    pieces = _pieces(value, CHUNK)
    parts = Assembly(len(value), CHUNK)
    assert parts.count == 11 and parts.missing() == list(range(11))
    order = list(range(11))
    random.Random(7).shuffle(order)
    for i in order[:5]:
        assert parts.add(i, pieces[i]) == ""
    assert parts.add(order[0], pieces[order[0]]) == ""  # a duplicate: no change
    assert parts.missing() == sorted(order[5:]) and not parts.done
    for i in order[5:]:
        assert parts.add(i, memoryview(pieces[i])) == ""
    assert parts.done and parts.missing() == []
    assert bytes(parts.value()) == value


def test_a_chunk_of_the_wrong_size_or_place_is_refused() -> None:
    parts = Assembly(3 * CHUNK + 10, CHUNK)
    assert "expected 65536" in parts.add(0, b"x" * (CHUNK - 1))
    assert "expected 10" in parts.add(3, b"x" * CHUNK)  # the last one is short
    assert "of a value of 4 chunks" in parts.add(4, b"x")
    assert "of a value of 4 chunks" in parts.add(-1, b"x")
    assert parts.missing() == [0, 1, 2, 3]


def test_a_value_of_one_chunk_is_kept_as_it_came() -> None:
    frame = memoryview(b"small value")
    parts = Assembly(len(frame), CHUNK)
    assert parts.add(0, frame) == "" and parts.value() is frame
    empty = Assembly(0, CHUNK)
    assert empty.count == 1 and empty.add(0, b"") == "" and empty.value() == b""


def _drive(pull: Pull, store: ResultStore, drop: set[int] = frozenset()) -> tuple[object, int]:
    """Serve ``pull`` from ``store`` until it ends; chunks in ``drop`` never arrive. Returns
    (the step that ended it or the last one, the most chunks in flight seen)."""
    asks = [pull.first()]
    in_flight = most = 0
    step = None
    while asks:
        ask = asks.pop(0)
        in_flight += ask.count
        most = max(most, in_flight)
        for answer, frames in serve(store, ask):
            in_flight -= 1
            if answer.index in drop:
                continue
            step = pull.arrived(answer, frames, "value 'f'", "n1")
            if step.error or step.value is not None:
                return step, most
            asks += list(step.asks)
    return step, most


def test_a_pull_assembles_a_held_value_with_a_few_chunks_in_flight() -> None:
    value = _value(40 * CHUNK + 5)
    store = ResultStore(1 << 30)
    store.put("r", "f", value)
    pull = Pull(1, "r", "f", "me:1", CHUNK, 1 << 30)
    step, most = _drive(pull, store)
    assert step is not None and not step.error and bytes(step.value) == value
    assert most <= WINDOW  # the consumer holds the value plus a bounded few chunks


def test_a_missing_chunk_leaves_the_pull_waiting_and_named() -> None:
    value = _value(8 * CHUNK)
    store = ResultStore(1 << 30)
    store.put("r", "f", value)
    pull = Pull(1, "r", "f", "me:1", CHUNK, 1 << 30)
    step, _ = _drive(pull, store, drop={3})
    assert step is not None and step.value is None and not step.error
    assert pull.parts is not None and pull.parts.missing() == [3]


def test_the_holders_wrong_answers_fail_the_pull() -> None:
    pull = Pull(1, "r", "f", "me:1", CHUNK, 1 << 20)
    assert pull.arrived(ValueChunk(1, "r", "f", 0, -1, CHUNK, -1), [], "v", "n1").error == MISSING
    big = pull.arrived(ValueChunk(1, "r", "f", 0, 2 << 20, CHUNK, 0), [b""], "value 'f'", "n1")
    assert big.fatal and "max_value_bytes=1048576 of node 'n1'" in big.error
    data = b"a" * CHUNK
    good = ValueChunk(1, "r", "f", 0, 3 * CHUNK, CHUNK, zlib.crc32(data))
    assert pull.arrived(good, [data], "v", "n1").error == ""
    bad_crc = ValueChunk(1, "r", "f", 1, 3 * CHUNK, CHUNK, zlib.crc32(data) ^ 1)
    assert "CRC-32" in pull.arrived(bad_crc, [data], "v", "n1").error
    changed = ValueChunk(1, "r", "f", 1, 4 * CHUNK, CHUNK, zlib.crc32(data))
    assert "size changed" in pull.arrived(changed, [data], "v", "n1").error
    short = ValueChunk(1, "r", "f", 1, 3 * CHUNK, CHUNK, zlib.crc32(b"a"))
    assert "expected 65536" in pull.arrived(short, [b"a"], "v", "n1").error
    no_crc = ValueChunk(1, "r", "f", 1, 3 * CHUNK, CHUNK, -1)  # a holder that sends none
    assert pull.arrived(no_crc, [data], "v", "n1").error == ""


@pytest.mark.parametrize("spilled", [False, True])
def test_the_holder_serves_ranges_of_memory_and_spilled_values(spilled: bool, tmp_path) -> None:
    value = _value(5 * CHUNK + 7)
    store = ResultStore(0 if spilled else 1 << 30, str(tmp_path))
    store.put("r", "f", value)
    assert (store.stats.spilled_bytes > 0) == spilled
    answers = serve(store, FetchChunks(4, "r", "f", 2, 10, CHUNK, "me:1"))
    assert [a.index for a, _ in answers] == [2, 3, 4, 5]
    for answer, (frame,) in answers:
        assert answer.total == len(value) and answer.crc == zlib.crc32(frame)
        assert bytes(frame) == value[answer.index * CHUNK : (answer.index + 1) * CHUNK]
    (miss,) = serve(store, FetchChunks(4, "r", "g", 0, 4, CHUNK, "me:1"))
    assert miss[0].total == -1 and miss[1] == []
    # A holder never cuts finer than CHUNK_MIN nor sends more than SERVE_MAX at once.
    tiny = serve(store, FetchChunks(4, "r", "f", 0, 1000, 1, "me:1"))
    assert len(tiny) == 6 and tiny[0][0].chunk_bytes == chunks.CHUNK_MIN


def test_the_chunk_size_stays_well_under_the_frame_limit() -> None:
    assert chunks.chunk_size(1 << 20) == 256 << 10
    assert chunks.chunk_size(1 << 30) == chunks.CHUNK_MAX
    assert chunks.FAR_BYTES < (1 << 20)  # any peer (max_frame_bytes >= 1 MiB) reads a dispatch


def test_a_dropped_assembled_value_is_unmapped_only_once_nobody_holds_it() -> None:
    import mmap

    from handoffd.store import store as store_mod
    from handoffd.testing import wait_for

    value = mmap.mmap(-1, 1 << 20)
    held = ResultStore(1 << 30)
    held.put("r", "f", value)
    view = memoryview(value)  # a job or a send still using it
    del value
    held.drop("r", "f")
    time.sleep(3 * store_mod.REAP_EVERY)
    assert not view.obj.closed and len(store_mod._doomed) == 1
    obj = view.obj
    view.release()
    del view
    time.sleep(3 * store_mod.REAP_EVERY)
    assert not obj.closed  # ``obj`` still holds it
    del obj
    wait_for(lambda: not store_mod._doomed, 5, what="unmapped")
