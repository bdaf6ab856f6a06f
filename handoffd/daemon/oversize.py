"""A dispatch this node cannot take because a frame is over its ``max_frame_bytes`` (issue 19).

The codec drops a message with a frame past the limit before reading it; for a dispatch that was
a silent drop, and its owner counted the attempt lost every 3 s until the run gave up a minute
later with a misleading error. A task's code and arguments travel as one frame, so an argument
the owner's upload took whole can be too big for a node started with a lower limit. Now the
node reads the (small, checked) head of such a dispatch and refuses its tasks at once: those whose
own frame is too big with a reason starting ``FRAME_TOO_LARGE``, which fails the run naming the
function, the size, the limit and how to raise it (``scheduler.owner``); the others in the same
message (innocent) to be placed again.
"""

from __future__ import annotations

import logging
from typing import Any

from handoffd import admission
from handoffd.protocol import columns
from handoffd.protocol.messages_columns import DispatchColumns, RepliedColumns
from handoffd.scheduler.events import FRAME_TOO_LARGE

log = logging.getLogger("handoffd.node")


def too_big(frames: list[Any], limit: int) -> bool:
    """Some frame after the head is past ``limit`` (what made the codec drop the message)."""
    return any(len(f) > limit for f in frames[1:])


def refusal(
    msg: Any, frames: list[Any], limit: int, node: str
) -> tuple[str, RepliedColumns] | None:
    """(owner address, refusal of every task) for a dispatch ``msg`` (its head decoded alone)
    whose ``frames`` (the head first) include one past ``limit`` of ``node``; None for any other
    message. The owner checks its own dispatches the same way (``owner_refusal``)."""
    if not isinstance(msg, DispatchColumns) or not msg.task_ids:
        return None
    count = len(msg.task_ids)
    attempts = columns.unpack("q", msg.attempts, count, "DispatchColumns.attempts")
    payloads = columns.unpack("i", msg.payload_frames, count, "DispatchColumns.payload_frames")
    try:
        logical = columns.split_frames(msg.frame_sizes, list(frames[1:]), "DispatchColumns")
    except columns.ColumnError:
        logical = []
    reasons = []
    for task_id, at in zip(msg.task_ids, payloads, strict=True):
        size = len(logical[at]) if 0 <= at < len(logical) else 0
        if size > limit or not logical:
            reasons.append(
                f"{FRAME_TOO_LARGE}: function {task_id!r} travels to a node as a frame of "
                f"{size or max(len(f) for f in frames[1:])} bytes (its code and arguments), over "
                f"max_frame_bytes={limit} of node {node!r}; start every node with a larger "
                "limit (handoffd start --limit max_frame_bytes=BYTES) or pass the big argument "
                "as the result of another function or as a file"
            )
        else:
            reasons.append(f"dispatched with another function's frame past max_frame_bytes={limit}")
    refused = RepliedColumns(
        msg.run_id, (), b"", msg.task_ids, columns.pack("q", attempts), tuple(reasons), {}, -1
    )
    return msg.owner_address, refused


def refuse(node: Any, frames: list[Any], listening: bool) -> None:
    """``node`` (``daemon.node.Node``) dropped ``frames`` for a frame past its limit: if they are
    a dispatch from an admitted member, refuse its tasks to its owner (``refusal``)."""
    limit = node.config.limits.max_frame_bytes
    if not too_big(frames, limit):
        return
    head = node.codec.decode(frames[:1])  # (the head alone is within every limit)
    if head is None:
        return
    sender = head.envelope.sender
    member = node.membership.get(sender) if node.membership is not None else None
    if admission.check(head.msg, sender, listening, member, node.name):
        return
    try:
        answer = refusal(head.msg, frames, limit, node.name)
    except columns.ColumnError:
        return
    if answer is not None:
        address, refused = answer
        log.warning(
            "refused a dispatch of run %s from %s: a frame is over max_frame_bytes=%d",
            refused.run_id,
            sender,
            limit,
        )
        node.send(address, refused, term=head.envelope.term)


def owner_refusal(msg: Any, frames: list[Any], limit: int, node: str) -> RepliedColumns | None:
    """The owner's own check before it sends a dispatch (``msg``, ``frames`` after the head) to
    another node: a frame past its ``limit`` (peers are started alike) would be dropped there,
    or cut the connection when past ZeroMQ's MAXMSGSIZE, so the refusal is made here instead."""
    whole = [b"", *frames]
    if not too_big(whole, limit):
        return None
    answer = refusal(msg, whole, limit, node)
    return answer[1] if answer is not None else None
