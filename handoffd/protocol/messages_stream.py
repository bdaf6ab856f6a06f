"""Streaming pipelines' messages (types 180-199): between a pipeline's client and the stage
replicas it started in the cluster (``handoffd.stream``). Items' values travel as one pickled
frame per batch beside the message; only the client and the replicas' worker processes read it.

Since replicas pass items to each other (``messages_streamnet``, 186-199), ``StreamJoin``,
``StreamItems`` and ``StreamOutputs`` are no longer sent; they stay registered (type ids are
append-only)."""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(180)
class StreamJoin:
    """A replica started (its ``init`` ran) and serves ``stage``; ``token`` proves it was started
    by this pipeline (it travelled in the replica's payload over the cluster's own connections)."""

    token: str
    stage: str
    replica: int


@message(181)
class StreamItems:
    """Run ``stage`` on a batch of items (frame 0: the pickled list, per item in order, of its
    argument, or of the tuple of its arguments when the stage takes several). The client keeps
    which items a batch holds: none of their ids travel."""

    batch_id: int
    stage: str


@message(182)
class StreamOutputs:
    """The answer to ``StreamItems`` ``batch_id``. Frame 0: the pickled pair (outputs in the
    batch's order, {position: (exception type, message, traceback)} of the items that failed)."""

    batch_id: int
    stage: str


@message(183)
class StreamHeartbeat:
    """A replica is alive (sent while idle and while it works)."""

    stage: str
    replica: int


@message(184)
class StreamStop:
    """The pipeline is closing: the replica returns (its task ends)."""

    reason: str


@message(185)
class StreamReplicaFailed:
    """A replica's ``init`` raised: the stage cannot serve; the pipeline fails."""

    stage: str
    replica: int
    exc_type: str
    message: str
    traceback: str
