"""Which message the daemon accepts, from whom, and on which socket (docs/security.md).

Authentication happens before this: with a key, the transport admits on its listening socket only
connections that proved the key (CURVE), so everything here is about what an admitted sender may
*assert*. The envelope's sender is an assertion too: it is checked against membership, not trusted.

- Client requests (submit, status, results, cancel, list, StopNode...) only on the listening socket.
  A connection we opened (to a seed, to an address mDNS or gossip named) has proved nothing about
  the far end, which could otherwise make us run code or stop (issue 11, finding 1).
- Membership messages (SWIM) from anyone on either socket: joining is how a node becomes a member.
  What they may assert is checked in ``membership.swim`` (``Membership._received``).
- Peer messages (dispatch, reports, fetches, values, cancels and frees, replication) only from a
  current member (ALIVE or SUSPECT) other than us, and every address they carry for a reply must
  be that member's own address: addresses we send to are learned through membership only, so a
  forged message can neither inject a node into the owner's view (finding 3) nor make us open
  connections to addresses of its choosing (finding 4).
- Anything else (a reply meant for a client, arriving at a daemon) is dropped.

``check`` is pure; ``Drops`` counts what was dropped by reason and says so in the log, rate limited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol import messages_chunks as mk
from handoffd.protocol import messages_code as mc
from handoffd.protocol import messages_hooks as mh
from handoffd.protocol import messages_io as mio
from handoffd.protocol import messages_lease as ml
from handoffd.protocol import messages_ops as ops
from handoffd.protocol import messages_reliability as mr
from handoffd.protocol.messages_columns import DispatchColumns, RepliedColumns, ReportColumns
from handoffd.protocol.messages_lifeguard import Nack
from handoffd.protocol.messages_observability import GetMetrics, GetNodeInfo, GetTaskHistory
from handoffd.protocol.messages_rebalance import TasksWithdrawn, WithdrawTasks
from handoffd.protocol.messages_swim import DescribeHealth

log = logging.getLogger("handoffd.admission")

SWIM_TYPES = (m.Ping, m.Ack, m.PingReq, m.IndirectAck, m.PushPull, m.Gossip, Nack)
# ClusterMismatch comes from a node that is not (and will not be) a member: accepted like SWIM's.
MEMBERSHIP_TYPES = (*SWIM_TYPES, *ops.NOTICE_TYPES)
REPLICATION_TYPES = (
    m.ReplicateRun,
    m.ReplicateLog,
    m.ReplicaAcked,
    m.DropReplica,
    m.ReconcileRun,
    m.RunHoldings,
    m.FollowOwner,
    m.ProbeHoldings,
    m.HoldingsProbed,
    ml.RenewLeases,
    ml.LeasesRenewed,
    mk.ReplicaPayloads,
    mk.PayloadsHeld,
)
PEER_TYPES = (
    DispatchColumns,
    RepliedColumns,
    ReportColumns,
    m.DispatchTasks,
    m.DispatchReplied,
    m.TasksReported,
    m.FetchValues,
    m.ValuesFetched,
    mk.FetchChunks,
    mk.ValueChunk,
    m.CancelTasks,
    WithdrawTasks,
    TasksWithdrawn,
    m.FreeRun,
    m.FreeValues,
    mc.FetchPackages,
    mc.PackagesFetched,
    mh.FetchEncoded,
    mh.EncodeFailed,
    mc.ReplicateOutput,
    mc.TaskOutputLive,
    *REPLICATION_TYPES,
)
CLIENT_TYPES = (
    m.ListNodes,
    m.SubmitRun,
    m.SubmitAndWait,
    m.GetRunStatus,
    m.WaitRun,
    m.FetchResults,
    mk.FetchResultChunks,
    m.CancelRun,
    m.FreeRunRequest,
    m.ListRuns,
    m.StopNode,
    mc.GetTaskOutput,
    GetTaskHistory,
    GetNodeInfo,
    GetMetrics,
    DescribeHealth,
    *ops.CLIENT_TYPES,
)

CLIENT, PEER, MEMBERSHIP = "client", "peer", "membership"
KIND: dict[type, str] = {
    **{t: CLIENT for t in CLIENT_TYPES},
    **{t: PEER for t in PEER_TYPES},
    **{t: MEMBERSHIP for t in MEMBERSHIP_TYPES},
    mr.NodeLeaving: PEER,  # a member says it is leaving (issue 19)
    mio.NodeRestarted: PEER,  # a member's new process says so (issue 19)
    mio.ValuesHandedOver: PEER,  # a leaving member's values (issue 19)
    mio.ValuesTaken: PEER,
    mio.UploadChunk: CLIENT,  # a piece of a big submission (handoffd.upload)
    mr.NameClash: MEMBERSHIP,  # from anyone: a newcomer with a taken name is no member yet
}
_LIVE = (m.ALIVE, m.SUSPECT)


def check(msg: Any, sender: str, listening: bool, member: m.MemberState | None, me: str) -> str:
    """Why ``msg`` from ``sender`` must be dropped ("" to accept it). ``listening``: it came in on
    our listening socket; ``member``: our membership's record of ``sender`` (None if unknown);
    ``me``: our node name."""
    kind = KIND.get(type(msg))
    if kind is CLIENT:
        return "" if listening else "client_request_on_outbound"
    if kind is None:
        return "unexpected_type"
    if sender == me:
        # Our own messages never cross the network (Node.send delivers them locally): another
        # daemon uses our name, or someone forges it.
        return "sender_is_us"
    if kind is MEMBERSHIP:
        return ""
    if member is None or member.status not in _LIVE:
        return "not_a_member"
    if isinstance(msg, (m.FetchValues, mc.FetchPackages, mh.FetchEncoded, mk.FetchChunks)):
        return "" if msg.reply_to == member.address else "reply_to_not_sender"
    if isinstance(msg, (m.DispatchTasks, DispatchColumns)):
        return "" if msg.owner_address == member.address else "owner_not_sender"
    if isinstance(msg, (m.ReplicateRun, m.ReconcileRun, m.FollowOwner, m.ProbeHoldings)):
        if msg.owner != sender or msg.owner_address != member.address:
            return "owner_not_sender"
    return ""


class Drops:
    """Dropped messages by reason: ``counts`` for tests and status, a log line per reason and
    message type at the first drop and then at most every ``every`` seconds (a flood must not flood
    the log too)."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: dict[str, int] = {}
        self.total = 0
        self._every = every
        self._clock = clock
        # (reason, message type) -> (when logged, drops of that kind then, drops of that kind)
        self._logged: dict[tuple[str, str], list[float]] = {}

    def count(self, reason: str, msg: Any, sender: str) -> None:
        self.total += 1
        self.counts[reason] = self.counts.get(reason, 0) + 1
        kind = type(msg).__name__
        now = self._clock()
        entry = self._logged.get((reason, kind))
        if entry is None:
            entry = self._logged[(reason, kind)] = [now - self._every, 0.0, 0.0]
        entry[2] += 1
        if now - entry[0] < self._every:
            return
        since = int(entry[2] - entry[1])
        entry[0], entry[1] = now, entry[2]
        log.warning(
            "dropped %s from %r: %s (%d so far%s)",
            kind,
            sender,
            _EXPLAIN.get(reason, reason),
            int(entry[2]),
            f", {since} since the last report" if since > 1 else "",
        )


_EXPLAIN = {
    "client_request_on_outbound": "a client request on a connection we opened to a peer "
    "(client requests are accepted only on the listening socket)",
    "unexpected_type": "not a message a daemon accepts",
    "sender_is_us": "it says it comes from us (another daemon uses our --name, or a forgery)",
    "not_a_member": "the sender is not a live member of the cluster",
    "reply_to_not_sender": "it asks for values to be sent to an address that is not the sender's",
    "owner_not_sender": "it names an owner other than the sender (or at another address)",
}

__all__ = ["check", "Drops", "KIND", "CLIENT", "PEER", "MEMBERSHIP"]
