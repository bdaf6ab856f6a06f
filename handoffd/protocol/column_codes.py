"""The primitives of the column messages (``messages_columns``): numbers packed to little-endian
bytes and checked back, and small frames joined into one and split again. Pure; split from
``columns`` (which re-exports every name here) so that the compiled report reader
(``report_read``) and the column conversions share them without importing each other.

A malformed message raises ``ColumnError`` naming the message, the column and what was expected.
"""

from __future__ import annotations

import itertools
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

#: per code, each count's compiled little-endian format (``pack``)
_PACKERS: dict[str, dict[int, Callable[..., bytes]]] = {c: {} for c in "qiBd"}
_SWAP = sys.byteorder != "little"  # the wire is little-endian
_SIZES = {"q": 8, "i": 4, "B": 1, "d": 8}
_NAMES = {"q": "int64", "i": "int32", "B": "uint8", "d": "float64"}
STATES = ("RUNNING", "DONE", "FAILED")
_STATE_CODE = {s: i for i, s in enumerate(STATES)}


class ColumnError(ValueError):
    """A column message that cannot be read as sent (lengths or indices disagree)."""


def pack(code: str, values: Sequence[Any]) -> bytes:
    """``values`` as little-endian ``code`` (q, i, B, d) bytes; TypeError/OverflowError on a
    value of the wrong type or range."""
    # struct converts each value in C (``array``'s constructor parses each with PyArg_Parse:
    # several times the cost a value); a value it refuses goes to ``array``, whose TypeError or
    # OverflowError callers expect. The '<' packs little-endian on any host.
    packers = _PACKERS.get(code)
    if packers is not None:
        try:
            n = len(values)
            packer = packers.get(n)
            if packer is None:
                if len(packers) >= 512:  # (bounded; the usual counts come back)
                    packers.clear()
                packer = packers[n] = struct.Struct(f"<{n}{code}").pack
            return packer(*values)
        except (struct.error, TypeError):  # (TypeError: an iterable without a length)
            pass
    a = array(code, values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def unpack(code: str, data: bytes, count: int, what: str) -> list[Any]:
    """``count`` values of type ``code`` from ``data``; ColumnError (saying ``what``) if its length
    is not exactly that."""
    size = _SIZES[code]
    if len(data) != count * size:
        raise ColumnError(
            f"{what}: {len(data)} bytes, expected {count} x {size} ({count} {_NAMES[code]} "
            "values, one per entry): the sender built inconsistent columns"
        )
    a = array(code)
    a.frombytes(data)
    if _SWAP:
        a.byteswap()
    return a.tolist()


#: The widest index range ``_indices`` checks by counting each index (``list.count``).
FEW_INDICES = 4


def _indices(values: list[int], limit: int, what: str, low: int = 0) -> None:
    # (min and max in C: a Python loop here was ~120 bytecodes a dispatched task with 3 inputs)
    if not values:
        return
    # A column of a few possible indices (a run's one cost map, inclusion or code head) is
    # checked by counting each: ``list.count`` matches small ints by identity, where ``min``
    # and ``max`` each compared every value as objects.
    if limit - low <= FEW_INDICES and sum(map(values.count, range(low, limit))) == len(values):
        return
    if min(values) < low or max(values) >= limit:
        v = next(v for v in values if not low <= v < limit)
        raise ColumnError(f"{what}: index {v} out of range [{low}, {limit})")


def _strings(values: tuple[str, ...], count: int, what: str) -> None:
    if len(values) != count:
        raise ColumnError(f"{what}: {len(values)} entries, expected {count} (one per entry)")


# ---------------------------------------------------------------------------------------------
# Calls: a dispatch's one-int call payloads as their start and an int column (protocol 9)
# ---------------------------------------------------------------------------------------------

#: what follows a one-int call's int (``values._ONE_INT_CLOSE``: the literals' list and empty
#: kwargs closed, the call reduced, STOP); part of the wire form, pinned by a test
CALL_CLOSE = b"a}\x86.\x86R."
#: per start size, its payload's compiled form (start, the int, the close): one C call a payload
_CALL_PACKERS: dict[int, Callable[..., bytes]] = {}


def call_payloads(start: bytes, ints: bytes, count: int, what: str) -> list[bytes]:
    """The ``count`` payloads ``start`` + each int of ``ints`` (int32, little-endian) +
    ``CALL_CLOSE``; ColumnError if there is no start or the column is not ``count`` ints."""
    if not start:
        raise ColumnError(f"{what}.call_start: empty, with {len(ints)} bytes of call ints")
    numbers = unpack("i", ints, count, f"{what}.call_ints")
    packer = _CALL_PACKERS.get(len(start))
    if packer is None:
        if len(_CALL_PACKERS) >= 64:  # (bounded: a run's functions come back)
            _CALL_PACKERS.clear()
        close = len(CALL_CLOSE)
        packer = _CALL_PACKERS[len(start)] = struct.Struct(f"<{len(start)}si{close}s").pack
    return list(map(packer, itertools.repeat(start, count), numbers, itertools.repeat(CALL_CLOSE)))


# ---------------------------------------------------------------------------------------------
# Frames: small ones packed into one (a ZeroMQ part and a CURVE box each cost more than a copy)
# ---------------------------------------------------------------------------------------------

#: frames at least this long travel alone (pyzmq sends them without a copy)
JOIN_BELOW = 1 << 16


def join_frames(frames: list[Any], below: int = JOIN_BELOW) -> tuple[bytes, list[Any]]:
    """(``frame_sizes``, the frames to send) for logical ``frames``: those shorter than ``below``
    packed back to back into the first frame sent, the others after it in order; (b"", frames)
    when packing would save nothing (fewer than two small ones)."""
    sizes = list(map(len, frames))
    if len(sizes) > 1 and max(sizes) < below:
        # All small (a log batch's or a dispatch's values, as a rule): one pass, in C, not three
        # in Python (a replication flush spent more here than in building its rows).
        return pack("q", sizes), [b"".join(frames)]
    small = [f for f, n in zip(frames, sizes, strict=True) if n < below]
    if len(small) < 2:
        return b"", frames
    sizes = [n if n < below else -1 for n in sizes]
    return pack("q", sizes), [
        b"".join(small),
        *(f for f, n in zip(frames, sizes, strict=True) if n < 0),
    ]


def numbered_frames(values: list[Any]) -> tuple[list[int], list[Any]]:
    """A report table's frame column for ``values`` (each an inline value or None: -1) and the
    frames those inline go in, in order; ``values`` itself when none is None (the usual batch)."""
    if None not in values:
        return list(range(len(values))), values
    numbers: list[int] = []
    frames: list[Any] = []
    for value in values:
        if value is None:
            numbers.append(-1)
        else:
            numbers.append(len(frames))
            frames.append(value)
    return numbers, frames


def check_frames(frame_sizes: bytes, frames: Sequence[Any], what: str) -> None:
    """Raise the ColumnError ``split_frames`` would, without splitting: for a receiver that keeps
    the frames as they came and splits them later, if ever."""
    if not frame_sizes:
        return
    sizes = unpack("q", frame_sizes, len(frame_sizes) // 8, f"{what}.frame_sizes")
    if len(frame_sizes) % 8 or not frames:
        raise ColumnError(f"{what}.frame_sizes: {len(frame_sizes)} bytes and {len(frames)} frames")
    if sizes and min(sizes) < -1:
        raise ColumnError(f"{what}.frame_sizes: {min(sizes)} is neither a size nor -1")
    apart = sizes.count(-1)
    if apart > len(frames) - 1:
        raise ColumnError(f"{what}.frame_sizes: more separate frames than were sent")
    if sum(sizes) + apart > len(frames[0]):
        raise ColumnError(f"{what}.frame_sizes: the packed frames exceed the first frame")
    if sum(sizes) + apart != len(frames[0]) or apart != len(frames) - 1:
        raise ColumnError(f"{what}.frame_sizes: the sizes do not cover the frames sent")


def split_frames(frame_sizes: bytes, frames: list[Any], what: str) -> list[Any]:
    """The logical frames of a message sent with ``join_frames``; ColumnError if the sizes do
    not match the frames received."""
    if not frame_sizes:
        return frames
    sizes = unpack("q", frame_sizes, len(frame_sizes) // 8, f"{what}.frame_sizes")
    if len(frame_sizes) % 8 or not frames:
        raise ColumnError(f"{what}.frame_sizes: {len(frame_sizes)} bytes and {len(frames)} frames")
    blob = memoryview(frames[0])
    out: list[Any] = []
    at, rest = 0, 1
    for size in sizes:
        if size < -1:
            raise ColumnError(f"{what}.frame_sizes: {size} is neither a size nor -1")
        if size == -1:
            if rest >= len(frames):
                raise ColumnError(f"{what}.frame_sizes: more separate frames than were sent")
            out.append(frames[rest])
            rest += 1
        else:
            if at + size > len(blob):
                raise ColumnError(f"{what}.frame_sizes: the packed frames exceed the first frame")
            out.append(blob[at : at + size].tobytes())
            at += size
    if at != len(blob) or rest != len(frames):
        raise ColumnError(f"{what}.frame_sizes: the sizes do not cover the frames sent")
    return out
