"""Re-placement of queued work (issue 13): an owner takes back attempts a node queued but has not
started, to place them where they start sooner. Type ids 100-119.

The handshake never runs a task twice: the node drops a withdrawn attempt from its local queue
before it answers (it held no claim and never ran; no report follows), and the owner places it
again only once the node said it was withdrawn. An attempt the node already started, or no longer
has, stays where it is and reports as usual. Both carry the run's term in the envelope: a node
ignores a withdrawal from a deposed owner.
"""

from __future__ import annotations

from handoffd.protocol.messages import TaskAttempt, message


@message(100)
class WithdrawTasks:
    """Owner to node: drop these attempts of the run if they have not started yet."""

    run_id: str
    items: tuple[TaskAttempt, ...]


@message(101)
class TasksWithdrawn:
    """Node to owner: ``withdrawn`` were dropped unstarted (place them again), ``kept`` had
    started or were unknown here (their reports follow as usual); with the node's ledger."""

    run_id: str
    withdrawn: tuple[TaskAttempt, ...]
    kept: tuple[TaskAttempt, ...]
    free: dict[str, float]
    resource_version: int
