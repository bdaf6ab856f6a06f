"""The executor's I/O shell: feeds ``ExecutorState`` its events and carries out its instructions.

Everything the executing side decides (admission against the ledger, the local queue, chains,
fencing, fetches, reports) is in ``executor_state``; this class only moves things between it and
the world: messages in (the node's router calls ``on_*``), job outcomes in (the worker pool's
``on_done``), timers and "soon" callbacks in (the asyncio loop), and sends, pool submits and cancels,
timers and resource gossip out. Nothing here decides anything.

What running tasks print (the pool's ``on_output``) is not a decision either: it goes to the run's
owner as it comes, in one ``TaskOutputLive`` per run per loop turn, and always before the report of
the attempt that printed it (``on_outcome`` sends what is waiting first), so the owner numbers an
attempt's lines in the order they were printed. A running attempt's live text (at most the capture's
head, 48 KiB) is kept until its outcome: when the run gets a new owner (``NewOwner``) it is sent
there again, as what went to the old one in its last moments may be lost; each piece carries its
offset in the attempt's output and the owner keeps each offset once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from handoffd.daemon.executor_events import (
    FLUSH,
    AnsweredHere,
    CancelAsked,
    CancelJob,
    CancelTimer,
    ChunkArrived,
    Dispatched,
    Event,
    Execute,
    HookFailedArrived,
    Instruction,
    Leaving,
    LedgerChanged,
    NewOwner,
    OwnerSeen,
    ReportedHere,
    RunFreed,
    SendMessage,
    SetTimer,
    Soon,
    ValuesArrived,
    ValuesAsked,
    ValuesFreed,
    WithdrawAsked,
)
from handoffd.daemon.executor_hooks import EncodeKey, HookServer
from handoffd.daemon.executor_records import QUEUE_FACTOR, here_message
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import columns
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.protocol.messages_code import LiveOutput, TaskOutputLive
from handoffd.protocol.messages_hooks import EncodeFailed, FetchEncoded
from handoffd.protocol.messages_rebalance import WithdrawTasks
from handoffd.store.chunks import CHUNK_MAX, serve
from handoffd.store.store import ResultStore
from handoffd.worker._records import Ended, Kept
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome, WorkerPool

SendFn = Callable[..., Any]  # (address, message, frames, term=0)


class Executor:
    #: what ``on_fetch`` takes (the node routes them here)
    FETCH_TYPES = (m.FetchValues, FetchEncoded, EncodeFailed, FetchChunks)

    def __init__(
        self,
        *,
        address: str,
        ledger: Ledger,
        store: ResultStore,
        send: SendFn,
        inline_result_bytes: int,
        on_resources_changed: Callable[[], None],
        fetch_timeout: float = 5.0,
        queue_factor: float = QUEUE_FACTOR,
        clock: Callable[[], float] = time.monotonic,
        chunk_bytes: int = CHUNK_MAX,
    ) -> None:
        self.state = ExecutorState(
            address=address,
            ledger=ledger,
            store=store,
            inline_result_bytes=inline_result_bytes,
            fetch_timeout=fetch_timeout,
            queue_factor=queue_factor,
            chunk_bytes=chunk_bytes,
        )
        self.state.wall_offset = time.time() - clock()  # reported attempt times are wall clock
        self.address = address
        self.ledger = ledger
        self.store = store
        self._send = send
        self._on_resources_changed = on_resources_changed
        self._clock = clock
        self.hooks = HookServer(store.get)
        self._pool: WorkerPool | None = None  # set by the node before any dispatch arrives
        self._flush_soon: asyncio.Handle | None = None  # the report flush waiting for next turn
        # Told (run_id, term, owner name) when a run's owner changes to a higher term.
        self.on_new_owner: Callable[[str, int, str], None] | None = None
        # Called after each "soon" event was handled (the node delivers what we sent our own
        # owner: a report reaches it in this loop turn, not the next).
        self.after_soon: Callable[[], None] | None = None
        # Takes our answers and reports to our own node's owner (``AnsweredHere``,
        # ``ReportedHere``: records, never encoded); unset, they go out as messages to ourselves.
        self.here: Callable[[AnsweredHere | ReportedHere], None] | None = None
        # The node's loop (asyncio.get_running_loop() is a getpid system call on Python 3.11).
        self.loop: asyncio.AbstractEventLoop | None = None
        # While the outcomes of one read are ended (``on_read``), what we send our own owner and
        # ledger changes wait with no callback (the node's ``_hold``), for ``after_soon`` or
        # ``release``; and the report flush is decided at the read's end, not scheduled then
        # cancelled (a cancelled callback still costs the loop a turn).
        self.hold: Callable[[], None] | None = None
        self.release: Callable[[], None] | None = None
        self._reading = False
        self._flush_wanted = False
        self._timers: dict[int, asyncio.TimerHandle] = {}
        # (owner address at dispatch, run) -> live output waiting for this loop turn's send
        self._live: dict[tuple[str, str], list[LiveOutput]] = {}
        self._sent_live: dict[Any, list[LiveOutput]] = {}  # running attempt -> its live pieces

    @property
    def pool(self) -> WorkerPool | None:
        return self._pool

    @pool.setter
    def pool(self, pool: WorkerPool | None) -> None:
        self._pool = pool
        if pool is not None:
            pool.on_read = self.on_read
            pool.rows = True  # (a task's KEPT reply as a ``Row``: ``ExecutorState`` ends both)

    # -- state, as the node and the replication shell read it ---------------------------------

    @property
    def draining(self) -> bool:
        return self.state.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.state.draining = value

    @property
    def counters(self) -> dict[str, int]:
        return self.state.counters

    @property
    def run_owners(self) -> dict[str, tuple[int, str, str]]:
        return self.state.run_owners

    def running_count(self) -> int:
        return self.state.running_count()

    def term_of(self, run_id: str) -> int:
        return self.state.term_of(run_id)

    # -- events in ------------------------------------------------------------------------------

    def on_dispatch(
        self,
        msg: m.DispatchTasks | columns.DispatchTable,
        frames: list[bytes],
        term: int = 0,
        owner: str = "",
    ) -> None:
        self._handle(Dispatched(msg, frames, term, owner))

    def on_fetch(
        self, msg: m.FetchValues | FetchEncoded | EncodeFailed | FetchChunks, frames: list[bytes]
    ) -> None:
        """A peer asks for values, chunks of one (read from the store: no decision), or for one
        serialized by its hook (run in a worker: ``HookServer``), or says the hook it ran for us
        raised."""
        if isinstance(msg, FetchChunks):
            for answer, data in serve(self.store, msg):
                self._send(msg.reply_to, answer, data)
        elif isinstance(msg, m.FetchValues):
            self._handle(ValuesAsked(msg))
        elif isinstance(msg, FetchEncoded):
            self._run(self.hooks.asked(msg, frames))
        else:
            self._handle(HookFailedArrived(msg))

    def on_values(self, msg: m.ValuesFetched | ValueChunk, frames: list[bytes]) -> None:
        if isinstance(msg, ValueChunk):
            self._handle(ChunkArrived(msg, frames))
        else:
            self._handle(ValuesArrived(msg, frames))

    def on_output(self, key: Any, text: str) -> None:
        """New output of a running job (the pool's ``on_output``): sent soon, batched per run."""
        task = self.state.task(key)
        if task is None:  # an attempt we no longer run (cancelled, or its run freed)
            return
        if not self._live:
            self._call_soon(self._send_live)
        pieces = self._sent_live.setdefault(key, [])
        offset = pieces[-1].offset + len(pieces[-1].text) if pieces else 0
        chunk = LiveOutput(task.task_id, task.attempt, offset, text)
        pieces.append(chunk)
        self._live.setdefault((task.owner_address, task.run_id), []).append(chunk)

    def _resend_live(self, run_id: str) -> None:
        """The run has a new owner: the live text of its running attempts, sent again."""
        for key, pieces in self._sent_live.items():
            if key[0] == run_id:
                task = self.state.task(key)
                if task is not None:
                    self._live.setdefault((task.owner_address, run_id), []).extend(pieces)
        if self._live:
            self._call_soon(self._send_live)

    def _send_live(self) -> None:
        waiting, self._live = self._live, {}
        for (owner, run_id), chunks in waiting.items():
            known = self.state.run_owners.get(run_id)
            if known is not None:
                owner = known[1]  # the run changed owner since the task was dispatched
            msg = TaskOutputLive(run_id, tuple(chunks))
            self._send(owner, msg, [], term=self.term_of(run_id))

    def on_outcome(self, outcome: Outcome) -> None:
        self._ended([outcome])

    def on_read(self, outcomes: list[Ended]) -> None:
        """The outcomes of one read of a worker's pipe (the pool's ``on_read``), ended in one pass
        of the state machine. With no other task of ours left (nothing else can end and join the
        report before the next loop turn), the report goes now, and with it (``after_soon``) the
        owner's answer, not a loop turn later. While other tasks run it waits for the turn's end
        as before: one report for every outcome."""
        hold, release = self.hold, self.release
        if hold is not None:
            hold()
        try:
            self._reading = True
            try:
                flushed = self._ended(outcomes, flush_idle=True)
            finally:
                self._reading = False
            wanted, self._flush_wanted = self._flush_wanted, False
            handle = self._flush_soon
            if flushed:  # the report went in the outcomes' pass (nothing of ours runs)
                if handle is not None:
                    handle.cancel()
                    self._flush_soon = None
                if self.after_soon is not None:
                    self.after_soon()  # (the node's _drained: it ends the hold)
                return
            if wanted:
                self._flush_soon = self._call_soon(self._soon, FLUSH)
        except BaseException:
            if release is not None:
                release()
            raise
        if release is not None:
            release()

    def _ended(self, outcomes: list[Ended], flush_idle: bool = False) -> bool:
        """True when the report flush went with the outcomes (``flush_idle`` and nothing of
        ours runs any more). (A ``Row`` is a task's: a hook's job never ends as one.)"""
        # (only a node that ever ran a serialize hook for a peer can read one's end: no pass
        # over the outcomes for them on any other, a one-task call's own)
        if self.hooks.served:
            hooks = [o for o in outcomes if type(o) is Outcome and isinstance(o.key, EncodeKey)]
            if hooks:  # serialize hooks run for peers: answered apart, every one of them
                for outcome in hooks:
                    self._run(self.hooks.ended(outcome))
                outcomes = [
                    o
                    for o in outcomes
                    if type(o) is not Outcome or not isinstance(o.key, EncodeKey)
                ]
        if self._sent_live:
            for ended in outcomes:
                if type(ended) is Kept:  # (a read's KEPT replies as one block: its keys)
                    for key in ended.keys:
                        self._sent_live.pop(key, None)
                else:
                    self._sent_live.pop(ended[0] if type(ended) is tuple else ended.key, None)  # type: ignore[union-attr]
        if self._live:  # the attempts' live lines reach the owner before their reports
            self._send_live()
        state = self.state
        instructions = state.tasks_ended(outcomes, self._clock(), flush_idle)  # no event per task
        if instructions:
            self._run(instructions)
        return flush_idle and state.flushed

    def on_cancel(self, msg: m.CancelTasks, term: int = 0) -> None:
        self._handle(CancelAsked(msg, term))

    def leave(self) -> None:
        """Stop taking work: queued tasks go back to their owners now (``Leaving``)."""
        self._handle(Leaving())

    def on_withdraw(self, msg: WithdrawTasks, term: int = 0) -> None:
        self._handle(WithdrawAsked(msg, term))

    def on_free_run(self, msg: m.FreeRun, term: int = 0) -> None:
        self._handle(RunFreed(msg, term))

    def on_free_values(self, msg: m.FreeValues, term: int = 0) -> None:
        self._handle(ValuesFreed(msg, term))

    def learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool:
        """Record the run's owner at ``term``; False when ``term`` is stale (lower than seen)."""
        if self.state.is_stale(run_id, term):
            return False
        self._handle(OwnerSeen(run_id, term, address, name))
        return True

    def on_reconcile(self, msg: m.ReconcileRun | m.ProbeHoldings) -> m.RunHoldings | None:
        """A new owner asks what we hold and run for the run; None if its term is stale."""
        if not self.learn_owner(msg.run_id, msg.term, msg.owner_address, msg.owner):
            return None
        return self.state.holdings(msg.request_id, msg.run_id, msg.term)

    # -- instructions out -----------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        instructions = self.state.handle(event, self._clock())
        if instructions:  # (a run freed, most owner commands: none, no pass to start)
            self._run(instructions)

    def _run(self, instructions: list[Instruction]) -> None:
        for ins in instructions:  # by exact type, the most frequent first (no isinstance call)
            kind = type(ins)
            if kind is Execute:
                assert self._pool is not None
                self._pool.submit_all(ins.jobs, ins.chain)  # type: ignore[union-attr]
            elif kind is AnsweredHere or kind is ReportedHere:
                self._here(ins)  # type: ignore[arg-type]
            elif kind is LedgerChanged:
                self._on_resources_changed()
            elif kind is Soon:
                self._soon_instruction(ins)  # type: ignore[arg-type]
            elif kind is SendMessage:
                self._send_instruction(ins)  # type: ignore[arg-type]
            else:
                self._run_other(ins)

    def _run_other(self, ins: Instruction) -> None:
        if isinstance(ins, Execute):  # (a subclass of one of the above, too)
            assert self.pool is not None
            self.pool.submit_all(ins.jobs, ins.chain)
        elif isinstance(ins, SendMessage):
            self._send_instruction(ins)
        elif isinstance(ins, (AnsweredHere, ReportedHere)):
            self._here(ins)
        elif isinstance(ins, Soon):
            self._soon_instruction(ins)
        elif isinstance(ins, LedgerChanged):
            self._on_resources_changed()
        elif isinstance(ins, SetTimer):
            delay = max(0.0, ins.at - self._clock())
            loop = self.loop or asyncio.get_running_loop()
            self._timers[ins.key] = loop.call_later(delay, self._fire, ins.key, ins.event)
        elif isinstance(ins, CancelTimer):
            handle = self._timers.pop(ins.key, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(ins, CancelJob):
            if self.pool is not None:
                self.pool.cancel(ins.key)
        elif isinstance(ins, NewOwner):
            if self._sent_live:
                self._resend_live(ins.run_id)
            if self.on_new_owner is not None:
                self.on_new_owner(ins.run_id, ins.term, ins.owner)
        else:
            raise TypeError(f"unknown executor instruction {ins!r}")

    def _send_instruction(self, ins: SendMessage) -> None:
        # (the state machine builds its per-task answers to another node's owner as columns
        # itself: ``report_message``, ``replied_message``)
        self._send(ins.address, ins.msg, ins.frames, term=ins.term)

    def _here(self, ins: AnsweredHere | ReportedHere) -> None:
        if self.here is not None:
            self.here(ins)
        else:
            msg, frames = here_message(ins)
            self._send(self.address, msg, frames, term=ins.term)

    def _soon_instruction(self, ins: Soon) -> None:
        if ins.event is not FLUSH:
            self._call_soon(self._soon, ins.event)
        elif self._reading:
            self._flush_wanted = True  # on_read decides at the read's end
        else:
            self._flush_soon = self._call_soon(self._soon, FLUSH)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> asyncio.Handle:
        return (self.loop or asyncio.get_running_loop()).call_soon(fn, *args)

    def _soon(self, event: Event) -> None:
        if event is FLUSH:
            self._flush_soon = None
        self._handle(event)
        if self.after_soon is not None:
            self.after_soon()

    def _fire(self, key: int, event: Event) -> None:
        self._timers.pop(key, None)
        self._handle(event)
