# cython: annotation_typing=False
"""The gossip queue: members whose newest state is still to be piggybacked, fewest transmissions
first (memberlist's TransmitLimitedQueue), compiled beside ``gossip.pxd`` (as records.py).

Its buckets are lists threaded through the members' records (``records.Member``'s ``q*`` fields:
the count, the bucket's neighbours, the bulk flag), not dicts keyed by name: a merge that hears of
a queued member holds its record already, so ``heard_record`` moves it with a few field writes,
and ``take`` walks and moves records without a dict operation per name (the dicts per bucket were
a quarter of a 1,000-node simulation's samples during a storm or a heal, issue 20). One dict,
name -> record, remains for what arrives by name (``add``, ``discard``, ``in``).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from handoffd.membership.records import Member


class GossipQueue:
    """Names to piggyback, each with the number of times its current state was sent."""

    def __init__(self) -> None:
        self._queued: dict[str, Member] = {}  # name -> its record, in the order first queued
        self.added = 0  # states queued since the start: one per change of the view
        # transmissions -> the first and last record of that bucket (its records in the order they
        # came: the oldest news of a count goes first); None: empty
        self._heads: list[Member | None] = []
        self._tails: list[Member | None] = []
        self._bulk = 0  # queued records whose sends take()'s bulk_limit caps

    def __len__(self) -> int:
        return len(self._queued)

    def __bool__(self) -> bool:
        return bool(self._queued)

    def __contains__(self, name: object) -> bool:
        return name in self._queued

    def __iter__(self) -> Iterator[str]:
        return iter(self._queued)

    @property
    def bulk(self) -> int:
        """How many queued names are bulk news (``add``)."""
        return self._bulk

    def counts(self) -> dict[str, int]:
        """name -> its transmissions so far (tests, debugging)."""
        return {name: record.qcount for name, record in self._queued.items()}

    def buckets(self) -> dict[int, list[str]]:
        """transmissions -> the names with that count, in the order ``take`` walks them."""
        out: dict[int, list[str]] = {}
        for count in range(len(self._heads)):
            record = self._heads[count]
            while record is not None:
                out.setdefault(count, []).append(record.qname)
                record = record.qnext
        return out

    def add(self, name: str, bulk: bool = False, record: Member | None = None) -> None:
        """``name``'s newest state restarts its retransmit budget. ``bulk``: news that may leave
        after ``take``'s ``bulk_limit`` sends (a member we just learned of); ``record``: its
        ``Member``, handed back by ``take`` and moved by ``heard_record`` (a record is never
        replaced while its name is queued: a reaped name leaves the queue). Without one (tests)
        the queue makes a record of its own."""
        if self._queued:
            self.discard(name)
        else:
            # A fresh table: a dict never shrinks, and the one a storm's backlog grew to (a
            # thousand names) made every later lookup in the drained queue a cache miss.
            self._queued = {}
        if record is None:
            record = Member(None, 0.0)  # type: ignore[arg-type]  # (a stand-in: no state)
        elif record.qcount >= 0:  # (queued under another name: never, but keep the lists sound)
            self.discard(record.qname)
        self.added += 1
        self._queued[name] = record
        record.qname = name
        record.qbulk = bulk
        if bulk:
            self._bulk += 1
        self._append(record, 0)

    def discard(self, name: str) -> None:
        record = self._queued.pop(name, None)
        if record is not None:
            self._unlink(record)
            if record.qbulk:
                self._bulk -= 1
            record.qcount = -1

    def _append(self, record: Member, count: int) -> None:
        """File ``record`` (in no bucket) last in bucket ``count``."""
        heads = self._heads
        while len(heads) <= count:
            heads.append(None)
            self._tails.append(None)
        tail = self._tails[count]
        record.qcount = count
        record.qnext = None
        record.qprev = tail
        if tail is None:
            heads[count] = record
        else:
            tail.qnext = record
        self._tails[count] = record

    def _unlink(self, record: Member) -> None:
        """Take ``record`` out of its bucket (its qcount is left for the caller)."""
        prev = record.qprev
        after = record.qnext
        if prev is None:
            self._heads[record.qcount] = after
        else:
            prev.qnext = after
        if after is None:
            self._tails[record.qcount] = prev
        else:
            after.qprev = prev
        record.qnext = None
        record.qprev = None

    def _retire(self, record: Member) -> None:
        """``record`` (out of its bucket) was sent enough: it leaves the queue."""
        del self._queued[record.qname]
        if record.qbulk:
            self._bulk -= 1
        record.qcount = -1

    def heard(self, name: str, limit: int, own: int = 0) -> None:
        """``heard_record`` by name."""
        if self._queued:
            record = self._queued.get(name)
            if record is not None:
                self.heard_record(record, limit, own)

    def heard_record(self, record: Member, limit: int, own: int = 0) -> None:
        """A peer told us the state we already hold in ``record``: the news is spreading without
        us, so it counts against its budget like a send (rumor mongering with feedback, Demers
        et al. 1987). After a mass join this retires the backlog once most peers know it. The
        last ``own`` sends of the budget are ours whatever we hear: feedback alone retired
        refutations before they reached every view (false DEAD at 10 % loss, issue 20).
        ``record`` not queued (the view's record of a name not queued): nothing to do."""
        count = record.qcount
        if count < 0 or (own and count >= limit - own):
            return
        self._unlink(record)
        count += 1
        if count >= limit:
            self._retire(record)
        else:
            self._append(record, count)

    def take(
        self,
        room: int,
        limit: int,
        seen: set[str],
        bulk_limit: int = 0,
        held: list[Any] | None = None,
    ) -> list[str]:
        """Up to ``room`` names not in ``seen``, fewest transmissions first; every name passed over
        on the way (already in ``seen``: it rides in the message anyway) counts as sent too. A name
        sent ``limit`` times leaves the queue, a bulk one ``bulk_limit`` times (if lower).
        ``held``: gets the chosen names' records (``add``), so the caller looks none up by name."""
        chosen: list[str] = []
        heads = self._heads
        # the records walked, bucket by bucket: moved after the walk, in walk order, so a record
        # is counted once per message
        walked: list[Member] = []
        full = False
        for count in range(len(heads)):
            record = heads[count]
            while record is not None:
                name = record.qname
                if name not in seen:
                    if len(chosen) >= room:
                        full = True
                        break
                    chosen.append(name)
                    seen.add(name)
                    if held is not None:
                        held.append(record)
                walked.append(record)
                record = record.qnext
            if full:
                break
        retire_bulk = self._bulk > 0 and bulk_limit > 0
        for record in walked:
            moved = record.qcount + 1
            self._unlink(record)
            if moved >= limit or (retire_bulk and record.qbulk and bulk_limit <= moved):
                self._retire(record)
            else:
                self._append(record, moved)
        return chosen
