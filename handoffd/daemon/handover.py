"""A leaving node's held values move to a peer (issue 19), so a leave re-executes nothing.

On a graceful leave, after its running tasks ended, the node hands over what its store still holds
of each run it ran tasks for: to the run's owner when that is another live node, to the run's
first live standby when the leaver owns the run (that standby takes it over and finds the values in
its own store when it asks the nodes what they hold). The receiver keeps them in its store; as
owner it adds itself to the copies of the DONE tasks that still have some (``RunState.add_copies``:
a value nobody needs any more was freed and is dropped again at once) and tells the standbys. The
leaver waits for every ``ValuesTaken`` (at most ``WAIT_S``) before it gossips LEFT, so no owner sees
it gone while a copy is on its way. Values beyond ``MAX_BYTES`` stay behind: those are recomputed
by lineage if still needed, as after a crash.

A value past ``CHUNK`` (``store.chunks.FAR_BYTES``) goes in pieces (snap19: it went as one frame,
dropped by a receiver whose ``max_frame_bytes`` was smaller, and recomputed): one
``ValuesHandedOver`` per chunk (``total``, ``index``, CRC-32), read by range from the store (a
spilled value is never read whole), at most ``WINDOW`` unanswered; the receiver assembles it in
place (``store.chunks.Assembly``) and keeps it as it would a whole one once the last piece came.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import zlib
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol.messages_io import ValuesHandedOver, ValuesTaken
from handoffd.store.chunks import FAR_BYTES, WINDOW, Assembly, far_key, is_far_key
from handoffd.store.store import StoreError

log = logging.getLogger("handoffd.node")

BATCH_BYTES = 64 << 20  # values per message (one message is read whole by the receiver)
MAX_BYTES = 4 << 30  # handed over per leave, at most
WAIT_S = 10.0  # for the receivers' answers (and, for a value in pieces, for the next answer)
CHUNK = FAR_BYTES  # a value past this goes in pieces of this size: any node reads them
_PIECE = far_key("h", "")  # a piece's task id: this, then the task's


class HandOver:
    """Both sides: ``leave`` on the leaver, ``on_values`` on the receiver, ``on_taken`` back."""

    def __init__(self, node: Any) -> None:
        self.node = node  # daemon.node.Node: its store, executor, membership, scheduler, send
        self._ids = itertools.count(1)
        self._pending: dict[int, int] = {}  # request -> values in it
        self.moved = 0  # values the receivers kept (stats and tests)
        # receiver: (sender, run, task) -> the value in pieces coming; those refused (the rest of
        # their pieces is dropped as it comes)
        self._incoming: dict[tuple[str, str, str], Assembly] = {}
        self._refused: set[tuple[str, str, str]] = set()

    # -- the leaver --------------------------------------------------------------------------

    def _target(self, run_id: str) -> str | None:
        node = self.node
        known = node.executor.run_owners.get(run_id) if node.executor is not None else None
        if known is None:
            return None
        address = known[1]  # (term, owner address, owner name or "")
        live = {s.name: s.address for s in node.members() if s.status == m.ALIVE}
        if address != node.address:
            return address if address in live.values() else None
        standbys = node.replication.standbys(run_id) if node.replication is not None else ()
        for name in standbys:
            if name in live and name != node.name:
                return str(live[name])
        return None

    async def leave(self) -> int:
        """Hand over what the store holds; returns how many values the receivers kept."""
        store, budget = self.node.store, MAX_BYTES
        for run_id in store.runs():
            target = self._target(run_id)
            if target is None:
                continue
            batch: list[tuple[str, bytes]] = []
            size = 0
            for task_id in sorted(store.tasks_of(run_id)):
                if is_far_key(task_id):  # a dispatch's argument (store.chunks), not a value
                    continue
                total = store.size(run_id, task_id)
                if total > CHUNK and total <= budget:
                    budget -= total
                    await self._send_pieces(target, run_id, task_id, total)
                    continue
                value = store.get(run_id, task_id)
                if value is None or len(value) > budget:
                    continue
                budget -= len(value)
                batch.append((task_id, value))
                size += len(value)
                if size >= BATCH_BYTES:
                    self._send(target, run_id, batch)
                    batch, size = [], 0
            if batch:
                self._send(target, run_id, batch)
        if self._pending:
            values = sum(self._pending.values())
            log.info("leaving: handing over %d value(s) still held here", values)
            deadline = self.node._clock() + WAIT_S
            while self._pending and self.node._clock() < deadline:
                await asyncio.sleep(0.02)
            if self._pending:
                log.warning(
                    "leaving: %d hand-over(s) unanswered after %.0f s", len(self._pending), WAIT_S
                )
        return self.moved

    def _send(self, target: str, run_id: str, batch: list[tuple[str, bytes]]) -> None:
        request = next(self._ids)
        self._pending[request] = len(batch)
        msg = ValuesHandedOver(request, run_id, tuple(t for t, _ in batch))
        self.node.send(target, msg, [v for _, v in batch])

    async def _send_pieces(self, target: str, run_id: str, task_id: str, total: int) -> None:
        """One value in pieces, at most ``WINDOW`` unanswered (given up on after ``WAIT_S``
        without an answer: it is recomputed if needed, as any value left behind)."""
        store, sent = self.node.store, list[int]()
        count = -(-total // CHUNK)
        for index in range(count):
            waited = self.node._clock() + WAIT_S
            while sum(r in self._pending for r in sent[-WINDOW:]) >= WINDOW:
                if self.node._clock() > waited:
                    log.warning("leaving: value %r of run %s not handed over", task_id, run_id)
                    for request in sent:
                        self._pending.pop(request, None)
                    return
                await asyncio.sleep(0.005)
            data = store.read(run_id, task_id, index * CHUNK, CHUNK)
            if data is None:  # (dropped meanwhile: nobody needs it)
                for request in sent:
                    self._pending.pop(request, None)
                return
            request = next(self._ids)
            self._pending[request] = 1 if index == count - 1 else 0
            sent.append(request)
            crc = zlib.crc32(data)
            # Named by a far key: an older receiver, blind to the piece fields, keeps it as junk
            # under a key no task has (dropped with the run) instead of as the task's value.
            piece = (far_key("h", task_id),)
            msg = ValuesHandedOver(request, run_id, piece, total, index, CHUNK, crc)
            self.node.send(target, msg, [data])

    def on_taken(self, msg: ValuesTaken) -> None:
        if self._pending.pop(msg.request_id, None) is not None:
            self.moved += len(msg.kept)

    # -- the receiver ------------------------------------------------------------------------

    def on_values(self, msg: ValuesHandedOver, frames: list[bytes], reply_to: str) -> None:
        node = self.node
        store = node.store
        kept: list[str] = []
        task_ids = msg.task_ids
        if msg.total >= 0:  # a piece of one value: kept once whole
            frames = self._piece(msg, frames, reply_to)
            if not frames:
                if reply_to:
                    node.send(reply_to, ValuesTaken(msg.request_id, msg.run_id, ()))
                return
            task_ids = (task_ids[0][len(_PIECE) :],)
        for task_id, value in zip(task_ids, frames, strict=False):
            try:
                store.put(msg.run_id, task_id, value)
            except StoreError as exc:
                log.warning("values handed over by %s not kept: %s", reply_to, exc)
                break
            kept.append(task_id)
        run = node.scheduler.run_state(msg.run_id) if node.scheduler is not None else None
        if run is not None:  # ours: only what is still needed stays, as a copy here
            wanted = set(run.add_copies(kept, node.name))
            store.drop_values(msg.run_id, [t for t in kept if t not in wanted])
            kept = [t for t in kept if t in wanted]
            for task_id in kept:
                if node.scheduler.on_change is not None:
                    node.scheduler.on_change(msg.run_id, task_id)  # the standbys learn the copy
        log.info("kept %d value(s) of run %s handed over by a leaving node", len(kept), msg.run_id)
        if reply_to:
            node.send(reply_to, ValuesTaken(msg.request_id, msg.run_id, tuple(kept)))

    def _piece(self, msg: ValuesHandedOver, frames: list[Any], sender: str) -> list[Any]:
        """Keep a piece of a value handed over in pieces; [the value] once it is whole."""
        if len(msg.task_ids) != 1 or len(frames) != 1 or not msg.task_ids[0].startswith(_PIECE):
            return []
        key = (sender, msg.run_id, msg.task_ids[0])
        if key in self._refused:
            return []
        parts = self._incoming.get(key)
        limit = self.node.store.max_value
        error = ""
        if parts is None:
            if msg.chunk_bytes < 64 << 10 or msg.total <= msg.chunk_bytes:
                error = f"pieces of {msg.chunk_bytes} bytes for a value of {msg.total}"
            elif limit is not None and msg.total > limit:
                error = f"a value of {msg.total} bytes, over max_value_bytes={limit}"
            else:
                try:
                    parts = self._incoming[key] = Assembly(msg.total, msg.chunk_bytes)
                except (OSError, ValueError, OverflowError) as exc:
                    error = f"no memory for a value of {msg.total} bytes: {exc}"
        elif (msg.total, msg.chunk_bytes) != (parts.total, parts.chunk):
            error = "its size changed"
        if not error and parts is not None:
            error = parts.add(msg.index, frames[0], msg.crc)
        if error or parts is None:
            self._incoming.pop(key, None)
            if len(self._refused) > 4096:
                self._refused.clear()
            self._refused.add(key)
            log.warning("value %r handed over by %s not kept: %s", key[2], sender, error)
            return []
        if not parts.done:
            return []
        del self._incoming[key]
        return [parts.value()]
