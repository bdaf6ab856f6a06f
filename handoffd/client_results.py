"""A client reads a big result in chunks (issue 19, helper results19).

A result used to reach the client whole, in one frame of a ``Results`` answer: past the client's
own frame limit (1 GiB) it was dropped and ``results()`` waited for an answer that never came,
and below it the whole value sat in the transport's buffers before it was unpickled. Now the
client asks ``FetchResults`` with its chunk size; the owner sends the values that fit whole and
lists the others (``Results.far``), which the client pulls from it with ``FetchResultChunks``:
``store.chunks.ResultPull`` keeps ``CLIENT_WINDOW`` chunks asked, checks each chunk's size, place and
CRC-32 and hands them on in order to the unpickler (a large ``bytes`` in the value is written
straight into the object being built), so the client holds the value plus a few chunks in
flight, not its bytes besides. A value past the client's ``max_result_bytes`` (default the nodes'
``max_value_bytes``, 16 GiB; ``HANDOFFD_MAX_RESULT_BYTES``) is refused at its first chunk, with
an error naming the limit; a chunk that fails its checks, or an owner that lost the value
meanwhile, makes the client ask again from chunk 0 (``Run``'s ``_read_far``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handoffd import envvars, errors, values
from handoffd.config import Limits
from handoffd.protocol import codec
from handoffd.protocol.messages_chunks import ValueChunk
from handoffd.store.chunks import CHUNK_MAX, MISSING, ResultPull

if TYPE_CHECKING:
    from handoffd.client_conn import ClientPlumbing

CHUNK_BYTES = CHUNK_MAX  # what the client asks per chunk (the owner cuts no coarser than 2 MiB)
ATTEMPTS = 3  # reads of one result from chunk 0 before giving up
DEFAULT_MAX = Limits().max_value_bytes


class Again(Exception):
    """This read of a result failed in a way a new one may not (the owner lost it meanwhile, a
    chunk failed its checks): ask ``FetchResults`` again and read from chunk 0."""


def default_limit() -> int:
    """``HANDOFFD_MAX_RESULT_BYTES``, else ``DEFAULT_MAX``."""
    raw = envvars.get("MAX_RESULT_BYTES")
    if raw is None or not raw.strip():
        return DEFAULT_MAX
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise errors.HandoffError(
            f"{envvars.name('max_result_bytes')}={raw!r}: expected a positive number of bytes"
        )
    return limit


def too_big(run_id: str, task_id: str, total: int, limit: int) -> str:
    return (
        f"the result of {task_id!r} of run {run_id} is {total} bytes pickled, over this client's "
        f"max_result_bytes={limit}: return a smaller value (or a file path), or raise the "
        f"client's limit (client.max_result_bytes, or {envvars.name('max_result_bytes')})"
    )


def read(client: ClientPlumbing, run_id: str, task_id: str, limit: int, timeout: float) -> Any:
    """The value of ``task_id`` (listed in ``Results.far``), read in chunks from the daemon this
    thread's connection goes to and unpickled as they come. Raises ``Again``, ``HandoffError``
    (past ``limit``) or ``ConnectionError`` (no chunk within ``timeout``)."""
    pull = ResultPull(next(client._ids), run_id, task_id, CHUNK_BYTES, limit)
    conn = client._connection()
    conn.send(codec.encode(pull.first(), sender=client._name))

    def next_chunk() -> Any:
        """The value's next chunk in order, asking for more as they arrive."""
        while True:
            data = pull.ready()
            if data is not None:
                return data
            if pull.done:
                raise Again(f"the value of {pull.total} bytes did not unpickle")
            reply, frames = client._receive(pull.request_id, timeout)
            if not isinstance(reply, ValueChunk):
                raise Again(f"the daemon answered a chunk request with {type(reply).__name__}")
            if reply.total > limit:
                raise errors.HandoffError(too_big(run_id, task_id, reply.total, limit))
            step = pull.arrived(reply, frames, f"the result of {task_id!r}", "this client")
            if step.error:
                gone = step.error == MISSING
                raise Again("the daemon no longer holds it" if gone else step.error)
            for ask in step.asks:
                conn.send(codec.encode(ask, sender=client._name))

    first = next_chunk()
    if pull.count == 1:
        return values.loads(first)
    stream = _Chunks(first, next_chunk)
    value = pickle.Unpickler(stream).load()
    if not pull.done or stream.left():
        raise Again(f"the value's {pull.total} bytes held more than one pickle")
    return value


class _Chunks:
    """A value arriving in chunks as the file an unpickler reads: a large ``bytes`` or
    ``bytearray`` in it is written by ``readinto`` straight into the object being built."""

    def __init__(self, first: Any, more: Callable[[], Any]) -> None:
        self._view = memoryview(first).cast("B")
        self._at = 0
        self._more = more

    def left(self) -> int:
        return self._view.nbytes - self._at

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        wanted, done = out.nbytes, 0
        while done < wanted:
            if self._at >= self._view.nbytes:
                self._view, self._at = memoryview(self._more()).cast("B"), 0
            take = min(wanted - done, self._view.nbytes - self._at)
            out[done : done + take] = self._view[self._at : self._at + take]
            done += take
            self._at += take
        return done

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise Again("the unpickler asked for the rest of the value at once")
        buffer = bytearray(size)
        self.readinto(buffer)
        return bytes(buffer)

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            line += self.read(1)
        return bytes(line)
