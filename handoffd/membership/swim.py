# cython: annotation_typing=False
"""SWIM-style membership and resource gossip as a pure state machine.

Protocol: SWIM (Das, Gupta, Motivala 2002) with the Lifeguard refinements that matter on a busy
machine (Dadgar et al. 2018; hashicorp/memberlist): randomized round-robin probing, direct ping
then ``indirect_probes`` PingReq relays, SUSPECT with a timeout before DEAD, refutation by a higher
incarnation, piggybacked gossip with a retransmit limit, periodic push-pull anti-entropy, and a
local-health score that stretches our own probe timeouts while we are the slow one (so an
overloaded node does not accuse healthy peers).

Additions for handoffd:
- Each ``MemberState`` carries the member's capacity and free resources with ``resource_version``;
  resources are ordered by that version alone (the member is their only author; a restarted node
  jumps its version above any it hears for itself), independently of the status ordering.
- A one-way ``Gossip`` round every ``gossip_interval`` to ``gossip_fanout`` random peers while
  there is news, so free-resource changes reach 50 nodes in a few rounds, not a few probe periods.
- Every message carries the sender's own state first (peers learn addresses from any message),
  and our view of the receiver when it is not ALIVE (it learns it must refute at once).
- DEAD (not LEFT) members stay push-pull candidates until reaped, so both sides of a healed
  partition find each other again (serf's reconnect) and refute.

What a sender may assert is weighed by who makes it (``assertions``: strangers, addresses, counters,
relays; issue 11).

Structure (distributed's worker state machine): ``handle(event, now) -> instructions``; no I/O,
no clock, no global randomness. Every status move goes through ``_set`` and is checked against
one table, logged with its cause and kept in a short history for error reports.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import replace
from typing import Any

from handoffd.config import MembershipConfig
from handoffd.membership import assertions, gossip, invariants, lifeguard, records

# Re-exported (``as``): callers name these swim.MAX_RELAYS, swim.Tick, swim.Send, ...
from handoffd.membership.assertions import MAX_COUNTER as MAX_COUNTER
from handoffd.membership.assertions import MAX_NEW_PER_MESSAGE as MAX_NEW_PER_MESSAGE
from handoffd.membership.assertions import MAX_RELAYS as MAX_RELAYS
from handoffd.membership.events import Discovered as Discovered
from handoffd.membership.events import Event as Event
from handoffd.membership.events import HeardFrom as HeardFrom
from handoffd.membership.events import Instruction as Instruction
from handoffd.membership.events import Leave as Leave
from handoffd.membership.events import LocalResources as LocalResources
from handoffd.membership.events import MemberChanged as MemberChanged
from handoffd.membership.events import MembershipError as MembershipError
from handoffd.membership.events import Received as Received
from handoffd.membership.events import ResourcesChanged as ResourcesChanged
from handoffd.membership.events import Send as Send
from handoffd.membership.events import Tick as Tick
from handoffd.membership.events import Undiscovered as Undiscovered
from handoffd.membership.lifeguard import HealthCounters, Suspicion
from handoffd.membership.probes import reply_address
from handoffd.membership.probing import Prober
from handoffd.membership.records import _SAME_INCARNATION_MOVES
from handoffd.membership.records import supersedes as supersedes
from handoffd.protocol.messages import (
    ALIVE,
    DEAD,
    LEFT,
    STATUS_NAMES,
    SUSPECT,
    Ack,
    Gossip,
    IndirectAck,
    MemberState,
    Ping,
    PingReq,
    PushPull,
)
from handoffd.protocol.messages_lifeguard import Nack
from handoffd.protocol.versions import compatible, refusal_text

log = logging.getLogger("handoffd.membership")

# Share of a news item's retransmit budget that hearing it from peers may use up; the rest are our
# own sends (GossipQueue.heard). At a half, a join into a settled 60-node cluster missed a node for
# 2.4 s in 1 of 8 seeds (none at a quarter); the whole budget (memberlist: no feedback) cost 7 %
# more CPU in a storm, churn and partition run of 300 nodes.
_FEEDBACK_SHARE = 0.25
# Push-pulls at the storm share that teach nothing before a node goes back to push_pull_interval.
_QUIET_SYNCS = 2
_ALIVE, _SUSPECT, _DEAD = ALIVE, SUSPECT, DEAD  # (C longs: per-message tests, swim.pxd)


# Internal records (``records``), under their old names.
_Member = records.Member
_Counters = records.Counters


class Membership(Prober):
    """One node's view of the cluster: feed events, execute the returned instructions."""

    def __init__(
        self,
        *,
        name: str,
        address: str,
        cluster: str,
        capacity: dict[str, float],
        config: MembershipConfig,
        rng: random.Random,
        now: float,
        incarnation: int = 0,
        sources: dict[str, str] | None = None,
        gpus: tuple[str, ...] = (),
        probe_port: int = 0,
    ) -> None:
        self.name = name
        self.cluster = cluster
        self.config = config
        self._rng = rng
        me = MemberState(
            name=name,
            address=address,
            cluster=cluster,
            incarnation=incarnation,
            status=ALIVE,
            capacity=dict(capacity),
            free=dict(capacity),
            resource_version=0,
            sources=dict(sources or {}),  # where the capacity figures came from
            gpus=tuple(gpus),
            probe_port=probe_port,
        )
        self._own = _Member(me, now)  # (every message we send leads with it: no lookup per send)
        self._members: dict[str, _Member] = {name: self._own}  # always holds self
        self._name_clashes: set[str] = set()  # addresses seen using our name (warned once)
        self._incompatible: set[str] = set()  # refused for their protocol range (warned once)
        self._queue = gossip.GossipQueue()  # names whose current state is still news
        self._limit_live = -1  # the live members _limit was computed for (cached)
        self._limit = 0
        # Live and DEAD peers, suspicion and reap timers: kept in step with every status move.
        self._index = records.PeerIndex(name, self._members, config.dead_reap_after)
        self._live = self._index.live  # ALIVE and SUSPECT peers (not self)
        self._dead = self._index.dead  # DEAD peers (push-pull reconnect candidates)
        self._page_order: list[_Member] = []  # push-pull pages walk the view in this order
        # address -> until when its push-pull answer is trusted as a whole (we asked it)
        self._asked: dict[str, float] = {}
        self._contested: dict[str, float] = {}  # assertions.page_verdict's held verdicts
        self._init_probing(now)  # probing.Prober's state
        self._next_gossip_at = now
        self._next_push_pull_at = now + rng.uniform(0.5, 1.0) * config.push_pull_interval
        # Soon syncs left although the last taught nothing (_sync_sooner); a new node starts with
        # them: the seed's answer to its join may be a view as young as ours (a storm).
        self._quiet_syncs = _QUIET_SYNCS
        self._left = False
        self.history: deque[tuple[float, str, int | None, int, int, str]] = deque(maxlen=512)
        self.counters = _Counters()

    # ------------------------------------------------------------------------------- queries

    def members(self) -> list[MemberState]:
        """Every known member including self (DEAD/LEFT until reaped)."""
        return [m.state for m in self._members.values()]

    def get(self, name: str) -> MemberState | None:
        record = self._members.get(name)
        return record.state if record else None

    def alive(self) -> list[MemberState]:
        """Members not (yet) declared failed: ALIVE and SUSPECT (standby choice, fencing)."""
        return [m.state for m in self._members.values() if m.state.status in (ALIVE, SUSPECT)]

    def schedulable(self) -> list[MemberState]:
        """ALIVE members only: the scheduler places work here (DESIGN 3.3), never on suspects."""
        return [m.state for m in self._members.values() if m.state.status == ALIVE]

    def known_address(self, address: str) -> bool:
        """True if an ALIVE or SUSPECT peer (not self) listens at ``address`` (seed retry stop)."""
        return any(
            m.state.address == address and m.state.status in (ALIVE, SUSPECT)
            for n, m in self._members.items()
            if n != self.name
        )

    @property
    def me(self) -> MemberState:
        return self._own.state

    @property
    def health(self) -> int:
        """Our local health score (Lifeguard): 0 healthy .. MAX_HEALTH."""
        return self._health.score

    @property
    def health_counters(self) -> HealthCounters:
        return self._health.counters

    @property
    def news_pending(self) -> int:
        """Members whose current state we still have to gossip (the backlog)."""
        return len(self._queue)

    @property
    def view_changes(self) -> int:
        """How often our view (ours included) changed: a cheap "did anything change" for tests."""
        return self._queue.added

    def next_deadline(self) -> float:
        """The earliest time a Tick has work to do (the node may also tick periodically)."""
        # Called after every event (the simulator's and daemon's timer): no walk, no skippable call.
        at = self._next_push_pull_at
        if not self._left:
            probe = self._probe
            if probe is None:
                at = min(at, self._next_probe_at)
            else:
                at = min(at, probe.final_deadline if probe.indirect_sent else probe.direct_deadline)
        if self._queue._queued and self._next_gossip_at < at:  # (the field: no __bool__ call)
            at = self._next_gossip_at
        if self._relays:
            at = min(at, self._relay_deadline())
        timer = self._index.timers.earliest()
        return at if timer is None or at < timer else timer

    def validate(self) -> None:
        """Check invariants (tests call this after every step): ``invariants.check``."""
        invariants.check(self)

    # -------------------------------------------------------------------------------- events

    def handle(self, event: Event, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        kind = type(event)
        if kind is Received:  # (events are final: exact type checks, most frequent first)
            r: Any = event
            self._received(r.sender, r.sender_address, r.msg, now, out)
        elif kind is Tick:
            if event.late >= lifeguard.stall_threshold(self.config):  # type: ignore[union-attr]
                self._stalled(now)
            self._tick(now, out)
        elif isinstance(event, Discovered):
            self._discovered(event, now, out)
        elif isinstance(event, Undiscovered):
            self._undiscovered(event)
        elif isinstance(event, LocalResources):
            version = self.me.resource_version + 1
            self._own.state = replace(self.me, free=dict(event.free), resource_version=version)
            self._enqueue(self.name)
        elif isinstance(event, Leave):
            self._leave(now, out)
        elif isinstance(event, HeardFrom):
            self._heard_from(event.name, now, out)
        else:  # pragma: no cover - typing guards this
            raise TypeError(f"unknown membership event {event!r}")
        return self._counted(out)

    def receive(self, sender: str, address: str | None, msg: Any, now: float) -> list[Instruction]:
        """``handle(Received(sender, address, msg), now)`` without the event object."""
        out: list[Instruction] = []
        self._received(sender, address, msg, now, out)
        return self._counted(out)

    def _counted(self, out: list[Instruction]) -> list[Instruction]:
        sent = 0
        for i in out:  # (loops, not generators, in the methods swim.pxd compiles as cpdef)
            if type(i) is Send:
                sent += 1
        self.counters.messages_sent += sent
        return out

    def _tick(self, now: float, out: list[Instruction]) -> None:
        if not self._left:
            self._advance_probe(now, out)
            if self._probe is None and now >= self._next_probe_at:
                self._start_probe(now, out)
        if self._relays:
            self._relay_timers(now, out)
        for address in [a for a, until in self._asked.items() if now >= until]:
            del self._asked[address]
        for name in self._index.timers.pop_due(now):
            m = self._members[name]
            if m.suspicion is not None and self._verdicts_held:
                m.suspicion.started = now  # the whole timeout again: from the heal at the latest
                m.suspect_deadline = m.suspicion.deadline()
                self._index.timers.add(m.suspect_deadline, name)
            elif m.suspect_deadline is not None and now < self._judge_after:
                m.suspect_deadline = self._judge_after  # fell due while our loop stalled
                self._index.timers.add(self._judge_after, name)
            elif m.suspect_deadline is not None and now >= m.suspect_deadline:
                self._set(replace(m.state, status=DEAD), now, out, "suspicion timeout")
            elif m.state.status in (DEAD, LEFT):  # reaped
                m.reaped = True
                del self._members[name]
                self._queue.discard(name)
                self._index.forget(name)
                self._told_dead.pop(name, None)
                self._contested.pop(name, None)
        if now >= self._next_gossip_at:
            self._next_gossip_at = now + self.config.gossip_interval
            if self._queue._queued:
                for peer in self._live.sample(self._rng, self.config.gossip_fanout):
                    view = self._members[peer]
                    out.append(Send(view.state.address, Gossip(self._piggyback(peer, view))))
        if now >= self._next_push_pull_at:
            self._next_push_pull_at = now + self.config.push_pull_interval
            target = self._push_pull_target()
            if target is not None:
                self._ask(target.address, now, out, target.name)

    def _received(
        self, name: str, sender_address: str | None, msg: Any, now: float, out: list[Instruction]
    ) -> None:
        """A ``Received`` event's message from ``name`` (dispatched on its exact type below)."""
        kind = type(msg)
        updates: tuple[MemberState, ...] = msg.members if kind is PushPull else msg.updates
        own: MemberState | None = None
        for u in updates:
            if u.name == name:
                if u.cluster != self.cluster:
                    self.counters.dropped_other_cluster += 1
                    return  # a node of another cluster: no answer, nothing learned
                own = own or u
        sender = self._members.get(name)
        status = sender.state.status if sender is not None else -1
        member = (status == _ALIVE or status == _SUSPECT) and name != self.name
        if not member and not self._asked_for(msg, own, now):
            heard = assertions.from_stranger(updates, name, self.name)
            if len(heard) < len(updates):
                self._count("stranger_assertions_ignored", len(updates) - len(heard))
            updates = heard
        told = len(out)
        refuted = self._merge(updates, now, out, (kind, name), name, kind is PushPull, sender)
        status = sender.state.status if sender is not None else -1  # (after the merge)
        if sender is not None and (status == _SUSPECT or status == _DEAD) and kind is not Ping:
            if kind is not PushPull:  # (our Ack or our page tells it)
                self._tell(sender, now, out)  # it lives but did not refute: a heal's far side
        if kind is PushPull and not msg.reply_wanted:
            moves = 0
            for i in out[told:]:
                if type(i) is MemberChanged:
                    moves += 1
            self._sync_sooner(moves, now)
        record = sender if sender is not None else self._members.get(name)  # (after the merge)
        known = record.state if record is not None and name != self.name else None
        reply_to = reply_address(known, own, sender_address)
        if refuted and reply_to is not None and kind is not Ping and kind is not PushPull:
            # We refuted an assertion about us: tell its sender now rather than at the next round.
            out.append(Send(reply_to, Gossip(self._piggyback(name, record))))
        if kind is Ping:
            if reply_to is not None:
                out.append(Send(reply_to, Ack(msg.probe_id, self._piggyback(name, record))))
        elif kind is Ack:
            self._on_ack(msg, name, out)
        elif kind is PingReq:
            self._on_ping_req(msg, name, member, reply_to, now, out)
        elif kind is IndirectAck:
            self._on_indirect_ack(msg)
        elif kind is Nack:
            self._on_nack(msg, name)
        elif kind is PushPull:
            if msg.reply_wanted and reply_to is not None:
                # A member gets a page; a joiner (or the other side of a healed partition), and a
                # member that joined so recently that it likely missed part of the view, all of
                # our view, a page per message.
                young = (
                    sender is not None
                    and now - sender.changed_at < self.config.push_pull_interval * 2
                )
                pages = [self._page(name)] if member and not young else self._pages()
                for page in pages:
                    out.append(Send(reply_to, PushPull(page, False)))

    def _discovered(self, event: Discovered, now: float, out: list[Instruction]) -> None:
        if self._left or event.address == self.me.address or event.name == self.name:
            return
        if event.name is not None:
            known = self.get(event.name)
            if known and known.status in (ALIVE, SUSPECT) and known.address == event.address:
                return
        self._ask(event.address, now, out, event.name)

    def _ask(
        self, address: str, now: float, out: list[Instruction], name: str | None = None
    ) -> None:
        """Push-pull with ``address``; its answer is trusted as a whole for a while (module doc)."""
        self._asked[address] = now + 2 * self.config.push_pull_interval
        out.append(Send(address, PushPull(self._page(name), True)))

    def _asked_for(self, msg: Any, own: MemberState | None, now: float) -> bool:
        """``msg`` is the answer to a push-pull we sent to its sender's address (consumed)."""
        if not isinstance(msg, PushPull) or msg.reply_wanted or own is None:
            return False
        until = self._asked.pop(own.address, None)
        return until is not None and now < until

    def _confirm(self, record: _Member, accuser: str, now: float) -> None:
        """Another member (``accuser``) suspects ``record``'s member too: shorten the timeout,
        and pass the confirmation on (our copy now names this accuser)."""
        suspicion = record.suspicion
        if suspicion is None or not suspicion.confirm(accuser):
            return
        self._health.counters.confirmations += 1
        deadline = max(suspicion.deadline(), self._judge_after)
        record.suspect_deadline = deadline
        self._index.timers.add(deadline, record.state.name)
        record.state = records.accused(record.state, accuser)
        self._enqueue(record.state.name)

    def _sync_sooner(self, moves: int, now: float) -> None:
        """A push-pull answer that taught us members or status moves (a join storm, a healed
        partition): the views differ, so sync again soon with another random peer rather than
        wait ``push_pull_interval`` while gossip's bounded messages carry the rest piece by
        piece (an epidemic's tail is long). It stops by itself after ``_QUIET_SYNCS`` syncs in a
        row taught nothing (resource news alone does not count: it changes all the time in a
        busy cluster): stopping at the first one left the last few members unknown to a few
        nodes for a whole push_pull_interval (a 400-node storm: 99.9 % of the views complete
        at 1.25 s, all at 3.5 s).
        """
        soon = now + self.config.push_pull_interval * self.config.push_pull_storm_share
        if moves:
            self._quiet_syncs = _QUIET_SYNCS
        elif self._quiet_syncs > 0 and self._next_push_pull_at > soon:
            self._quiet_syncs -= 1  # (a page of an answer whose other pages taught us)
        else:
            return
        self._next_push_pull_at = min(self._next_push_pull_at, soon)

    def _count(self, reason: str, n: int = 1) -> None:
        self.counters.extra[reason] = self.counters.extra.get(reason, 0) + n

    def _leave(self, now: float, out: list[Instruction]) -> None:
        if self._left:
            return
        self._left = True
        self._probe = None
        self._set(replace(self.me, status=LEFT), now, out, "leave")
        for name in self._live:  # (ALIVE and SUSPECT peers)
            out.append(Send(self._members[name].state.address, Gossip((self.me,))))

    # ---------------------------------------------------------------------------- merging

    def _merge(
        self,
        updates: tuple[MemberState, ...],
        now: float,
        out: list[Instruction],
        why: str | tuple[type, str],
        sender: str | None = None,
        page: bool = False,
        sender_record: _Member | None = None,
    ) -> bool:
        """Apply gossiped states (from ``sender``, None: no one in particular); returns True if we
        had to refute an assertion about ourselves. ``why``: the cause logged with a change, or
        (message type, sender) to word it only if something changes (most merges change nothing);
        ``page``: a push-pull's page (``_merge_other``); ``sender_record``: ``sender``'s, if known."""
        refuted = False
        room = MAX_NEW_PER_MESSAGE
        members = self._members
        limit = self._retransmit_limit()
        queue = self._queue  # (its heard_record() called on it: gossip.pxd)
        own = limit - int(limit * _FEEDBACK_SHARE)  # sends that stay ours (GossipQueue.heard)
        me = self.name
        cause = ""
        for u in updates:
            name = u.name
            known = sender_record if name == sender and sender_record else members.get(name)
            if known is not None:
                if known.suspicion is not None and u.status == SUSPECT:  # (the C field first)
                    if known.state.incarnation == u.incarnation:
                        self._confirm(known, u.accuser, now)
                # (the identity test first: the simulator hands the very objects around)
                if (known.state is u or records.same(known.state, u)) and name != me:
                    queue.heard_record(known, limit, own)  # (the record: no lookup)
                    continue  # nothing new (most of a push-pull page)
            if not cause:
                cause = why if isinstance(why, str) else f"{why[0].__name__} from {why[1]}"
            if u.cluster != self.cluster:
                self.counters.dropped_other_cluster += 1
            elif assertions.implausible(u):
                self._count("implausible_counter")
            elif not compatible(u.protocol_min, u.protocol_max) and u.name != self.name:
                # A member we could not talk to (heard of through a peer that can): admitting it
                # would only have it suspected and refuted forever.
                self.counters.dropped_incompatible += 1
                if u.name not in self._incompatible:
                    self._incompatible.add(u.name)
                    text = refusal_text("peer", u.name, u.protocol_min, u.protocol_max)
                    log.warning("%s: %s (heard of from %s)", self.name, text, cause)
            elif u.name == self.name:
                refuted |= self._merge_self(u, now, out)
            elif known is not None:  # (its record: _merge_other and _set look none up)
                self._merge_other(u, now, out, cause, u.name == sender, page, known)
            elif room > 0 or u.name == sender:
                room -= 1
                self._merge_other(u, now, out, cause, u.name == sender, page, None)
            else:
                self._count("new_members_capped")
        return refuted

    def _merge_self(self, u: MemberState, now: float, out: list[Instruction]) -> bool:
        me = self.me
        if u.incarnation > me.incarnation or u.resource_version > me.resource_version:
            self._count("earlier_life")  # only an earlier process of ours said that (the node
            # tells the others: messages_io.NodeRestarted)
        assertions.name_clash(me, u, self._name_clashes)
        if u.resource_version > me.resource_version:  # an earlier life of ours: jump above it
            me = replace(me, resource_version=u.resource_version + 1)
            self._members[self.name].state = me
            self._enqueue(self.name)
        if not supersedes(u, me):
            return False
        # Someone holds an assertion about us at least as new as our own: only we speak for us.
        status = LEFT if self._left else ALIVE
        if u.status in (SUSPECT, DEAD) and not self._left:
            self._health.suspected()
        self._members[self.name].state = replace(me, incarnation=u.incarnation + 1, status=status)
        self.counters.refutations += 1
        self._enqueue(self.name)
        log.debug(
            "%s refutes %s at incarnation %d", self.name, STATUS_NAMES[u.status], u.incarnation
        )
        return True

    def _merge_other(
        self,
        u: MemberState,
        now: float,
        out: list[Instruction],
        cause: str,
        firsthand: bool,
        page: bool = False,
        record: _Member | None = None,
    ) -> None:
        """``firsthand``: ``u`` is the sender's own state, in its own message; ``page``: see _merge;
        ``record``: ``u``'s member's (None: not in the view)."""
        if record is None:
            if u.status in (DEAD, LEFT):
                return  # never learn a member from its obituary (it would resurrect reaped ones)
            self._set(u, now, out, cause)
            return
        cur = record.state
        if assertions.address_conflict(u, cur, firsthand):
            self._count("address_conflict")
            return
        state_newer = supersedes(u, cur)
        resources_newer = u.resource_version > cur.resource_version
        if not state_newer and not resources_newer:
            return
        if state_newer and page and u.status in (SUSPECT, DEAD) and cur.status in (ALIVE, SUSPECT):
            window = self.config.push_pull_interval
            held = assertions.page_verdict(u, cur, self._contested, now, window)
            if held is None:
                self._pass_on(u, cur, now, out)
                state_newer = False
                if not resources_newer:
                    return
            else:
                u = held
        quiet = assertions.quiet_resources(cur, state_newer, u.name in self._queue)
        self._set(records.merged(cur, u, state_newer, resources_newer), now, out, cause, record)
        if quiet:
            self._queue.discard(u.name)

    def _set(
        self, new: MemberState, now: float, out: list[Instruction], cause: str, record: Any = None
    ) -> None:
        """The only place a member's state changes: checks the table, logs, emits, gossips."""
        if record is None:  # (``new``'s member's record, if the caller holds it: no lookup)
            record = self._members.get(new.name)
        old = record.state if record else None
        if old is not None and new.status != old.status:
            if new.incarnation < old.incarnation or (
                new.incarnation == old.incarnation
                and (old.status, new.status) not in _SAME_INCARNATION_MOVES
            ):
                trail = [h for h in self.history if h[1] == new.name]
                raise MembershipError(
                    f"{self.name}: illegal move of {new.name} {STATUS_NAMES[old.status]}"
                    f"@{old.incarnation} -> {STATUS_NAMES[new.status]}@{new.incarnation}"
                    f" ({cause}); history {trail}"
                )
        self._contested.pop(new.name, None)  # a held page verdict on its older state
        if record is None:
            record = self._members[new.name] = _Member(new, now)
            self._probe_order.insert(records.below(self._rng, len(self._probe_order) + 1), new.name)
        else:
            record.state = new
        if old is None or old.status != new.status:
            record.changed_at = now
            if new.status == SUSPECT:
                n = len(self._live) + 1
                record.suspicion = Suspicion.begin(self.config, n, now, new.accuser)
                record.suspect_deadline = record.suspicion.deadline()
                if old is not None and old.status == ALIVE and new.accuser != self.name:
                    self._probe_soon(new.name, record.suspicion.expected + 1, n)
            else:
                suspicion, record.suspicion, record.suspect_deadline = record.suspicion, None, None
                if (
                    suspicion is not None
                    and new.status == ALIVE
                    and self.name in suspicion.accusers
                ):
                    self._health.counters.suspicions_wrong += 1
            self._index.moved(new, record)
            old_status = old.status if old else None
            self.history.append((now, new.name, old_status, new.status, new.incarnation, cause))
            log.debug(
                "%s: %s %s -> %s@%d (%s)",
                self.name,
                new.name,
                STATUS_NAMES[old_status] if old_status is not None else "new",
                STATUS_NAMES[new.status],
                new.incarnation,
                cause,
            )
            out.append(MemberChanged(new.name, old_status, new.status, new))
        if (
            old is not None
            and new.name != self.name
            and new.resource_version != old.resource_version
        ):
            out.append(ResourcesChanged(new.name, new))
        self._queue.add(new.name, old is None, record)

    # ----------------------------------------------------------------------------- gossip

    def _enqueue(self, name: str) -> None:
        self._queue.add(name, False, self._members[name])  # its newest state restarts its budget

    def _retransmit_limit(self) -> int:
        live = len(self._live) + (0 if self._left else 1)
        if live != self._limit_live:
            # log10 as memberlist: 16 sends at 1,000 nodes (log2 gave 40, and the backlog a storm
            # or a healed partition left grew with n); fanout and the heard() feedback carry the
            # rest, and push-pull repairs what gossip missed.
            limit = self.config.gossip_retransmit_mult * max(1, math.ceil(math.log10(live + 1)))
            self._limit_live, self._limit = live, limit
        return self._limit

    def _piggyback(
        self, receiver: str | None, view: _Member | None = None
    ) -> tuple[MemberState, ...]:
        """Our own state, our view of ``receiver`` if it must refute (``view``: its record, if
        the caller holds it), then the freshest news."""
        members = self._members
        me = self._own.state
        if view is None and receiver:
            view = members.get(receiver)
        status = view.state.status if view is not None else _ALIVE
        if not self._queue._queued and status == _ALIVE:
            return (me,)  # most messages of a settled cluster
        chosen = [me]
        seen = {self.name}
        if view is not None and status != _ALIVE and receiver not in seen:
            chosen.append(view.state)
            seen.add(view.state.name)
        if self._queue._queued:
            room = self.config.max_piggyback - len(chosen)
            limit = self._retransmit_limit()
            bulk = records.bulk_limit(limit, self._queue.bulk, len(members), self.config)
            held: list[_Member] = []  # (the chosen names' records: no lookup by name)
            self._queue.take(room, limit, seen, bulk, held)
            chosen += [record.state for record in held]
        return tuple(chosen)

    def _pages(self) -> list[tuple[MemberState, ...]]:
        """Our whole view in push-pull pages, each led by our own state."""
        return records.pages(self.me, self._members, self.config.push_pull_page)

    def _page(self, receiver: str | None) -> tuple[MemberState, ...]:
        """A push-pull's share of our view (``records.page``)."""
        view = self._members.get(receiver) if receiver else None
        must_refute = view.state if view is not None and view.state.status != ALIVE else None
        size = self.config.push_pull_page
        return records.page(self.me, must_refute, self._members, self._page_order, size)

    def _push_pull_target(self) -> MemberState | None:
        # Reconnect (serf): now and then sync with a DEAD member, so a healed partition merges.
        if self._dead and (not self._live or self._rng.random() < 0.25):
            name = self._dead.choice(self._rng)
        else:
            name = self._live.choice(self._rng)
        return self._members[name].state if name is not None else None
