# cython: annotation_typing=False
"""Messages lost while their node stays ALIVE: a part of the owner's scheduler (``OwnerScheduler``).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from handoffd.scheduler.cluster_view import ClusterView
from handoffd.scheduler.delays import REFUSAL_BACKOFF
from handoffd.scheduler.events import ProbeRun, RunProbed, StartTimer
from handoffd.scheduler.outbox import Outbox
from handoffd.scheduler.run import (
    ACTIVE,
    ASSIGNED,
    RUN_DONE,
    RUN_RUNNING,
    RUNNING,
    RunState,
    TaskRecord,
)

log = logging.getLogger("handoffd.scheduler")

#: Seconds a dispatch may go unanswered (no DispatchAnswered, no report) before it counts as lost: the
#: transport may drop a DispatchTasks or its reply (a reconnect queue after a partition heal) while the
#: node stays ALIVE. A node answers at once, queued tasks included, so this is only transit time.
ACK_TIMEOUT = 3.0
#: Seconds between probes of the nodes running our answered tasks, and how long a task must have
#: been out before its node is probed about it: a lost report is found after two to three of these.
PROBE_INTERVAL = 5.0


@dataclass
class Probe:
    """One ``ProbeRun`` to a (node, run): what its answer will judge."""

    seq: int  # the probe's number: an answer to any other is stale
    covered: dict[str, int]  # task id -> attempt out on the node (answered) when the probe went
    suspects: dict[str, int]  # task id -> attempt missing from the previous answer
    answered: bool = False  # a duplicate answer must not count as a second probe


class LostMessages:
    """The ack timers (one per node with unanswered dispatches), the probe timer (while attempts are
    out) and the probes in flight. A part of the scheduler: it reads the cluster view and writes the
    outbox it shares, looks runs up through ``run_of`` and leaves each verdict's consequences to the
    scheduler (``count_loss``: the attempt is lost, place it again; ``adopt``: its result is at the
    node, as if it had reported)."""

    def __init__(
        self,
        view: ClusterView,
        out: Outbox,
        *,
        run_of: Callable[[str], RunState | None],
        count_loss: Callable[[RunState, TaskRecord, str], None],
        adopt: Callable[[RunState, TaskRecord, str, int], None],
        probe_interval: float = PROBE_INTERVAL,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self.probe_interval = probe_interval
        self.ack_timeout = ack_timeout
        self._view = view
        self._out = out
        self._run_of = run_of
        self._count_loss = count_loss
        self._adopt = adopt
        self._ack_timers: set[str] = set()  # nodes with an ("ack", node) timer running
        # What went out, one entry a dispatch (run id, its task ids, when): a task coming back
        # writes nothing here; its record's state says whether it is still out, read when the
        # watch is (``out_since``). Invariant: every ASSIGNED/RUNNING (run, task) is in an entry,
        # the newest holding it says since when (``went_out``'s time); the rest are stale.
        self._sent: list[tuple[str, tuple[str, ...], float]] = []
        # Invariant: the ("probe",) timer runs (due at _probe_due) whenever _sent is not empty.
        self._probe_timer = False
        self._probe_due = 0.0
        self._probes: dict[tuple[str, str], Probe] = {}  # (node, run) -> the latest probe there
        self._probe_seq = 0

    # -- what the scheduler tells us ---------------------------------------------------------------

    def went_out(self, run_id: str, task_id: str, now: float) -> None:
        """The task became ASSIGNED/RUNNING (dispatched, or out on a node when we took the run over)."""
        self._sent.append((run_id, (task_id,), now))
        if not self._probe_timer:
            self._arm_probe_timer(self.probe_interval, now)

    def went_out_all(self, run_id: str, task_ids: tuple[str, ...], now: float) -> None:
        """``went_out`` of each of ``task_ids`` (tasks of ``run_id``, a block dispatched at
        ``now``, their ids as the block's books collected them): one entry for them all."""
        if not task_ids:
            return
        # (tuples of atoms, as the entries: the collector stops tracking them, where a list a
        # dispatch stayed tracked until the next read)
        self._sent.append((run_id, task_ids, now))
        if not self._probe_timer:
            self._arm_probe_timer(self.probe_interval, now)

    def out_since(self) -> dict[tuple[str, str], float]:
        """Every (run, task) out (ASSIGNED/RUNNING as its record says) -> since when, in the order
        they went out (a task sent again counts from its newest dispatch). Compacts the entries
        to what is still out: a read costs the entries since the last read, not a task's return."""
        sent = self._sent
        if not sent:
            return {}
        run_of = self._run_of
        runs: dict[str, Any] = {}
        seen_of: dict[str, set[str]] = {}  # a run's task ids met (no (run, task) tuple a task)
        found: list[tuple[str, str, float]] = []
        # Newest first: a task's newest entry is the one its time is read from.
        for e in range(len(sent) - 1, -1, -1):
            run_id, task_ids, since = sent[e]
            run = runs.get(run_id, False)
            if run is False:
                run = runs[run_id] = run_of(run_id)
                seen_of[run_id] = set()
            if run is None:
                continue  # not ours any more (``drop_run`` forgets it at once; this is a guard)
            tasks = run.tasks
            seen = seen_of[run_id]
            for i in range(len(task_ids) - 1, -1, -1):
                task_id = task_ids[i]
                if task_id in seen:
                    continue
                seen.add(task_id)
                rec = tasks.get(task_id)
                if rec is not None and (rec.state == ASSIGNED or rec.state == RUNNING):
                    found.append((run_id, task_id, since))
        found.reverse()
        out: dict[tuple[str, str], float] = {}
        kept: list[tuple[str, list[str], float]] = []
        for run_id, task_id, since in found:
            out[(run_id, task_id)] = since
            if kept and kept[-1][0] == run_id and kept[-1][2] == since:
                kept[-1][1].append(task_id)
            else:
                kept.append((run_id, [task_id], since))
        self._sent = [(run_id, tuple(ids), since) for run_id, ids, since in kept]
        return out

    def out_of(self, run_id: str) -> list[str]:
        """The run's tasks out on nodes (ASSIGNED/RUNNING): the dispatches a run's end cancels."""
        return [task for run, task in self.out_since() if run == run_id]

    def sent(self, node: str) -> None:
        """A dispatch went to ``node`` (the cluster view records it until answered)."""
        if node not in self._ack_timers:
            self._arm_ack_timer(node, self.ack_timeout)

    def node_lost(self, node: str) -> None:
        """``node`` is DEAD or LEFT: answers to our probes there are moot."""
        self._probes = {k: p for k, p in self._probes.items() if k[0] != node}

    def drop_run(self, run_id: str, task_ids: Iterable[str]) -> None:
        """The run is no longer ours: forget its tasks and probes."""
        self._sent = [e for e in self._sent if e[0] != run_id]
        self._probes = {k: p for k, p in self._probes.items() if k[1] != run_id}

    # -- timers and answers ------------------------------------------------------------------------

    def check_answers(self, node: str, now: float) -> bool:
        """The node's ack timer fired: dispatches unanswered for ACK_TIMEOUT are lost; re-arm for
        the rest (an early or repeated firing only re-arms). True when some were given up: their
        cost no longer holds the node's resources in our view, so placement may find room."""
        self._ack_timers.discard(node)
        late = self._view.unanswered(node, now - self.ack_timeout)
        for run_id, task_id, attempt in late:
            run = self._run_of(run_id)
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
                self.ack_timeout,
            )
            # If only the reply was lost the node has it: stop it (its report would be stale).
            self._out.cancels.setdefault((node, run_id), []).append((task_id, attempt))
            self._count_loss(
                run, rec, f"no answer from {node} in {self.ack_timeout} s (attempt {attempt})"
            )
        oldest = self._view.oldest_unacked(node)
        if oldest is not None:
            self._arm_ack_timer(node, max(oldest + self.ack_timeout - now, REFUSAL_BACKOFF))
        return bool(late)

    def _arm_ack_timer(self, node: str, delay: float) -> None:
        self._ack_timers.add(node)
        self._out.direct.append(StartTimer(("ack", node), delay))

    def probe_nodes(self, now: float) -> None:
        """The probe timer fired: probe each (node, run) with an answered task out for longer than
        the probe interval; re-arm while tasks are out (an early firing only re-arms)."""
        self._probe_timer = False
        out_since = self.out_since()
        if not out_since:
            self._probes.clear()
            return
        if now < self._probe_due - REFUSAL_BACKOFF:
            self._arm_probe_timer(self._probe_due - now, now)
            return
        cutoff = now - self.probe_interval
        covered: dict[tuple[str, str], dict[str, int]] = {}
        terms: dict[str, int] = {}
        for (run_id, task_id), since in out_since.items():
            if since > cutoff:
                continue
            run = self._run_of(run_id)
            assert run is not None, f"run {run_id} has tasks out but is not ours"
            rec = run.tasks[task_id]
            node = rec.node
            assert node is not None
            if self._view.waiting(node, run_id, task_id, rec.attempt):
                continue  # not answered yet: the ack timer's business
            covered.setdefault((node, run_id), {})[task_id] = rec.attempt
            terms[run_id] = run.term
        probes: dict[tuple[str, str], Probe] = {}
        for (node, run_id), tasks in covered.items():
            old = self._probes.get((node, run_id))
            self._probe_seq += 1
            probes[(node, run_id)] = Probe(self._probe_seq, tasks, old.suspects if old else {})
            self._out.direct.append(ProbeRun(node, run_id, terms[run_id], self._probe_seq))
        self._probes = probes  # pairs no longer covered are forgotten; their answers are stale
        self._arm_probe_timer(self.probe_interval, now)

    def _arm_probe_timer(self, delay: float, now: float) -> None:
        self._probe_timer = True
        self._probe_due = now + delay
        self._out.direct.append(StartTimer(("probe",), delay))

    def restarted(self, node: str, now: float) -> None:
        """``node`` restarted before it was declared DEAD: the old process's attempts (answered or
        not) are gone with it, unless they reached the new one. Probe each run with attempts out
        there now; its one answer settles them (no second probe: a new process holds no report
        of the old one's), so they are placed again at once instead of after the ack timeout or
        two probe intervals."""
        covered: dict[str, dict[str, int]] = {}
        terms: dict[str, int] = {}
        for run_id, task_id in self.out_since():
            run = self._run_of(run_id)
            rec = run.tasks.get(task_id) if run is not None else None
            if run is None or rec is None or rec.node != node or run.state != RUN_RUNNING:
                continue
            covered.setdefault(run_id, {})[task_id] = rec.attempt
            terms[run_id] = run.term
        for run_id, tasks in covered.items():
            self._probe_seq += 1
            self._probes[(node, run_id)] = Probe(self._probe_seq, tasks, dict(tasks))
            self._out.direct.append(ProbeRun(node, run_id, terms[run_id], self._probe_seq))
        if covered:
            log.info("%s restarted: probing %d run(s) with attempts out there", node, len(covered))

    def probed(self, ev: RunProbed) -> None:
        """A node answered a probe: an attempt it neither runs nor queues on two answers in a row
        lost its report; adopt the result if the node holds it, else count a loss and re-place."""
        probe = self._probes.get((ev.node, ev.run_id))
        if probe is None or probe.seq != ev.probe or probe.answered:
            return  # superseded, forgotten or a duplicate
        probe.answered = True
        run = self._run_of(ev.run_id)
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
                self._adopt(run, rec, ev.node, held[task_id])
                if run.state == RUN_DONE:
                    return
            else:
                log.warning(
                    "run %s task %s attempt %d: %s neither runs nor holds it on two probes (or "
                    "one after it restarted); counted lost",
                    run.run_id,
                    task_id,
                    attempt,
                    ev.node,
                )
                # Unanswered (a restart's probe covers those too): its answer is not coming.
                self._view.answered(ev.node, (run.run_id, task_id, attempt))
                self._count_loss(run, rec, f"report from {ev.node} lost (attempt {attempt})")
                if run.state != RUN_RUNNING:
                    return
        probe.suspects = suspects

    # -- invariants --------------------------------------------------------------------------------

    def validate(self, out: set[tuple[str, str]]) -> None:
        """Raise AssertionError unless ``out`` (the ASSIGNED/RUNNING (run, task) pairs recomputed
        from the runs) is what we track, the probe timer runs while anything is out and every node
        with unanswered dispatches has an ack timer."""
        for node, batches in self._view.unacked.items():
            assert not batches or node in self._ack_timers, f"unacked on {node} without a timer"
        tracked = self.out_since()
        assert out == set(tracked), f"out {sorted(tracked)} != {sorted(out)}"
        assert not self._sent or self._probe_timer, "dispatches watched without a probe timer"
