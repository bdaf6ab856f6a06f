"""The executor state machine's control events (a base of ``executor_state.ExecutorState``): an
owner's cancel, withdraw of queued attempts, run and value frees, and the node leaving. Each ends
or forgets tasks through the machine's own ``_finish``, ``_unqueue_local`` and ``_release_inputs``;
nothing here runs a task."""

from __future__ import annotations

from collections.abc import Callable

from handoffd.daemon.executor_events import (
    CancelAsked,
    CancelJob,
    Instruction,
    Leaving,
    RunFreed,
    ValuesFreed,
    WithdrawAsked,
)
from handoffd.daemon.executor_hooks import Encodes
from handoffd.daemon.executor_records import Key, QKey, Row, Task, failed
from handoffd.protocol import messages as m
from handoffd.protocol.messages_rebalance import TasksWithdrawn
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger


class Control:
    """The control part of ``ExecutorState`` (which sets every attribute declared here)."""

    ledger: Ledger
    store: ResultStore
    tasks: dict[Key, Task | Row]
    local: dict[Key, QKey]
    draining: bool
    run_owners: dict[str, tuple[int, str, str]]
    _inline_limit: int
    _out: list[Instruction]
    _fetched: set[tuple[str, str]]
    _needs: dict[tuple[str, str], int]
    _encodes: dict[str, Encodes]
    _send: Callable[..., None]
    _finish: Callable[..., None]
    _unqueue_local: Callable[[Key, Task | None], None]
    _release_inputs: Callable[[Task], None]
    term_of: Callable[[str], int]
    task: Callable[[Key], Task | None]
    _tasks_as_records: Callable[[], dict[Key, Task]]

    def _on_cancel(self, ev: CancelAsked) -> None:
        msg, term = ev.msg, ev.term
        if term < self.term_of(msg.run_id):
            return  # a deposed owner: the attempts belong to the new one
        for item in msg.items:
            key = (msg.run_id, item.task_id, item.attempt)
            task = self.task(key)
            if task is None:
                continue
            if task.running:  # its outcome (kind "cancelled") releases the claim
                self._out.append(CancelJob(key))
            else:
                self.tasks.pop(key, None)
                self._finish(task, failed(task, "cancelled", "RunCancelled", "cancelled"), None)

    def _on_leaving(self, ev: Leaving) -> None:
        """Queued tasks go back at once (a "cancelled" report: the owner re-places it without
        using a retry); running ones finish here, their values reported inline so they outlive us."""
        self.draining = True
        self._inline_limit = max(self._inline_limit, ev.inline_bytes)
        for key, task in list(self._tasks_as_records().items()):
            if not task.running:
                self.tasks.pop(key, None)
                self._finish(task, failed(task, "cancelled", "NodeLeaving", "node leaving"), None)

    def _on_withdraw(self, ev: WithdrawAsked) -> None:
        """Give back the attempts still waiting in the local queue (no claim held, never run, no
        report follows); the others (started, or unknown here) are kept and report as usual. The
        answer goes to the run's owner after the queue dropped them: it places them again only
        then, so none runs twice (``protocol.messages_rebalance``)."""
        msg, term = ev.msg, ev.term
        known = self.run_owners.get(msg.run_id)
        if known is None or term < known[0]:
            return  # a deposed owner's (or one we never ran for: nothing to give back)
        withdrawn: list[m.TaskAttempt] = []
        kept: list[m.TaskAttempt] = []
        for item in msg.items:
            key = (msg.run_id, item.task_id, item.attempt)
            task = self.task(key)
            if task is not None and key in self.local and not task.claimed and not task.running:
                del self.tasks[key]
                self._unqueue_local(key, task)
                self._release_inputs(task)
                withdrawn.append(item)
            else:
                kept.append(item)
        free, version = dict(self.ledger.free), self.ledger.version
        answer = TasksWithdrawn(msg.run_id, tuple(withdrawn), tuple(kept), free, version)
        self._send(known[1], answer, [], known[0])

    def _on_run_freed(self, ev: RunFreed) -> None:
        msg, term = ev.msg, ev.term
        run_id = msg.run_id
        known = self.run_owners.get(run_id)  # (``term_of``, read once)
        if known is not None:
            if term < known[0]:
                return
            del self.run_owners[run_id]
        self.store.drop_run(run_id)
        if self._fetched:  # (mostly empty: no set built per freed run then)
            self._fetched = {k for k in self._fetched if k[0] != run_id}
        if self._encodes:
            self._encodes.pop(run_id, None)
        if self._needs:
            self._needs = {k: n for k, n in self._needs.items() if k[0] != run_id}

    def _on_values_freed(self, ev: ValuesFreed) -> None:
        """The owner says no task needs these values any more (every consumer finished): drop
        them. A queued task here that still lists one is a superseded attempt; it fails with
        input_lost, a report the owner ignores as stale."""
        msg, term = ev.msg, ev.term
        if term < self.term_of(msg.run_id):
            return
        for task_id in msg.task_ids:
            self._fetched.discard((msg.run_id, task_id))
        self.store.drop_values(msg.run_id, msg.task_ids)
