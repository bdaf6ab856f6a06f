"""Wire messages of remote node operations (issue 15's range, 140-159): what ``handoffctl nodes``,
``runs``, ``drain`` and ``stop NODE`` ask one daemon, and the notice a node sends a peer of another
cluster. Registered by the last import line of ``handoffd.protocol.messages``; the rules of that
module apply (append-only numbers, trailing optional fields only)."""

from __future__ import annotations

from dataclasses import field

from handoffd.protocol.messages import message, struct

# ---------------------------------------------------------------------------------------------
# Client -> daemon: 140-149 (admitted on the listening socket only, like every client request)
# ---------------------------------------------------------------------------------------------


@message(140)
class DescribeNode:
    """Ask a daemon about itself (``handoffctl nodes``)."""

    request_id: int


@message(141)
class NodeDescribed:
    request_id: int
    name: str
    address: str
    cluster: str
    version: str  # handoffd's version, e.g. "0.1.0"
    started: float  # wall-clock time the daemon started (seconds since the epoch)
    uptime_s: float  # seconds since it started, by its monotonic clock
    state: str  # "running" | "draining" | "stopping"
    warnings: tuple[str, ...]  # misconfiguration it noticed (peers of another cluster, refusals)
    # issue 13: placement decisions taken in the daemon's process so far, per core backend
    # ("cython": the compiled core, "python": its pure-Python twin); see handoffd._core.api.shares
    decisions: dict[str, int] = field(default_factory=dict)


@message(142)
class ListOwnedRuns:
    """Ask a daemon for every run it owns, with times (``handoffctl runs`` asks each node), and
    those it holds a replica of while their owner changes (``OwnedRun.changing``).
    ``unanswered``: nodes that did not answer this listing (a second round of ``handoffctl
    runs``): the daemon also lists the runs it holds a replica of whose owner is one of them,
    though it still sees that owner ALIVE (killed a moment ago: not suspected yet)."""

    request_id: int
    unanswered: tuple[str, ...] = ()


@struct
class OwnedRun:
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED
    owner: str
    counts: dict[str, int]
    submitted: float | None  # wall clock, when this owner accepted it (None: taken over)
    finished: float | None  # wall clock, when it ended here (None: not ended)
    # issue 19 (race19): a run this node holds a replica of while its owner changes (``owner``
    # not alive here), listed as last replicated; ``next_owner``: who is expected to take over
    changing: bool = False
    next_owner: str = ""


@message(143)
class OwnedRunList:
    request_id: int
    runs: tuple[OwnedRun, ...]


@message(144)
class DrainNode:
    """Stop placing work on this node, let its running tasks finish (for at most ``timeout``
    seconds; None: the node's drain grace), then leave the cluster and exit
    (``handoffctl drain NODE``). Answered with ``Ok`` at once."""

    request_id: int
    timeout: float | None


# ---------------------------------------------------------------------------------------------
# Node -> node: 150-159
# ---------------------------------------------------------------------------------------------


@message(150)
class ClusterMismatch:
    """Sent once to a node whose membership message named another cluster: it is told why it
    hears nothing back (it logs it and shows it in ``handoffctl nodes``)."""

    name: str  # the sender's node name
    cluster: str  # the sender's cluster
    their_cluster: str  # the cluster the receiver's message named


CLIENT_TYPES = (DescribeNode, ListOwnedRuns, DrainNode)
NOTICE_TYPES = (ClusterMismatch,)
