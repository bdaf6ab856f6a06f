"""Wire messages of issue 19's daemon I/O part: type ids 202-209 only.

Registered by ``handoffd.protocol.__init__``; same ``message`` decorator, same rules (append-only
types, trailing optional fields only).
"""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(202)
class NodeRestarted:
    """The sender is a new process under its name: membership still held an earlier one of ours
    (a state of our name this process never had) that was never declared DEAD. Whatever the
    receiver's owner had out on the old process is settled at once (one probe per run), not after
    its lost-report probes; ``incarnation``: ours now, for the log."""

    incarnation: int
