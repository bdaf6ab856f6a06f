"""The owner's I/O shell: client control requests in, scheduler instructions out.

``OwnerScheduler`` (pure) decides; this class turns its instructions into wire messages (batched
per node), answers clients (submission, long-poll status, results, cancel), fetches results that
live on other nodes for the client, and frees a run's values everywhere once they were collected
or the retention time passed.

One exchange per run: ``SubmitAndWait`` (``Client.execute``) is answered once the run ends, with a
``RunOutcome`` that carries the status and the results this node holds (inline values kept by the
scheduler, values in our store), and with ``release`` frees them right after that reply; ``WaitRun``
(``Run.wait``) is the same long poll for a run already submitted. Results held elsewhere or past the
client's byte budget are listed as ``pending`` and fetched with ``FetchResults`` as before.
(Building outcomes' values and serving ``FetchResults`` live in ``daemon.results``.)
Safety (DESIGN 3.5): no client hears "accepted" or an outcome before the standbys acked the run's
snapshot (``ReplicationIO.run_accepted``; a run that ends first waits for that ack). Dispatch does
not wait for it: if we die before the standbys hold the run, the client was told nothing and gets a
ConnectionError, as for a SubmitRun; tasks that ran meanwhile were executions nobody was promised
(at-least-once), and a standby that did get the snapshot takes the run over as usual.

Probes (a report lost while its node stays ALIVE): a ``ProbeRun`` goes out as ``ProbeHoldings`` at
the run's current term, which changes nothing on the node (it already follows us at that term); the
node's ``HoldingsProbed`` comes back through ``on_holdings`` as ``RunProbed``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handoffd import errors, resources
from handoffd.daemon.results import ResultFetcher, error_info, outcome_values
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

if TYPE_CHECKING:
    from handoffd.daemon.node import Node

log = logging.getLogger("handoffd.owner")

TERMINAL = ("DONE", "FAILED", "CANCELLED")
FORGET_AFTER_S = 60.0  # a released run's status stays answerable this long
# A SubmitAndWait whose run is still going when the standbys hold it hears RunAccepted only if the
# run has not ended this much later: a short run's exchange stays two messages. (A client that
# loses us before it heard either follows nothing and gets a ConnectionError, as it would had we
# died just before answering a SubmitRun; this widens that window by at most this much.)
ACCEPT_NOTICE_DELAY = 0.02


def _pop_due(entries: dict[str, float], now: float, age: float) -> Iterator[str]:
    """Remove and yield the run ids stamped at least ``age`` before ``now``. ``entries`` is in time
    order (an entry is re-inserted, never updated in place), so only its due head is visited: at
    hundreds of runs a second, a minute of released runs was tens of thousands of entries."""
    while entries:
        run_id, at = next(iter(entries.items()))
        if now - at < age:
            return
        del entries[run_id]
        yield run_id


@dataclass(eq=False)
class _Waiter:
    """A client long-polling a run: answered when it ends, or by ``handle`` after its wait."""

    conn: bytes
    request_id: int
    outcome: bool = False  # answer with a RunOutcome (WaitRun, SubmitAndWait), else RunStatusReply
    max_bytes: int = 0  # results the outcome may carry
    release: bool = False  # free the results the outcome carried in full
    wait: float = 0.0
    handle: asyncio.TimerHandle | None = None
    notice: asyncio.TimerHandle | None = None  # a SubmitAndWait's delayed RunAccepted


class OwnerIO:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.scheduler = OwnerScheduler(node.name, now=node._clock())
        self._submits: dict[str, _Waiter] = {}  # run_id -> the submitting client
        self._waiters: dict[str, list[_Waiter]] = {}
        self._finished_at: dict[str, float] = {}
        # Released runs stay answerable (status) for FORGET_AFTER_S, then every trace is dropped
        # here, in the scheduler and at the standbys: a long-lived daemon must not grow per run.
        self._released_at: dict[str, float] = {}
        self.results = ResultFetcher(node, self.scheduler)
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        # seed the scheduler with ourselves
        self._apply(
            self.scheduler.handle(
                ev.NodeUpdate(
                    node.name,
                    node.address,
                    True,
                    dict(node.ledger.capacity),
                    dict(node.ledger.free),
                    node.ledger.version,
                ),
                node._clock(),
            )
        )

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                for timer in (waiter.handle, waiter.notice):
                    if timer is not None:
                        timer.cancel()

    # -- events into the scheduler --------------------------------------------------------------

    def _feed(self, event: Any) -> None:
        self._apply(self.scheduler.handle(event, self.node._clock()))

    def _feed_all(self, *events: Any) -> None:
        self._apply(self.scheduler.handle_batch(events, self.node._clock()))

    def member_update(self, member: m.MemberState) -> None:
        self.member_updates([member])

    def member_updates(self, members: list[m.MemberState]) -> None:
        """What membership says of these members (in order), as one scheduler batch: the only
        source of nodes in the scheduler's view besides ourselves."""
        events = [
            ev.NodeUpdate(
                member.name,
                member.address,
                member.status == m.ALIVE or member.status == m.SUSPECT,
                dict(member.capacity),
                dict(member.free),
                member.resource_version,
            )
            for member in members
            if member.name != self.node.name  # our own free resources come from the ledger
        ]
        if events:
            self._feed_all(*events)

    def tick(self, now: float) -> None:
        for run_id in _pop_due(self._finished_at, now, self.node.config.result_retention_s):
            self._release(run_id)
        for run_id in _pop_due(self._released_at, now, FORGET_AFTER_S):
            self.forget(run_id)

    def _release(self, run_id: str) -> None:
        self._feed(ev.ResultsReleased(run_id))
        status = self.scheduler.run_status(run_id)
        if status is not None and status.state in TERMINAL:
            self._released_at.pop(run_id, None)  # keep the dict in time order (tick)
            self._released_at[run_id] = self.node._clock()
            if self.node.replication is not None:
                self.node.replication.released(run_id)

    def _free_now(self, run_id: str) -> None:
        """The client collected the results (FreeRunRequest, or an outcome that carried them all
        with ``release``): free them before the retention time is up."""
        self._finished_at.pop(run_id, None)
        self._release(run_id)
        if self.node.replication is not None:
            self.node.replication.run_changed(run_id)

    def forget(self, run_id: str) -> None:
        """Drop a released run everywhere we keep it (scheduler, replication log, standbys)."""
        self.scheduler.forget(run_id)
        if self.scheduler.run_status(run_id) is None and self.node.replication is not None:
            self.node.replication.forget(run_id)

    def _node_name_for(self, envelope: Any) -> str:
        return envelope.sender if envelope is not None else self.node.name

    def handle(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        replication = self.node.replication
        if replication is not None:
            if isinstance(msg, (m.DispatchReplied, m.TasksReported)):
                if replication.fenced(msg.run_id, envelope):
                    return  # another owner holds the run at a higher term: we stepped down
            elif replication.redirect(msg, conn):
                return  # a client asked about a run another node owns
        if isinstance(msg, m.DispatchReplied):
            node = self._node_name_for(envelope)
            # One message, one scheduler batch: placement runs once for all of its events.
            self._feed_all(
                *self._reported(node, msg),
                ev.DispatchReplied(
                    node,
                    msg.run_id,
                    tuple((a.task_id, a.attempt) for a in msg.accepted),
                    tuple((r.task_id, r.attempt, r.reason) for r in msg.refused),
                ),
            )
        elif isinstance(msg, m.TasksReported):
            node = self._node_name_for(envelope)
            events: list[Any] = self._reported(node, msg)
            for report in msg.reports:
                if report.state == "DONE":
                    value = frames[report.frame] if 0 <= report.frame < len(frames) else None
                    events.append(
                        ev.TaskSucceeded(
                            msg.run_id,
                            report.task_id,
                            report.attempt,
                            node,
                            report.size,
                            bytes(value) if value is not None else None,
                        )
                    )
                elif report.state == "FAILED":
                    events.append(
                        ev.TaskErrored(
                            msg.run_id,
                            report.task_id,
                            report.attempt,
                            node,
                            report.kind,
                            report.exc_type,
                            report.message,
                            report.traceback,
                        )
                    )
            self._feed_all(*events)
        elif isinstance(msg, (m.SubmitRun, m.SubmitAndWait)):
            self._on_submit(msg, frames, conn)
        elif isinstance(msg, m.GetRunStatus):
            self._on_wait(msg.run_id, _Waiter(conn, msg.request_id, wait=msg.wait))
        elif isinstance(msg, m.WaitRun):
            waiter = _Waiter(conn, msg.request_id, True, msg.max_bytes, msg.release, msg.wait)
            self._on_wait(msg.run_id, waiter)
        elif isinstance(msg, m.FetchResults):
            self.results.on_fetch(msg, conn)
        elif isinstance(msg, m.CancelRun):
            self._feed(ev.CancelRun(msg.run_id))
            self.node.reply(conn, self._status_reply(msg.request_id, msg.run_id))
        elif isinstance(msg, m.FreeRunRequest):
            self._free_now(msg.run_id)
            self.node.reply(conn, m.Ok(msg.request_id))
        elif isinstance(msg, m.ListRuns):
            runs = []
            for run_id in self.scheduler.runs():
                st = self.scheduler.run_status(run_id)
                if st is None:
                    continue
                runs.append(m.RunSummary(run_id, st.state, self.node.name, dict(st.counts)))
            self.node.reply(conn, m.RunList(msg.request_id, tuple(runs)))
        else:
            log.debug("unexpected %s", type(msg).__name__)

    def _reported(self, node: str, msg: m.DispatchReplied | m.TasksReported) -> list[Any]:
        """The free resources a node's reply or report carries, as a scheduler event; none unless
        the node is ourselves or a live member: the scheduler's view holds members only, and a
        report must never add a node to it (issue 11: a forged report made a phantom node)."""
        if node != self.node.name:
            member = self.node.membership.get(node) if self.node.membership is not None else None
            if member is None or member.status not in (m.ALIVE, m.SUSPECT):
                return []
        return [
            ev.NodeUpdate(
                node,
                self.node.address_of(node) or "",
                True,
                self._capacity_of(node),
                dict(msg.free),
                msg.resource_version,
            )
        ]

    def _capacity_of(self, name: str) -> dict[str, float]:
        if name == self.node.name:
            return dict(self.node.ledger.capacity)
        member = self.node.membership.get(name) if self.node.membership is not None else None
        return dict(member.capacity) if member is not None else {}

    # -- client requests ------------------------------------------------------------------------

    def _on_submit(
        self, msg: m.SubmitRun | m.SubmitAndWait, frames: list[bytes], conn: bytes
    ) -> None:
        try:
            specs = self._specs(msg, frames)
            if msg.policy not in ("binpack", "spread", "first_fit"):
                raise errors.ValidationError(
                    "invalid_policy",
                    None,
                    f"policy {msg.policy!r} is not one of binpack, spread, first_fit",
                )
        except errors.HandoffError as exc:
            info = error_info(exc)
            assert info is not None
            self.node.reply(conn, m.RunRejected(msg.request_id, msg.run_id, info))
            return
        if isinstance(msg, m.SubmitAndWait):
            waiter = _Waiter(conn, msg.request_id, True, msg.max_bytes, msg.release, msg.wait)
        else:
            waiter = _Waiter(conn, msg.request_id)
        if self.scheduler.term_of(msg.run_id) is not None:
            self._accepted(msg.run_id, waiter)  # a retried submission
            return
        self._submits[msg.run_id] = waiter
        options = RunOptions(max_retries=msg.max_retries, policy=msg.policy, outputs=msg.outputs)
        self._feed(ev.SubmitRun(msg.run_id, tuple(specs), options))

    def _specs(self, msg: m.SubmitRun | m.SubmitAndWait, frames: list[bytes]) -> list[TaskSpec]:
        """Re-check what the client checked: a daemon never trusts a submission."""
        if len(frames) != len(msg.tasks):
            raise errors.ValidationError(
                "malformed", None, f"{len(msg.tasks)} functions but {len(frames)} code frames"
            )
        if not msg.tasks:
            raise errors.ValidationError(
                "empty_dag", None, "the DAG has no functions; add some with add_function"
            )
        ids: set[str] = set()
        specs = []
        for meta, payload in zip(msg.tasks, frames, strict=False):
            if meta.id in ids:
                raise errors.ValidationError("duplicate_id", meta.id, "two functions share this id")
            ids.add(meta.id)
            try:
                cost = resources.parse_cached(meta.cost)
            except resources.ResourceError as exc:
                raise errors.ValidationError("invalid_cost", meta.id, str(exc)) from None
            if meta.argument_inclusion not in ("variadic", "as_list"):
                raise errors.ValidationError(
                    "invalid_argument_inclusion",
                    meta.id,
                    "argument_inclusion must be 'variadic' or 'as_list'",
                )
            specs.append(
                TaskSpec(
                    id=meta.id,
                    deps=tuple(meta.deps),
                    cost=cost,
                    payload=bytes(payload),
                    argument_inclusion=meta.argument_inclusion,
                    node=meta.node,
                    collocate_with=meta.collocate_with,
                    inline=meta.inline,
                    max_retries=meta.max_retries,
                    timeout=meta.timeout,
                    priority=meta.priority,
                )
            )
        for spec in specs:
            for dep in spec.deps:
                if dep not in ids:
                    raise errors.ValidationError(
                        "missing_dependency", spec.id, f"depends on unknown function {dep!r}"
                    )
            if spec.collocate_with is not None and spec.collocate_with not in ids:
                raise errors.ValidationError(
                    "missing_dependency",
                    spec.id,
                    f"collocate_with names unknown function {spec.collocate_with!r}",
                )
        return specs

    def _status_reply(self, request_id: int, run_id: str) -> m.RunStatusReply:
        st = self.scheduler.run_status(run_id)
        if st is None:
            return m.RunStatusReply(request_id, run_id, "UNKNOWN", {}, {}, "", 0, (), None)
        return m.RunStatusReply(
            request_id,
            run_id,
            st.state,
            dict(st.counts),
            dict(st.placement),
            self.node.name,
            st.term,
            self.node.replication.standbys(run_id) if self.node.replication is not None else (),
            error_info(st.error),
        )

    def _accepted(self, run_id: str, waiter: _Waiter) -> None:
        """The standbys hold the run (or were given up on): tell the submitting client. A
        SubmitAndWait hears the outcome now if the run already ended, else RunAccepted first and
        the outcome when it ends."""
        if not waiter.outcome:
            self.node.reply(waiter.conn, m.RunAccepted(waiter.request_id, run_id, self.node.name))
            return
        st = self.scheduler.run_status(run_id)
        if st is not None and st.state not in TERMINAL and waiter.wait > 0:
            waiter.notice = asyncio.get_running_loop().call_later(
                min(ACCEPT_NOTICE_DELAY, waiter.wait / 2), self._notice, run_id, waiter
            )
        self._on_wait(run_id, waiter)

    def _notice(self, run_id: str, waiter: _Waiter) -> None:
        waiter.notice = None
        self.node.reply(waiter.conn, m.RunAccepted(waiter.request_id, run_id, self.node.name))

    def _on_wait(self, run_id: str, waiter: _Waiter) -> None:
        st = self.scheduler.run_status(run_id)
        replication = self.node.replication
        taking_over = replication is not None and replication.taking_over(run_id)
        if waiter.wait <= 0 or (st is None and not taking_over) or (st and st.state in TERMINAL):
            self._answer(run_id, waiter)
            return
        loop = asyncio.get_running_loop()
        waiter.handle = loop.call_later(min(waiter.wait, 60.0), self._wait_over, run_id, waiter)
        self._waiters.setdefault(run_id, []).append(waiter)

    def _wait_over(self, run_id: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(run_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[run_id]
        self._answer(run_id, waiter)

    def _answer(self, run_id: str, waiter: _Waiter) -> None:
        if waiter.notice is not None:
            waiter.notice.cancel()  # the outcome says more
            waiter.notice = None
        if not waiter.outcome:
            self.node.reply(waiter.conn, self._status_reply(waiter.request_id, run_id))
            return
        st = self.scheduler.run_status(run_id)
        if st is None:
            empty = m.RunOutcome(
                waiter.request_id, run_id, "UNKNOWN", {}, {}, "", 0, (), None, (), (), False
            )
            self.node.reply(waiter.conn, empty)
            return
        ids: list[str] = []
        values: list[bytes] = []
        pending: list[str] = []
        if st.state == "DONE" and (waiter.max_bytes > 0 or waiter.release):
            ids, values, pending = outcome_values(
                self.node, self.scheduler, run_id, waiter.max_bytes
            )
        released = waiter.release and st.state == "DONE" and not pending
        replication = self.node.replication
        outcome = m.RunOutcome(
            waiter.request_id,
            run_id,
            st.state,
            dict(st.counts),
            dict(st.placement),
            self.node.name,
            st.term,
            replication.standbys(run_id) if replication is not None else (),
            error_info(st.error),
            tuple(ids),
            tuple(pending),
            released,
        )
        self.node.reply(waiter.conn, outcome, values)
        if released:
            # The client holds every value it wants (the reply is queued on its connection; a
            # client that died meanwhile wanted nothing more): no FreeRunRequest follows.
            self._free_now(run_id)

    def _run_finished(self, run_id: str) -> None:
        self._finished_at.pop(run_id, None)  # keep the dict in time order (tick)
        self._finished_at[run_id] = self.node._clock()
        for waiter in self._waiters.pop(run_id, []):
            if waiter.handle is not None:
                waiter.handle.cancel()
            self._answer(run_id, waiter)

    def on_values(self, msg: m.ValuesFetched, frames: list[bytes]) -> bool:
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
            if isinstance(ins, ev.Dispatch):
                self._dispatch(ins)
            elif isinstance(ins, ev.CancelTasks):
                address = self.node.address_of(ins.node)
                if address:
                    self.node.send(
                        address,
                        m.CancelTasks(ins.run_id, tuple(m.TaskAttempt(t, a) for t, a in ins.items)),
                    )
            elif isinstance(ins, ev.ProbeRun):
                address = self.node.address_of(ins.node)
                if address:
                    probe = m.ProbeHoldings(
                        ins.probe,
                        ins.run_id,
                        ins.term,
                        self.node.name,
                        self.node.address,
                    )
                    self.node.send(address, probe, term=ins.term)
            elif isinstance(ins, ev.StartTimer):
                self._start_timer(ins.key, ins.delay)
            elif isinstance(ins, ev.RunAccepted):
                accepted.append(ins.run_id)
            elif isinstance(ins, ev.RunRejected):
                waiter = self._submits.pop(ins.run_id, None)
                info = error_info(ins.error)
                if waiter is not None and info is not None:
                    self.node.reply(waiter.conn, m.RunRejected(waiter.request_id, ins.run_id, info))
            elif isinstance(ins, ev.RunFinished):
                if ins.error is not None:
                    log.info("run %s %s: %s", ins.run_id, ins.state, ins.error)
                else:  # one line per successful run was a noticeable cost at 500 runs/s
                    log.debug("run %s %s", ins.run_id, ins.state)
                self._run_finished(ins.run_id)
            elif isinstance(ins, ev.FreeValues):
                address = self.node.address_of(ins.node)
                if address:
                    self.node.send(address, m.FreeValues(ins.run_id, ins.task_ids), term=ins.term)
            elif isinstance(ins, ev.FreeResults):
                if self.node.replication is not None:
                    self.node.replication.run_changed(ins.run_id)
                for name in ins.nodes:
                    address = self.node.address_of(name)
                    if address:
                        self.node.send(address, m.FreeRun(ins.run_id))
        for run_id in accepted:
            # After the batch's dispatches went out (ours is delivered on the next loop turn):
            # the standbys' round trip, which the client's answer waits for (module doc),
            # overlaps the first tasks instead of delaying or following them.
            waiter = self._submits.pop(run_id, None)
            if waiter is None:
                continue
            answer = functools.partial(self._accepted, run_id, waiter)
            if self.node.replication is not None:
                self.node.replication.run_accepted(run_id, answer)  # DESIGN 3.5, bounded
            else:
                answer()

    def _start_timer(self, key: Any, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._timer_fired, key)

    def _timer_fired(self, key: Any) -> None:
        self._timers.pop(key, None)
        self._feed(ev.TimerFired(key))

    def _dispatch(self, ins: Any) -> None:
        address = self.node.address_of(ins.node)
        if not address:
            log.warning("dispatch to unknown node %s dropped", ins.node)
            return
        frames: list[bytes] = []
        frame_of: dict[int, int] = {}

        def add_frame(data: bytes) -> int:
            index = frame_of.get(id(data))
            if index is None:
                index = len(frames)
                frames.append(data)
                frame_of[id(data)] = index
            return index

        items = []
        for item in ins.items:
            flat: list[m.InputRef] = []
            self._flatten(item.inputs, -1, flat, add_frame)
            items.append(
                m.DispatchItem(
                    item.task_id,
                    item.attempt,
                    dict(item.cost),
                    item.argument_inclusion,
                    item.timeout,
                    add_frame(item.payload),
                    tuple(flat),
                )
            )
        self.node.send(
            address,
            m.DispatchTasks(ins.run_id, self.node.address, tuple(items)),
            frames,
            term=ins.term,
        )

    def _flatten(
        self, refs: Any, parent: int, out: list[m.InputRef], add_frame: Callable[[bytes], int]
    ) -> None:
        for ref in refs:
            if isinstance(ref, ev.InlineRef):
                index = len(out)
                out.append(
                    m.InputRef(
                        "inline",
                        ref.task_id,
                        (),
                        add_frame(ref.payload),
                        ref.argument_inclusion,
                        parent,
                    )
                )
                self._flatten(ref.inputs, index, out, add_frame)
            else:
                addresses = tuple(a for a in (self.node.address_of(n) for n in ref.locations) if a)
                frame = add_frame(ref.value) if ref.value is not None else -1
                out.append(m.InputRef("value", ref.task_id, addresses, frame, "variadic", parent))
