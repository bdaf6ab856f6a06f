# cython: annotation_typing=False
# (the annotations are for mypy; frames_cut.pxd beside it gives the compiled build its C types)
"""A whole upload's frames cut out of its bytes (``upload.views``), in one compiled pass.

A W1 submission (10,000 no-ops) comes as one upload of 10,001 frames, each task's payload tail a
frame of ~17 bytes; cutting them as a memoryview each, in a Python loop, was ~1.4k instructions a
frame in the upload thread, most of the build's intake after the run's records. Here a frame under
``COPY_BYTES`` is copied into a bytes of its own (what the codec gives for a message that came
whole), a bigger one kept as a view of the upload's bytes (no copy of a 1 MiB argument). Pure, data
only; compiled (``setup.py PROTOCOL_COMPILED``), this file is also its own pure-Python twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

#: Frames under this many bytes are copied out (a bytes object is smaller than a view of it, and
#: made in one allocation); bigger ones stay views.
COPY_BYTES = 4096


def _bytes_of(flat: Any, at: int, size: int) -> bytes:
    return bytes(flat[at : at + size])


# A frame's copy: this function here, compiled one C allocation straight from the buffer's bytes
# (frames_cut.pxd), where a view made and copied was most of a frame's cost. (Cython refuses a
# name the .pxd defines to be assigned: hence the store through ``globals()``, which ruff does not
# see either: its use says ``noqa: F821``.)
if TYPE_CHECKING:
    _copy: Callable[[Any, int, int], bytes]
globals().setdefault("_copy", _bytes_of)


def cut(data: Any, at: int, sizes: Sequence[int]) -> list[Any]:
    """The frames of ``data`` from offset ``at`` on, of ``sizes`` (checked by ``upload.check``:
    they lie within ``data``; IndexError for one that does not), in order: bytes under
    ``COPY_BYTES``, views of ``data`` else."""
    view = memoryview(data)
    # (the same bytes as a flat view: one cast here, never one a frame)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    flat = view  # (compiled: a typed view of the same bytes, for ``_copy``)
    length = len(view)
    frames: list[Any] = []
    for i in range(len(sizes)):
        size = sizes[i]
        end = at + size
        if size < 0 or at < 0 or end > length:
            raise IndexError(f"frame {i} lies past the data's {length} bytes")
        if size < COPY_BYTES:
            frames.append(_copy(flat, at, size))  # noqa: F821
        else:
            frames.append(view[at:end])
        at = end
    return frames


#: ``total``'s answer for sizes whose sum is past an int64 (no upload is that long).
OVER = (1 << 63) - 1


def total(sizes: Any) -> int:
    """The sum of ``sizes`` (an int64 ``array``: ``upload.check``'s frame sizes), ``OVER`` when
    it is past an int64, or -1 when one of them is negative: one C pass, where ``min`` and then
    ``sum`` made an int object a size twice."""
    every = sizes  # (compiled: a typed view of the array's int64s)
    limit = OVER  # (compiled: a C long long, read once)
    out = 0
    over = False
    for i in range(len(every)):
        size = every[i]
        if size < 0:
            return -1
        if over or size > limit - out:
            over = True
        else:
            out += size
    return limit if over else out


def longest(sizes: Any) -> int:
    """``max(sizes, default=0)`` of an int64 ``array`` (a run's payload tails' sizes: the longest
    a snapshot's specs would carry), in one C pass."""
    every = sizes  # (compiled: a typed view of the array's int64s)
    out = 0
    for i in range(len(every)):
        size = every[i]
        if i == 0 or size > out:
            out = size
    return out
