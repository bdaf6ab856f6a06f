"""A stage replica's routing, as a pure state machine (no sockets, no clock: ``now`` is given):
items in from the client or from replicas of the stages before, batches out to run, outputs out
to the replicas of the next stages or to the client.

Design note: items arrive stamped with the epoch of the table they were routed with (see
``state.py``). One of an epoch the replica has no table for yet is held until the table arrives
(the table comes from the client, the items from peers: either may be first); one older than the
replay epoch was pushed again by the client and is dropped, with any join waiting for it. A stage
with several arguments joins them by correlation id (every sender routes an item's values to the
same replica). A stage with ``batch_size`` runs full micro-batches, or a partial one once its oldest
item waited ``batch_timeout``; any other stage runs what is queued in chunks sized from the time
its items took so far (about ``FLUSH_AFTER`` of work, at most ``TRANSPORT_BATCH`` items), so a slow
stage's outputs leave as they are made and a fast one's in large messages. Outputs go to the replica of each next stage that ``route`` names in the current table,
grouped into one message per (stage, replica); a sink's go to the client, as do failures.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from handoffd.stream.state import TRANSPORT_BATCH, Route, by_stage, route

FLUSH_AFTER = 0.005  # seconds of work a batch of an unbatched stage aims at, before its outputs go

Failures = dict[int, tuple[str, str, str]]  # correlation id -> (type, message, traceback)


@dataclass(frozen=True)
class Work:
    """A batch to run: per item its argument, or the tuple of its arguments (several args)."""

    epoch: int
    cids: list[int]
    args: list[Any]


@dataclass(frozen=True)
class Forward:
    """Send ``values`` (items ``cids``) to ``to``, a replica of stage ``to.stage``."""

    to: Route
    epoch: int
    cids: list[int]
    values: list[Any]


@dataclass(frozen=True)
class ToClient:
    """Send a sink's outputs and the failures at this stage to the client."""

    epoch: int
    sink: bool
    cids: list[int]
    outputs: list[Any]
    failures: Failures


@dataclass
class RelayState:
    stage: str
    args: tuple[str, ...]  # the stage's arguments: inputs or stages, in call order
    consumers: list[str]  # the stages that take this stage's outputs
    batch_size: int | None = None
    batch_timeout: float = 0.0
    epoch: int = -1  # of the table held; -1: none yet
    replay_epoch: int = 0
    table: dict[str, list[Route]] = field(default_factory=dict)
    queue: deque[tuple[int, int, Any, float]] = field(default_factory=deque)  # cid, epoch, arg, at
    joins: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # cid -> epoch, vals
    held: list[tuple[int, str, list[int], list[Any]]] = field(default_factory=list)
    per_item: float = 0.0  # seconds an item took, smoothed (unbatched stages' chunk size)

    # -- events --------------------------------------------------------------------------------

    def routes(self, epoch: int, replay_epoch: int, routes: tuple[Route, ...], now: float) -> None:
        if epoch <= self.epoch:
            return  # an older table arriving late
        self.epoch, self.replay_epoch = epoch, replay_epoch
        self.table = by_stage(routes)
        if self.queue and self.queue[0][1] < replay_epoch:
            self.queue = deque(q for q in self.queue if q[1] >= replay_epoch)
        if self.joins:
            self.joins = {c: j for c, j in self.joins.items() if j[0] >= replay_epoch}
        held, self.held = self.held, []
        for batch in held:
            self.items(*batch, now)

    def items(
        self, epoch: int, source: str, cids: list[int], values: list[Any], now: float
    ) -> None:
        """Values of ``source`` for this stage, stamped with ``epoch``."""
        if epoch < self.replay_epoch:
            return  # replayed by the client: this copy goes no further
        if epoch > self.epoch:
            self.held.append((epoch, source, cids, values))
            return
        if len(self.args) == 1:
            self.queue.extend(
                (cid, epoch, value, now) for cid, value in zip(cids, values, strict=True)
            )
            return
        joins, args, queue = self.joins, self.args, self.queue
        for cid, value in zip(cids, values, strict=True):
            join = joins.get(cid)
            if join is None or join[0] != epoch:
                join = joins[cid] = (epoch, {})
            join[1][source] = value
            if len(join[1]) == len(args):
                del joins[cid]
                queue.append((cid, epoch, tuple(join[1][a] for a in args), now))

    def forget(self, cids: tuple[int, ...] | list[int]) -> None:
        """These items failed elsewhere: their joins here will never complete."""
        for cid in cids:
            self.joins.pop(cid, None)

    def ready(self, now: float) -> Work | None:
        """The next batch to run, or None (nothing queued, or a micro-batch still filling)."""
        queue = self.queue
        if not queue:
            return None
        size = self.batch_size or self._chunk()
        if (
            self.batch_size is not None
            and len(queue) < size
            and now - queue[0][3] < self.batch_timeout
        ):
            return None
        epoch = queue[0][1]
        cids: list[int] = []
        args: list[Any] = []
        while queue and len(cids) < size and queue[0][1] == epoch:
            cid, _, arg, _ = queue.popleft()
            cids.append(cid)
            args.append(arg)
        return Work(epoch, cids, args)

    def ran(self, work: Work, seconds: float) -> None:
        """``work`` took ``seconds`` to run (sizes the next chunks)."""
        took = seconds / max(1, len(work.cids))
        self.per_item = took if not self.per_item else 0.7 * self.per_item + 0.3 * took

    def _chunk(self) -> int:
        if not self.per_item:
            return 1  # the first item measures how long one takes
        return max(1, min(TRANSPORT_BATCH, int(FLUSH_AFTER / self.per_item)))

    def wait(self, now: float) -> float | None:
        """Seconds until a partial micro-batch is due (None: nothing waits for a timeout)."""
        if not self.queue or self.batch_size is None:
            return None
        return max(0.0, self.queue[0][3] + self.batch_timeout - now)

    def outputs(
        self, work: Work, outputs: list[Any], failures: Failures
    ) -> list[Forward | ToClient]:
        """Where a batch's outputs go (``failures`` by correlation id)."""
        if work.epoch < self.replay_epoch:
            return []  # the table changed while it ran: the items were pushed again
        out: list[Forward | ToClient] = []
        if failures:
            ok = [(c, o) for c, o in zip(work.cids, outputs, strict=True) if c not in failures]
            cids, values = [c for c, _ in ok], [o for _, o in ok]
        else:
            cids, values = work.cids, outputs
        if not self.consumers or failures:
            sink = not self.consumers
            out.append(
                ToClient(work.epoch, sink, cids if sink else [], values if sink else [], failures)
            )
        for consumer in self.consumers:
            replicas = self.table.get(consumer)
            if not replicas:
                continue  # no live replica: the client replays these items once one joins
            groups: dict[Route, tuple[list[int], list[Any]]] = {}
            for cid, value in zip(cids, values, strict=True):
                r = route(cid, replicas)
                group = groups.get(r)
                if group is None:
                    group = groups[r] = ([], [])
                group[0].append(cid)
                group[1].append(value)
            for r, (group_cids, group_values) in groups.items():
                out.append(Forward(r, work.epoch, group_cids, group_values))
        return out


__all__ = ["RelayState", "Work", "Forward", "ToClient", "Failures", "FLUSH_AFTER"]
