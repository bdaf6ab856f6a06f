"""Remote node operations (``handoffctl nodes``, ``runs``, ``drain``, ``stop NODE``) and the
misconfiguration a node notices about its peers.

``NodeOps`` answers ``DescribeNode`` (version, start time, uptime, state, warnings),
``ListOwnedRuns`` (the runs this node owns, with the wall-clock times ``RunTimes`` noted) and
``DrainNode`` (answered at once, then the node drains and leaves). It also keeps the node's
warnings: a peer of another cluster is logged once per peer name and told once
(``ClusterMismatch``), and a peer's ``ClusterMismatch`` is logged once per peer name, so both sides
of a mismatched ``--cluster`` say so. The node wires it (``daemon.node``): it routes the messages
here and reports each membership message that membership dropped as another cluster's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoffd._core import api as core
from handoffd.protocol import messages as m
from handoffd.protocol import messages_ops as ops

log = logging.getLogger("handoffd.node")

#: Peers remembered for their once-only warning; past this, new ones are counted only (a flood of
#: made-up names must not grow the daemon).
MAX_WARNED_PEERS = 1024
#: Warnings kept for ``handoffctl nodes`` (the newest).
MAX_WARNINGS = 32
#: Unanswered nodes a listing may name (``ListOwnedRuns.unanswered``); past this, ignored.
MAX_UNANSWERED = 256


class RunTimes:
    """Wall-clock times of the runs this node owns: accepted here, ended here."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.submitted: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    def accepted(self, run_id: str) -> None:
        self.submitted.setdefault(run_id, self._clock())

    def ended(self, run_id: str) -> None:
        self.finished.setdefault(run_id, self._clock())

    def forget(self, run_id: str) -> None:
        """The owner forgot the run (``OwnerIO.forget``): its times go now, not at the next
        listing (a daemon nobody lists kept two entries per run it ever owned)."""
        self.submitted.pop(run_id, None)
        self.finished.pop(run_id, None)

    def keep_only(self, run_ids: set[str]) -> None:
        """Forget the times of runs the owner forgot (called at each listing)."""
        for table in (self.submitted, self.finished):
            for run_id in [r for r in table if r not in run_ids]:
                del table[run_id]


@dataclass
class OpsPort:
    """What ``NodeOps`` may ask of the node."""

    name: str
    address: str
    cluster: str
    version: str
    reply: Callable[[bytes, Any], None]
    send: Callable[[str, Any], Any]
    state: Callable[[], str]  # "running" | "leaving"
    owned_runs: Callable[[], list[tuple[str, Any]]]  # (run_id, OwnedRunStatus)
    drain: Callable[[float | None], None]
    # ``then(runs)`` with the runs whose owner is changing, held here as replicas, those of the
    # owners named (unanswered) included (``ReplicationIO.changing_runs``: ``ChangingRun``s,
    # once counted)
    changing_runs: Callable[..., None] = lambda then, **_: then([])


def changing_listed(changing: list[Any], owned: set[str]) -> list[ops.OwnedRun]:
    """The runs whose owner is changing (``ChangingRun``s) as listed entries, but those owned
    here (a takeover that ended meanwhile)."""
    out = []
    for c in changing:
        if c.run_id in owned:
            continue
        replicated = c.replicated
        state, counts = (
            ("UNKNOWN", {}) if replicated is None else (replicated.state, replicated.counts)
        )
        out.append(
            ops.OwnedRun(c.run_id, state, c.owner, dict(counts), None, None, True, c.next_owner)
        )
    return out


class NodeOps:
    def __init__(
        self,
        port: OpsPort,
        times: RunTimes,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.times = times
        self._monotonic = monotonic
        self.started = wall()
        self._started_mono = monotonic()
        self._warned: set[str] = set()
        self.warnings: list[str] = []
        self.unwarned = 0  # peers past MAX_WARNED_PEERS, counted only

    # -- client requests -------------------------------------------------------------------------

    def handle(self, msg: Any, conn: bytes) -> None:
        if isinstance(msg, ops.DescribeNode):
            self.port.reply(conn, self.describe(msg.request_id))
        elif isinstance(msg, ops.ListOwnedRuns):
            owned = self.owned_runs()

            def answer(changing: list[Any]) -> None:
                listed = owned + changing_listed(changing, {r.run_id for r in owned})
                self.port.reply(conn, ops.OwnedRunList(msg.request_id, tuple(listed)))

            # (names only: a listing names the nodes of one cluster; more is a hostile ask)
            named = msg.unanswered if isinstance(msg.unanswered, (tuple, list)) else ()
            unanswered = frozenset(n for n in named[:MAX_UNANSWERED] if isinstance(n, str))
            self.port.changing_runs(answer, unanswered=unanswered)
        elif isinstance(msg, ops.DrainNode):
            timeout = msg.timeout
            if timeout is not None and not timeout >= 0:  # NaN and negatives: the default
                timeout = None
            log.info("drain requested (timeout %s): leaving once running tasks end", timeout)
            self.port.reply(conn, m.Ok(msg.request_id))
            self.port.drain(timeout)

    def describe(self, request_id: int) -> ops.NodeDescribed:
        p = self.port
        uptime = max(0.0, self._monotonic() - self._started_mono)
        return ops.NodeDescribed(
            request_id,
            p.name,
            p.address,
            p.cluster,
            p.version,
            self.started,
            uptime,
            p.state(),
            tuple(self.warnings),
            core.shares(),
        )

    def owned_runs(self) -> list[ops.OwnedRun]:
        out = []
        listed = self.port.owned_runs()
        self.times.keep_only({run_id for run_id, _ in listed})
        for run_id, st in listed:
            out.append(
                ops.OwnedRun(
                    run_id,
                    st.state,
                    self.port.name,
                    dict(st.counts),
                    self.times.submitted.get(run_id),
                    self.times.finished.get(run_id),
                )
            )
        return out

    # -- misconfiguration ------------------------------------------------------------------------

    def _first_time(self, key: str) -> bool:
        if key in self._warned:
            return False
        if len(self._warned) >= MAX_WARNED_PEERS:
            self.unwarned += 1
            return False
        self._warned.add(key)
        return True

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)
        del self.warnings[:-MAX_WARNINGS]

    def other_cluster(self, msg: Any, sender: str) -> None:
        """Membership dropped ``msg`` from ``sender`` as another cluster's: say so once, and tell
        the sender once, at the address its own state names."""
        updates = msg.members if isinstance(msg, m.PushPull) else getattr(msg, "updates", ())
        own = next((u for u in updates if u.name == sender), None)
        if own is None or own.cluster == self.port.cluster or not self._first_time(sender):
            return
        self._warn(
            f"peer {sender} at {own.address} is in cluster {own.cluster!r}, this node in "
            f"{self.port.cluster!r}: ignored (start every node with the same --cluster)"
        )
        self.port.send(
            own.address, ops.ClusterMismatch(self.port.name, self.port.cluster, own.cluster)
        )

    def handshake_failed(self, direction: str, where: str, why: str) -> None:
        """The transport saw a handshake fail (a key on one side only, or two keys): once per
        peer address and direction."""
        if not self._first_time(f"{direction} {where}"):
            return
        if direction == "outbound":
            self._warn(
                f"peer at {where} refused the connection: {why} (every node and client of a "
                "cluster needs the same --key-file)"
            )
        else:
            self._warn(
                f"refused a connection from {where}: {why} (every node and client of a cluster "
                "needs the same --key-file)"
            )

    def on_notice(self, msg: Any, sender: str) -> None:
        if not isinstance(msg, ops.ClusterMismatch) or msg.their_cluster != self.port.cluster:
            return  # not about us (a stale or forged notice)
        if not self._first_time(sender):
            return
        self._warn(
            f"peer {msg.name} is in cluster {msg.cluster!r}, this node in "
            f"{self.port.cluster!r}: it ignores us (start every node with the same --cluster)"
        )
