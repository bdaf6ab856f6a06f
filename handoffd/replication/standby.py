"""The standby's side: replicas of other owners' runs, the terms seen, and when to take over.

A replica is the run as plain data (``RunState.snapshot`` format, what ``OwnerScheduler.restore_run``
takes), the log position ``seq`` it reflects, the owner and the takeover order of standbys. Log
batches apply in order; a batch after a gap is refused with a request for a snapshot (catch-up).

Terms and fencing: ``terms[run]`` is the highest term this node has seen for the run from anyone.
Anything from a lower term is ignored (and answered with the higher term, so a deposed owner steps
down). Learning a higher term from another owner drops our replica: the new owner sends fresh
snapshots to the standbys it chooses.

Takeover rule (one table, ``takeover_due``): the owner is DEAD or LEFT in our view, and every standby
ahead of us in the order is DEAD or LEFT (or unknown) in our view. A SUSPECT is not dead: waiting for
the verdict is what prevents two standbys on the same side from both taking over. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from handoffd.protocol.messages import ALIVE, SUSPECT


@dataclass
class Replica:
    run_id: str
    term: int  # the owner's term
    seq: int  # last log batch applied
    owner: str
    owner_address: str
    standbys: tuple[str, ...]  # takeover order (we are one of them)
    data: dict[str, Any] = field(repr=False)  # RunState.snapshot() format, histories stripped


@dataclass(frozen=True)
class Ack:
    """Tell the owner we applied up to ``seq`` (``need_snapshot``: we saw a gap)."""

    run_id: str
    owner_address: str
    term: int
    seq: int
    need_snapshot: bool


class StandbyStore:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.replicas: dict[str, Replica] = {}
        self.terms: dict[str, int] = {}  # run -> highest term seen (fencing)

    def term(self, run_id: str) -> int:
        return self.terms.get(run_id, 0)

    def seen_term(self, run_id: str, term: int) -> bool:
        """Record a term seen for the run; True if it is the highest so far (ties count)."""
        if term < self.terms.get(run_id, 0):
            return False
        self.terms[run_id] = term
        return True

    def on_snapshot(
        self,
        run_id: str,
        term: int,
        seq: int,
        owner: str,
        owner_address: str,
        standbys: Sequence[str],
        data: dict[str, Any],
    ) -> Ack:
        if not self.seen_term(run_id, term):
            return Ack(run_id, owner_address, self.term(run_id), seq, False)  # stale owner
        old = self.replicas.get(run_id)
        if old is not None and old.term == term and old.seq > seq:
            return Ack(run_id, owner_address, term, old.seq, False)  # an older snapshot overtook
        self.replicas[run_id] = Replica(
            run_id, term, seq, owner, owner_address, tuple(standbys), data
        )
        return Ack(run_id, owner_address, term, seq, False)

    def on_log(
        self,
        run_id: str,
        term: int,
        seq: int,
        owner_address: str,
        standbys: Sequence[str],
        tasks: Sequence[dict[str, Any]],
        run_fields: dict[str, Any],
    ) -> Ack | None:
        """Apply batch ``seq``; ``tasks`` are task-record fields by task id (``task_id`` key)."""
        if not self.seen_term(run_id, term):
            return Ack(run_id, owner_address, self.term(run_id), seq, False)
        replica = self.replicas.get(run_id)
        if replica is None or replica.term != term or seq > replica.seq + 1:
            have = replica.seq if replica is not None and replica.term == term else -1
            return Ack(run_id, owner_address, term, have, True)
        if seq <= replica.seq:
            return Ack(run_id, owner_address, term, replica.seq, False)  # a duplicate
        records = replica.data["tasks"]
        for fields in tasks:
            rec = records.get(fields["task_id"])
            if rec is None:
                continue
            for key, value in fields.items():
                if key != "task_id" and (key != "value" or value is not None):
                    rec[key] = value
            if fields["state"] != "DONE":
                rec["value"] = None
        replica.data.update(run_fields)
        replica.seq = seq
        replica.standbys = tuple(standbys)
        return Ack(run_id, owner_address, term, seq, False)

    def drop(self, run_id: str, term: int) -> None:
        replica = self.replicas.get(run_id)
        if replica is not None and replica.term <= term:
            del self.replicas[run_id]

    def new_owner(self, run_id: str, term: int, owner: str) -> bool:
        """Another node claims the run at ``term``; False if that term is stale."""
        if not self.seen_term(run_id, term):
            return False
        replica = self.replicas.get(run_id)
        if replica is not None and replica.term < term and owner != self.node_name:
            del self.replicas[run_id]
        return True

    def takeover_due(self, status_of: Callable[[str], int | None]) -> list[str]:
        """Runs we must take over now, given each member's status in our view (None: unknown)."""
        due = []
        for run_id, replica in self.replicas.items():
            if _live(status_of(replica.owner)):
                continue
            if self.node_name not in replica.standbys:
                continue
            ahead = replica.standbys[: replica.standbys.index(self.node_name)]
            if not any(_live(status_of(n)) for n in ahead):
                due.append(run_id)
        return sorted(due)

    def take(self, run_id: str) -> Replica | None:
        """Remove and return the replica we are taking over (its term + 1 becomes the run's)."""
        replica = self.replicas.pop(run_id, None)
        if replica is not None:
            self.seen_term(run_id, replica.term + 1)
        return replica


def _live(status: int | None) -> bool:
    return status in (ALIVE, SUSPECT)
