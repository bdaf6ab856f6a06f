"""Replies to clients, a big one encoded in a thread (issue 19, item 7: no loop stall).

A run's status or outcome carries its placement (one entry per task) and an outcome its pending
ids: for a 200,000-task run one reply of a few MiB whose checking and packing held the loop
~0.1-0.2 s. ``Replies`` hands a reply with ``BIG_ENTRIES`` or more of those entries to one worker
thread, which encodes it with ``Codec.encode(piece=PIECE)`` (the same bytes, packed a slice per C
call, so the loop gets the GIL between slices); the frames are sent from the loop when it is
done. Replies to that client connection made meanwhile wait behind it, so each connection still
hears its replies in the order they were made. The message and its frames must not change after
``reply`` (the owner builds each reply's dict and tuples afresh).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from handoffd import collector
from handoffd.protocol import messages as m

log = logging.getLogger("handoffd.daemon")

BIG_ENTRIES = 20_000  # placement + pending + carried ids from which a reply is encoded off the loop
PIECE = 2_048  # entries packed per C call in the thread

# (msg, frames) -> encode(piece): bound on the loop (the sender's incarnation), run in the thread
Prepare = Callable[[Any, "list[Any] | None"], Callable[[int], list[Any]]]


def entries(msg: Any) -> int:
    """How many placement, pending and carried ids ``msg`` holds (0 for other messages)."""
    if type(msg) is m.RunOutcome:  # (the usual one: no look-ups by name)
        return len(msg.placement) + len(msg.pending) + len(msg.task_ids)
    placement = getattr(msg, "placement", None)
    if type(placement) is not dict:
        return 0
    return len(placement) + len(getattr(msg, "pending", ())) + len(getattr(msg, "task_ids", ()))


def _encode(encode: Callable[[int], list[Any]]) -> list[Any]:
    # The collector off meanwhile: the thread's allocations would start collections, each
    # holding the GIL (a generation-0 one took 70 ms of the loop's time on a loaded machine).
    with collector.paused():
        return encode(PIECE)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a node driven without a loop (tests): encoded at once
        return None


class Replies:
    """``reply(conn, msg, frames)``: encoded and sent at once, unless it is big or its
    connection still waits for a big one (module doc). ``threaded`` False (tests driving a node
    without a loop): everything at once."""

    def __init__(
        self,
        prepare: Prepare,
        send: Callable[[bytes, list[Any]], object],
        threaded: bool = True,
        encode: Callable[[Any, list[Any] | None], list[Any]] | None = None,
    ) -> None:
        """``encode(msg, frames)``: ``prepare(msg, frames)(0)``'s frames, made at once (a
        reply sent on the spot needs no encoding bound for later)."""
        self._prepare = prepare
        self._encode = encode if encode is not None else lambda msg, frames: prepare(msg, frames)(0)
        self._send = send
        self.threaded = threaded
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # conn -> its replies in order, each a cell: [frames], or [None] while the thread encodes
        self._behind: dict[bytes, deque[list[Any]]] = {}
        self._closed = False
        self.offloaded = 0  # replies encoded in the thread (tests, logs)

    def reply(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None:
        if not self._behind and (not self.threaded or entries(msg) < BIG_ENTRIES):
            self._send(conn, self._encode(msg, frames))  # (every reply but the rare big one)
            return
        queue = self._behind.get(conn) if self._behind else None
        big = self.threaded and entries(msg) >= BIG_ENTRIES
        loop = _running_loop() if big else None
        big = loop is not None
        if queue is None and not big:
            self._send(conn, self._encode(msg, frames))
            return
        if queue is None:
            queue = self._behind[conn] = deque()
        if not big:
            queue.append([self._encode(msg, frames)])
            return
        cell: list[Any] = [None]
        queue.append(cell)
        self.offloaded += 1
        assert loop is not None
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "handoffd-replies")
        future = loop.run_in_executor(self._pool, _encode, self._prepare(msg, frames))
        future.add_done_callback(lambda f: self._encoded(conn, queue, cell, f))

    def _encoded(
        self, conn: bytes, queue: deque[list[Any]], cell: list[Any], f: asyncio.Future[Any]
    ) -> None:
        if self._closed or f.cancelled() or self._behind.get(conn) is not queue:
            return
        error = f.exception()
        if error is not None:  # a bug of ours (the codec raises TypeError): say it, send on
            log.error("reply to %r could not be encoded: %s", conn, error)
            cell[0] = []
        else:
            cell[0] = f.result()
        while queue and queue[0][0] is not None:
            encoded = queue.popleft()[0]
            if encoded:
                self._send(conn, encoded)
        if not queue:
            del self._behind[conn]

    def close(self) -> None:
        self._closed = True
        self._behind.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
