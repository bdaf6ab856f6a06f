"""A dispatch frame too big to send or to read (issue 19).

A function's code and arguments, or a value the owner kept, past ``store.chunks.FAR_BYTES``
never travel inline: the owner keeps them and the dispatch names them (``FarFrame``), pulled in
chunks by the executing node, so ``max_frame_bytes`` bounds frames, not arguments (helper
chunk19; before, an argument past a peer's limit failed the run). What is left here:

- the owner's check before it sends (``owner_refusal``): a frame still inline past its limit,
  because the owner could not keep it (past its ``max_value_bytes``, or its store refused), fails
  the run with a reason starting ``FRAME_TOO_LARGE`` naming the function, the size, the limit and
  the flag (``scheduler.owner``);
- the executing node's (``refuse``): the codec drops a message with a frame past the limit before
  reading it (a dispatch from an owner of an older build, or started with other limits); it
  reads the (small, checked) head and refuses its tasks at once, those whose own frame is too big
  with a ``FRAME_TOO_LARGE`` reason, the others in the same message (innocent) to be placed
  again, instead of a silent drop counted lost every 3 s.
"""

from __future__ import annotations

import logging
from typing import Any

from handoffd import admission
from handoffd.config import Limits
from handoffd.protocol import columns
from handoffd.protocol.column_codes import CALL_CLOSE
from handoffd.protocol.messages_columns import DispatchColumns, RepliedColumns
from handoffd.scheduler.events import FRAME_TOO_LARGE
from handoffd.store.chunks import too_large

log = logging.getLogger("handoffd.node")


def too_big(frames: list[Any], limit: int) -> bool:
    """Some frame after the head is past ``limit`` (what made the codec drop the message)."""
    return any(len(f) > limit for f in frames[1:])


def refusal(
    msg: Any, frames: list[Any], limit: int, node: str, max_value: int | None = None
) -> tuple[str, RepliedColumns] | None:
    """(owner address, refusal of every task) for a dispatch ``msg`` (its head decoded alone)
    whose ``frames`` (the head first) include one past ``limit`` of ``node``; None for any other
    message. The owner checks its own dispatches the same way (``owner_refusal``)."""
    if not isinstance(msg, DispatchColumns) or not msg.task_ids:
        return None
    count = len(msg.task_ids)
    attempts = columns.unpack("q", msg.attempts, count, "DispatchColumns.attempts")
    try:
        logical = columns.split_frames(msg.frame_sizes, list(frames[1:]), "DispatchColumns")
    except columns.ColumnError:
        logical = []
    if msg.call_start:  # (protocol 9: every payload a call, rebuilt there, none of them a frame)
        sizes = [len(msg.call_start) + 4 + len(CALL_CLOSE)] * count
    else:
        payloads = columns.unpack("i", msg.payload_frames, count, "DispatchColumns.payload_frames")
        sizes = [len(logical[at]) if 0 <= at < len(logical) else 0 for at in payloads]
    reasons = []
    for task_id, size in zip(msg.task_ids, sizes, strict=True):
        if max_value is not None and size > max_value:
            what = f"function {task_id!r}'s code and arguments"
            reasons.append(f"{FRAME_TOO_LARGE}: {too_large(size, max_value, what, node)}")
        elif size > limit or not logical:
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


def owner_refusal(msg: Any, frames: list[Any], limits: Limits, node: str) -> RepliedColumns | None:
    """The owner's own check before it sends a dispatch (``msg``, ``frames`` after the head) to
    another node: a frame past its ``max_frame_bytes`` (peers are started alike) would be dropped
    there, or cut the connection when past ZeroMQ's MAXMSGSIZE, so the refusal is made here
    instead; a frame past ``max_value_bytes`` is refused naming that limit."""
    whole = [b"", *frames]
    limit = limits.max_frame_bytes
    if not too_big(whole, min(limit, limits.max_value_bytes)):
        return None
    answer = refusal(msg, whole, limit, node, limits.max_value_bytes)
    return answer[1] if answer is not None else None
