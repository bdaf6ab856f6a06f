"""Dispatch leases' I/O shell (issue 19 item 7): runs the pure ``Leases`` (``replication/lease.py``)
for ``ReplicationIO`` on the daemon's loop.

Owner side: a run is watched from the moment it is replicated (accepted or taken over) with the
standbys the replication log chose, and again whenever they change; log acks and answers to
``RenewLeases`` renew it; the node's tick (and every membership step, before the owner hears of a
DEAD verdict: ``check``) holds or resumes the run's dispatches through the owner's shell
(``RunOwner.hold_dispatch``) and asks the standbys whose answers grew old, one message per standby
for all its runs. An answer at a higher term deposes us (``step_down``), as a log ack's does.
Standby side: ``RenewLeases`` is answered with the highest term we know of each run.
No per-task work: acks come per log batch, asks per standby and ask interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from typing import Protocol

from handoffd.daemon.ports import MembersPort, RunOwner
from handoffd.protocol.messages_lease import LeasesRenewed, RenewLeases
from handoffd.replication import lease as rl
from handoffd.replication.log import Accept, ReplicationLog
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler.owner import OwnerScheduler

log = logging.getLogger("handoffd.replication")


class Replication(Protocol):
    """What the shell uses of ``ReplicationIO``: the owner's shell as wired now, and the step
    down on a higher term (``fenced``: True if ``term`` is above ours)."""

    owner: RunOwner

    def fenced(self, run_id: str, term: int) -> bool: ...


class LeaseIO:
    """``lease``: seconds (None: no leases, every run dispatches freely: a shell on its own in
    tests)."""

    def __init__(
        self,
        port: MembersPort,
        scheduler: OwnerScheduler,
        log_: ReplicationLog,
        standby: StandbyStore,
        lease: float | None,
        replication: Replication,
    ) -> None:
        self.port = port
        self.scheduler = scheduler
        self.log = log_
        self.standby = standby
        self.leases = rl.Leases(lease) if lease else None
        self._replication = replication
        # The quorum's base (daemon/fencing.py; the node sets it): a former standby out of it
        # no longer holds a run's lease back. None: every one does until it answers.
        self.base: Callable[[], Container[str]] | None = None

    # -- owner side ----------------------------------------------------------------------------

    def watch(self, run_id: str) -> None:
        """The run is replicated (accepted, taken over) or its standbys may have changed."""
        leases = self.leases
        term = self.scheduler.term_of(run_id)
        if leases is None or term is None or not self.log.tracked(run_id):
            return
        self._apply(leases.watch(run_id, term, self.log.standbys(run_id), self.port.now()))

    def rewatch(self, run_ids: Iterable[str] | None = None) -> None:
        """Standbys were re-chosen (membership changed): every run watched, or those named."""
        if self.leases is None:
            return
        for run_id in self.leases.watching() if run_ids is None else run_ids:
            self.watch(run_id)

    def unwatch(self, run_id: str) -> None:
        leases = self.leases
        if leases is not None and leases.watches(run_id):
            self._apply(leases.unwatch(run_id))

    def departed(self) -> set[str]:
        """Former standbys some run's lease still counts (``Leases.departed``)."""
        return self.leases.departed() if self.leases is not None else set()

    def acked(self, run_id: str, node: str, term: int) -> None:
        """A log ack from ``node`` at ``term`` (a higher one already made us step down)."""
        if self.leases is not None:
            self._apply(self.leases.acked(run_id, node, term, self.port.now()))

    def ticked(self, instructions: list[object]) -> list[object]:
        """The node's tick, with the replication log's ``instructions`` (returned as they are):
        runs answered at the accept deadline are watched anew; then ``check``."""
        if instructions:
            self.rewatch([i.run_id for i in instructions if isinstance(i, Accept)])
        self.check()
        return instructions

    def check(self) -> None:
        """Hold the runs whose lease lapsed and ask the standbys due: on every tick, and on a
        membership step before the owner hears of it (a DEAD verdict loses tasks that would be
        placed again at once)."""
        leases = self.leases
        if leases is not None and leases.watching_any():  # (no run watched: nothing to judge)
            base = self.base() if self.base is not None else None
            self._apply(leases.tick(self.port.now(), self._live, base))

    def _live(self, run_id: str) -> bool:
        run = self.scheduler.run_state(run_id)
        return run is not None and run.state == "RUNNING"

    def handle(self, msg: RenewLeases | LeasesRenewed, sender: str) -> None:
        if isinstance(msg, RenewLeases):
            self.on_ask(msg, sender)
        else:
            self.on_renewed(msg, sender)

    def on_renewed(self, msg: LeasesRenewed, sender: str) -> None:
        leases = self.leases
        if leases is None or len(msg.run_ids) != len(msg.terms):
            return
        now = self.port.now()
        for run_id, term in zip(msg.run_ids, msg.terms, strict=True):
            if self._replication.fenced(run_id, term):
                continue  # deposed: a standby knows a newer owner (we stepped down)
            self._apply(leases.acked(run_id, sender, term, now))

    def _apply(self, instructions: list[object]) -> None:
        for ins in instructions:
            if isinstance(ins, rl.Ask):
                address = self.port.address_of(ins.node)
                if address:
                    run_ids = tuple(r for r, _ in ins.runs)
                    self.port.send(address, RenewLeases(run_ids, tuple(t for _, t in ins.runs)))
            elif isinstance(ins, rl.Hold):
                log.info(  # (a loop stall does it too: the next answer resumes the run)
                    "run %s: no answer from a standby for %.2f s; its new dispatches are held",
                    ins.run_id,
                    self.leases.lease if self.leases is not None else 0.0,
                    extra={"run": ins.run_id},
                )
                self._replication.owner.hold_dispatch(ins.run_id, True)
            elif isinstance(ins, rl.Resume):
                log.info("run %s: new dispatches no longer held", ins.run_id)
                self._replication.owner.hold_dispatch(ins.run_id, False)

    # -- standby side --------------------------------------------------------------------------

    def on_ask(self, msg: RenewLeases, sender: str) -> None:
        """An owner asks for the terms we know of its runs (its lease: ``replication/lease.py``)."""
        address = self.port.address_of(sender)
        if not address or len(msg.run_ids) != len(msg.terms):
            return
        terms = tuple(self.standby.term(run_id) for run_id in msg.run_ids)
        self.port.send(address, LeasesRenewed(msg.run_ids, terms))
