"""Claims on a run in the replication shell (``ReplicationIO``, a mixin like ``TakeoverSteps``):
another node says it owns a run (its ``ReconcileRun``, ``ProbeHoldings``, ``FollowOwner``, or the
snapshots and log batches it sends us as its standby), and we follow it, step down, or tell it
that a claim outranks its own.

Claims are ordered by (term, owner name) (``replication.standby.outranks``). A higher term wins, as
always (fencing, DESIGN 3.5). Two claims at one term come from two takeovers at once: with
inconsistent views of membership (a partition, a false suspicion) two standbys each saw themselves
as the first live one. Both used to stand back on hearing of the other, and nobody ran the run.
Now the higher name keeps it and the lower yields wherever the two meet: the lower stands back
from its takeover (``TakeoverMachine``'s ``OtherOwner``), or steps down if it adopted the run
already; a node that knows the higher claim refuses the lower one's messages and tells its sender
who holds the run (``FollowOwner``), so the yielding node hears of it even when the winner never
asked it (it did not see it live). The yielding node then follows the winner like any node: its
executor reports there, and the winner may choose it as a standby (its state re-replicated to it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from handoffd.daemon.ports import Follower, MembersPort, RunOwner
from handoffd.protocol import messages as m
from handoffd.replication import log as rlog
from handoffd.replication import takeover_machine as tm
from handoffd.replication.standby import StandbyStore, outranks
from handoffd.scheduler.owner import OwnerScheduler

log = logging.getLogger("handoffd.replication")


class OwnerClaims:
    # What the mixin uses of ReplicationIO (set there).
    port: MembersPort
    scheduler: OwnerScheduler
    owner: RunOwner
    follower: Follower
    log: rlog.ReplicationLog
    standby: StandbyStore
    takeovers: tm.TakeoverMachine
    far: Any
    leases: Any
    _accepts: dict[str, Any]
    _restoring: dict[str, Any]  # run -> Restoring (``daemon.replication_takeover``)
    _moved: dict[str, tuple[int, str, str]]
    # (TakeoverSteps'; an annotation, not a stub: this mixin comes first in ReplicationIO's bases)
    _drop_reports: Callable[[str], None]

    def _takeover(self, event: tm.TakeoverEvent) -> None:
        raise NotImplementedError

    def _execute(self, instructions: list[object]) -> None:
        raise NotImplementedError

    def _bound_claims(self) -> None:
        """The claim tables stay bounded (``replication.standby``'s docstring): the standby
        store keeps the entries of runs we own or are taking over, and says what it pruned."""
        self.standby.keep = lambda run_id: self._claim_term(run_id) is not None
        self.standby.on_pruned = lambda dropped, left: _pruned(dropped, left, self.standby.limit)

    def _claim_term(self, run_id: str) -> int | None:
        """The term at which we own the run or are taking it over (None: neither)."""
        mine = self.scheduler.term_of(run_id)
        if mine is not None:
            return mine
        taking = self.takeovers.term_of(run_id)
        if taking is not None:
            return taking
        restoring = self._restoring.get(run_id)
        return restoring.term if restoring is not None else None

    def _claimed(self, run_id: str, term: int, owner: str, address: str) -> bool:
        """``owner`` (at ``address``) sends us its state of the run at ``term`` as its standby:
        False if its claim yields to another one at that term (it is told which); if ours is the
        one that yields, we follow it first (and take its state)."""
        if not owner or owner == self.port.name:
            return True
        if self.standby.loses(run_id, term, owner):
            self._tell_winner(run_id, term, address)
            return False
        if self._claim_term(run_id) == term:
            self._follow(run_id, term, owner, address)
        return True

    def _tell_winner(self, run_id: str, term: int, address: str) -> None:
        """A claim at ``term`` from ``address`` lost a tie: tell its sender who holds the run
        (a claim at a lower term is fenced the usual ways)."""
        if not address or term != self.standby.term(run_id):
            return
        winner = self.standby.claimant(run_id)
        if winner == self.port.name:
            winner_address = self.port.address
        else:
            known = self._moved.get(run_id)
            if known is None or known[:2] != (term, winner):
                return
            winner_address = known[2]
        if address == winner_address:
            return
        log.info(
            "run %s: a claim at term %d from %s yields to %s's",
            run_id,
            term,
            address,
            winner,
            extra={"run": run_id, "term": term},
        )
        self.port.send(address, m.FollowOwner(run_id, term, winner, winner_address), term=term)

    def step_down(self, run_id: str, term: int, owner: str = "", address: str = "") -> None:
        """Another owner holds the run at a higher ``term`` (or at ours, with a claim that
        outranks ours): stop scheduling it, forward clients."""
        mine = self.scheduler.term_of(run_id)
        if address:
            self._note_owner(run_id, term, owner, address)
        if mine is None or not outranks(term, owner, mine, self.port.name):
            return
        log.warning(
            "run %s: stepping down (our term %d, seen term %d%s)",
            run_id,
            mine,
            term,
            f", claimed by {owner}" if term == mine else "",
            extra={"run": run_id, "term": term},
        )
        drops = self.log.untrack(run_id)
        if term == mine:
            # A tie lost (two takeovers at one term): our standbys drop what we sent them, as the
            # winner's adoption drops the old owner's standbys, else they keep it and take the
            # run over when we die. Sent before the scheduler forgets our term (the drop's).
            # Not for a higher term: a standby that has not heard of that owner yet keeps our
            # state until its own arrives (win19).
            self._execute(drops)
        self.owner.step_down(run_id)
        self.far.forget(run_id)
        self._accepts.pop(run_id, None)
        if term != mine:
            self._execute(drops)
        self.leases.unwatch(run_id)

    def _note_owner(self, run_id: str, term: int, owner: str, address: str) -> None:
        known = self._moved.get(run_id)
        if known is None or outranks(term, owner, known[0], known[1]) or known[:2] == (term, owner):
            if known is None and len(self._moved) >= self.standby.limit:
                _forget_oldest(self._moved, self.standby.limit)
            self._moved[run_id] = (term, owner, address)

    def fenced(self, run_id: str, term: int) -> bool:
        """A message about a run we own came with a higher ``term``: step down; True if so."""
        mine = self.scheduler.term_of(run_id)
        if mine is None or term <= mine:
            return False
        self.step_down(run_id, term)
        return True

    def _follow(self, run_id: str, term: int, owner: str, owner_address: str) -> bool:
        """``owner`` says it owns the run at ``term``: fence lower terms, stand back from our own
        takeover or ownership, remember where the run is now; False if that claim is stale (a
        lower term, or a tie lost: its sender is told who holds the run)."""
        if not self.standby.new_owner(run_id, term, owner, owner_address):
            self._tell_winner(run_id, term, owner_address)
            return False
        self._takeover(tm.OtherOwner(run_id, owner, term))
        restoring = self._restoring.get(run_id)
        if (
            restoring is not None
            and owner != self.port.name
            and outranks(term, owner, restoring.term, self.port.name)
        ):
            del self._restoring[run_id]  # (as StandBack: the run being built is not adopted)
            self._drop_reports(run_id)
            log.warning(
                "run %s: %s took over at term %d; we stand back",
                run_id,
                owner,
                term,
                extra={"run": run_id, "term": term},
            )
        if owner != self.port.name:
            self.step_down(run_id, term, owner, owner_address)
            self._note_owner(run_id, term, owner, owner_address)
        return True

    def _on_reconcile(self, msg: m.ReconcileRun) -> None:
        if not self._follow(msg.run_id, msg.term, msg.owner, msg.owner_address):
            return
        holdings = self.follower.on_reconcile(msg)
        if holdings is not None:
            self.port.send(msg.owner_address, holdings, term=msg.term)

    def _on_probe(self, msg: m.ProbeHoldings) -> None:
        known = self.follower.run_owners.get(msg.run_id)
        if known is None or known[:2] != (msg.term, msg.owner_address):
            # Not the owner we follow: learn it as from a takeover's ReconcileRun. The owner we
            # do follow has nothing to teach us (no standby or redirect entries for every run we
            # ever ran a task of): just answer.
            if not self._follow(msg.run_id, msg.term, msg.owner, msg.owner_address):
                return
        holdings = self.follower.on_reconcile(msg)
        if holdings is not None:
            answer = m.HoldingsProbed(
                msg.request_id, msg.run_id, msg.term, holdings.held, holdings.running
            )
            self.port.send(msg.owner_address, answer, term=msg.term)


def _pruned(dropped: int, left: int, limit: int) -> None:
    log.warning(
        "claims: forgot the terms of %d run(s) held here as no replica (the oldest; %d kept, "
        "limit %d): a deposed owner of one of them is no longer refused here",
        dropped,
        left,
        limit,
    )


def _forget_oldest(moved: dict[str, tuple[int, str, str]], limit: int) -> None:
    """Where other nodes' runs went (``_moved``), down to 3/4 of ``limit``, oldest first: a
    client asking about one of those is no longer pointed at its owner here (it finds it by
    rotating through the nodes it knows)."""
    over = len(moved) - limit * 3 // 4
    for run_id in list(moved)[:over]:
        del moved[run_id]
    log.warning(
        "claims: forgot where %d run(s) of other nodes went (the oldest; %d kept, limit %d)",
        over,
        len(moved),
        limit,
    )
