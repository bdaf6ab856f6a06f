"""Streaming pipelines replica to replica (types 186-199): a stage replica sends its outputs
straight to the replica of the next stage that serves the item, and only the last stage's
outputs go to the pipeline's client (``handoffd.stream``). The client keeps the ledger: which
items are unfinished, the replicas' table (``StreamRoutes``), and replays after a replica's loss.
Values travel as one pickled frame per message beside it; only the client and the replicas'
worker processes read it."""

from __future__ import annotations

from handoffd.protocol.registry import message, struct


@struct
class StreamRoute:
    """One live replica of a stage: where its peers reach it (a CURVE server with ``public_key``)
    and the node it runs on (hooks are skipped between replicas on one node)."""

    stage: str
    replica: int
    endpoint: str
    public_key: bytes
    node: str


@message(186)
class StreamReplicaJoin:
    """A replica started (its ``init`` ran), serves ``stage`` and listens for items at
    ``route.endpoint``; ``token`` proves it was started by this pipeline."""

    token: str
    route: StreamRoute


@message(187)
class StreamRoutes:
    """Client to every replica: the live replicas at ``epoch``. Items stamped with an epoch before
    ``replay_epoch`` were all pushed again (replay): a replica drops them, and their joins."""

    epoch: int
    replay_epoch: int
    routes: tuple[StreamRoute, ...]


@message(188)
class StreamBatch:
    """Items for ``stage`` from ``source`` (a pipeline input or the stage before), routed with
    the table of ``epoch``. Frame 0: the pickled pair (correlation ids, values in their order);
    ``encoded``: the values are bytes from the edge's ``serialize`` hook."""

    epoch: int
    stage: str
    source: str
    encoded: bool


@message(189)
class StreamDone:
    """Replica to client: outputs of the last stage ``stage`` (``sink``), and items that failed at
    ``stage``. Frame 0: the pickled triple (correlation ids, outputs, {correlation id: (exception
    type, message, traceback)})."""

    epoch: int
    stage: str
    sink: bool


@message(190)
class StreamForget:
    """Client to the replicas of stages that join several arguments: these items failed (one of
    their branches raised), so the values of their other branches will never be joined."""

    cids: tuple[int, ...]
