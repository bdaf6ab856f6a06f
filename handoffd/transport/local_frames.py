# cython: annotation_typing=False
# (the annotations are for mypy; local_frames.pxd beside it gives the compiled build its C types)
"""A one-task execute's two-frame message on the local socket, cut and joined in one pass.

Every W3 call crosses the local socket (``local_socket``) twice as a message of two small frames:
the request (the ``SubmitAndWait`` body and the call's payload) and its reply (the
``RunOutcome`` body and the value). ``whole`` cuts such a message out of the bytes one read
brought, ``small`` joins one into the bytes one write sends: what ``take`` and ``pack`` give for
it, without their general loops. In Python each was a header unpacked or packed through a
``Struct``, a view sliced and copied per frame and a join, ~2.5-5k instructions a message on both
the client and the daemon's loop; compiled (setup.py CLIENT_COMPILED, the .pxd beside it), each
is the header's three numbers read or written in place and one copy a frame. This .py is the
pure build and the reference tests/unit/test_local_socket_framing.py holds the compiled one to.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

JOIN_BYTES = 64 * 1024  # (local_socket.JOIN_BYTES: frames below it are joined by ``pack``)
_TWO = struct.Struct("!IQQ")  # the header of a message of two frames: count, two sizes
HEAD = _TWO.size


def _joined_of(first: bytes, second: bytes) -> bytes:
    return _TWO.pack(2, len(first), len(second)) + first + second


def _cut_of(data: Any, n: int) -> list[bytes] | None:
    if len(data) < n:  # (a scratch's view: its len counts bytes)
        raise ValueError(f"{n} bytes asked of a buffer of {len(data)}")
    count, size, more = _TWO.unpack_from(data)
    if count != 2 or HEAD + size + more != n:
        return None
    at = HEAD + size
    return [bytes(data[HEAD:at]), bytes(data[at:n])]


# The header written or read and the frames copied: these functions here, compiled one C pass
# over the bytes (local_frames.pxd). (Cython refuses a name the .pxd defines to be assigned:
# hence the store through ``globals()``, as protocol/frames_cut.py does; ruff does not see it
# either: its uses say ``noqa: F821``.)
if TYPE_CHECKING:
    _joined: Callable[[bytes, bytes], bytes]
    _cut: Callable[[Any, int], list[bytes] | None]
globals().setdefault("_joined", _joined_of)
globals().setdefault("_cut", _cut_of)


def small(frames: Sequence[Any]) -> bytes | None:
    """``pack(frames)``'s bytes as one buffer for two bytes frames below ``JOIN_BYTES`` together
    (pack would join them: the same bytes), the request of a one-task execute; else None."""
    if type(frames) is not list and type(frames) is not tuple or len(frames) != 2:
        return None
    first = frames[0]
    second = frames[1]
    if type(first) is not bytes or type(second) is not bytes:
        return None
    if len(first) + len(second) >= JOIN_BYTES:
        return None
    return _joined(first, second)  # noqa: F821


def whole(data: Any, n: int) -> list[bytes] | None:
    """The two frames of the message that is exactly ``data[:n]`` (a buffer of at least ``n``
    bytes: a read's scratch), as ``take`` would cut them (a one-task execute's reply or
    request); None when it is anything else (``take`` reads it)."""
    if n < HEAD:
        return None
    return _cut(data, n)  # noqa: F821


__all__ = ["HEAD", "JOIN_BYTES", "small", "whole"]
