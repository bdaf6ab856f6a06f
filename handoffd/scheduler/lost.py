"""The owner's handling of messages lost while their node stays ALIVE (``OwnerScheduler`` mixin).

Lost messages while the node stays ALIVE (the transport may drop a peer's reconnect queue around a
partition heal): an unanswered dispatch counts as lost after ACK_TIMEOUT (the ``("ack", node)``
timer). An answered task whose report is lost is found by probing: every PROBE_INTERVAL the
``("probe",)`` timer asks each node that has had an answered task of a run for longer than that what
it runs and holds for the run (``ProbeRun``; the answer is ``RunProbed``). An attempt missing from
two answers in a row is resolved (one is not enough: a node answers at once but batches its reports,
so a report can be in flight behind the answer): adopted as succeeded at that node when its store
holds the result, otherwise counted as a capped loss and placed again.

Pure, like the scheduler it is part of: timers are instructions (``StartTimer``), answers are events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from handoffd.scheduler.cluster_view import ClusterView
from handoffd.scheduler.events import (
    DispatchedTask,
    Instruction,
    ProbeRun,
    RunFinished,
    RunProbed,
    StartTimer,
)
from handoffd.scheduler.run import ACTIVE, ASSIGNED, RUN_DONE, RUN_RUNNING, RunState, TaskRecord

log = logging.getLogger("handoffd.scheduler")

#: Seconds a dispatch may go unanswered (no DispatchAnswered, no report) before it counts as lost: the
#: transport may drop a DispatchTasks or its reply (a reconnect queue after a partition heal) while the
#: node stays ALIVE. A node answers at once, queued tasks included, so this is only transit time.
ACK_TIMEOUT = 3.0
#: Seconds between probes of the nodes running our answered tasks, and how long a task must have
#: been out before its node is probed about it: a lost report is found after two to three of these.
PROBE_INTERVAL = 5.0
REFUSAL_BACKOFF = 0.05  # seconds before refused tasks are re-placed when the view has not changed


@dataclass
class Outbox:
    """Instructions collected during one ``handle`` call; dispatches and cancels batched per node."""

    direct: list[Instruction] = field(default_factory=list)
    cancels: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    dispatches: dict[tuple[str, str], list[DispatchedTask]] = field(default_factory=dict)
    frees: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # values to delete


@dataclass
class Probe:
    """One ``ProbeRun`` to a (node, run): what its answer will judge."""

    seq: int  # the probe's number: an answer to any other is stale
    covered: dict[str, int]  # task id -> attempt out on the node (answered) when the probe went
    suspects: dict[str, int]  # task id -> attempt missing from the previous answer
    answered: bool = False  # a duplicate answer must not count as a second probe


class LostMessages:
    """Ack timers per node and the probe timer; their state lives on the scheduler."""

    probe_interval: float
    _now: float
    _view: ClusterView
    _runs: dict[str, RunState]
    _out: Outbox
    _ack_timers: set[str]
    _active: dict[tuple[str, str], float]
    _probe_timer: bool
    _probe_due: float
    _probes: dict[tuple[str, str], Probe]
    _probe_seq: int

    if TYPE_CHECKING:  # the scheduler's own decisions

        def _cancel(self, cancels: list[tuple[str, str, int]], run: RunState) -> None: ...
        def _check_losses(self, run: RunState, rec: TaskRecord) -> None: ...
        def _free(self, run: RunState) -> None: ...
        def _term_of(self, run_id: str) -> int: ...

    def _check_answers(self, node: str) -> None:
        """The node's ack timer fired: dispatches unanswered for ACK_TIMEOUT are lost; re-arm for
        the rest (an early or repeated firing only re-arms)."""
        self._ack_timers.discard(node)
        for run_id, task_id, attempt in self._view.unanswered(node, self._now - ACK_TIMEOUT):
            run = self._runs.get(run_id)
            rec = run.tasks.get(task_id) if run is not None else None
            if run is None or rec is None or run.state != RUN_RUNNING:
                continue
            if rec.state != ASSIGNED or rec.attempt != attempt or rec.node != node:
                continue  # a report overtook it or it moved on
            log.warning(
                "run %s task %s attempt %d: no answer from %s in %.1f s; dispatch counted lost",
                run_id,
                task_id,
                attempt,
                node,
                ACK_TIMEOUT,
            )
            # If only the reply was lost the node has it: stop it (its report would be stale).
            self._out.cancels.setdefault((node, run_id), []).append((task_id, attempt))
            rec.losses += 1
            cause = f"no answer from {node} in {ACK_TIMEOUT} s (attempt {attempt})"
            self._cancel(run.make_ready(rec, self._now, cause), run)
            self._check_losses(run, rec)
        oldest = self._view.oldest_unacked(node)
        if oldest is not None:
            self._arm_ack_timer(node, max(oldest + ACK_TIMEOUT - self._now, REFUSAL_BACKOFF))

    def _arm_ack_timer(self, node: str, delay: float) -> None:
        self._ack_timers.add(node)
        self._out.direct.append(StartTimer(("ack", node), delay))

    def _probe_nodes(self) -> None:
        """The probe timer fired: probe each (node, run) with an answered task out for longer than
        the probe interval; re-arm while tasks are out (an early firing only re-arms)."""
        self._probe_timer = False
        if not self._active:
            self._probes.clear()
            return
        if self._now < self._probe_due - REFUSAL_BACKOFF:
            self._arm_probe_timer(self._probe_due - self._now)
            return
        cutoff = self._now - self.probe_interval
        covered: dict[tuple[str, str], dict[str, int]] = {}
        for (run_id, task_id), since in self._active.items():
            if since > cutoff:
                continue
            rec = self._runs[run_id].tasks[task_id]
            node = rec.node
            assert node is not None
            if (run_id, task_id, rec.attempt) in self._view.unacked.get(node, {}):
                continue  # not answered yet: the ack timer's business
            covered.setdefault((node, run_id), {})[task_id] = rec.attempt
        probes: dict[tuple[str, str], Probe] = {}
        for (node, run_id), tasks in covered.items():
            old = self._probes.get((node, run_id))
            self._probe_seq += 1
            probes[(node, run_id)] = Probe(self._probe_seq, tasks, old.suspects if old else {})
            self._out.direct.append(ProbeRun(node, run_id, self._term_of(run_id), self._probe_seq))
        self._probes = probes  # pairs no longer covered are forgotten; their answers are stale
        self._arm_probe_timer(self.probe_interval)

    def _arm_probe_timer(self, delay: float) -> None:
        self._probe_timer = True
        self._probe_due = self._now + delay
        self._out.direct.append(StartTimer(("probe",), delay))

    def _on_probed(self, ev: RunProbed) -> None:
        """A node answered a probe: an attempt it neither runs nor queues on two answers in a row
        lost its report; adopt the result if the node holds it, else count a loss and re-place."""
        probe = self._probes.get((ev.node, ev.run_id))
        if probe is None or probe.seq != ev.probe or probe.answered:
            return  # superseded, forgotten or a duplicate
        probe.answered = True
        run = self._runs.get(ev.run_id)
        if run is None or run.state != RUN_RUNNING:
            return
        running = {(task_id, attempt) for task_id, attempt in ev.running}
        held = {task_id: size for task_id, size in ev.held}
        suspects: dict[str, int] = {}
        for task_id, attempt in probe.covered.items():
            rec = run.tasks.get(task_id)
            if rec is None or rec.state not in ACTIVE or rec.attempt != attempt:
                continue  # its report came meanwhile
            if rec.node != ev.node or (task_id, attempt) in running:
                continue
            if probe.suspects.get(task_id) != attempt:
                suspects[task_id] = attempt  # its report may be in flight behind this answer
                continue
            if task_id in held:
                log.warning(
                    "run %s task %s attempt %d: %s holds its result but the report never came; "
                    "adopted",
                    run.run_id,
                    task_id,
                    attempt,
                    ev.node,
                )
                run.holders.add(ev.node)
                self._cancel(run.succeeded(rec, ev.node, held[task_id], None, self._now), run)
                self._free(run)
                if run.state == RUN_DONE:
                    self._out.direct.append(RunFinished(run.run_id, "DONE"))
                    return
            else:
                log.warning(
                    "run %s task %s attempt %d: %s neither runs nor holds it on two probes; "
                    "report counted lost",
                    run.run_id,
                    task_id,
                    attempt,
                    ev.node,
                )
                rec.losses += 1
                cause = f"report from {ev.node} lost (attempt {attempt})"
                self._cancel(run.make_ready(rec, self._now, cause), run)
                self._check_losses(run, rec)
                if run.state != RUN_RUNNING:
                    return
        probe.suspects = suspects
