"""A streaming pipeline's ledger at its client, as a pure state machine (no sockets, no clock:
``now`` is given).

Design note: items are numbered by a correlation id in push order. The client sends each item's
inputs to the replicas of the stages that take them; from there a replica sends its outputs
straight to the replica of the next stage that serves the item (``relay.py``), and the last
stages' replicas send theirs here (``done``). Which replica of a stage serves an item is a pure
function of the item's id and the replicas' table (``route``), the same at every sender, so a
stage that joins several inputs gets all of an item's arguments in one replica.

The client keeps the ledger: the inputs of every unfinished item (at most ``max_in_flight``), the
table of live replicas and its *epoch*. A replica not heard from for ``dead_after`` is dropped;
any change of the table once items were pushed is a *replay*: the new epoch becomes the replay
epoch, every replica drops items and joins of older epochs, and every unfinished item is sent again
from its inputs, stamped with the new epoch. Items lost anywhere on the path with the dropped
replica are among them. The first output of an item wins and later ones (an old copy that was
still going) are ignored, so every item gets exactly one output. An item a stage raised on gets
``ItemFailed`` and goes no further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handoffd.errors import HandoffError, TaskFailed

TRANSPORT_BATCH = 512  # items per message for the client's sends and unbatched stages
ROUTE_BLOCK = 64  # consecutive items that go to one replica of a stage


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


@dataclass(frozen=True)
class Route:
    """A live replica as the table lists it (the wire's ``StreamRoute``'s fields)."""

    stage: str
    replica: int
    endpoint: str
    public_key: bytes
    node: str


@dataclass
class StageReplica:
    route: Route
    identity: bytes  # of its connection to the client
    last_seen: float


@dataclass(frozen=True)
class SendItems:
    """Send ``values`` of ``source`` for ``stage`` (items ``cids``) to the replica ``identity``."""

    identity: bytes
    epoch: int
    stage: str
    source: str
    cids: list[int]
    values: list[Any]


@dataclass(frozen=True)
class SendRoutes:
    """Send the table to every replica in ``identities``."""

    identities: list[bytes]
    epoch: int
    replay_epoch: int
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class StopReplica:
    identity: bytes


@dataclass(frozen=True)
class ForgetItems:
    """Tell the replicas ``identities`` (of stages that join) to drop these failed items' joins."""

    identities: list[bytes]
    cids: list[int]


Instruction = SendItems | SendRoutes | StopReplica | ForgetItems


def route(cid: int, replicas: list[Route]) -> Route:
    """The replica of a stage (``replicas``: its live ones, by index) that serves item ``cid``."""
    return replicas[(cid // ROUTE_BLOCK) % len(replicas)]


def by_stage(routes: tuple[Route, ...] | list[Route]) -> dict[str, list[Route]]:
    table: dict[str, list[Route]] = {}
    for r in sorted(routes, key=lambda r: (r.stage, r.replica)):
        table.setdefault(r.stage, []).append(r)
    return table


def consumers_of(inputs: list[str], stages: list[Stage]) -> dict[str, list[str]]:
    """Input or stage id -> the stages that take it (each once, in stage order)."""
    consumers: dict[str, list[str]] = {i: [] for i in inputs}
    for stage in stages:
        consumers.setdefault(stage.id, [])
    for stage in stages:
        for arg in dict.fromkeys(stage.args):
            consumers[arg].append(stage.id)
    for stage in stages:
        stage.consumers = consumers[stage.id]
    return consumers


@dataclass
class _Item:
    inputs: dict[str, Any]
    sinks: dict[str, Any] = field(default_factory=dict)  # sink stage id -> its output


class PipelineState:
    """Push items, feed replica events; ``take()`` gives what to send; finished outputs are in
    ``outputs`` (correlation id -> value or ItemFailed) until taken in order."""

    def __init__(self, inputs: list[str], stages: list[Stage], dead_after: float = 5.0) -> None:
        self.inputs = list(inputs)
        self.stages = {s.id: s for s in stages}
        self.dead_after = dead_after
        self.consumers = consumers_of(self.inputs, stages)
        self.sinks = [s.id for s in stages if not s.consumers]  # their values are the output
        self.items: dict[int, _Item] = {}
        self.outputs: dict[int, Any] = {}
        self.pushed = 0
        self.finished = 0
        self.replicas: dict[tuple[str, int], StageReplica] = {}
        self.replayed = 0  # items sent again after a change of the table
        self.epoch = 0
        self.replay_epoch = 0
        self._pending: dict[int, None] = {}  # items to send (ordered set)
        self._table_changed = False
        self._out: list[Instruction] = []
        self._joining = {s.id for s in stages if len(s.args) > 1}
        self._forget: list[int] = []  # failed items whose other branches may wait in a join

    # -- events --------------------------------------------------------------------------------

    def push(self, inputs: dict[str, Any]) -> int:
        """A new item (``{input id: value}``, every input given); its correlation id."""
        cid = self.pushed
        self.pushed += 1
        self.items[cid] = _Item(inputs)
        self._pending[cid] = None
        return cid

    def joined(self, identity: bytes, joined: Route, now: float) -> None:
        key = (joined.stage, joined.replica)
        old = self.replicas.get(key)
        if old is not None and old.identity == identity:
            return
        if old is not None:  # a new attempt of this replica: the old one stops
            self._out.append(StopReplica(old.identity))
        self.replicas[key] = StageReplica(joined, identity, now)
        self._changed()

    def heard(self, stage: str, index: int, now: float) -> None:
        replica = self.replicas.get((stage, index))
        if replica is not None:
            replica.last_seen = now

    def done(
        self,
        stage: str,
        sink: bool,
        cids: list[int],
        outputs: list[Any],
        failures: dict[int, tuple[str, str, str]],
    ) -> None:
        """A replica's outputs of a sink ``stage`` (in ``cids``' order), and the items that
        failed at ``stage`` ({cid: (type, message, traceback)}). Items finished already are
        ignored (an old copy of a replayed item)."""
        items = self.items
        for cid, (exc_type, message, traceback) in failures.items():
            if cid in items:
                self._finish(
                    cid, ItemFailed(cid, TaskFailed(stage, 1, exc_type, message, traceback))
                )
                if self._joining:
                    self._forget.append(cid)
        if not sink:
            return
        sinks = self.sinks
        for cid, value in zip(cids, outputs, strict=False):
            item = items.get(cid)
            if item is None or cid in failures:
                continue
            if len(sinks) == 1:
                self._finish(cid, value)
                continue
            item.sinks[stage] = value
            if all(s in item.sinks for s in sinks):
                self._finish(cid, {s: item.sinks[s] for s in sinks})

    def tick(self, now: float) -> None:
        """Drop replicas not heard from in ``dead_after``."""
        for key, replica in list(self.replicas.items()):
            if now - replica.last_seen > self.dead_after:
                del self.replicas[key]
                self._out.append(StopReplica(replica.identity))
                self._changed()

    def take(self) -> list[Instruction]:
        """What to send now: the table first when it changed, then the pending items' inputs."""
        if self._table_changed:
            self._table_changed = False
            routes = tuple(r.route for r in self.replicas.values())
            identities = [r.identity for r in self.replicas.values()]
            self._out.append(SendRoutes(identities, self.epoch, self.replay_epoch, routes))
        if self._pending:
            self._send_pending()
        if self._forget:
            joining = [r.identity for k, r in self.replicas.items() if k[0] in self._joining]
            self._out.append(ForgetItems(joining, self._forget))
            self._forget = []
        out, self._out = self._out, []
        return out

    # -- queries -------------------------------------------------------------------------------

    @property
    def unfinished(self) -> int:
        return self.pushed - self.finished

    def stage_replicas(self, stage: str) -> int:
        return sum(1 for key in self.replicas if key[0] == stage)

    # -- internals -----------------------------------------------------------------------------

    def _changed(self) -> None:
        self.epoch += 1
        self._table_changed = True
        if self.pushed:  # items may be on the path of a replica that is no longer there
            self.replay_epoch = self.epoch
            again = [cid for cid in self.items if cid not in self._pending]
            self.replayed += len(again)
            pending = dict.fromkeys(sorted([*self._pending, *again]))
            self._pending = pending

    def _send_pending(self) -> None:
        table = by_stage([r.route for r in self.replicas.values()])
        targets = {s for i in self.inputs for s in self.consumers[i]}
        if not all(table.get(s) for s in targets):
            return  # a stage has no live replica: hold the items until one joins
        identities = {(r.route.stage, r.route.replica): r.identity for r in self.replicas.values()}
        groups: dict[tuple[bytes, str, str], tuple[list[int], list[Any]]] = {}
        items = self.items
        for cid in self._pending:
            item = items.get(cid)
            if item is None:
                continue
            for source in self.inputs:
                value = item.inputs[source]
                for stage in self.consumers[source]:
                    r = route(cid, table[stage])
                    key = (identities[(r.stage, r.replica)], stage, source)
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = ([], [])
                    group[0].append(cid)
                    group[1].append(value)
        self._pending = {}
        for (identity, stage, source), (cids, values) in groups.items():
            for start in range(0, len(cids), TRANSPORT_BATCH):
                end = start + TRANSPORT_BATCH
                self._out.append(
                    SendItems(
                        identity, self.epoch, stage, source, cids[start:end], values[start:end]
                    )
                )

    def _finish(self, cid: int, output: Any) -> None:
        if self.items.pop(cid, None) is None:
            return
        self._pending.pop(cid, None)
        self.outputs[cid] = output
        self.finished += 1


__all__ = [
    "ItemFailed",
    "PipelineFailed",
    "PipelineState",
    "Stage",
    "Route",
    "StageReplica",
    "SendItems",
    "SendRoutes",
    "StopReplica",
    "ForgetItems",
    "route",
    "by_stage",
    "consumers_of",
    "TRANSPORT_BATCH",
    "ROUTE_BLOCK",
]
