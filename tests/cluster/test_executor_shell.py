"""The executor's I/O shell with a fake worker pool on a real loop: it carries the state machine's
instructions out (pool submits and cancels, sends, call-soon, timers, owner changes) and keeps the
surface the node and the replication shell use."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import Any

from handoffd.daemon.executor import Executor
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ReportTable, replied_pairs
from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.store.store import ResultStore
from handoffd.testing import async_wait_for as wait_for
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Job, Outcome

RUN = "run-1"
OWNER = "owner:1"


class FakePool:
    def __init__(self) -> None:
        self.submitted: list[tuple[Hashable, list[Job]]] = []
        self.cancelled: list[Hashable] = []

    def submit_all(self, jobs: Iterable[Job], chain: Hashable = None) -> None:
        self.submitted.append((chain, list(jobs)))

    def cancel(self, key: Hashable) -> bool:
        self.cancelled.append(key)
        return True


def make(fetch_timeout: float = 5.0) -> tuple[Executor, FakePool, list[tuple[str, Any, int]]]:
    sent: list[tuple[str, Any, int]] = []
    executor = Executor(
        address="me:1",
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 20),
        send=lambda address, msg, frames, term=0: sent.append((address, msg, term)),
        inline_result_bytes=1024,
        on_resources_changed=lambda: None,
        fetch_timeout=fetch_timeout,
    )
    pool = FakePool()
    executor.pool = pool  # type: ignore[assignment]
    return executor, pool, sent


def dispatch(executor: Executor, *items: m.DispatchItem, term: int = 1) -> None:
    executor.on_dispatch(m.DispatchTasks(RUN, OWNER, items), [b"payload"], term)


def item(task_id: str, inputs: tuple = ()) -> m.DispatchItem:
    return m.DispatchItem(task_id, 1, {"cpu": 1.0}, "variadic", None, 0, inputs)


def of(sent: list[tuple[str, Any, int]], kind: type) -> list[tuple[str, Any, int]]:
    return [s for s in sent if isinstance(s[1], kind)]


def test_jobs_reach_the_pool_and_reports_go_out_once_per_loop_iteration() -> None:
    async def main() -> None:
        executor, pool, sent = make()
        dispatch(executor, item("a"), item("b"))
        # "a" claimed, "b" chained behind it in the dispatch's own pass: one submit, one chain
        assert [[j.key[1] for j in js] for _, js in pool.submitted] == [["a", "b"]]
        for key in (("run-1", "a", 1), ("run-1", "b", 1)):
            executor.on_outcome(Outcome(key, True, b"v", duration=0.001))
        assert not of(sent, ReportColumns)  # flushed on the next loop iteration, together
        await wait_for(lambda: of(sent, ReportColumns))
        ((_, report, term),) = of(sent, ReportColumns)  # as columns (issue 13)
        reports = ReportTable(report).reports()
        assert [r.task_id for r in reports] == ["a", "b"] and term == 1
        assert [r.state for r in reports] == ["DONE", "DONE"] and not of(sent, m.TasksReported)
        assert executor.running_count() == 0 and executor.ledger.idle()
        executor.on_cancel(m.CancelTasks(RUN, (m.TaskAttempt("a", 1),)), 1)
        assert pool.cancelled == []  # already ended: nothing to cancel

    asyncio.run(main())


def test_a_fetch_timer_fires_on_the_loop_and_an_answer_cancels_it() -> None:
    async def main() -> None:
        executor, pool, sent = make(fetch_timeout=0.05)
        ref = m.InputRef("value", "dep", ("peer:1", "peer:2"), -1, "variadic", -1)
        dispatch(executor, item("w", (ref,)))
        assert [a for a, msg, _ in of(sent, FetchChunks)] == ["peer:1"]
        await wait_for(lambda: len(of(sent, FetchChunks)) == 2)  # peer:1 timed out
        address, fetch, _ = of(sent, FetchChunks)[1]
        assert address == "peer:2" and executor._timers
        chunk = ValueChunk(fetch.request_id, RUN, "dep", 0, 1, fetch.chunk_bytes, -1)
        executor.on_values(chunk, [b"x"])
        assert not executor._timers  # the answer cancelled the time-out
        assert [j.key[1] for _, js in pool.submitted for j in js] == ["w"]

    asyncio.run(main())


def test_fencing_through_the_shell_tells_the_node_of_a_new_owner() -> None:
    async def main() -> None:
        executor, pool, sent = make()
        changes: list[tuple[str, int, str]] = []
        executor.on_new_owner = lambda run_id, term, name: changes.append((run_id, term, name))
        dispatch(executor, item("a"), term=2)
        assert executor.learn_owner(RUN, 1, "old:1") is False and executor.term_of(RUN) == 2
        holdings = executor.on_reconcile(m.ReconcileRun(5, RUN, 3, "n3", "new:1"))
        assert holdings is not None and holdings.running == (m.TaskAttempt("a", 1),)
        assert changes == [(RUN, 3, "n3")] and executor.run_owners[RUN] == (3, "new:1", "n3")
        assert executor.on_reconcile(m.ReconcileRun(6, RUN, 2, "n2", "old:1")) is None
        executor.on_cancel(m.CancelTasks(RUN, (m.TaskAttempt("a", 1),)), 3)
        assert pool.cancelled == [(RUN, "a", 1)]
        executor.draining = True
        dispatch(executor, item("late"), term=3)
        (_, reply, _) = of(sent, RepliedColumns)[-1]
        assert replied_pairs(reply)[1] == (("late", 1, "draining"),)

    asyncio.run(main())


def test_answers_and_reports_to_our_own_owner_go_as_they_are_not_as_columns() -> None:
    """The owner in this process reads per-task messages as well: nothing is packed only to be
    read back at once (columns are for the wire)."""

    async def main() -> None:
        executor, pool, sent = make()
        executor.on_dispatch(m.DispatchTasks(RUN, "me:1", (item("a"),)), [b"payload"], 1)
        executor.on_outcome(Outcome((RUN, "a", 1), True, b"v", duration=0.001))
        await wait_for(lambda: of(sent, m.TasksReported))
        assert not of(sent, RepliedColumns) and not of(sent, ReportColumns)
        ((address, replied, _),) = of(sent, m.DispatchReplied)
        assert address == "me:1" and replied.accepted == (m.TaskAttempt("a", 1),)
        ((_, report, term),) = of(sent, m.TasksReported)
        assert [(r.task_id, r.state) for r in report.reports] == [("a", "DONE")] and term == 1

    asyncio.run(main())


def test_one_read_s_outcomes_reach_the_state_and_every_serialize_hook_is_answered() -> None:
    """``on_read`` with two hooks' outcomes among a task's (one read of a worker's pipe): each
    hook's answer goes to its peer, and the task's report to its owner."""
    from handoffd.daemon.executor_hooks import EncodeKey
    from handoffd.protocol.messages_hooks import EncodeFailed, FetchEncoded

    async def body() -> None:
        executor, pool, sent = make()
        dispatch(executor, item("a"))
        ((_, (job,)),) = pool.submitted
        # (two peers ask for "v" serialized by their hooks: the hook jobs this node runs)
        executor.store.put(RUN, "v", b"value")
        for i in (1, 2):
            executor.on_fetch(FetchEncoded(i, RUN, "v", f"h{i}", f"peer:{i}"), [b"hook"])
        hooks = [EncodeKey(f"peer:{i}", i, RUN, f"h{i}") for i in (1, 2)]
        assert [jobs[0].key for _, jobs in pool.submitted[1:]] == hooks
        executor.on_read(
            [
                Outcome(hooks[0], True, b"encoded"),
                Outcome(job.key, True, b"v", duration=0.001),
                Outcome(hooks[1], False, None, "HookFailed", "no", "tb", "error"),
            ]
        )
        await wait_for(lambda: of(sent, ReportColumns))
        ((address, found, _),) = of(sent, m.ValuesFetched)
        assert address == "peer:1" and found.task_ids == ("h1",)
        ((address, failed, _),) = of(sent, EncodeFailed)
        assert address == "peer:2"
        ((address, report, _),) = of(sent, ReportColumns)
        assert address == OWNER and report.task_ids == ("a",)

    asyncio.run(body())
