"""The node's part in issue 19's reliability (a mixin of ``daemon.node.Node``, kept apart so
node.py stays within the module size): Pings the probe responder answered off the loop, our
state for its Acks, duplicate names (``NameClash``), the graceful leave (``NodeLeaving``) and a
restart before our earlier process was declared DEAD (``NodeRestarted``); membership's
instructions out to the owner and replication, and minority fencing (``daemon/fencing.py``)."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from handoffd import admission
from handoffd.daemon import upload_intake
from handoffd.daemon.fencing import Quorum
from handoffd.daemon.names import YOUNG_S, clash_text
from handoffd.membership import swim
from handoffd.membership.lifeguard import MAX_HEALTH
from handoffd.protocol import messages as m
from handoffd.protocol import messages_io as mio
from handoffd.protocol import messages_reliability as mr
from handoffd.protocol.messages_swim import HealthDescribed
from handoffd.protocol.outcome_block import reads_blocks

log = logging.getLogger("handoffd.node")

#: Seconds after we learned of an earlier process of ours in which members we newly hear of are
#: told too (a joiner learns the view over a few push-pulls).
RESTART_TELL_S = 10.0


class RestartNotice:
    """Whom we told that we are a new process (``NodeRestarted``), and until when we tell more."""

    def __init__(self) -> None:
        self.seen = 0  # membership's "earlier_life" count when we last looked
        self.until = -1.0
        self.told: set[str] = set()
        self.members = -1  # how many members we knew when we last told


class NodeReliability:
    # What the mixin uses of the Node (set there).
    name: str
    address: str
    config: Any
    membership: Any
    owner: Any
    replication: Any
    dropped: int
    drops: Any
    started_at: float
    clashed: bool
    _stopping: bool
    _responder: Any
    _published: m.MemberState | None
    _leaving: Any
    _names: Any
    _clock: Any
    quorum: Quorum
    _transport: Any
    suspicions: int
    deaths: int
    _withheld: set[str]
    _next_fence_check: float
    _gone: dict[str, float]
    _gone_asked: dict[str, float]
    _gone_tasks: set[Any]
    _restart: RestartNotice
    _uploads: Any
    _upload_codec: Any
    codec: Any
    scheduler: Any
    _stats_logged: tuple[int, int, int]
    # The ledger changed since membership last took our free resources (_own_to_membership).
    _own_stale = False
    # A ``_drained`` comes before the running loop callback returns (``NodeRouting``'s).
    _held: bool

    def _owned_runs(self) -> list[tuple[str, Any]]:
        """The runs we own, each with its status."""
        scheduler = self.scheduler
        if scheduler is None:
            return []
        found = ((run_id, scheduler.run_status(run_id)) for run_id in scheduler.runs())
        return [(run_id, st) for run_id, st in found if st is not None]

    def stats(self) -> dict[str, Any]:
        """What was dropped or refused, by reason: messages (admission), the transport's inbound
        drops and send failures, and membership assertions ignored."""
        transport = self._transport.stats if self._transport is not None else None
        return {
            "dropped": self.dropped,
            "refused": dict(self.drops.counts),
            "codec": dict(self.codec.stats.dropped),
            "transport": dict(transport.reasons) if transport is not None else {},
            "membership": dict(self.membership.counters.extra) if self.membership else {},
        }

    def _log_stats(self) -> None:
        transport = self._transport.stats if self._transport is not None else None
        now = (
            self.dropped,
            transport.dropped if transport is not None else 0,
            transport.send_failures if transport is not None else 0,
        )
        if now != self._stats_logged:
            self._stats_logged = now
            log.info("node %s drop counters: %s", self.name, self.stats())

    def send(self, address: str, msg: Any, frames: Any = None, term: int = 0) -> bool:
        raise NotImplementedError

    def members(self) -> list[m.MemberState]:
        raise NotImplementedError

    def reply(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None:
        raise NotImplementedError

    def _on_frames(
        self, conn: bytes, frames: list[Any], listening: bool, decoder: Any = None
    ) -> None:
        raise NotImplementedError

    def encode(self, msg: Any, frames: Any = None, term: int = 0) -> Any:
        raise NotImplementedError

    def request_stop(self) -> None:
        raise NotImplementedError

    def _announce_leaving(self) -> None:
        """Tell every live member at once that we are leaving: they place nothing more here from
        the moment they hear it (``LeavingPeers``), not when gossip says LEFT after the drain."""
        msg = mr.NodeLeaving(self.config.drain_grace_s)
        for member in self.members():
            if member.name != self.name and member.status in (m.ALIVE, m.SUSPECT):
                self.send(member.address, msg)

    def _peer_leaving(self, name: str) -> None:
        member = self.membership.get(name) if self.membership is not None else None
        if member is None or self.owner is None or name == self.name:
            return
        log.info("member %s is leaving: no new work is placed there", name)
        self.owner.member_updates([self._leaving.said(member)])

    def _on_ping(self, sender: str, ping: m.Ping) -> None:
        """A Ping the probe responder already acked, off the loop: merge what it carries, checked
        as any membership message (an Ack from the loop too would only be a duplicate)."""
        membership = self.membership
        if membership is None or self._stopping:
            return
        refused = admission.check(ping, sender, True, membership.get(sender), self.name)
        if refused:
            self.dropped += 1
            self.drops.count(refused, ping, sender)
            return
        try:
            self._run_membership(swim.Received(sender, None, m.Gossip(ping.updates)))
        except Exception:  # noqa: BLE001 - as for any message: never take the daemon down
            self.dropped += 1
            log.exception("handling a Ping from %s failed", sender)

    def _names_check(self, msg: Any, sender: str, member: m.MemberState | None) -> None:
        found = self._names.clash(msg, sender, member, self._clock())
        if found is None:
            return
        known, claimed = found
        log.warning("two live daemons use the name %r: at %s and at %s", sender, known, claimed)
        self.send(claimed, mr.NameClash(sender, known, True))
        self.send(known, mr.NameClash(sender, claimed, False))

    def _name_clashed(self, msg: mr.NameClash) -> None:
        if msg.name != self.name or msg.other_address == self.address:
            return
        stop = msg.stop and self._clock() - self.started_at < YOUNG_S
        text = clash_text(self.name, self.address, msg.other_address, stop)
        if stop and not self._stopping:
            log.error("%s", text)
            self.clashed = True
            self.request_stop()
        else:
            log.warning("%s", text)

    def _publish_me(self) -> None:
        """Our own state, as the probe responder's Acks carry it (a reference swap)."""
        if self._responder is not None and self.membership is not None:
            me = self.membership.me
            if me is not self._published:
                self._published = me
                self._responder.publish(me)

    # -- minority fencing (daemon/fencing.py) ---------------------------------------------------

    # -- membership's instructions out (moved from node.py, which reached 700 lines) -----------

    def _own_to_membership(self) -> None:
        """Our free resources into membership, if the ledger changed since it last took them.
        Not on every ledger change (two per task: claim and release; ~5 % of a one-task run's
        owner CPU): gossip and acks carry only the latest figure, so membership takes it before
        it handles its next event (a tick at the latest: probe_interval / 4), and ``ListNodes``
        before it answers. Our own scheduler hears of the ledger at once (``_publish_own``)."""
        if self._own_stale and self.membership is not None:
            self._own_stale = False
            self._run_membership(swim.LocalResources(self._free_to_publish()))

    def _free_to_publish(self) -> dict[str, float]:
        raise NotImplementedError

    def _run_membership(self, event: Any) -> None:
        if self.membership is None:
            return
        if self._own_stale:  # what a tick or a peer's message makes us send carries it
            self._own_to_membership()
        changes: list[swim.MemberChanged] = []
        updates: list[m.MemberState] = []
        for instruction in self.membership.handle(event, self._clock()):
            if isinstance(instruction, swim.Send):
                if instruction.address != self.address:
                    assert self._transport is not None
                    msg = instruction.msg  # pings on their own I/O thread (zmq_transport)
                    self._transport.send(
                        instruction.address, self.encode(msg), control=isinstance(msg, m.Ping)
                    )
            elif isinstance(instruction, swim.MemberChanged):
                changes.append(instruction)
                updates.append(instruction.member)
            elif isinstance(instruction, swim.ResourcesChanged):
                updates.append(instruction.member)
        self._fence_step(changes, updates)  # minority fencing (daemon/fencing.py)
        if changes and self.replication is not None:
            # Dispatch leases first (daemon/leases.py): a run whose standbys stopped answering is
            # held before a DEAD verdict here makes its owner place the lost tasks again.
            self.replication.leases.check()
        # One scheduler batch and one standby re-choice per event, not per change: a push-pull
        # naming 5,000 members stalled the loop ~12 s (replication re-chose standbys over every
        # member for each of them; peers then saw us DEAD), ~1.2 s with one re-choice. The owner
        # hears every change before replication acts on any (a takeover sees the dead as dead).
        if updates and self.owner is not None:
            # Free figures alone heard amid a drain (``_held``: its ``_drained`` comes before this
            # callback returns) join the drain's batch: fed on their own, they fed the reports
            # read so far in a scheduler batch of their own, splitting the drain's in two (a
            # pass and a dispatch more). A status change is fed now: the owner hears of a death
            # before replication acts on it.
            batched = self._held and not changes
            self.owner.member_updates(self._leaving.masked(updates), batched)
        for change in changes:
            self._member_changed(change)
        if changes and self.replication is not None:
            self.replication.members_changed()
        self._publish_me()
        self._tell_restart()

    def _member_changed(self, change: swim.MemberChanged) -> None:
        member = change.member
        if change.new == m.SUSPECT:
            self.suspicions += 1
        elif change.new == m.DEAD:
            self.deaths += 1
        log.info(
            "member %s %s -> %s (%s)",
            change.name,
            m.STATUS_NAMES[change.old] if change.old is not None else "NEW",
            m.STATUS_NAMES[change.new],
            member.address,
        )
        if (
            change.new in (m.DEAD, m.LEFT)
            and self._transport is not None
            and member.name != self.name
        ):
            self._transport.forget(member.address)
        if self.replication is not None and member.name != self.name:
            self.replication.member_changed(change, rechoose=False)

    def _fence_step(self, changes: list[Any], updates: list[m.MemberState]) -> None:
        """Before the owner and replication hear of ``changes``/``updates`` (every membership
        step, ticks included): recompute the quorum (on a status change or while at risk, else
        at most twice a second, for its evictions). While at risk or fenced, and for a while after
        a fence (``Quorum.holding``: the far side refutes and its takeovers reach us), DEAD
        verdicts are held back, ours and gossiped ones; then those still DEAD are added."""
        now = self._clock()
        quorum = self.quorum
        if not changes and now < self._next_fence_check:
            return
        members = self.members()
        flipped = quorum.update(members, now, self._gone_now(members, now))
        self._next_fence_check = now + (0.05 if quorum.at_risk else 0.5)
        refusal = quorum.refusal()
        if self.owner is not None and not self._stopping:  # (leaving: stop() said why)
            self.owner.minority = refusal  # (its k of n kept current)
            self.owner.held.holding |= quorum.fenced
        if self.replication is not None:
            self.replication.minority = quorum.fenced
            self.replication.refusal = refusal  # reads of our unfinished runs go elsewhere
        holding = quorum.holding(now)
        if self.membership is not None:
            self.membership.hold_verdicts(holding)
        if flipped and quorum.fenced:
            log.warning("node %s fenced: %s", self.name, refusal)
        elif flipped:
            log.warning(
                "node %s reaches %d of %d members again: runs and dispatch resume",
                self.name,
                quorum.reachable,
                len(quorum.base),
            )
        if holding:
            held = {s.name for s in updates if s.status == m.DEAD}
            if held:
                if not (quorum.at_risk or quorum.fenced):
                    log.info("node %s: DEAD verdicts on %s held (just healed)", self.name, held)
                self._withheld |= held
                updates[:] = [s for s in updates if s.name not in held]
                changes[:] = [c for c in changes if c.name not in held]
        elif self._withheld or (self.owner is not None and self.owner.held.holding):
            # Runs taken over on the far side have reached us by now (FollowOwner: we stepped
            # down), so what our owner held is sent only for runs still ours.
            for name in sorted(self._withheld):
                state = self.membership.get(name)
                if state is not None and state.status == m.DEAD:
                    updates.append(state)
                    changes.append(swim.MemberChanged(name, m.SUSPECT, m.DEAD, state))
            self._withheld.clear()
            if self.owner is not None:
                self.owner.unfenced()

    def _gone_now(self, members: list[m.MemberState], now: float) -> set[str]:
        """Unreachable base members whose address refused a connection within the last 2 s
        (daemon/fencing.py); while at risk or fenced, ask again about each once a second. Also
        about former standbys a run's dispatch lease still counts (daemon/leases.py): a crashed
        one leaves the base at once and its runs dispatch again (a partition never refuses)."""
        gone, quorum = self._gone, self.quorum
        risky = quorum.at_risk or quorum.fenced
        departed = self.replication.leases.departed() if self.replication is not None else set()
        if not (risky or departed) or self._transport is None:
            gone.clear()
            return set()
        address = {s.name: s.address for s in members if s.status != m.ALIVE}
        for name in list(gone):
            if name not in address:
                del gone[name]  # ALIVE again (restarted), or forgotten
        asked = self._gone_asked
        for name in (quorum.unreachable() if risky else []) + sorted(departed & quorum.base):
            if name in address and now >= asked.get(name, 0.0):
                asked[name] = now + 1.0
                task = asyncio.get_running_loop().create_task(self._ask_gone(name, address[name]))
                self._gone_tasks.add(task)  # (a task nobody holds may be collected mid-way)
                task.add_done_callback(self._gone_tasks.discard)
        return {name for name, when in gone.items() if now - when < 2.0}

    async def _ask_gone(self, name: str, address: str) -> None:
        assert self._transport is not None
        if await self._transport.refuses(address):
            self._gone[name] = self._clock()
            self._next_fence_check = 0.0  # judged again on the next membership step
        else:
            self._gone.pop(name, None)

    def health_view(self) -> dict[str, Any]:
        """This node's own view of its health: /metrics and ``handoffctl nodes``."""
        membership = self.membership
        view: dict[str, Any] = {"fenced": self.quorum.refusal() or ""}
        view["reachable"], view["base"] = self.quorum.reachable, len(self.quorum.base)
        view["times_fenced"] = self.quorum.times_fenced
        if membership is not None:
            view["health"] = membership.health
            c = membership.health_counters
            for key in ("suspicions_raised", "suspicions_wrong", "confirmations", "late_ticks"):
                view[key] = getattr(c, key)
            view["suspected"] = c.suspected
            view["refutations"] = membership.counters.refutations
        return view

    def health_reply(self, request_id: int) -> HealthDescribed:
        v = self.health_view()
        return HealthDescribed(
            request_id,
            v.get("health", 0),
            MAX_HEALTH,
            v.get("suspicions_raised", 0),
            v.get("suspicions_wrong", 0),
            v.get("confirmations", 0),
            v.get("suspected", 0),
            v.get("late_ticks", 0),
            v["fenced"],
            v["reachable"],
            v["base"],
        )

    def _tell_restart(self) -> None:
        """Membership heard a state of our name this process never had: an earlier process of
        ours, never declared DEAD (a kill -9 and a restart at the same address within the
        suspicion time). Tell every live member, so owners settle what they had out on it now."""
        membership, notice = self.membership, self._restart
        if membership is None:
            return
        seen = membership.counters.extra.get("earlier_life", 0)
        now = self._clock()
        if seen > notice.seen:
            if notice.seen == 0:
                log.warning(
                    "the cluster still knew an earlier process of node %s: telling members that "
                    "its work is gone",
                    self.name,
                )
            notice.seen, notice.until = seen, now + RESTART_TELL_S
        if now > notice.until:
            return
        members = membership.members()
        if len(members) == notice.members:
            return
        notice.members = len(members)
        msg = mio.NodeRestarted(membership.me.incarnation)
        for member in members:
            if member.name != self.name and member.status in (m.ALIVE, m.SUSPECT):
                if member.name not in notice.told:
                    notice.told.add(member.name)
                    self.send(member.address, msg)

    def _on_upload(self, msg: mio.UploadChunk, frames: list[Any], conn: bytes) -> None:
        """A piece of a submission too big to send whole (``handoffd.upload``); the last one
        makes it whole, handled as if it had come so (decoded within the upload's bounds)."""
        piece = frames[0] if frames else b""
        error, received, whole = self._uploads.add(conn, msg, piece, self._clock())
        if whole is None:
            self._upload_taken(conn, msg, received, error)
            return
        # Checked, decoded and checked again in a thread (it took the loop seconds); the last
        # piece is answered once its frame list is checked there (``_upload_checked``).
        limits = self.config.limits
        done = functools.partial(self._on_prepared, conn)
        checked = functools.partial(self._upload_checked, conn, msg, received)
        order = self.owner.scheduler.order if self.owner is not None else None
        upload_intake.PREPARER.submit(whole, self._upload_codec, limits, order, done, checked)

    def _upload_checked(self, conn: bytes, msg: mio.UploadChunk, received: int, error: str) -> None:
        """The last piece's answer, once the thread checked the upload's frame list."""
        self._upload_taken(conn, msg, received, f"upload {msg.upload_id}: {error}" if error else "")

    def _upload_taken(self, conn: bytes, msg: mio.UploadChunk, received: int, error: str) -> None:
        self.reply(conn, mio.UploadTaken(msg.request_id, msg.upload_id, received, error))
        if error:
            log.warning("a client's upload was refused: %s", error)

    def _on_prepared(self, conn: bytes, prepared: Any) -> None:
        """A whole upload, decoded and checked (``upload_intake.prepare``), back on the loop: only
        a submission is taken, admitted as it would be whole, then handed to the owner."""
        decoded = prepared.decoded
        if decoded is None:
            self.dropped += 1
            return
        msg = decoded.msg
        if self._stopping or not isinstance(msg, (m.SubmitRun, m.SubmitAndWait)):
            return  # an upload is a submission, nothing else
        sender = decoded.envelope.sender
        member = self.membership.get(sender) if self.membership is not None else None
        refused = admission.check(msg, sender, True, member, self.name)
        if refused:
            self.dropped += 1
            self.drops.count(refused, msg, sender)
            return
        if self.replication is not None and self.replication.redirect(msg, conn):
            return  # a retried submission of a run another node owns (client_moves)
        checked = prepared.error if prepared.error is not None else prepared.specs
        try:
            # (no copy: 1,000,000 frames copied here held the loop; the owner only reads them)
            frames = decoded.frames
            blocks = reads_blocks(decoded.envelope.max_version)
            self.owner.submit_checked(
                msg, frames, conn, checked, prepared.graph, prepared.run, blocks
            )
        except Exception:  # noqa: BLE001 - one bad message must never take the daemon down
            self.dropped += 1
            log.exception("handling an uploaded %s from %s failed", type(msg).__name__, sender)

    def _peer_restarted(self, name: str, msg: mio.NodeRestarted) -> None:
        if self.owner is None or name == self.name:
            return
        log.info("member %s restarted (incarnation %d): settling its work", name, msg.incarnation)
        self.owner.member_restarted(name)
        if self.replication is not None:
            self.replication.owner_restarted(name)
