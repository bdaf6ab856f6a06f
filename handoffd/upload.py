"""Big submissions in pieces (issue 19): a message past what a daemon takes whole goes up in chunks.

A submission of 200,000 tasks has a control body past ``Limits.max_body_bytes`` and more frames than
``max_frames``; one with a huge argument has a frame past ``max_frame_bytes``. Each used to be
dropped by the daemon's decoder, and the client told only that the daemon "did not answer". Now the
client (``too_big``) packs such a message's frames into one byte string (``pack``: an 8-byte header
length, a msgpack list of frame sizes, the frames) and sends it as ``UploadChunk`` pieces of
``CHUNK_BYTES``, a few in flight, each answered (``UploadTaken``). The daemon's ``Uploads`` (pure)
puts the pieces into one buffer, growing as they come, within the announced size, which counts
against ``Limits.max_upload_bytes`` per client connection (all its open uploads together); it checks that no
piece is missing or too much, and returns the message's frames after the last; the node then
decodes them with the upload's bounds and handles the submission as if it came whole. An upload
left unfinished for ``IDLE_S`` is dropped.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from handoffd.config import Limits
from handoffd.protocol import frames_cut

CHUNK_BYTES = 1 << 20  # one piece (well under any sane max_frame_bytes)
WINDOW = 4  # pieces in flight before the client waits for an answer
IDLE_S = 60.0  # an upload with no piece for this long is dropped
# Client side: past any of these a submission goes up in pieces. The client does not know the
# daemon's limits (defaults 8 MiB, 100,000 frames, 1 GiB), so these are far below them: a daemon
# configured lower still takes it, as long as it takes frames of CHUNK_BYTES.
BODY_PAST = 1 << 20
FRAMES_PAST = 10_000
FRAME_PAST = CHUNK_BYTES
_HEADER = 8


def decode_limits(limits: Limits) -> Limits:
    """What a reassembled submission may be: its body and frames within the upload's size, one
    payload frame per task (and a few code packages) within the tasks per run."""
    return dataclasses.replace(
        limits,
        max_body_bytes=max(limits.max_body_bytes, limits.max_upload_bytes),
        max_frame_bytes=max(limits.max_frame_bytes, limits.max_upload_bytes),
        max_frames=max(limits.max_frames, limits.max_tasks_per_run + 1024),
    )


def too_big(frames: list[Any]) -> bool:
    """Does the encoded message ``frames`` (body first) go up in pieces?"""
    if len(frames[0]) > BODY_PAST or len(frames) > FRAMES_PAST:
        return True
    for frame in frames:
        if len(frame) > FRAME_PAST:
            return True
    return False


def pack(frames: list[Any]) -> bytes:
    sizes = msgpack.packb([len(f) for f in frames])
    return b"".join([len(sizes).to_bytes(_HEADER, "big"), sizes, *frames])


def unpack(data: bytearray | bytes | memoryview) -> list[Any]:
    """``pack``'s frames, as views of ``data``; ValueError saying what is wrong."""
    at, sizes = check(data)
    return views(data, at, sizes)


def check(data: bytearray | bytes | memoryview) -> tuple[int, Sequence[int]]:
    """(where ``pack``'s frames start in ``data``, their sizes); ValueError saying what is wrong.
    Run where the frames are cut (``Whole.frames``, the upload thread), and in short C calls:
    one ``unpackb`` of 1,000,000 sizes then their array and sum held the GIL, and so the loop,
    55-225 ms; now no call looks at more than ``_SIZES_PIECE`` sizes."""
    view = memoryview(data)
    if len(view) < _HEADER:
        raise ValueError("the upload is shorter than its header")
    size = int.from_bytes(view[:_HEADER], "big")
    if size > len(view) - _HEADER:
        raise ValueError("the upload's frame list runs past its end")
    at = _HEADER + size
    packed = _sizes(view[_HEADER:at])
    if not packed or at + frames_cut.total(packed) != len(view):
        raise ValueError("the upload's frame sizes do not add up to its length")
    return at, packed


# Sizes unpacked, checked and summed per C call in ``check`` (~1-3 ms of GIL each).
_SIZES_PIECE = 16384
# A frame list of at most this many bytes (so at most as many sizes) is unpacked in one C call
# (``_sizes_at_once``, well under a ms): the Unpacker's ``unpack`` called once per size was most
# of a 10,000-task upload's check, which its ``prepare`` waits for.
_ONE_CALL_BYTES = 1 << 16
_NOT_SIZES = "the upload's frame list is not a list of sizes"


def _sizes(head: memoryview) -> array[int]:
    """The msgpack array of non-negative ints ``head`` holds, as an int64 array (a bool counts
    as 0 or 1: the sizes must add up all the same); ValueError for anything else, or bytes left."""
    if len(head) <= _ONE_CALL_BYTES:
        return _sizes_at_once(head)
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(head), 1))
    packed: array[int] = array("q")
    try:
        unpacker.feed(head)
        count = unpacker.read_array_header()
        if count > len(head):  # (every size takes a byte at least)
            raise ValueError(_NOT_SIZES)
        unpack = unpacker.unpack
        while len(packed) < count:
            # An int64 array takes ints only (and bools).
            piece = array("q", [unpack() for _ in range(min(_SIZES_PIECE, count - len(packed)))])
            if piece and min(piece) < 0:
                raise ValueError(_NOT_SIZES)
            packed.extend(piece)
        if unpacker.tell() != len(head):
            raise ValueError(_NOT_SIZES)
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc) == _NOT_SIZES else _NOT_SIZES) from None
    except Exception:  # noqa: BLE001 - msgpack's own errors (truncated, not an array, a float)
        raise ValueError(_NOT_SIZES) from None
    return packed


def _sizes_at_once(head: memoryview) -> array[int]:
    """``_sizes`` of a short ``head`` in one ``unpackb`` and one array, with the same verdict: an
    int64 array takes ints (and bools) only, ``unpackb`` refuses bytes left over."""
    try:
        sizes = msgpack.unpackb(head)
        if type(sizes) is not list:
            raise ValueError(_NOT_SIZES)
        packed = array("q", sizes)
    except Exception:  # noqa: BLE001 - msgpack's own errors, a size that is no int64
        raise ValueError(_NOT_SIZES) from None
    if packed and frames_cut.total(packed) < 0:  # (one negative size)
        raise ValueError(_NOT_SIZES)
    return packed


def _total(packed: array[int]) -> int:
    """``sum(packed)``, a piece at a time."""
    return sum(sum(packed[at : at + _SIZES_PIECE]) for at in range(0, len(packed), _SIZES_PIECE))


def views(data: bytearray | bytes | memoryview, at: int, sizes: Sequence[int]) -> list[Any]:
    """The frames of ``data`` (``check``): a big one as a view, not a copy (a copy of every frame
    took the loop ~0.2 s for a 200 MiB upload; what is kept is copied off the loop,
    ``daemon.upload_intake``, where this is called too: ``Whole.frames``), a small one as bytes
    (``protocol.frames_cut``: one compiled pass, no view a frame)."""
    return frames_cut.cut(data, at, sizes)


@dataclass(frozen=True)
class Whole:
    """An upload made whole, its frame list checked (``checked``: ``check``, ValueError) and its
    frames cut (``frames``) in the upload thread: cutting 1,000,000 of them took the loop 1.2 s,
    their sizes' check 55-225 ms."""

    data: bytearray | bytes | memoryview  # a one-piece upload's piece as it came
    at: int = -1  # where the frames start, once checked
    sizes: Sequence[int] = ()

    def checked(self) -> Whole:
        at, sizes = check(self.data)
        return Whole(self.data, at, sizes)

    def frames(self) -> list[Any]:
        whole = self if self.at >= 0 else self.checked()
        return views(self.data, whole.at, whole.sizes)


@dataclass
class _Upload:
    count: int
    total: int
    buffer: bytearray
    seen: float
    received: int = 0
    filled: int = 0


@dataclass
class Uploads:
    """The daemon's open uploads, per client connection (pure; ``now`` is given)."""

    limits: Limits
    _open: dict[bytes, dict[str, _Upload]] = field(default_factory=dict)

    def held(self, conn: bytes) -> int:
        return sum(u.total for u in self._open.get(conn, {}).values())

    def add(
        self, conn: bytes, msg: Any, piece: bytes | memoryview, now: float
    ) -> tuple[str, int, Whole | None]:
        """Take one ``UploadChunk``: (error or "", pieces received, the message once the last
        piece is in, its frame list unchecked). An error drops the upload."""
        uploads = self._open.setdefault(conn, {})
        upload = uploads.get(msg.upload_id)
        cap = self.limits.max_upload_bytes
        if upload is None:
            if msg.index != 0:
                return self._fail(
                    conn,
                    msg,
                    f"piece 0 of upload {msg.upload_id} is missing "
                    f"(piece {msg.index} came first): send the submission again",
                )
            if msg.count < 1 or msg.total_bytes < 1 or msg.count > msg.total_bytes:
                return self._fail(
                    conn,
                    msg,
                    f"upload {msg.upload_id}: {msg.count} pieces for "
                    f"{msg.total_bytes} bytes makes no sense",
                )
            if self.held(conn) + msg.total_bytes > cap:
                return self._fail(
                    conn,
                    msg,
                    f"a submission of {msg.total_bytes} bytes (with {self.held(conn)} bytes of "
                    f"this client's other uploads) is over max_upload_bytes={cap}: submit a "
                    "smaller DAG (fewer tasks, arguments as handoffd values or files) or raise "
                    "the limit (handoffd start --limit max_upload_bytes=BYTES)",
                )
            # Grown as pieces come (not the announced size at once: announcing costs nothing).
            upload = uploads[msg.upload_id] = _Upload(msg.count, msg.total_bytes, bytearray(), now)
        if msg.index != upload.received or msg.count != upload.count:
            return self._fail(
                conn,
                msg,
                f"piece {upload.received} of upload {msg.upload_id} is missing (piece "
                f"{msg.index} of {msg.count} came instead): send the submission again",
            )
        if msg.total_bytes != upload.total or upload.filled + len(piece) > upload.total:
            return self._fail(
                conn,
                msg,
                f"upload {msg.upload_id} is longer than the {upload.total} bytes it announced",
            )
        # A one-piece upload (any submission under CHUNK_BYTES) is that piece: kept as it came,
        # not copied into the buffer (a copy on the loop, and fresh pages in a first run).
        one = upload.count == 1
        if not one:
            upload.buffer += piece
        upload.filled += len(piece)
        upload.received += 1
        upload.seen = now
        if upload.received < upload.count:
            return "", upload.received, None
        self._drop(conn, msg.upload_id)
        if upload.filled != upload.total:
            return (
                f"upload {msg.upload_id} is shorter than the {upload.total} bytes it announced",
                0,
                None,
            )
        # Its frame list is checked where its frames are cut (``Whole.frames``), off the loop.
        return "", upload.received, Whole(piece if one else upload.buffer)

    def _fail(self, conn: bytes, msg: Any, error: str) -> tuple[str, int, None]:
        self._drop(conn, msg.upload_id)
        return error, 0, None

    def _drop(self, conn: bytes, upload_id: str) -> None:
        uploads = self._open.get(conn)
        if uploads is not None:
            uploads.pop(upload_id, None)
            if not uploads:
                del self._open[conn]

    def sweep(self, now: float) -> int:
        """Drop uploads idle for IDLE_S (a client that went away mid-upload); how many."""
        dropped = 0
        for conn in list(self._open):
            for upload_id, upload in list(self._open[conn].items()):
                if now - upload.seen > IDLE_S:
                    self._drop(conn, upload_id)
                    dropped += 1
        return dropped
