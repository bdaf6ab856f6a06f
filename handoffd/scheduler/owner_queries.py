# cython: annotation_typing=False
# (the annotations are for mypy; owner_queries.pxd beside it gives the compiled build its C types)
"""What the owner's scheduler answers about its runs and its view of the cluster (read-only).

The base of ``OwnerScheduler`` (``scheduler/owner.py``), split from it so the scheduler's module
keeps the decisions: nothing here changes a run, a node or a queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd.protocol.log_pack import LogColumns
from handoffd.scheduler.cluster_view import ClusterView, NodeState
from handoffd.scheduler.lost import LostMessages
from handoffd.scheduler.owned import OwnedRuns, OwnedRunStatus, RunHistory
from handoffd.scheduler.run import MoveListener, RunState
from handoffd.scheduler.states import DONE


class OwnerQueries(MoveListener):
    """The scheduler's read side over the parts ``OwnerScheduler`` builds (a ``MoveListener``:
    ``OwnerScheduler.moved`` keeps its books through the moves of the runs it owns)."""

    _view: ClusterView
    _owned: OwnedRuns
    # ``_owned.live`` itself (``OwnedRuns`` never rebinds it), a C field: the owner looks a
    # run up once or twice a batch, where the part's attribute and its method were two
    # Python-level look-ups.
    _live: dict[str, RunState]
    _lost: LostMessages
    # ``delta_columns``' packer, made at the first batch (the scheduler's ``__init__`` is its
    # subclass's).
    _log_columns: LogColumns | None

    def runs(self) -> list[str]:
        return self._owned.ids()

    def run_status(self, run_id: str) -> OwnedRunStatus | None:
        return self._owned.status(run_id)

    def result_location(self, run_id: str, task_id: str) -> tuple[bytes | None, tuple[str, ...]]:
        """(the owner's copy or None, live nodes holding one); KeyError for an unknown run or task
        (a released run has no copies left)."""
        return self._owned.result_location(run_id, task_id)

    @property
    def probe_interval(self) -> float:
        """Seconds between probes for lost reports (``lost.PROBE_INTERVAL`` unless configured)."""
        return self._lost.probe_interval

    @probe_interval.setter
    def probe_interval(self, value: float) -> None:
        self._lost.probe_interval = value

    @property
    def window(self) -> int:
        """Outstanding demand allowed per node, in multiples of its capacity (1: no pipelining)."""
        return self._view.window

    @window.setter
    def window(self, value: int) -> None:
        self._view.window = value

    def nodes(self) -> dict[str, NodeState]:
        return dict(self._view.nodes)

    def effective_free(self, node: str) -> dict[str, float]:
        """What we may still dispatch to ``node``: reported free minus unacknowledged dispatches."""
        return self._view.effective_free(node)

    def outstanding(self, node: str) -> dict[str, float]:
        """Summed cost of our ASSIGNED/RUNNING tasks on ``node`` (running or in its queue): the
        demand the dispatch window bounds (not the node's ledger, which other owners share)."""
        return dict(self._view.outstanding.get(node, {}))

    def history(self, run_id: str, task_id: str) -> list[tuple[float, str, str, str]]:
        return list(self._owned.live[run_id].tasks[task_id].history)

    def snapshot(self, run_id: str) -> dict[str, Any]:
        """The run as plain data, for standby owners."""
        return self._owned.live[run_id].snapshot()

    def run_state(self, run_id: str) -> RunState | None:
        """The run's live state (read-only use: the replication log reads task records)."""
        return self._owned.live.get(run_id)

    def delta_rows(
        self, run_id: str, task_ids: Iterable[str]
    ) -> tuple[list[list[Any]], list[Any]] | None:
        """The replication log's batch for ``task_ids`` of the run (None: not ours): each task's
        ``TaskDelta`` fields in their wire form (``schema.WireRows``: packed as they are, no
        per-field check; tests/unit/test_replication_wire.py holds them byte for byte to the
        checked encoding, in both builds), and the DONE tasks' inline values, a row's ``frame``
        its value's index there. Unknown task ids are skipped."""
        run = self._owned.live.get(run_id)
        if run is None:
            return None
        rows: list[list[Any]] = []
        values: list[Any] = []
        tasks = run.tasks
        for task_id in task_ids:
            rec = tasks.get(task_id)
            if rec is None:
                continue
            frame = -1
            if rec.value is not None and rec.state == DONE:
                frame = len(values)
                values.append(rec.value)
            rows.append(
                [
                    task_id,
                    rec.state,
                    rec.attempt,
                    rec.node,
                    rec.size,
                    sorted(rec.locations),
                    rec.failures,
                    rec.losses,
                    rec.completions,
                    frame,
                    list(rec.attempts),
                ]
            )
        return rows, values

    def delta_columns(
        self, run_id: str, task_ids: Iterable[str]
    ) -> tuple[bytes | None, list[Any]] | None:
        """``delta_rows``' batch packed straight into ``ReplicateLog.columns`` from the task
        records (``log_pack.LogColumns``: each field put in its column as read, no row a task
        built then transposed), with the DONE tasks' inline values; None: not ours; the bytes
        None if columns cannot carry the batch (``pack_columns``: the rows go instead)."""
        run = self._live.get(run_id)
        if run is None:
            return None
        values: list[Any] = []
        # One packer a scheduler, emptied at each batch: its buffers are allocated once.
        columns = getattr(self, "_log_columns", None)
        if columns is None:
            columns = self._log_columns = LogColumns()
        columns.reset()
        tasks = run.tasks
        try:
            for task_id in task_ids:
                rec = tasks.get(task_id)
                if rec is None:
                    continue
                frame = -1
                if rec.value is not None and rec.state == DONE:
                    frame = len(values)
                    values.append(rec.value)
                if not columns.put_record(
                    task_id,
                    rec.state,
                    rec.attempt,
                    rec.node,
                    rec.size,
                    rec.locations,
                    rec.failures,
                    rec.losses,
                    rec.completions,
                    frame,
                    rec.attempts,
                ):
                    return None, values
        except (TypeError, OverflowError):
            return None, values
        return columns.packed(), values

    def run_times(self, run_id: str) -> tuple[float, float]:
        return self._owned.times(run_id)

    def run_history(
        self, run_id: str, since: float = 0.0, brief: bool = False
    ) -> RunHistory | None:
        """Every task's attempts and transitions (``handoffctl tasks``; with ``since``, wall
        clock: of the tasks that moved since), None if not ours."""
        return self._owned.history(run_id, since, brief)

    def term_of(self, run_id: str) -> int | None:
        """The run's ownership term, or None when we do not own it."""
        # A live run's from the C field: the shell asks 4 times a one-task run, where each was
        # a Python call into ``OwnedRuns``; a released one's (or none) is its.
        run = self._live.get(run_id)
        if run is not None:
            return run.term
        return self._owned.term_of(run_id)
