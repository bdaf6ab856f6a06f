"""Lazy serialization hooks (``handoffd.Argument``, issue 18): a consumer's node fetches a hooked
input from a node that holds it, asking it to run the edge's serialize hook first. Type ids 191-199.

The consumer's executor sends ``FetchEncoded`` only when the value is not on its node (on the
same node the consumer gets the plain value and no hook runs). The holder runs the serialize hook
in one of its workers (user code never runs on the daemon's loop) and answers with the ordinary
``ValuesFetched``, naming the hidden serialize function (``hook_id``) and carrying the serialized
form as its frame, or listing it as missing when it does not hold the value (the consumer tries
the next holder). A hook that raises is answered with ``EncodeFailed``: the consumer's attempt
fails with it, naming the hook.
"""

from __future__ import annotations

from handoffd.protocol.messages import message


@message(191)
class FetchEncoded:
    """Peer to peer: send ``task_id``'s value to ``reply_to``, serialized by the hook whose
    payload is frame 0 (the hidden serialize function ``hook_id`` of the consumer's DAG)."""

    request_id: int
    run_id: str
    task_id: str
    hook_id: str
    reply_to: str


@message(192)
class EncodeFailed:
    """The serialize hook of a ``FetchEncoded`` raised (or returned no bytes)."""

    request_id: int
    run_id: str
    hook_id: str
    exc_type: str
    message: str
    traceback: str
