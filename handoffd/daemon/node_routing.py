"""The node's messages in and out (a base of ``daemon.node.Node``, kept apart so node.py stays
within the module size): encoding and sending, replies, inbound frames (decode, ``admission``,
membership) and the router that hands each message to its part; and what the node sends itself.

What a node sends itself is never encoded: it waits in ``_local`` (in order) for one callback per
loop turn, or for the end of a transport's drain or of our executor's report flush (``_drained``),
and the owner feeds what it said as one scheduler batch. The owner's dispatches to our own
executor do not wait there (``_dispatch_here``): the executor takes them in the scheduler batch
that decided them (issue 13, the one-step same-node path)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from handoffd import admission
from handoffd.daemon import oversize
from handoffd.daemon.executor_events import AnsweredHere, ReportedHere
from handoffd.daemon.node_reliability import NodeReliability
from handoffd.membership import swim
from handoffd.observability.info import metrics_reply, node_info
from handoffd.protocol import codec, columns, versions
from handoffd.protocol import messages as m
from handoffd.protocol import messages_code as mc
from handoffd.protocol import messages_io as mio
from handoffd.protocol import messages_ops as ops
from handoffd.protocol import messages_reliability as mr
from handoffd.protocol.messages_chunks import ValueChunk
from handoffd.protocol.messages_columns import DispatchColumns, RepliedColumns, ReportColumns
from handoffd.protocol.messages_observability import GetMetrics, GetNodeInfo
from handoffd.protocol.messages_rebalance import WithdrawTasks
from handoffd.protocol.messages_submit import SubmitColumns, as_submission
from handoffd.protocol.messages_swim import DescribeHealth
from handoffd.protocol.repeats import ReplyRepeats

if TYPE_CHECKING:
    from handoffd.daemon.node import Node

log = logging.getLogger("handoffd.node")

_MEMBERSHIP_TYPES = admission.SWIM_TYPES
_REPLICATION_TYPES = admission.REPLICATION_TYPES
_OPS_REQUESTS = ops.CLIENT_TYPES
_OPS_NOTICES = ops.NOTICE_TYPES
_TO_OWNER = {m.SubmitRun, m.SubmitAndWait, m.DispatchReplied, m.TasksReported, ReportColumns}
_TO_OWNER.add(RepliedColumns)  # only the owner reads these (_route)
# Our own executor's answers to our owner: records (Executor.here), or as messages when a shell
# has no ``here`` (never columns: Executor._run).
_HERE = frozenset({AnsweredHere, ReportedHere})
_FROM_HERE = frozenset({m.DispatchReplied, m.TasksReported})
# What a dispatch to our own executor may overtake: those answers, and frees (of a run that ended,
# of values no task still to run needs: a later dispatch never needs what they free).
_OVERTAKEN = _HERE | _FROM_HERE | {m.FreeRun, m.FreeValues}


class NodeRouting(NodeReliability):
    # What this part uses of the Node (set there).
    executor: Any
    code_fetcher: Any
    ops: Any
    _handover: Any
    _replies: Any
    _refusals: Any
    # (msg, frames, term, encoded) last sent: a batch sent to each standby is encoded once
    _last_encoded: tuple[Any, Any, int, list[Any]] | None = None
    # What we sent ourselves, waiting for the callback (_local_soon) that delivers it, and how
    # many of those a dispatch to ourselves may not overtake (_OVERTAKEN): it waits behind them.
    _local: list[tuple[Any, list[Any], int]]
    _local_soon: asyncio.Handle | None = None
    _local_others = 0
    # Our loop (Node.start): asyncio.get_running_loop() is a getpid system call on Python 3.11.
    _loop: asyncio.AbstractEventLoop | None = None
    # A ``_drained`` is sure to come before the running loop callback returns (a transport's
    # drain, our executor's read of a worker's pipe): what we send ourselves and a ledger change
    # wait for it with no callback scheduled, as a callback it cancels still costs a loop turn.
    _held = False
    _drains = False  # the transport calls our _drained after each wake-up's messages (Node.start)
    # The ledger changed since our owner and membership were told (_publish_resources), and
    # whether a callback to tell them is scheduled.
    _resources_dirty = False
    _publish_soon = False
    # Our ledger as published (free, version) while our answers wait in ``_local``: told to our
    # owner after they are delivered (``_deliver``), as a callback would have been, with none.
    _own_after: tuple[dict[str, float], int] | None = None
    # The last RunOutcome's bytes, cut around its ids: the next one like it but for them is
    # written from them (every one-task execute's answer; ``protocol.repeats.ReplyRepeats``).
    _outcomes: ReplyRepeats | None = None
    # Our owner's batch at the end of ``_deliver`` runs (``_flushing``), and the frees of ended
    # runs it sent our executor with nothing else of ours waiting (``_frees``): handed over when
    # the batch is done, not left to a callback (a loop turn of its own for a W3 run's free).
    _flushing = False
    _frees: list[tuple[m.FreeRun, int]] | None = None

    def address_of(self, name: str) -> str | None:
        raise NotImplementedError

    # -- sending -------------------------------------------------------------------------------

    def encode(self, msg: Any, frames: list[Any] | None = None, term: int = 0) -> list[Any]:
        return self.codec.encode(
            msg, sender=self.name, incarnation=self._incarnation(), term=term, frames=frames or ()
        )

    def encode_reply(self, msg: Any, frames: list[Any] | None = None) -> list[Any]:
        """A reply's frames made on the spot (``Replies``): a ``RunOutcome`` the last one's but
        for its ids from the last one's bytes, anything else (and that one first) by the codec."""
        if type(msg) is not m.RunOutcome:
            return self.encode(msg, frames)
        outcomes = self._outcomes
        if outcomes is None:
            outcomes = self._outcomes = ReplyRepeats(m.RunOutcome, self.codec.stats)
        incarnation = self._incarnation()  # (the envelope's one field that may change)
        body = outcomes.write(msg, incarnation)
        if body is None:
            encoded = self.encode(msg, frames)
            outcomes.learn(msg, incarnation, encoded[0])
            return encoded
        return [body, *frames] if frames else [body]

    def _encoder(self, msg: Any, frames: list[Any] | None) -> Callable[[int], list[Any]]:
        """A reply's encoding, bound on the loop, to be run with a ``piece`` anywhere."""
        at = {"sender": self.name, "incarnation": self._incarnation(), "frames": frames or ()}
        return lambda piece: self.codec.encode(msg, **at, piece=piece)

    def send(self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0) -> bool:
        if address == self.address:  # our own node: no network, no decoding
            if self._flushing and type(msg) is m.FreeRun and not self._local:
                # (overtaking nothing: whatever we send ourselves after it waits behind it)
                frees = self._frees
                if frees is None:
                    frees = self._frees = []
                frees.append((msg, term))
                return True
            self._queue_here(msg, list(frames or []), term)
            return True
        assert self._transport is not None
        last = self._last_encoded
        if last is not None and last[0] is msg and last[1] is frames and last[2] == term:
            return self._transport.send(address, last[3])  # one message to several nodes
        encoded = self.encode(msg, frames, term)
        self._last_encoded = (msg, frames, term, encoded)
        return self._transport.send(address, encoded)

    def reply(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None:
        self._replies.reply(conn, msg, frames)

    def _reply_encoded(self, conn: bytes, frames: list[Any]) -> None:
        assert self._transport is not None
        self._transport.reply(conn, frames)

    def _incarnation(self) -> int:
        if self.membership is None:
            return 0
        me = self.membership.get(self.name)
        return me.incarnation if me is not None else 0

    def _publish_resources(self) -> None:
        raise NotImplementedError

    def _publish_later(self) -> None:
        raise NotImplementedError

    # -- receiving -----------------------------------------------------------------------------

    def _received(self, conn: bytes, frames: list[Any], listening: bool) -> None:
        """The transport's handler: its ``on_drained`` follows this wake-up's messages."""
        self._held = self._drains
        self._on_frames(conn, frames, listening)

    def _on_frames(
        self, conn: bytes, frames: list[Any], listening: bool, decoder: Any = None
    ) -> None:
        decoded = (decoder or self.codec).decode(frames)
        if decoded is None:
            self.dropped += 1
            if decoder is None:  # a dispatch too big for us is refused, not left to time out
                oversize.refuse(self, frames, listening)
            return
        msg = decoded.msg
        if type(msg) is SubmitColumns:  # the submission it stands for (messages_submit)
            try:
                msg = as_submission(msg)
            except columns.ColumnError as exc:
                self.dropped += 1
                log.warning("dropped a submission from %s: %s", decoded.envelope.sender, exc)
                return
        if decoder is not None and not isinstance(msg, (m.SubmitRun, m.SubmitAndWait)):
            return  # an upload is a submission, nothing else
        if type(msg) is codec.Mismatch:
            self._refuse(conn, msg)
            return
        sender = decoded.envelope.sender
        membership = self.membership
        member = membership.get(sender) if membership is not None else None
        refused = admission.check(msg, sender, listening, member, self.name)
        if refused:
            self.dropped += 1
            self.drops.count(refused, msg, sender)
            if member is not None and member.status == m.DEAD:
                self._run_membership(swim.HeardFrom(sender))
            return
        owner = self.owner
        try:
            if owner is not None and type(msg) in _TO_OWNER:  # _route's first check, made here:
                owner.handle(msg, list(decoded.frames), conn, decoded.envelope)  # 2 fewer before
            elif isinstance(msg, _OPS_NOTICES):
                if self.ops is not None:
                    self.ops.on_notice(msg, sender)
            elif isinstance(msg, _MEMBERSHIP_TYPES):
                self._names_check(msg, sender, member)
                counters = membership.counters if membership is not None else None
                before = counters.dropped_other_cluster if counters is not None else 0
                self._run_membership(swim.Received(sender, None, msg))
                if counters is not None and counters.dropped_other_cluster != before:
                    if self.ops is not None:
                        self.ops.other_cluster(msg, sender)
            else:
                self._route(msg, list(decoded.frames), conn, decoded.envelope)
        except columns.ColumnError as exc:  # the sender's columns disagree: say which
            self.dropped += 1
            log.warning("dropped %s from %s: %s", type(msg).__name__, sender, exc)
        except Exception:  # noqa: BLE001 - one bad message must never take the daemon down
            self.dropped += 1
            log.exception("handling %s from %s failed", type(msg).__name__, sender)

    # -- what we send ourselves ----------------------------------------------------------------

    def _queue_here(self, msg: Any, frames: list[Any], term: int) -> None:
        """One callback per loop turn delivers what we sent ourselves, in order (or ``_drained``)."""
        if self._local_soon is None and not self._held:
            loop = self._loop or asyncio.get_running_loop()
            self._local_soon = loop.call_soon(self._deliver_locals)
        if type(msg) not in _OVERTAKEN:
            self._local_others += 1
        self._local.append((msg, frames, term))

    def _deliver_locals(self) -> None:
        self._local_soon = None
        self._deliver()

    def _deliver(self) -> None:
        """Everything we sent ourselves, in order, then what it said as one scheduler batch (as
        after a transport's drain). What delivering sends us waits for the next callback."""
        batch, self._local, self._local_others = self._local, [], 0
        owner, executor = self.owner, self.executor
        for msg, frames, term in batch:
            try:
                kind = type(msg)
                if kind in _HERE:  # records: no envelope, message or router
                    owner.from_here(msg)
                    continue
                if kind is m.FreeRun and executor is not None:  # our owner's frees: the term is
                    executor.on_free_run(msg, term)  # all _route would read (its 7th check)
                    continue
                if kind is m.FreeValues and executor is not None:
                    executor.on_free_values(msg, term)
                    continue
                if isinstance(msg, columns.DispatchTable):  # our owner's dispatch, its turn come:
                    self._to_executor(msg, frames, term, self.name)  # (a record: no envelope)
                    continue
                envelope = self.codec.local_envelope(msg.TYPE, self.name, self._incarnation(), term)
                if type(msg) in _FROM_HERE:  # our executor's answers: the owner's, as they are
                    owner.handle(msg, frames, b"", envelope)
                else:
                    frames = [bytes(f) if isinstance(f, memoryview) else f for f in frames]
                    self._route(msg, frames, b"", envelope)
            except Exception:  # noqa: BLE001
                log.exception("handling local %s failed", type(msg).__name__)
        if owner is not None:
            self._flushing = executor is not None
            try:
                owner.flush()
            finally:
                self._flushing = False
            frees = self._frees
            if frees:  # (a released run's values, in W3 each run's: fed with the next report)
                self._frees = None
                for msg, term in frees:
                    try:
                        executor.on_free_run(msg, term)
                    except Exception:  # noqa: BLE001 - as its delivery's would be, logged
                        log.exception("handling local FreeRun failed")
            after = self._own_after
            if after is not None:  # (mostly carried by the answers just fed: then a no-op)
                self._own_after = None
                try:
                    self._publish_own(*after)
                except Exception:  # noqa: BLE001 - as a callback's would be, logged
                    log.exception("telling our owner of our ledger failed")

    def _publish_own(self, free: dict[str, float], version: int) -> None:
        raise NotImplementedError

    def _drained(self) -> None:
        """A drain's end or our executor's report flush: what we sent ourselves goes now, in order,
        and the owner feeds it with the drain's reports as one batch; then a held ledger change
        is published (after the reports that carried it: see ``Node._publish_resources``)."""
        self._held = False
        if self._local:
            if self._local_soon is not None:
                self._local_soon.cancel()  # it would find nothing (and feed the scheduler nothing)
                self._local_soon = None
            self._deliver()
        elif self.owner is not None:
            self.owner.flush()
        if self._resources_dirty and not self._publish_soon:
            self._publish_resources()

    def _hold(self) -> None:
        """Our executor reads a worker's pipe: ``_drained`` or ``_release`` ends it."""
        self._held = self._drains

    def _release(self) -> None:
        """The hold ended with no ``_drained`` (our executor's report waits for its flush): what
        waits gets its callbacks, in the order they would have run."""
        self._held = False
        loop = self._loop or asyncio.get_running_loop()
        if self._local and self._local_soon is None:
            self._local_soon = loop.call_soon(self._deliver_locals)
        if self._resources_dirty and not self._publish_soon:
            self._publish_soon = True
            loop.call_soon(self._publish_later)

    def _answer_here(self, ins: AnsweredHere | ReportedHere) -> None:
        """Our executor's answer or reports to our owner (``Executor.here``): in ``_local``, in
        order with what else we sent ourselves, and fed as the messages were (the drain's end or
        the callback: never in the batch that sent the dispatch)."""
        self._queue_here(ins, [], ins.term)

    def _dispatch_here(
        self, msg: m.DispatchTasks | columns.DispatchTable, frames: list[Any], term: int
    ) -> None:
        """The owner's dispatch to our own executor (``OwnerIO.here``): handed over in the
        scheduler batch that decided it, with no message routed to ourselves. Behind something
        else we sent our executor that it may not overtake (a cancel, a withdrawal, a probe) it
        waits its turn in order. The executor's answer waits in ``_local`` like anything we send
        ourselves: delivered at the drain's end with its reports (one batch) or by the callback,
        never fed in the batch that sent the dispatch (that split busy turns' batches)."""
        if self._local_others:
            self._queue_here(msg, frames, term)
            return
        for frame in frames:  # (a payload still in its received buffer: rare, copied once)
            if isinstance(frame, memoryview):
                frames = [bytes(f) if isinstance(f, memoryview) else f for f in frames]
                break
        try:
            self._to_executor(msg, frames, term, self.name)
        except Exception:  # noqa: BLE001 - the scheduler's batch goes on
            log.exception("handing a dispatch to our own executor failed")

    def _to_executor(
        self,
        msg: m.DispatchTasks | columns.DispatchTable,
        frames: list[Any],
        term: int,
        owner: str = "",
    ) -> None:
        """``owner``: the sender's name (the executor settles two claims at one term by it)."""
        executor = self.executor
        if msg.packages and self.code_fetcher is not None:
            # The run's code must be here before its tasks start (fetched from the owner).
            on_dispatch = executor.on_dispatch
            self.code_fetcher.when_present(
                msg.packages, msg.owner_address, lambda: on_dispatch(msg, frames, term, owner)
            )
        else:
            executor.on_dispatch(msg, frames, term, owner)

    def _refuse(self, conn: bytes, mismatch: codec.Mismatch) -> None:
        """A client or peer of an incompatible protocol range: log it once, and answer in the
        frozen format every version reads, so a client fails at once (never a mismatch answered
        with one). Its messages are never read: such a peer never enters our membership."""
        kind = versions.sender_kind(mismatch.type_id)
        self._refusals.note(kind, mismatch.sender, mismatch.lo, mismatch.hi, mismatch.told)
        if not mismatch.told and self._transport is not None:
            ours = versions.describe(*self.codec.versions)
            text = f"{self.name} speaks protocol {ours}"
            self._transport.reply(conn, self.codec.encode_mismatch(self.name, text))

    def _route(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        assert self.executor is not None and self.owner is not None and self.replication is not None
        if type(msg) in _TO_OWNER:  # by exact type: not the ~27 checks below (3 per 1-task run)
            self.owner.handle(msg, frames, conn, envelope)
            return
        term = envelope.term if envelope is not None else 0
        if isinstance(msg, DispatchColumns):  # ColumnError: dropped by _on_frames, logged
            # read and checked once (its calls' payloads rebuilt): the executor takes it
            msg, frames = columns.received_dispatch(msg, frames)
        if isinstance(msg, (m.DispatchTasks, columns.DispatchTable)):
            self._to_executor(msg, frames, term, envelope.sender if envelope is not None else "")
        elif isinstance(msg, self.executor.FETCH_TYPES):  # plain, or by a serialization hook
            self.executor.on_fetch(msg, frames)
        elif isinstance(msg, (m.ValuesFetched, ValueChunk)):  # whole, or a chunk of one
            if not (self.owner.on_values(msg, frames) or self.replication.on_chunk(msg, frames)):
                self.executor.on_values(msg, frames)
        elif isinstance(msg, m.CancelTasks):
            self.executor.on_cancel(msg, term)
        elif isinstance(msg, WithdrawTasks):
            self.executor.on_withdraw(msg, term)
        elif isinstance(msg, m.FreeRun):
            self.executor.on_free_run(msg, term)
        elif isinstance(msg, m.FreeValues):
            self.executor.on_free_values(msg, term)
        elif isinstance(msg, mc.FetchPackages):
            if self.code_fetcher is not None:
                reply, data = self.code_fetcher.serve(msg)
                self.send(msg.reply_to, reply, data)
        elif isinstance(msg, mc.ReplicateOutput):
            self.owner.output.on_replicate(msg)
        elif isinstance(msg, mc.PackagesFetched):
            if self.code_fetcher is not None:
                self.code_fetcher.on_fetched(msg, frames)
        elif isinstance(msg, m.HoldingsProbed):  # a node answered one of our owner's probes
            self.owner.on_holdings(msg, envelope.sender if envelope is not None else self.name)
        elif isinstance(msg, _REPLICATION_TYPES):
            assert self.replication is not None
            if isinstance(msg, m.DropReplica) and self.scheduler is not None:
                if self.scheduler.term_of(msg.run_id) is None:  # not ours: its output goes too
                    self.owner.output.forget(msg.run_id)
            self.replication.handle(msg, frames, envelope)
        elif isinstance(msg, m.ListNodes):
            assert self.membership is not None
            self._own_to_membership()  # the free resources as they are now, ours too
            self.reply(conn, m.NodeList(msg.request_id, tuple(self.membership.members())))
        elif isinstance(msg, _OPS_REQUESTS):
            if self.ops is not None:
                self.ops.handle(msg, conn)
        elif isinstance(msg, mr.NameClash):
            self._name_clashed(msg)
        elif isinstance(msg, mr.NodeLeaving):
            self._peer_leaving(envelope.sender if envelope is not None else "")
        elif isinstance(msg, mio.NodeRestarted):
            self._peer_restarted(envelope.sender if envelope is not None else "", msg)
        elif isinstance(msg, mio.ValuesHandedOver) and envelope is not None:
            self._handover.on_values(msg, frames, self.address_of(envelope.sender) or "")
        elif isinstance(msg, mio.ValuesTaken):
            self._handover.on_taken(msg)
        elif isinstance(msg, mio.UploadChunk):
            self._on_upload(msg, frames, conn)
        elif isinstance(msg, GetNodeInfo):
            node, request_id = cast("Node", self), msg.request_id
            if node.replication is None:
                self.reply(conn, node_info(node, request_id))
            else:  # (with the runs whose owner is changing, once counted)
                node.replication.changing_runs(
                    lambda changing: self.reply(conn, node_info(node, request_id, changing))
                )
        elif isinstance(msg, GetMetrics):
            self.reply(conn, metrics_reply(cast("Node", self), msg.request_id))
        elif isinstance(msg, DescribeHealth):
            self.reply(conn, self.health_reply(msg.request_id))
        elif isinstance(msg, m.StopNode):
            self.reply(conn, m.Ok(msg.request_id))
            self.request_stop()
        else:
            self.owner.handle(msg, frames, conn, envelope)
