"""The owner's shell taking a submission in: checks, the run's build, the scheduler's event.

A base class of ``OwnerIO`` (``daemon.owner``), split from it at its size limit. A submission
checked by the owner's shell (``validation.wire_specs``: the DAG's rules, cycles included) gets
its graph built here with ``acyclic=True`` (``scheduler.graph.build_graph``): the scheduler would
otherwise build it again with its own cycle walk, the topological work done twice. One of
``OFF_LOOP_TASKS`` tasks or more that came whole (one message, not an upload) is checked and
built in the upload thread (``upload_intake.PREPARER``, through ``off_loop``, which the node sets)
as an upload is: the loop only feeds the scheduler the untouched run when it comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from handoffd import errors, intake, validation
from handoffd.config import Limits
from handoffd.daemon.code import CodeStore, store_packages
from handoffd.daemon.intake_columns import plain_graph_of, task_ids
from handoffd.daemon.ops import RunTimes
from handoffd.daemon.owner_waits import Waiter, Waiting
from handoffd.daemon.ports import MembersPort
from handoffd.daemon.results import error_info
from handoffd.daemon.upload_intake import Prepared, run_options
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.scheduler.graph import TaskGraph, build_graph
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.run import RunState
from handoffd.spec import TaskSpec

log = logging.getLogger("handoffd.owner")

# Tasks from which a submission that came whole is checked and built off the loop: its checks,
# graph and records cost the loop ~9 us a task (a 5,000-task layered DAG: ~45 ms in one go); a
# smaller one stays on the loop, where a thread's round trip would be most of its intake.
OFF_LOOP_TASKS = 1000

#: Checks and builds a submission in a thread, then calls back on the loop with the result
#: (``upload_intake.Preparer.submit_whole``, bound by the node).
OffLoop = Callable[
    [m.SubmitRun | m.SubmitAndWait, list[Any], Limits, Any, Callable[[Prepared], None]], None
]


class Submissions:
    """``OwnerIO``'s submissions (what it holds that this reads is declared here)."""

    port: MembersPort
    scheduler: OwnerScheduler
    limits: Limits
    minority: str | None
    waiting: Waiting
    code: CodeStore | None
    run_times: RunTimes
    _client_runs: intake.ClientRuns
    _submits: dict[str, Waiter]
    # Where a big submission that came whole is prepared (None: on the loop, as in tests that
    # drive the shell without an event loop; ``close`` sets it back to None).
    off_loop: OffLoop | None = None

    def _feed(self, event: Any) -> None:
        raise NotImplementedError

    def _on_submit(
        self,
        msg: m.SubmitRun | m.SubmitAndWait,
        frames: list[bytes],
        conn: bytes,
        checked: Sequence[TaskSpec] | errors.HandoffError | None = None,
        graph: TaskGraph | None = None,
        run: RunState | None = None,
        blocks: bool = False,
    ) -> None:
        """``checked``/``graph``/``run``: an upload's specs (or refusal), graph and untouched run,
        made off the loop (``upload_intake``); ``blocks``: the sender reads a complete outcome as
        one block (``outcome_block.reads_blocks`` of its envelope)."""
        term = self.scheduler.term_of(msg.run_id)  # not None: ours already (a retry)
        if checked is None and term is None and len(msg.tasks) == 1:
            # One plain function (every one-task ``execute``): its bounds and checks in one
            # pass, a function submitted before told by a look-up; None: the general path.
            lone = validation.lone_submission(msg, frames, self.limits)
            if lone is not None:
                checked = (lone,)
        if checked is None and self.off_loop is not None and len(msg.tasks) >= OFF_LOOP_TASKS:
            if term is None:
                done = self._prepared_for(msg, frames, conn, blocks)
                self.off_loop(msg, frames, self.limits, self.scheduler.order, done)
                return
        try:
            if isinstance(checked, errors.HandoffError):
                raise checked
            if self.minority is not None and term is None:
                raise errors.ConnectionError(self.minority)
            # The cheap bounds first (ids, task count), then the DAG's rules: a daemon never
            # trusts a submission.
            if checked is None:
                intake.check_submission(msg.run_id, task_ids(msg.tasks), self.limits)
            if checked is not None:
                specs = checked
            else:  # (plain functions: checked and their graph built in one pass)
                plain = plain_graph_of(msg, frames, self.scheduler.order)
                if plain is None:
                    specs = validation.wire_specs(msg, frames)
                else:
                    specs, graph = plain
            if term is None:
                self._client_runs.admit(conn, msg.run_id)
        except errors.HandoffError as exc:
            self._reject(msg, conn, exc)
            return
        if isinstance(msg, m.SubmitAndWait):
            waiter = Waiter(
                conn, msg.request_id, True, msg.max_bytes, msg.release, msg.wait, blocks=blocks
            )
        else:
            waiter = Waiter(conn, msg.request_id)
        if term is not None:
            self.waiting.accepted(msg.run_id, waiter)  # a retried submission
            return
        if msg.packages:
            kind, problem = store_packages(self.code, msg.packages, frames[len(msg.tasks) :])
            if problem:
                self._reject(msg, conn, errors.ValidationError(kind, None, problem))
                return
        if graph is None:
            try:  # (checked just above, cycles included: the scheduler would walk them again)
                graph = build_graph(specs, msg.outputs, self.scheduler.order, acyclic=True)
            except errors.HandoffError as exc:
                self._reject(msg, conn, exc)
                return
        self._submits[msg.run_id] = waiter
        self.run_times.accepted(msg.run_id)
        options = run_options(msg)
        self._feed(ev.RunSubmitted(msg.run_id, tuple(specs), options, graph, run))

    submit_checked = _on_submit

    def _prepared_for(
        self,
        msg: m.SubmitRun | m.SubmitAndWait,
        frames: list[bytes],
        conn: bytes,
        blocks: bool = False,
    ) -> Callable[[Prepared], None]:
        def done(prepared: Prepared) -> None:  # (on the loop)
            if self.off_loop is None:
                return  # closed meanwhile
            checked = prepared.error if prepared.error is not None else prepared.specs
            try:
                self._on_submit(msg, frames, conn, checked, prepared.graph, prepared.run, blocks)
            except Exception:  # noqa: BLE001 - one bad message must never take the daemon down
                log.exception("taking in run %r failed", msg.run_id)

        return done

    def _reject(
        self, msg: m.SubmitRun | m.SubmitAndWait, conn: bytes, exc: errors.HandoffError
    ) -> None:
        info = error_info(exc)
        assert info is not None
        self.port.reply(conn, m.RunRejected(msg.request_id, msg.run_id, info))
