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


@message(203)
class ValuesHandedOver:
    """A leaving node hands over values of a run its store still holds (frame i is the value of
    ``task_ids[i]``): the receiver keeps them in its store, the run's owner (or, for a run the
    leaver owned, its standby) so they outlive the leaver instead of being recomputed."""

    request_id: int
    run_id: str
    task_ids: tuple[str, ...]


@message(204)
class ValuesTaken:
    """The answer to ``ValuesHandedOver``: ``kept`` are held here now (the rest was not needed or
    did not fit); the leaver leaves once every answer came (or its wait is over)."""

    request_id: int
    run_id: str
    kept: tuple[str, ...]
