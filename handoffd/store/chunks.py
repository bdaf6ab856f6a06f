"""Values bigger than a frame, moved in chunks (issue 19, helper chunk19): pure parts.

A value used to travel node to node as one frame, so a peer whose ``max_frame_bytes`` was below
it could not take it at all. Now a consumer pulls it by reference (``protocol.messages_chunks``):

- ``Pull`` is one value coming from one holder: it asks for ``WINDOW`` chunks at once and for
  more each time half of those arrived, so a few are always in flight; ``Assembly`` writes each
  chunk in place into one buffer of the value's size (an anonymous mmap: no zero-filling pass, no
  copy at the end), so the consumer holds the value plus at most ``WINDOW`` chunks in transit, and
  each arrival costs one copy of one chunk on the loop. Sizes are checked (the total against the
  consumer's ``max_value_bytes``, every chunk's length against its place, the total against the
  first answer's), and a CRC-32 per chunk of a value of several chunks (a bad chunk fails the pull
  from that holder; the consumer tries the next one, then lineage recompute, as for a whole-value
  fetch).
- ``serve`` is the holder's side: the asked chunks of a value in its store, as views (a spilled
  value is read by range, never whole).
- The chunk size is the consumer's: ``chunk_size(max_frame_bytes)``, at most ``CHUNK_MAX``.
  A value of one chunk is sent as it is, without a CRC (as a whole-value fetch was).
- A dispatch's frame over ``FAR_BYTES`` (a big argument, a big value the owner kept) is never
  inlined: the owner keeps it in its store under ``far_key`` and the dispatch names it
  (``FarFrame``); the executing node pulls it like a value. ``FAR_BYTES`` is half the smallest
  ``max_frame_bytes`` a node may have, so any peer can read any dispatch.
"""

from __future__ import annotations

import mmap
import zlib
from typing import Any

from handoffd.protocol.messages_chunks import FetchChunks, FetchResultChunks, ValueChunk

CHUNK_MAX = 2 << 20  # bytes per chunk at most (a 1 MiB value still moves in one message)
CHUNK_MIN = 64 << 10  # a holder never cuts finer than this, whatever it is asked
WINDOW = 4  # chunks asked for at once; more are asked when half of them arrived
CLIENT_WINDOW = 8  # the same for a client reading a result from its owner (SERVE_MAX at most)
SERVE_MAX = 16  # chunks a holder sends for one request at most
FAR_BYTES = 512 << 10  # dispatch frames past this go by reference
FAR_PREFIX = "\x00"  # store keys of far frames: task ids never hold control characters
MISSING = "missing"  # a holder's answer: it does not hold the value (try the next one)
#: Whether a holder sends each chunk's CRC-32 of a value of several chunks (checked when sent):
#: zlib does ~1.5 GB/s here, and the daemons' CPU for a 600 MiB move did not measurably change.
CRC = True


def chunk_size(max_frame_bytes: int) -> int:
    """The chunk a node asks for: well under its own frame limit, at most ``CHUNK_MAX``."""
    return max(CHUNK_MIN, min(CHUNK_MAX, max_frame_bytes // 4))


def far_key(kind: str, task_id: str) -> str:
    """The owner's store key for a far frame of ``task_id`` (kind "p": its code and arguments,
    "v": its value)."""
    return f"{FAR_PREFIX}{kind}:{task_id}"


def is_far_key(key: str) -> bool:
    return key.startswith(FAR_PREFIX)


def too_large(size: int, limit: int, what: str, node: str) -> str:
    """The error for a value of ``size`` bytes past a node's ``max_value_bytes``."""
    return (
        f"{what} is {size} bytes, over max_value_bytes={limit} of node {node!r}: return or "
        "pass smaller values (or a file path), or start every node with a larger limit "
        "(handoffd start --limit max_value_bytes=BYTES)"
    )


class Assembly:
    """A value of ``total`` bytes arriving as chunks of ``chunk`` bytes, in any order."""

    __slots__ = ("total", "chunk", "count", "have", "buffer", "whole")

    def __init__(self, total: int, chunk: int) -> None:
        self.total = total
        self.chunk = chunk
        self.count = max(1, -(-total // chunk))
        self.have: set[int] = set()
        # Several chunks: written in place. One: kept as it came (no copy at all).
        self.buffer: mmap.mmap | None = mmap.mmap(-1, total) if self.count > 1 else None
        self.whole: Any = None

    def size_of(self, index: int) -> int:
        return min(self.chunk, self.total - index * self.chunk)

    def add(self, index: int, data: Any, crc: int = -1) -> str:
        """Keep chunk ``index`` (checked against its CRC-32 ``crc`` unless negative); the reason
        it is unusable ("" if kept, or already had)."""
        if crc >= 0 and zlib.crc32(data) != crc:
            return f"chunk {index} failed its CRC-32"
        if not 0 <= index < self.count:
            return f"chunk {index} of a value of {self.count} chunks"
        size = len(data)
        if size != self.size_of(index):
            return f"chunk {index} has {size} bytes, expected {self.size_of(index)}"
        if index in self.have:
            return ""  # a duplicate delivery: the same bytes again
        if self.buffer is None:
            self.whole = data
        else:
            at = index * self.chunk
            self.buffer[at : at + size] = data
        self.have.add(index)
        return ""

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.have]

    @property
    def done(self) -> bool:
        return len(self.have) == self.count

    def value(self) -> Any:
        """The whole value (a bytes-like object: the mmap, or the one chunk as it came)."""
        assert self.done
        return self.buffer if self.buffer is not None else self.whole


class PullStep:
    """What one ``ValueChunk`` did to a ``Pull``: an ``error`` (``MISSING``, or why the holder's
    answer is unusable; ``fatal``: no holder can do better, the value is past our limit), the
    requests to send next, and the ``value`` once complete."""

    __slots__ = ("error", "fatal", "asks", "value")

    def __init__(
        self,
        error: str = "",
        asks: tuple[FetchChunks | FetchResultChunks, ...] = (),
        value: Any = None,
    ) -> None:
        self.error = error
        self.fatal = False
        self.asks = asks
        self.value = value


class Pull:
    """One value pulled from one holder in chunks of ``chunk`` bytes (at most ``max_value``)."""

    __slots__ = ("request_id", "run_id", "key", "reply_to", "chunk", "max_value", "asked", "parts")
    window = WINDOW  # chunks in flight at most

    def __init__(
        self, request_id: int, run_id: str, key: str, reply_to: str, chunk: int, max_value: int
    ) -> None:
        self.request_id = request_id
        self.run_id = run_id
        self.key = key
        self.reply_to = reply_to
        self.chunk = chunk
        self.max_value = max_value
        self.asked = 0  # chunks asked for so far: 0 .. asked - 1
        self.parts: Assembly | None = None  # from the first answer on

    def _ask(self, first: int, count: int) -> FetchChunks | FetchResultChunks:
        self.asked = first + count
        return FetchChunks(
            self.request_id, self.run_id, self.key, first, count, self.chunk, self.reply_to
        )

    def first(self) -> FetchChunks | FetchResultChunks:
        return self._ask(0, self.window)

    def arrived(self, msg: ValueChunk, frames: list[Any], what: str, node: str) -> PullStep:
        if msg.total < 0:
            return PullStep(MISSING)
        if len(frames) != 1:
            return PullStep(f"a chunk came with {len(frames)} frames")
        parts = self.parts
        if parts is None:
            refused = self._refused(msg, what, node)
            if refused is not None:
                return refused
            try:
                parts = self.parts = Assembly(msg.total, self.chunk)
            except (OSError, ValueError, OverflowError) as exc:  # no room for it here
                return PullStep(f"no memory for a value of {msg.total} bytes: {exc}")
        elif msg.total != parts.total:
            return PullStep(f"the value's size changed from {parts.total} to {msg.total} bytes")
        error = parts.add(msg.index, frames[0], msg.crc)
        if error:
            return PullStep(error)
        if parts.done:
            return PullStep(value=parts.value())
        received, count = len(parts.have), parts.count
        window = self.window
        if self.asked < count and self.asked - received <= window // 2:
            return PullStep(asks=(self._ask(self.asked, min(window, count - self.asked)),))
        return PullStep()

    def _refused(self, msg: ValueChunk, what: str, node: str) -> PullStep | None:
        """The first chunk's word on the whole value: too big for us (final), or cut otherwise."""
        if msg.total > self.max_value:
            step = PullStep(too_large(msg.total, self.max_value, what, node))
            step.fatal = True
            return step
        if msg.chunk_bytes != self.chunk and msg.total > self.chunk:
            return PullStep(f"chunks of {msg.chunk_bytes} bytes, asked {self.chunk}")
        return None


class ResultPull(Pull):
    """A client's pull of a result from its run's owner (``FetchResultChunks``; ``key``: the
    task id; ``reply_to`` unused: the owner answers on the client's connection). Its chunks are
    not assembled: checked as ``Pull`` checks them, then handed on in order (``ready``) to be
    unpickled as they come, so the client never holds the value's bytes and the value at once.
    More chunks in flight than between daemons: a round trip to a daemon on a loaded machine
    costs tens of ms, and the client has nothing else to do meanwhile."""

    __slots__ = ("total", "count", "next", "early")
    window = CLIENT_WINDOW

    def __init__(self, request_id: int, run_id: str, key: str, chunk: int, max_value: int) -> None:
        super().__init__(request_id, run_id, key, "", chunk, max_value)
        self.total = -1  # from the first answer on
        self.count = 0
        self.next = 0  # the chunk ``ready`` hands on next
        self.early: dict[int, Any] = {}  # chunks arrived, not handed on yet

    def _ask(self, first: int, count: int) -> FetchChunks | FetchResultChunks:
        self.asked = first + count
        return FetchResultChunks(self.request_id, self.run_id, self.key, first, count, self.chunk)

    def arrived(self, msg: ValueChunk, frames: list[Any], what: str, node: str) -> PullStep:
        if msg.total < 0:
            return PullStep(MISSING)
        if len(frames) != 1:
            return PullStep(f"a chunk came with {len(frames)} frames")
        if self.total < 0:
            refused = self._refused(msg, what, node)
            if refused is not None:
                return refused
            self.total, self.count = msg.total, max(1, -(-msg.total // self.chunk))
        elif msg.total != self.total:
            return PullStep(f"the value's size changed from {self.total} to {msg.total} bytes")
        data, index = frames[0], msg.index
        if not 0 <= index < self.count:
            return PullStep(f"chunk {index} of a value of {self.count} chunks")
        size = min(self.chunk, self.total - index * self.chunk)
        if len(data) != size:
            return PullStep(f"chunk {index} has {len(data)} bytes, expected {size}")
        if msg.crc >= 0 and zlib.crc32(data) != msg.crc:
            return PullStep(f"chunk {index} failed its CRC-32")
        if index >= self.next:  # (else a duplicate delivery)
            self.early[index] = data
        received, window = self.next + len(self.early), self.window
        if self.asked < self.count and self.asked - received <= window // 2:
            return PullStep(asks=(self._ask(self.asked, min(window, self.count - self.asked)),))
        return PullStep()

    def ready(self) -> Any:
        """The next chunk in order if it arrived (None if not yet)."""
        data = self.early.pop(self.next, None)
        if data is not None:
            self.next += 1
        return data

    @property
    def done(self) -> bool:
        return self.total >= 0 and self.next >= self.count


def serve(store: Any, msg: FetchChunks) -> list[tuple[ValueChunk, list[Any]]]:
    """A holder's answers to ``msg``: one ``ValueChunk`` per chunk asked (at most ``SERVE_MAX``,
    chunks of at least ``CHUNK_MIN``), or one saying the value is not held here."""
    return serve_range(
        store, msg.request_id, msg.run_id, msg.key, msg.first, msg.count, msg.chunk_bytes
    )


class OneValue:
    """One value in memory as a store ``serve_range`` reads from (an owner serving a result to
    its client in chunks: a value the scheduler kept, or one it pulled for that client)."""

    __slots__ = ("run_id", "key", "data")

    def __init__(self, run_id: str, key: str, data: Any) -> None:
        self.run_id, self.key, self.data = run_id, key, data

    def has(self, run_id: str, key: str) -> bool:
        return run_id == self.run_id and key == self.key

    def size(self, run_id: str, key: str) -> int:
        return len(self.data)

    def get(self, run_id: str, key: str) -> Any:
        return self.data

    def read(self, run_id: str, key: str, offset: int, length: int) -> Any:
        return memoryview(self.data)[offset : offset + length]


def serve_range(
    store: Any, request_id: int, run_id: str, key: str, first: int, count: int, chunk_bytes: int
) -> list[tuple[ValueChunk, list[Any]]]:
    """``serve`` of a request's fields: also what an owner answers a client's
    ``FetchResultChunks`` with (``daemon.results``)."""
    total = store.size(run_id, key) if store.has(run_id, key) else -1
    chunk = max(CHUNK_MIN, min(CHUNK_MAX, chunk_bytes))
    if total < 0:
        return [(ValueChunk(request_id, run_id, key, first, -1, chunk, -1), [])]
    chunks = max(1, -(-total // chunk))
    out: list[tuple[ValueChunk, list[Any]]] = []
    for index in range(max(0, first), min(chunks, first + min(count, SERVE_MAX))):
        # One chunk: the value itself, as a whole-value fetch sends it (a view of it cost
        # pyzmq more per send).
        data = (
            store.read(run_id, key, index * chunk, chunk) if chunks > 1 else store.get(run_id, key)
        )
        if data is None:  # dropped or unreadable meanwhile
            miss = ValueChunk(request_id, run_id, key, index, -1, chunk, -1)
            return [*out, (miss, [])]
        crc = zlib.crc32(data) if chunks > 1 and CRC else -1
        out.append((ValueChunk(request_id, run_id, key, index, total, chunk, crc), [data]))
    return out
