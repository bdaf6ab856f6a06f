"""The owner's I/O shell: client control requests in, scheduler instructions out.

``OwnerScheduler`` (pure) decides; this class turns its instructions into wire messages (batched
per node), answers clients (submission, long-poll status, results, cancel), fetches results that
live on other nodes for the client, and frees a run's values everywhere once they were collected
or the retention time passed (``RetentionPolicy`` decides when; this shell feeds it and executes
what it says). It sees the node only through its port (``daemon.ports``) and replication only as a
``Replicator``, both given by ``daemon.node.wire``.

One exchange per run: ``SubmitAndWait`` (``Client.execute``) is answered once the run ends, with a
``RunOutcome`` that carries the status and the results this node holds (inline values kept by the
scheduler, values in our store), and with ``release`` frees them right after that reply; ``WaitRun``
(``Run.wait``) is the same long poll for a run already submitted. Results held elsewhere or past the
client's byte budget are listed as ``pending`` and fetched with ``FetchResults`` as before.
(Building outcomes' values and serving ``FetchResults`` live in ``daemon.results``.)
Safety (DESIGN 3.5): no client hears "accepted" or an outcome before the standbys acked the run's
snapshot (``Replicator.run_accepted``; a run that ends first waits for that ack), unless that
outcome is final and came before the run was due to be replicated (``owner_waits``). Dispatch
does not wait for it: if we die before the standbys hold the run, the client was told nothing and gets a
ConnectionError, as for a SubmitRun; tasks that ran meanwhile were executions nobody was promised
(at-least-once), and a standby that did get the snapshot takes the run over as usual.

Probes (a report lost while its node stays ALIVE): a ``ProbeRun`` goes out as ``ProbeHoldings`` at
the run's current term, which changes nothing on the node (it already follows us at that term); the
node's ``HoldingsProbed`` comes back through ``on_holdings`` as ``RunProbed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from handoffd import intake
from handoffd.config import Limits
from handoffd.daemon import lane, oversize, reports
from handoffd.daemon.code import CodeStore
from handoffd.daemon.dispatch import dispatch_here, dispatch_message, dispatch_tasks, far_keeper
from handoffd.daemon.executor_events import AnsweredHere, ReportedHere
from handoffd.daemon.fencing import Held
from handoffd.daemon.history_io import history_reply
from handoffd.daemon.ops import RunTimes
from handoffd.daemon.owner_nodes import NodeViews
from handoffd.daemon.owner_submit import Submissions
from handoffd.daemon.owner_waits import ACCEPT_NOTICE_DELAY as ACCEPT_NOTICE_DELAY
from handoffd.daemon.owner_waits import Waiter, Waiting
from handoffd.daemon.ports import MembersPort, NoReplication, Replicator, Resources, Timer
from handoffd.daemon.results import ResultFetcher, error_info
from handoffd.daemon.task_output import TaskOutputIO
from handoffd.observability.latency import Buckets
from handoffd.protocol import messages as m
from handoffd.protocol import report_read
from handoffd.protocol.columns import DispatchTable, ReportTable
from handoffd.protocol.messages_chunks import FetchResultChunks, ValueChunk
from handoffd.protocol.messages_code import GetTaskOutput, TaskOutputLive
from handoffd.protocol.messages_columns import (
    DispatchColumns,
    RepliedColumns,
    ReportColumns,
    reads_calls,
)
from handoffd.protocol.messages_observability import GetTaskHistory
from handoffd.protocol.messages_rebalance import TasksWithdrawn, WithdrawTasks
from handoffd.protocol.outcome_block import reads_blocks
from handoffd.scheduler import events as ev
from handoffd.scheduler import lane_entry
from handoffd.scheduler import retention as rt
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.states import RUN_RUNNING
from handoffd.store.chunks import chunk_size, is_far_key
from handoffd.store.store import ResultStore

log = logging.getLogger("handoffd.owner")

# What executing nodes send a run's owner: fenced by the run's term.
_FROM_EXECUTORS = (
    ReportColumns,
    RepliedColumns,
    m.DispatchReplied,
    m.TasksReported,
    TasksWithdrawn,
    TaskOutputLive,
)
_HERE = (AnsweredHere, ReportedHere)  # our own executor's, as records (``from_here``)


class OwnerIO(Submissions, NodeViews):
    """``scheduler``: the owner's pure state machine, shared with ``ReplicationIO`` (which reads it
    and adopts or drops runs only through ``restore_run`` and ``step_down`` here). ``resources``:
    this node's ledger; ``local_value``: a value in this node's result store, or None."""

    def __init__(
        self,
        port: MembersPort,
        scheduler: OwnerScheduler,
        *,
        resources: Resources,
        local_value: Callable[[str, str], bytes | None],
        keep_results_s: float,
        keep_status_s: float | None = None,
        limits: Limits | None = None,
        fetch_timeout: float | None = None,
    ) -> None:
        self.port = port
        self.scheduler = scheduler
        self.limits = limits if limits is not None else Limits()
        self._client_runs = intake.ClientRuns(self.limits, self._unfinished)
        self._resources = resources
        # Task output kept with the runs (before self.replication: its setter shares it).
        self.output = TaskOutputIO(port, self._state_of, scheduler.term_of, self.limits)
        self._submits: dict[str, Waiter] = {}  # run_id -> the submitting client
        # Released runs stay answerable (status) for keep_status_s, then every trace is dropped
        # here, in the scheduler and at the standbys: a long-lived daemon must not grow per run.
        self.retention = rt.RetentionPolicy(
            keep_results_s, rt.FORGET_AFTER_S if keep_status_s is None else keep_status_s
        )
        self.run_times = RunTimes()  # wall-clock times for `handoffctl runs`
        # /metrics: the scheduler's time per batch of events (placement included), and from a
        # dispatch to the attempt's start on its worker (from the reports).
        self.placement_seconds = Buckets()
        self.dispatch_seconds = Buckets()
        self.results = ResultFetcher(
            port,
            scheduler,
            local_value,
            fetch_timeout=fetch_timeout,
            chunk_bytes=chunk_size(self.limits.max_frame_bytes),
            max_value=self.limits.max_value_bytes,
            store=lambda: self.far_store,
        )
        # This node's store: a dispatch's big frames are kept there, pulled by reference
        # (store.chunks; the node sets it). None: they go inline.
        self.far_store: ResultStore | None = None
        # clients long-polling runs, and short runs not replicated yet (daemon.owner_waits)
        self.waiting = Waiting(port, scheduler, self.results, self._free_now)
        self.replication: Replicator = NoReplication()  # daemon.node.wire sets the node's
        self.results.on_lost = lambda run_id, ids: self._feed(ev.ValuesWanted(run_id, ids))
        self.code: CodeStore | None = None  # this node's code packages (set by the node)
        self._timers: dict[Any, Timer] = {}
        self.minority: str | None = None  # fenced: why we take no new runs (daemon/fencing.py)
        self.held = Held()  # fenced or just healed: dispatches and timer verdicts wait
        # What executing nodes' messages said, held until the transport's drain ends (``flush``,
        # the node calls it) when ``batch_reports``: one scheduler batch, so one placement pass
        # and one dispatch per node, for all the reports and answers a wake-up read. Any other
        # way into the scheduler feeds these first, so the scheduler sees every event in order.
        self.batch_reports = False
        # The one-task lane: a held one-task run answered from its report, its answer fed with
        # it (daemon.lane); a one-task run's submission placed without the pass when its task
        # is the only one to place (scheduler.lane_entry).
        self.lane = True
        self._pending: list[Any] = []
        # ``_pending`` holds more than our executor's answers to held one-task runs, which wait
        # for the next batch of any kind (their report's, at the latest the tick's): the drain's
        # end feeds it only then (``lane.may_defer``; ``_settle`` feeds everything).
        self._urgent = False
        # The runs whose release waits in ``_pending``: a report of one has its history written
        # here (``_on_table``), not with its event, which the scheduler sees after the release.
        self._releasing: set[str] = set()
        # How many of ``_pending``'s events are releases of closed runs (``_retain``, later): when
        # they are all it holds, a one-task submission does not feed them (``_feed_all``).
        self._light = 0
        # The dispatch-to-start latencies of the tables whose history the scheduler writes: it
        # appends them as it writes their rows (``TasksSucceeded.delays``), bucketed after each
        # of its batches, all of a drain's at once.
        self._delays: list[float] = []
        # Our own executor, taking a dispatch now (the node's ``_dispatch_here``); None: sent.
        self.here: Callable[[m.DispatchTasks | DispatchTable, list[Any], int], None] | None = None
        # seed the scheduler with ourselves; the newest version of us it was given (own_resources)
        self._own_version, self._own_capacity = resources.version, dict(resources.capacity)
        self._apply(
            self.scheduler.handle(
                ev.NodeUpdate(
                    port.name,
                    port.address,
                    True,
                    dict(resources.capacity),
                    dict(resources.free),
                    resources.version,
                ),
                port.now(),
            )
        )

    @property
    def replication(self) -> Replicator:
        return self._replication

    @replication.setter
    def replication(self, value: Replicator) -> None:
        self._replication = value
        self.output.replication = value
        self.waiting.replication = value

    def _state_of(self, run_id: str) -> str | None:
        st = self.scheduler.run_status(run_id)
        return st.state if st is not None else None

    def close(self) -> None:
        self.off_loop = None
        self.output.close()
        self.waiting.close()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- events into the scheduler --------------------------------------------------------------

    def _feed(self, event: Any) -> None:
        self._feed_all(event)

    def _feed_all(self, *events: Any) -> None:
        last = events[-1] if events else None
        lone = type(last) is ev.RunSubmitted and self.lane and len(last.specs) == 1
        pending = self._pending
        if pending:
            if lone and self._light == len(pending) and len(events) == 1:
                # Only ended runs' releases wait (the last run's, in W3): they stay for the next
                # batch (its report's), so this run's dispatch does not wait for them. Such a
                # release decides nothing a placement reads (the run's tasks left the ready
                # queue as it closed; it frees values and keeps the run's status only), and it
                # still comes before every event but a one-task submission.
                self._urgent = False
            else:
                self._pending = []
                self._urgent = False
                self._light = 0
                events = (*pending, *events)
                if self._releasing:
                    self._releasing.clear()
        started = perf_counter()
        if lone:
            # A one-task run's submission: placed without the pass when its task is all there
            # is to place, the same instructions and state (``scheduler.lane_entry``).
            instructions = lane_entry.submit_one(self.scheduler, events, self.port.now())
        else:
            instructions = self.scheduler.handle_batch(events, self.port.now())
        took = perf_counter() - started
        delays = self._delays
        if delays:  # (before the instructions: what they make us feed brings its own)
            self.dispatch_seconds.observe_all(delays)
            delays.clear()
        self._apply(instructions)
        # (after the instructions: a dispatch to our own executor goes before the bookkeeping)
        self.placement_seconds.observe(took)

    def _feed_reported(self, events: list[Any]) -> None:
        """Events of an executing node's message: now, or with the rest of the drain (``flush``)."""
        if self.batch_reports:
            self._pending.extend(events)
            self._urgent = True
        else:
            self._feed_all(*events)

    def flush(self) -> None:
        """The transport's drain ended: feed what its messages said, as one batch."""
        if self._urgent:
            self._feed_all()

    def _settle(self) -> None:
        """Feed everything held, deferred answers too: before the scheduler is used directly."""
        if self._pending:
            self._feed_all()

    def tick(self, now: float) -> None:
        self._settle()  # a release or an answer waiting for the next batch waits no longer
        self._retain(rt.TimePassed(), now)

    def _retain(self, event: rt.RetentionEvent, now: float, later: bool = False) -> None:
        for ins in self.retention.handle(event, now):
            if isinstance(ins, rt.ReleaseResults):
                if later and self.batch_reports:
                    pending = self._pending
                    if self._light == len(pending):  # (every event before it is such a release)
                        # The run ended and its end closed every task (none is in the ready
                        # queue): its release may wait past a submission (``_feed_all``).
                        run = self.scheduler.run_state(ins.run_id)
                        if (
                            run is not None
                            and run.state != RUN_RUNNING
                            and run.closing >= len(run.ordered)
                        ):
                            self._light += 1
                    pending.append(ev.ResultsReleased(ins.run_id))
                    self._releasing.add(ins.run_id)
                    self._urgent = True
                else:
                    self._feed(ev.ResultsReleased(ins.run_id))
                if ins.ended:
                    self._replication.released(ins.run_id)
            else:
                self.forget(ins.run_id)

    def _free_now(self, run_id: str) -> None:
        """The client collected the results (FreeRunRequest, or an outcome that carried them all
        with ``release``): free them before the retention time is up. With ``batch_reports`` the
        release joins the scheduler's next batch (the next drain's, or the tick's at the latest):
        after a short run's answer it was a batch of its own, one of a one-task run's four."""
        self._retain(rt.ResultsCollected(run_id), self.port.now(), later=True)
        self._replication.run_changed(run_id)

    def forget(self, run_id: str) -> None:
        """Drop a released run everywhere we keep it (scheduler, replication log, standbys, times)."""
        self._settle()
        self.scheduler.forget(run_id)
        self.output.forget(run_id)
        if self.scheduler.run_status(run_id) is None:
            self.replication.forget(run_id)
            self.run_times.forget(run_id)

    # -- replication's way in (RunOwner) ---------------------------------------------------------

    def restore_run(self, data: Any, term: int) -> int:
        """Own a run taken over (snapshot format, merged with the nodes' holdings, or the
        ``RunState`` built from that off the loop: ``daemon.replication_rebuild``) at ``term``;
        returns how many dispatches went out. The caller calls ``run_finished`` if it had ended."""
        self._settle()
        instructions = self.scheduler.restore_run(data, self.port.now(), term=term)
        self._apply(instructions)
        return sum(1 for i in instructions if isinstance(i, ev.Dispatch))

    def step_down(self, run_id: str) -> bool:
        """Another owner holds the run at a higher term: stop scheduling it, keep nothing of it."""
        self._settle()
        self._retain(rt.RunDropped(run_id), self.port.now())
        return self.scheduler.step_down(run_id)

    def hold_dispatch(self, run_id: str, held: bool) -> None:
        """The run's dispatch lease lapsed or holds again (``replication/lease.py``)."""
        self._settle()  # the scheduler sees events in the order they came (held reports first)
        self._apply(self.scheduler.hold_dispatch(run_id, held, self.port.now()))

    # -- messages in ------------------------------------------------------------------------------

    def _node_name_for(self, envelope: Any) -> str:
        return envelope.sender if envelope is not None else self.port.name

    def from_here(self, ins: AnsweredHere | ReportedHere) -> None:
        """Our own executor's answer or reports: records, not messages (``Executor.here``),
        fenced by their term and held in a takeover as its messages are."""
        replication = self._replication
        if replication.fenced(ins.run_id, ins.term):
            return
        node = self.port.name
        if type(ins) is AnsweredHere:
            if replication.held(ins, [], b"", None):
                return  # handed back through ``handle`` once the run is ours
            events = self._reported(node, ins)
            events.append(ev.DispatchAnswered(node, ins.run_id, ins.accepted, ins.refused))
            if (
                self.lane
                and self.batch_reports
                and lane.may_defer(ins, self.scheduler, self.waiting)
            ):
                self._pending.extend(events)  # with the next batch (its report's): not urgent
            else:
                self._feed_reported(events)
            return
        assert isinstance(ins, ReportedHere)
        values = ins.values  # (a takeover keeps them with it as its frames: those held inline)
        if None in values:
            frames = [v for v in values if v is not None]
        else:
            frames = list(values)  # type: ignore[arg-type]
        if replication.held(ins, frames, b"", None):
            return
        if self.lane and self.waiting.short.held:  # a held one-task run: its outcome now (lane)
            lane.answer_early(ins, self.port, self.scheduler, self.waiting, replication)
        self._on_table(ins.run_id, node, ins.table, ins.values, self._reported(node, ins))

    def handle(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        kind = type(msg)
        if kind in _HERE:  # our executor's, kept by a takeover meanwhile
            self.from_here(msg)
            return
        replication = self._replication
        if kind is m.SubmitAndWait or kind is m.SubmitRun:  # (every execute: not the chain below)
            if not replication.redirect(msg, conn):
                blocks = envelope is not None and reads_blocks(envelope.max_version)
                self._on_submit(msg, frames, conn, None, None, None, blocks)
            return
        if isinstance(msg, _FROM_EXECUTORS):
            term = envelope.term if envelope is not None else 0
            if replication.fenced(msg.run_id, term):
                return  # another owner holds the run at a higher term: we stepped down
            if replication.held(msg, frames, conn, envelope):
                return  # a run we are taking over: handed back once it is ours
        elif replication.redirect(msg, conn):
            return  # a client asked about a run another node owns
        if isinstance(msg, ReportColumns):
            self._on_report_columns(msg, frames, self._node_name_for(envelope))
        elif isinstance(msg, RepliedColumns):
            node = self._node_name_for(envelope)
            answer = reports.answered(node, msg)  # ColumnError: dropped by the node, logged
            events = self._reported(node, msg)
            events.append(answer)
            self._feed_reported(events)
        elif isinstance(msg, m.DispatchReplied):
            node = self._node_name_for(envelope)
            # Placement runs once for all of its events (and the drain's: _feed_reported).
            events = self._reported(node, msg)
            events.append(
                ev.DispatchAnswered(
                    node,
                    msg.run_id,
                    tuple((a.task_id, a.attempt) for a in msg.accepted),
                    tuple((r.task_id, r.attempt, r.reason) for r in msg.refused),
                )
            )
            self._feed_reported(events)
        elif isinstance(msg, TaskOutputLive):
            self.output.live(msg.run_id, self._node_name_for(envelope), msg.chunks)
        elif isinstance(msg, m.TasksReported):  # (a node of an earlier build: read as columns)
            table = ReportTable.of_rows(msg.reports, [r.frame for r in msg.reports], msg.outputs)
            node = self._node_name_for(envelope)
            events = self._reported(node, msg)
            self._on_table(msg.run_id, node, table, reports.frame_values(table, frames), events)
        elif isinstance(msg, TasksWithdrawn):
            node = self._node_name_for(envelope)
            events = self._reported(node, msg)
            events.append(
                ev.WithdrawAnswered(
                    node,
                    msg.run_id,
                    tuple((a.task_id, a.attempt) for a in msg.withdrawn),
                    tuple((a.task_id, a.attempt) for a in msg.kept),
                )
            )
            self._feed_reported(events)
        elif isinstance(msg, m.GetRunStatus):
            self.waiting.on_wait(msg.run_id, Waiter(conn, msg.request_id, wait=msg.wait))
        elif isinstance(msg, m.WaitRun):
            waiter = Waiter(conn, msg.request_id, True, msg.max_bytes, msg.release, msg.wait)
            self.waiting.on_wait(msg.run_id, waiter)
        elif isinstance(msg, m.FetchResults):
            if self.scheduler.term_of(msg.run_id) is None and replication.knows(msg.run_id):
                # Not ours (yet: a takeover): "known" keeps the client following the run.
                missing = tuple(msg.task_ids)
                self.port.reply(conn, m.Results(msg.request_id, msg.run_id, (), missing, (), True))
            else:
                self.results.on_fetch(msg, conn)
        elif isinstance(msg, FetchResultChunks):  # a big result, read by the client in chunks
            self.results.on_chunks(msg, conn)
        elif isinstance(msg, GetTaskOutput):
            self.output.on_get(msg, conn)
        elif isinstance(msg, m.CancelRun):
            self._feed(ev.CancelRequested(msg.run_id))
            self.port.reply(conn, self.waiting.status_reply(msg.request_id, msg.run_id))
        elif isinstance(msg, m.FreeRunRequest):
            self._free_now(msg.run_id)
            self.port.reply(conn, m.Ok(msg.request_id))
        elif isinstance(msg, GetTaskHistory):
            known = replication.knows(msg.run_id)
            self.port.reply(conn, history_reply(self.scheduler, self.port.name, msg, known))
        elif isinstance(msg, m.ListRuns):
            self.port.reply(conn, self.waiting.run_list(msg.request_id))
        else:
            log.debug("unexpected %s", type(msg).__name__)

    def _on_report_columns(self, msg: ReportColumns, frames: list[bytes], node: str) -> None:
        table, values = report_read.read(msg, frames)  # ColumnError: dropped by the node, logged
        self._on_table(msg.run_id, node, table, values, self._reported(node, msg))

    def _on_table(
        self, run_id: str, node: str, table: ReportTable, values: Any, events: list[Any]
    ) -> None:
        """A node's reports (ours: ``ReportedHere``), read as one table either way."""
        if table.outputs:
            self.output.reported(run_id, node, table.reports(), table.outputs)
        run = self.scheduler.run_state(run_id)
        later = False  # (whether the scheduler writes the reports' history, with their event)
        if run is not None:
            ours = run_id not in self._releasing
            later = reports.observe_table(run, node, table, self.dispatch_seconds, ours)
        reports.table_events(run_id, node, table, values, events, later, self._delays)
        self._feed_reported(events)

    # -- client requests ------------------------------------------------------------------------

    def _unfinished(self, run_id: str) -> bool:
        st = self.scheduler.run_status(run_id)
        return st is not None and st.state == "RUNNING"

    def run_finished(self, run_id: str) -> None:
        """The run ended (here, or it had when a takeover restored it): answer its waiters; its
        results are kept for the retention time from now."""
        self._retain(rt.RunEnded(run_id), self.port.now())
        self.output.run_ended(run_id)
        self.waiting.run_finished(run_id)
        self._replication.run_ended(run_id)

    def on_values(self, msg: m.ValuesFetched | ValueChunk, frames: list[Any]) -> bool:
        """A peer answered one of our result fetches; False if it was not ours."""
        return self.results.on_values(msg, frames)

    def on_holdings(self, msg: m.HoldingsProbed, sender: str) -> None:
        """A node answered one of our probes."""
        if self.scheduler.term_of(msg.run_id) != msg.term:
            return  # we no longer own the run at that term
        self._feed(
            ev.RunProbed(
                sender,
                msg.run_id,
                msg.request_id,
                tuple((a.task_id, a.attempt) for a in msg.running),
                tuple((h.task_id, h.size) for h in msg.held),
            )
        )

    # -- scheduler instructions out -------------------------------------------------------------

    def _apply(self, instructions: list[Any]) -> None:
        accepted: list[str] = []
        for ins in instructions:
            # by exact type, the frequent first: each instruction walked ~10 isinstance checks
            kind = type(ins)
            if kind is ev.Dispatch:
                self._dispatch(ins)
            elif kind is ev.SubmissionAccepted:
                accepted.append(ins.run_id)
            elif kind is ev.RunFinished:
                if ins.error is not None:
                    log.info(
                        "run %s %s: %s", ins.run_id, ins.state, ins.error, extra={"run": ins.run_id}
                    )
                elif log.isEnabledFor(logging.DEBUG):  # (a line a run: a cost at 500 runs/s)
                    log.debug("run %s %s", ins.run_id, ins.state, extra={"run": ins.run_id})
                self.run_times.ended(ins.run_id)
                self.run_finished(ins.run_id)
            elif kind is ev.FreeResults:
                if self.far_store is not None:  # the run's big arguments we kept (far_keeper)
                    keys = [k for k in self.far_store.tasks_of(ins.run_id) if is_far_key(k)]
                    if keys:
                        self.far_store.drop_values(ins.run_id, keys)
                self._replication.run_changed(ins.run_id)
                for name in ins.nodes:
                    address = self.port.address_of(name)
                    if address:
                        self.port.send(address, m.FreeRun(ins.run_id))
            elif kind is ev.FreeUnneededValues:
                address = self.port.address_of(ins.node)
                if address:
                    self.port.send(address, m.FreeValues(ins.run_id, ins.task_ids), term=ins.term)
            elif kind is ev.StartTimer:
                self._start_timer(ins.key, ins.delay)
            elif kind is ev.CancelAttempts:
                address = self.port.address_of(ins.node)
                if address:
                    self.port.send(
                        address,
                        m.CancelTasks(ins.run_id, tuple(m.TaskAttempt(t, a) for t, a in ins.items)),
                    )
            elif kind is ev.Withdraw:
                address = self.port.address_of(ins.node)
                if address:
                    items = tuple(m.TaskAttempt(t, a) for t, a in ins.items)
                    self.port.send(address, WithdrawTasks(ins.run_id, items), term=ins.term)
            elif kind is ev.ProbeRun:
                address = self.port.address_of(ins.node)
                if address:
                    probe = m.ProbeHoldings(
                        ins.probe,
                        ins.run_id,
                        ins.term,
                        self.port.name,
                        self.port.address,
                    )
                    self.port.send(address, probe, term=ins.term)
            elif kind is ev.SubmissionRejected:
                waiter = self._submits.pop(ins.run_id, None)
                info = error_info(ins.error)
                if waiter is not None and info is not None:
                    self.port.reply(waiter.conn, m.RunRejected(waiter.request_id, ins.run_id, info))
        for run_id in accepted:
            # After the batch's dispatches went out (ours is delivered on the next loop turn):
            # the standbys' round trip, which the client's answer waits for (module doc),
            # overlaps the first tasks instead of delaying or following them.
            waiter = self._submits.pop(run_id, None)
            if waiter is None:
                continue
            if waiter.may_skip_replication:
                self.waiting.short.hold(run_id, waiter)  # replicated if it outlasts REPLICATE_DELAY
            else:
                self.waiting.replicate(run_id, waiter)

    def _start_timer(self, key: Any, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.held.delays[key] = delay
        self._timers[key] = self.port.call_later(delay, self._timer_fired, key)

    def _timer_fired(self, key: Any) -> None:
        self._timers.pop(key, None)
        if not self.held.timer(key):
            self._feed(ev.TimerFired(key))

    def unfenced(self) -> None:
        self.held.release(self.scheduler.term_of, self._dispatch, self._timers, self._start_timer)

    def _dispatch(self, ins: ev.Dispatch) -> None:
        if self.held.dispatch(ins):
            return
        address = self.port.address_of(ins.node)
        if not address:
            log.warning("dispatch to unknown node %s dropped", ins.node)
            return
        run = self.scheduler.run_state(ins.run_id)
        packages = run.options.packages if run is not None else ()
        # our own executor takes what dispatch_here builds, never encoded (none here: sent)
        msg: m.DispatchTasks | DispatchColumns
        if address == self.port.address:
            if self.here is not None:
                built: tuple[m.DispatchTasks | DispatchTable, list[Any]] | None
                built = lane.one_table(ins, address, self.port.address_of, packages)
                if built is None:
                    built = dispatch_here(ins, address, self.port.address_of, packages)
                self.here(*built, ins.term)
                return
            msg, frames = dispatch_tasks(ins, address, self.port.address_of, packages)
        else:
            far = None if self.far_store is None else far_keeper(self.far_store, ins.run_id)
            calls = reads_calls(self.port.member(ins.node))  # (protocol 9: one-int calls)
            msg, frames = dispatch_message(
                ins, self.port.address, self.port.address_of, packages, far, calls
            )
            refused = oversize.owner_refusal(msg, frames, self.limits, self.port.name)
            if refused is not None:  # after this batch, as the node's own refusal would come
                self.port.call_soon(self._feed, reports.answered(ins.node, refused))
                return
        self.port.send(address, msg, frames, term=ins.term)
