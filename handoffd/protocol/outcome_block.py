"""A complete outcome's values as one block (``RunOutcome.block_sizes``, protocol 7).

An ``execute`` outcome that carries every value the run gives (the submission's ``outputs``, else
all its functions) in the submission's order names none of them: its one frame holds the values'
bytes as the owner holds them, one after the other, ``block_sizes`` their sizes (``u32`` each,
little-endian) and ``block_ids`` a checksum of the ids they belong to, in that order. The client
knows those ids (it submitted them), so neither side encodes, decodes or compares 10,000 strings,
and neither frames nor cuts a frame a value.

The checksum (``fingerprint``: CRC-32 of the ids joined by NUL) makes a disagreement between the
owner's list and the client's an error the client reports, never values given to the wrong ids.
Ids holding a NUL could join ambiguously, so such a run keeps the named form.

An owner sends the block only to a ``SubmitAndWait`` whose sender speaks ``BLOCK_SINCE``
(``Waiter.blocks``, from the request's envelope: ``reads_blocks``): older clients, ``WaitRun``, partial outcomes and
one-value outcomes get the named form (``task_ids`` and a frame a value), as before.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Sequence
from struct import Struct
from typing import Any

from handoffd.config import PROTOCOL_MAX

#: The first protocol version whose clients read a block outcome.
BLOCK_SINCE = 7
#: Fewer values than this go named (a one-task ``execute``'s outcome is read by ``client_one``).
BLOCK_MIN = 2

_U32 = "I" if array("I").itemsize == 4 else "L"
_SWAP = sys.byteorder != "little"


def reads_blocks(client_max: int) -> bool:
    """Whether a client whose range ends at ``client_max`` gets a complete outcome as a block
    from us (both ranges reach ``BLOCK_SINCE``: a daemon playing 6 answers as one would)."""
    return min(client_max, PROTOCOL_MAX) >= BLOCK_SINCE


class BlockError(ValueError):
    """A block outcome that does not match what the client submitted (or is malformed)."""


def fingerprint(ids: Sequence[str]) -> int | None:
    """CRC-32 of ``ids`` joined by NUL; None when an id holds a NUL (the join would not tell
    ``["a\\0b", "c"]`` from ``["a", "b\\0c"]``)."""
    joined = "\0".join(ids)
    if joined.count("\0") != len(ids) - 1:
        return None
    return zlib.crc32(joined.encode("utf-8", "surrogatepass"))


def pack(ids: Sequence[str], values: list[Any]) -> tuple[bytes, int, bytes] | None:
    """(sizes, checksum, block) of a complete outcome's ``values`` (of ``ids``, in order), or
    None when it goes named (too few values, or ids that cannot be checksummed)."""
    if len(values) < BLOCK_MIN:
        return None
    crc = fingerprint(ids)
    if crc is None:
        return None
    sizes = array(_U32, map(len, values))
    if _SWAP:
        sizes.byteswap()
    return sizes.tobytes(), crc, b"".join(values)


# A value's size as a ``struct`` field of that many bytes, for the usual small sizes (``str`` of an
# int a value was a tenth of the cut).
_FIELDS = tuple(f"{size}s" for size in range(4096))


def _fields(sizes: array[int]) -> str:
    try:
        return "".join(map(_FIELDS.__getitem__, sizes))
    except IndexError:
        return "".join(map("{}s".format, sizes))


def cut(
    sizes: bytes, crc: int, frames: Sequence[Any], ids: Sequence[str] | None
) -> tuple[bytes, ...]:
    """The values of a block outcome for ``ids`` (the run's functions as the client submitted
    them, or its outputs), each its own ``bytes``; ``BlockError`` if the block is not theirs or
    is malformed. Cut by one ``struct`` of a bytes field a value, in one C call: a view or a
    slice object a value cost more than the copy (not ``struct.unpack``: its cache would keep
    each run's format)."""
    if ids is None:
        raise BlockError("a block outcome for a run whose function ids this client does not know")
    if len(frames) != 1 or len(sizes) % 4:
        raise BlockError(f"a block outcome of {len(frames)} frames and {len(sizes)} size bytes")
    counts = array(_U32)
    counts.frombytes(sizes)
    if _SWAP:
        counts.byteswap()
    if len(counts) != len(ids) or fingerprint(ids) != crc:
        raise BlockError(
            f"a block outcome of {len(counts)} values that are not those of the {len(ids)} "
            "functions submitted, in their order"
        )
    frame = frames[0]
    if sum(counts) != memoryview(frame).nbytes:
        raise BlockError("a block outcome whose sizes do not add up to its frame")
    return Struct(_fields(counts)).unpack(frame)  # type: ignore[no-any-return]


__all__ = [
    "BLOCK_MIN",
    "BLOCK_SINCE",
    "BlockError",
    "cut",
    "fingerprint",
    "pack",
    "reads_blocks",
]
