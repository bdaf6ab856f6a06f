"""A streaming pipeline's routing, as a pure state machine (no sockets, no clock: ``now`` is given).

Design note: items are numbered by a correlation id in push order. A stage runs on an item once
every one of its arguments (pipeline inputs or other stages) has a value for that id (fan-in joins
by correlation id; fan-out sends one value to every consumer). Each stage has a queue; a batch goes
to the live replica of the stage with the fewest items in flight, at most ``MAX_BATCHES_AHEAD``
batches per replica. A stage with ``batch_size`` sends full micro-batches, or a partial one once its
oldest item waited ``batch_timeout``; any other stage sends what is queued, split over its replicas
(up to ``TRANSPORT_BATCH`` items a message), so items batch up naturally while replicas are busy. A replica not
heard from for ``dead_after`` seconds is dropped and its batches in flight go back to the front of
their queue (replay); a late answer from a dropped replica is ignored (its batches are no longer
known), so every item gets exactly one output. An item whose stage raised gets ``ItemFailed`` and goes no further.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from handoffd.errors import HandoffError, TaskFailed

TRANSPORT_BATCH = 512  # items per message for a stage without batch_size
MAX_BATCHES_AHEAD = 4  # batches in flight per replica


class ItemFailed:
    """The output of an item a stage failed on: ``correlation_id`` (its push number, from 0) and
    ``error`` (a ``handoffd.TaskFailed`` naming the stage)."""

    __slots__ = ("correlation_id", "error")

    def __init__(self, correlation_id: int, error: BaseException) -> None:
        self.correlation_id = correlation_id
        self.error = error

    def __repr__(self) -> str:
        return f"ItemFailed({self.correlation_id}, {self.error!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ItemFailed)
            and other.correlation_id == self.correlation_id
            and str(other.error) == str(self.error)
        )

    __hash__ = None  # type: ignore[assignment]


class PipelineFailed(HandoffError):
    """The pipeline cannot go on: a stage's ``init`` failed, or its replicas' run failed."""


@dataclass
class Stage:
    id: str
    args: tuple[str, ...]  # pipeline input ids or stage ids, in call order
    batch_size: int | None = None
    batch_timeout: float = 0.0
    consumers: list[str] = field(default_factory=list)
    # (correlation id, its argument, or a tuple of its arguments when several, when queued)
    queue: deque[tuple[int, Any, float]] = field(default_factory=deque)


@dataclass
class StageReplica:
    stage: str
    index: int
    identity: bytes
    last_seen: float
    batches: dict[int, list[int]] = field(default_factory=dict)  # batch id -> correlation ids
    items: int = 0  # in flight


@dataclass(frozen=True)
class SendBatch:
    identity: bytes
    batch_id: int
    stage: str
    correlation_ids: list[int]
    args: list[Any]  # per item: its one argument, or a tuple of its arguments (several args)


@dataclass
class _Item:
    values: dict[str, Any] = field(default_factory=dict)  # input or stage id -> value
    queued: set[str] = field(default_factory=set)  # stages this item was queued for


class PipelineState:
    """Push items, feed replica events; ``take()`` gives the batches to send; finished outputs
    are in ``outputs`` (correlation id -> value or ItemFailed) until taken in order."""

    def __init__(self, inputs: list[str], stages: list[Stage], dead_after: float = 5.0) -> None:
        self.inputs = list(inputs)
        self.stages = {s.id: s for s in stages}
        self.dead_after = dead_after
        self.consumers: dict[str, list[str]] = {i: [] for i in inputs}
        for stage in stages:
            self.consumers.setdefault(stage.id, [])
        for stage in stages:
            for arg in dict.fromkeys(stage.args):
                self.consumers[arg].append(stage.id)
        for stage in stages:
            stage.consumers = self.consumers[stage.id]
        self.sinks = [s.id for s in stages if not s.consumers]  # their values are the output
        self.items: dict[int, _Item] = {}
        self.outputs: dict[int, Any] = {}
        self.pushed = 0
        self.finished = 0
        self.replicas: dict[tuple[str, int], StageReplica] = {}
        self.replayed = 0  # items sent again after their replica was dropped
        self._batch_ids = 0
        self._out: list[SendBatch] = []
        self._dirty: set[str] = set()

    # -- events --------------------------------------------------------------------------------

    def push(self, inputs: dict[str, Any], now: float) -> int:
        """A new item (``{input id: value}``, every input given); its correlation id."""
        cid = self.pushed
        self.pushed += 1
        item = self.items[cid] = _Item()
        for input_id in self.inputs:
            self._value(cid, item, input_id, inputs[input_id], now)
        return cid

    def joined(self, stage: str, index: int, identity: bytes, now: float) -> None:
        old = self.replicas.get((stage, index))
        if old is not None and old.identity != identity:
            self._drop(old)  # a new attempt of this replica: the old one's batches are replayed
        if old is None or old.identity != identity:
            self.replicas[(stage, index)] = StageReplica(stage, index, identity, now)
        self._dirty.add(stage)

    def heard(self, stage: str, index: int, now: float) -> None:
        replica = self.replicas.get((stage, index))
        if replica is not None:
            replica.last_seen = now

    def answered(
        self,
        stage: str,
        index: int,
        batch_id: int,
        outputs: list[Any],
        failures: dict[int, tuple[str, str, str]],
        now: float,
    ) -> None:
        """A replica's outputs for one batch, in its order, and its failures by position in the
        batch ((type, message, traceback)). A batch no longer known (its replica was dropped and
        its items replayed) is ignored."""
        replica = self.replicas.get((stage, index))
        if replica is None:
            return
        replica.last_seen = now
        cids = replica.batches.pop(batch_id, None)
        if cids is None:
            return
        replica.items -= len(cids)
        items = self.items
        for position, (cid, value) in enumerate(zip(cids, outputs, strict=False)):
            item = items.get(cid)
            if item is None or stage in item.values:
                continue  # finished or failed already
            failure = failures.get(position) if failures else None
            if failure is None:
                self._value(cid, item, stage, value, now)
            else:
                exc_type, message, traceback = failure
                self._finish(
                    cid, ItemFailed(cid, TaskFailed(stage, 1, exc_type, message, traceback))
                )
        self._dirty.add(stage)

    def tick(self, now: float) -> None:
        """Drop replicas not heard from in ``dead_after``; flush micro-batches that timed out."""
        for replica in list(self.replicas.values()):
            if now - replica.last_seen > self.dead_after:
                self._drop(replica)
        for stage in self.stages.values():
            if stage.queue:
                self._dirty.add(stage.id)
        self._flush(now)

    def take(self, now: float) -> list[SendBatch]:
        self._flush(now)
        out, self._out = self._out, []
        return out

    # -- queries -------------------------------------------------------------------------------

    @property
    def unfinished(self) -> int:
        return self.pushed - self.finished

    def stage_replicas(self, stage: str) -> int:
        return sum(1 for r in self.replicas.values() if r.stage == stage)

    # -- internals -----------------------------------------------------------------------------

    def _value(self, cid: int, item: _Item, source: str, value: Any, now: float) -> None:
        values = item.values
        values[source] = value
        consumers = self.consumers[source]
        if not consumers and source in self.stages:  # a sink
            sinks = self.sinks
            if len(sinks) == 1:
                self._finish(cid, value)
            elif all(sink in values for sink in sinks):
                self._finish(cid, {sink: values[sink] for sink in sinks})
            return
        for consumer in consumers:
            stage = self.stages[consumer]
            args = stage.args
            if len(args) == 1:  # the common chain: no join to wait for, the value as it is
                stage.queue.append((cid, value, now))
            else:
                if consumer in item.queued or not all(a in values for a in args):
                    continue
                item.queued.add(consumer)
                stage.queue.append((cid, tuple(values[a] for a in args), now))
            self._dirty.add(consumer)

    def _finish(self, cid: int, output: Any) -> None:
        if self.items.pop(cid, None) is None:
            return
        self.outputs[cid] = output
        self.finished += 1

    def _drop(self, replica: StageReplica) -> None:
        """A replica is gone: replay its batches in flight, first in their stage's queue."""
        if self.replicas.get((replica.stage, replica.index)) is replica:
            del self.replicas[(replica.stage, replica.index)]
        stage = self.stages[replica.stage]
        again: list[tuple[int, Any, float]] = []
        for cids in replica.batches.values():
            for cid in cids:
                item = self.items.get(cid)
                if item is not None and stage.id not in item.values:
                    args = stage.args
                    value = (
                        item.values[args[0]]
                        if len(args) == 1
                        else tuple(item.values[a] for a in args)
                    )
                    again.append((cid, value, 0.0))
        replica.batches.clear()
        self.replayed += len(again)
        stage.queue.extendleft(reversed(again))
        self._dirty.add(stage.id)

    def _flush(self, now: float) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for stage_id in dirty:
            stage = self.stages[stage_id]
            queue = stage.queue
            while queue:
                replica = self._pick(stage_id)
                if replica is None:
                    break
                size = stage.batch_size or self._share(stage_id, len(queue))
                if (
                    stage.batch_size is not None
                    and len(queue) < size
                    and now - queue[0][2] < stage.batch_timeout
                ):
                    break  # wait for a full micro-batch, or for its timeout (tick)
                cids: list[int] = []
                args: list[Any] = []
                while queue and len(cids) < size:
                    cid, values, _ = queue.popleft()
                    if cid in self.items:  # not failed meanwhile
                        cids.append(cid)
                        args.append(values)
                if not cids:
                    continue
                self._batch_ids += 1
                replica.batches[self._batch_ids] = cids
                replica.items += len(cids)
                self._out.append(SendBatch(replica.identity, self._batch_ids, stage_id, cids, args))

    def _share(self, stage: str, queued: int) -> int:
        """Items per message for a stage without batch_size: the queue split over its replicas
        (two messages each, so each has the next one while it works), at most TRANSPORT_BATCH."""
        replicas = self.stage_replicas(stage) or 1
        return max(1, min(TRANSPORT_BATCH, -(-queued // (2 * replicas))))

    def _pick(self, stage: str) -> StageReplica | None:
        best: StageReplica | None = None
        for replica in self.replicas.values():
            if replica.stage != stage or len(replica.batches) >= MAX_BATCHES_AHEAD:
                continue
            if best is None or replica.items < best.items:
                best = replica
        return best


__all__ = [
    "ItemFailed",
    "PipelineFailed",
    "PipelineState",
    "Stage",
    "StageReplica",
    "SendBatch",
    "TRANSPORT_BATCH",
    "MAX_BATCHES_AHEAD",
]
