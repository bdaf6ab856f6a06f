# cython: annotation_typing=False
"""The probe half of ``swim.Membership``: SWIM's failure detector (split out of swim.py).

Randomized round-robin probing of one peer at a time: a direct Ping, then ``indirect_probes``
PingReq relays after ``probe_timeout``, SUSPECT after ``indirect_timeout`` more; the relay side of
PingReq (ping the target for someone, pass its Ack back as an IndirectAck). Our local health
(Lifeguard) stretches our own timeouts while we are the slow one.

``Membership`` inherits this class; the attributes and methods declared here without a body are
``Membership``'s (the view, gossip, the one place a status changes).
"""

from __future__ import annotations

import random
from dataclasses import replace

from handoffd.config import MembershipConfig
from handoffd.membership import lifeguard, records
from handoffd.membership.assertions import MAX_RELAYS
from handoffd.membership.events import Instruction, Send, Undiscovered
from handoffd.membership.probes import ping_address
from handoffd.protocol.messages import (
    ALIVE,
    DEAD,
    SUSPECT,
    Ack,
    Gossip,
    IndirectAck,
    MemberState,
    Ping,
    PingReq,
)
from handoffd.protocol.messages_lifeguard import Nack

# A relay says Nack after this share of indirect_timeout, so that its answer reaches the prober
# before the prober's own deadline (memberlist: 80 % of the probe timeout).
NACK_SHARE = 0.8
# The statuses again, as C longs in the compiled build (probing.pxd): a probe's status tests
# compare C ints, not int objects (each ``status in (ALIVE, SUSPECT)`` was a module lookup and a
# rich comparison per name: a few % of a 1,000-node simulation, issue 20).
_ALIVE, _SUSPECT = ALIVE, SUSPECT


class Prober:
    """Probe state and the probe/relay handlers (see the module doc)."""

    name: str
    config: MembershipConfig
    counters: records.Counters
    _rng: random.Random
    _members: dict[str, records.Member]
    _live: records.IndexedSet
    _left: bool

    def _init_probing(self, now: float) -> None:
        self._probe_order: list[str] = []  # randomized round robin; rebuilt when exhausted
        self._probe_index = 0
        self._probe: records.ProbeInFlight | None = None  # at most one probe of ours in flight
        self._relays: dict[int, records.Relay] = {}  # our probe id -> PingReq we serve
        self._next_id = 1
        # Spread the first timers so a cluster started at once does not probe in lockstep.
        self._next_probe_at = now + self._rng.uniform(0, self.config.probe_interval)
        self._health = lifeguard.LocalHealth()  # scales our probe interval and timeouts
        self._judge_after = float("-inf")  # after a stall of our loop: no verdict before this
        self._verdicts_held = False  # fenced as a minority (or just healed): nobody DEAD by us
        self._told_dead: dict[str, float] = {}  # name -> when we last told it it is SUSPECT/DEAD

    # Membership's (see the module doc).
    def _piggyback(
        self, receiver: str | None, view: records.Member | None = None
    ) -> tuple[MemberState, ...]:
        raise NotImplementedError

    def _set(
        self,
        new: MemberState,
        now: float,
        out: list[Instruction],
        cause: str,
        record: records.Member | None = None,
    ) -> None:
        raise NotImplementedError

    def _count(self, reason: str, n: int = 1) -> None:
        raise NotImplementedError

    def _confirm(self, record: records.Member, accuser: str, now: float) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------- our probes

    def _probe_deadline(self) -> float:
        assert self._probe is not None
        probe = self._probe
        return probe.final_deadline if probe.indirect_sent else probe.direct_deadline

    def hold_verdicts(self, held: bool) -> None:
        """The node is fenced as a minority partition, at risk of it, or healed from it a moment
        ago (daemon/fencing.py, ``Quorum.holding``): while held, our own suspicion timers declare
        nobody DEAD (the far side stays SUSPECT here). A DEAD verdict from the cut-off side would
        spread through the whole cluster after the heal and make the majority drop live members'
        work until they refute; SUSPECT is refuted harmlessly. DEAD verdicts gossiped by others
        are still taken."""
        self._verdicts_held = held

    def _stalled(self, now: float) -> None:
        """Our loop ran late (``Tick.late``): what fell due meanwhile may be answered by messages
        still unread, so give them ``probe_timeout`` before any verdict (Lifeguard's idea that a
        slow node must not accuse others, applied to a loop that did not run at all)."""
        self._health.late()
        self._judge_after = now + self.config.probe_timeout
        probe = self._probe
        if probe is not None:
            probe.direct_deadline = max(probe.direct_deadline, self._judge_after)
            if not probe.indirect_sent:
                relays = self.config.indirect_timeout * self._health.scale
                probe.final_deadline = max(probe.final_deadline, probe.direct_deadline + relays)
            probe.final_deadline = max(probe.final_deadline, self._judge_after)

    def _start_probe(self, now: float, out: list[Instruction]) -> None:
        scale = self._health.scale
        self._next_probe_at = now + self.config.probe_interval * scale
        target = self._next_probe_target()  # (its record: _piggyback looks none up)
        if target is None:
            return
        probe_id = self._new_id()
        direct = now + self.config.probe_timeout * scale
        final = direct + self.config.indirect_timeout * scale
        self._probe = records.ProbeInFlight(probe_id, target.state.name, direct, final)
        self.counters.probes += 1
        piggyback = self._piggyback(target.state.name, target)
        out.append(Send(ping_address(target.state), Ping(probe_id, piggyback)))

    def _advance_probe(self, now: float, out: list[Instruction]) -> None:
        probe = self._probe
        if probe is None:
            return
        target = self._members.get(probe.target)
        status = target.state.status if target is not None else -1
        if target is None or (status != _ALIVE and status != _SUSPECT):
            self._probe = None  # learned meanwhile that it is gone
            return
        if not probe.indirect_sent and now >= probe.direct_deadline:
            probe.indirect_sent = True
            chosen = self._live.sample(self._rng, self.config.indirect_probes, probe.target)
            for name in chosen:
                relay = self._members[name]
                piggyback = self._piggyback(name, relay)
                req = PingReq(probe.probe_id, probe.target, target.state.address, piggyback)
                out.append(Send(relay.state.address, req))
        if probe.indirect_sent and now >= probe.final_deadline:
            self._probe = None
            self.counters.probes_failed += 1
            self._health.probe_failed(probe.nacks)
            if target.state.status == ALIVE:
                self._suspect(target, now, out)
            else:  # already SUSPECT: our failed probe is an independent confirmation
                self._confirm(target, self.name, now)

    def _probe_succeeded(self) -> None:
        self._probe = None
        self._health.probe_answered()

    def _next_probe_target(self) -> records.Member | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                name = self._probe_order[self._probe_index]
                self._probe_index += 1
                record = self._members.get(name)
                if record is None or name == self.name:
                    continue
                status = record.state.status
                if status == _ALIVE or status == _SUSPECT:
                    return record
            self._probe_order = list(self._live)
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _suspect(self, record: records.Member, now: float, out: list[Instruction]) -> None:
        self._health.counters.suspicions_raised += 1
        state = replace(record.state, status=SUSPECT, accuser=self.name)
        self._set(state, now, out, "probe failed")
        # Tell the suspect directly so it can refute before our timer runs out.
        out.append(Send(record.state.address, Gossip(self._piggyback(record.state.name, record))))

    def _probe_soon(self, name: str, probers: int, members: int) -> None:
        """We just heard ``name`` is suspected: probe it next with a chance that makes about
        ``probers`` members of the ``members`` do so, whatever n is. A dead member then gets its
        independent accusers (Lifeguard's confirmations) within one probe period instead of
        waiting for the round robins to reach it, so detection stays flat in n; a live one is
        told it is suspected by our Ping and refutes in its Ack."""
        if not self._left and self._rng.random() * members < probers:
            self._probe_order.insert(self._probe_index, name)

    def _undiscovered(self, event: Undiscovered) -> None:
        """Discovery lost sight of a peer: probe it next (it may be gone)."""
        record = self._members.get(event.name)
        status = record.state.status if record is not None else -1
        if status not in (ALIVE, SUSPECT) or event.name == self.name:
            return
        self._probe_order.insert(self._probe_index, event.name)  # probed next

    def _heard_from(self, name: str, now: float, out: list[Instruction]) -> None:
        """The daemon refused a message from ``name`` (a member we hold DEAD, say)."""
        record = self._members.get(name)
        if record is not None and record.state.status == DEAD:
            self._tell(record, now, out)

    def _tell(self, record: records.Member, now: float, out: list[Instruction]) -> None:
        """Tell a member that speaks to us what we hold it for (SUSPECT or DEAD), so it refutes:
        it lives, but its own state in its message did not refute it (the other side of a healed
        partition, or a suspicion whose rumor missed it)."""
        name = record.state.name
        if self._left or now - self._told_dead.get(name, -1e300) < self.config.probe_interval:
            return  # once per probe interval: a stream of its messages is one obituary
        self._told_dead[name] = now
        out.append(Send(record.state.address, Gossip(self._piggyback(name, record))))

    def _pass_on(
        self, u: MemberState, cur: MemberState, now: float, out: list[Instruction]
    ) -> None:
        """A page's verdict ``u`` on a member we hold live (``cur``) is held, not taken
        (``assertions.page_verdict``): pass it to the member, which refutes if it lives. Only the
        far side of a heal holds it so, and the member may seldom talk to those few nodes (before,
        its own side took the verdict and spread it: the member heard at once, and was DEAD on
        both sides until it refuted)."""
        self._count("page_verdicts_held")
        if self._left:
            return
        if now - self._told_dead.get(u.name, -1e300) >= self.config.probe_interval:
            self._told_dead[u.name] = now
            me = self._members[self.name].state
            out.append(Send(cur.address, Gossip((me, u))))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ------------------------------------------------------------------ answers and relays

    def _on_ack(self, msg: Ack, sender: str, out: list[Instruction]) -> None:
        probe = self._probe
        if probe is not None and probe.probe_id == msg.probe_id and sender == probe.target:
            self._probe_succeeded()
        relay = self._relays.get(msg.probe_id)
        if relay is not None and sender == relay.target:
            del self._relays[msg.probe_id]
            ack = IndirectAck(
                relay.origin_probe_id, relay.target, self._piggyback(relay.origin_name)
            )
            out.append(Send(relay.origin_address, ack))

    def _on_ping_req(
        self,
        msg: PingReq,
        sender: str,
        member: bool,
        reply_to: str | None,
        now: float,
        out: list[Instruction],
    ) -> None:
        # Only for a member, and only to the address we know the target by: a PingReq must not
        # make us connect to an address of the sender's choosing.
        target = self._members.get(msg.target)
        if (
            not member
            or reply_to is None
            or target is None
            or target.state.status not in (ALIVE, SUSPECT)
            or msg.target == self.name
            or len(self._relays) >= MAX_RELAYS
        ):
            self._count("ping_req_refused")
            return
        probe_id = self._new_id()
        deadline = now + self.config.indirect_timeout * self._health.scale
        nack_at = now + self.config.indirect_timeout * NACK_SHARE
        self._relays[probe_id] = records.Relay(
            reply_to, sender, msg.probe_id, msg.target, deadline, nack_at
        )
        piggyback = self._piggyback(msg.target, target)
        out.append(Send(ping_address(target.state), Ping(probe_id, piggyback)))

    def _relay_timers(self, now: float, out: list[Instruction]) -> None:
        """Relays whose target did not answer in time: Nack to the prober; then forget them."""
        for probe_id, relay in list(self._relays.items()):
            if not relay.nacked and now >= relay.nack_at:
                relay.nacked = True
                nack = Nack(relay.origin_probe_id, relay.target, self._piggyback(relay.origin_name))
                out.append(Send(relay.origin_address, nack))
            if now >= relay.deadline:
                del self._relays[probe_id]

    def _relay_deadline(self) -> float:
        """The earliest relay timer (a Nack due, or a relay to forget); inf if none."""
        earliest = float("inf")
        for r in self._relays.values():  # (a loop, not min(generator): probing.pxd's cpdef)
            at = r.deadline if r.nacked else r.nack_at
            if at < earliest:
                earliest = at
        return earliest

    def _on_nack(self, msg: Nack, sender: str) -> None:
        probe = self._probe
        if (
            probe is not None
            and probe.indirect_sent
            and probe.probe_id == msg.probe_id
            and msg.target == probe.target
            and sender != probe.target
        ):
            probe.nacks += 1

    def _on_indirect_ack(self, msg: IndirectAck) -> None:
        probe = self._probe
        if probe is not None and probe.probe_id == msg.probe_id and msg.target == probe.target:
            self._probe_succeeded()
