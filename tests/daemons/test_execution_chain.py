"""Executor chains against a real WorkerPool: queued tasks of the same cost run behind a started one
under its claim. The ledger is checked at every claim and release (never more than capacity, one
claim per chain), the tasks themselves check they never overlap beyond capacity (files), GPU indices
stay right, cancels of chained tasks never run them, a task still fetching inputs is not chained
before they are here, and the free resources gossiped after a chain drains are the whole node.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from pool_harness import blocked, sent_ahead, touch, until

from handoffd import values
from handoffd.daemon.executor import Executor
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ReportTable
from handoffd.protocol.messages_chunks import FetchChunks, ValueChunk
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)

RUN = "run-1"
OWNER = "127.0.0.1:1"


# -- functions run in the workers -----------------------------------------------------------------
def occupy(directory: str, limit: int, name: str, seconds: float) -> str:
    """Hold a marker in ``directory`` while running; more than ``limit`` markers at once (or two on
    one GPU) leaves a violation file. Returns CUDA_VISIBLE_DEVICES."""
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    mine = os.path.join(directory, f"{name}.run")
    touch(mine)
    locks = []
    for gpu in filter(None, gpus.split(",")):
        lock = os.path.join(directory, f"gpu{gpu}.lock")
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            locks.append(lock)
        except FileExistsError:
            touch(os.path.join(directory, f"{name}-gpu{gpu}.violation"))
    if len([n for n in os.listdir(directory) if n.endswith(".run")]) > limit:
        touch(os.path.join(directory, f"{name}.violation"))
    time.sleep(seconds)
    for lock in locks:
        os.unlink(lock)
    os.unlink(mine)
    return gpus


def add_one(x: int) -> int:
    return x + 1


# -- harness --------------------------------------------------------------------------------------
class CheckedLedger(Ledger):
    """The real ledger, validated after every change; records the free vectors it went through."""

    def __init__(self, capacity: Mapping[str, float]) -> None:
        super().__init__(capacity)
        self.claims = 0
        self.max_claims = 0

    def try_claim(self, cost: Mapping[str, float]) -> list[int] | None:
        gpus = super().try_claim(cost)
        if gpus is not None:
            self.claims += 1
            self.max_claims = max(self.max_claims, self.claims)
        self.validate()
        return gpus

    def release(self, cost: Mapping[str, float], gpus: list[int]) -> None:
        super().release(cost, gpus)
        self.claims -= 1
        assert self.claims >= 0
        self.validate()


class Harness:
    def __init__(self, executor: Executor, ledger: CheckedLedger, sent: list, gossip: list) -> None:
        self.executor = executor
        self.ledger = ledger
        self.sent = sent  # (address, message, frames)
        self.gossip = gossip  # ledger.free at each on_resources_changed

    def dispatch(self, items: list[tuple[str, Callable[..., Any], list[Any], dict]], **kw: Any):
        frames: list[bytes] = []
        dispatch_items = []
        for task_id, fn, args, cost in items:
            frames.append(values.dumps_code((fn, args, {})))
            dispatch_items.append(
                m.DispatchItem(
                    task_id,
                    1,
                    cost,
                    "variadic",
                    kw.get("timeout"),
                    len(frames) - 1,
                    kw.get("inputs", {}).get(task_id, ()),
                )
            )
        self.executor.on_dispatch(m.DispatchTasks(RUN, OWNER, tuple(dispatch_items)), frames, 1)

    def reports(self) -> dict[str, m.TaskReport]:
        out: dict[str, m.TaskReport] = {}
        for _, msg, _ in self.sent:
            if isinstance(msg, ReportColumns):  # the executor's shell sends columns
                for report in ReportTable(msg).reports():
                    assert report.task_id not in out, f"{report.task_id} reported twice"
                    out[report.task_id] = report
        return out

    def value(self, task_id: str) -> Any:
        data = self.executor.store.get(RUN, task_id)
        assert data is not None
        return values.loads(data)


def run_executor(
    capacity: dict[str, float], workers: int, body: Callable[[Harness], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        ledger = CheckedLedger(capacity)
        sent: list = []
        gossip: list = []
        executor = Executor(
            address="127.0.0.1:2",
            ledger=ledger,
            store=ResultStore(memory_limit=1 << 30),
            send=lambda address, msg, frames, term=0: sent.append((address, msg, frames)),
            inline_result_bytes=1 << 16,
            on_resources_changed=lambda: gossip.append(dict(ledger.free)),
        )
        pool = WorkerPool(workers, executor.on_outcome, name="chain-test")
        executor.pool = pool
        await pool.start()
        try:
            return await body(Harness(executor, ledger, sent, gossip))
        finally:
            await pool.close()

    return asyncio.run(main())


async def all_reported(h: Harness, n: int) -> dict[str, m.TaskReport]:
    await until(lambda: len(h.reports()) >= n)
    await asyncio.sleep(0.1)  # a duplicate report would arrive meanwhile
    return h.reports()


# -- tests ----------------------------------------------------------------------------------------
def test_chained_tasks_never_exceed_the_ledger_even_with_spare_workers(tmp_path):
    directory = str(tmp_path)

    async def body(h: Harness) -> None:
        items = [(f"t{i}", occupy, [directory, 2, f"t{i}", 0.002], {"cpu": 1}) for i in range(80)]
        h.dispatch(items[:50])
        h.dispatch(items[50:])
        reports = await all_reported(h, 80)
        assert all(r.state == "DONE" for r in reports.values())
        assert h.ledger.max_claims <= 2
        assert h.executor.counters["refused"] == 0  # all accepted into the local queue
        assert h.ledger.idle() and h.ledger.claims == 0

    run_executor({"cpu": 2}, 3, body)  # 3 workers, 2 cpus: only the ledger keeps it to 2 at once
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".violation")]


def test_gpu_tasks_chain_on_their_own_devices(tmp_path):
    directory = str(tmp_path)

    async def body(h: Harness) -> None:
        cost = {"cpu": 1, "gpu": 1}
        h.dispatch([(f"g{i}", occupy, [directory, 2, f"g{i}", 0.002], cost) for i in range(40)])
        reports = await all_reported(h, 40)
        assert all(r.state == "DONE" for r in reports.values())
        devices = {h.value(f"g{i}") for i in range(40)}
        assert devices == {"0", "1"}
        assert h.ledger.max_claims <= 2 and h.ledger.idle()
        assert sorted(h.ledger._gpus_free) == [0, 1]

    run_executor({"cpu": 4, "gpu": 2}, 4, body)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".violation")]


def test_free_is_gossiped_and_reported_whole_once_a_chain_drains(tmp_path):
    async def body(h: Harness) -> None:
        h.dispatch([(f"t{i}", add_one, [i], {"cpu": 1}) for i in range(30)])
        reports = await all_reported(h, 30)
        assert all(r.state == "DONE" for r in reports.values())
        assert [h.value(f"t{i}") for i in range(30)] == [i + 1 for i in range(30)]
        assert h.ledger.max_claims == 1  # one chain held the one cpu
        await until(lambda: h.gossip and h.gossip[-1] == {"cpu": 1.0})
        last = [msg for _, msg, _ in h.sent if isinstance(msg, ReportColumns)][-1]
        assert last.free == {"cpu": 1.0}
        assert h.executor.running_count() == 0 and not h.executor.state.slots

    run_executor({"cpu": 1}, 1, body)


def test_cancel_of_a_chained_task_never_runs_it_and_the_chain_goes_on(tmp_path):
    started, gate, never = (str(tmp_path / n) for n in ("started", "gate", "never"))

    async def body(h: Harness) -> None:
        h.dispatch(
            [("head", blocked, [started, gate], {"cpu": 1}), ("x", touch, [never], {"cpu": 1})]
            + [(f"t{i}", add_one, [i], {"cpu": 1}) for i in range(5)]
        )
        await until(lambda: os.path.exists(started))
        pool = h.executor.pool
        assert pool is not None and sent_ahead(pool, (RUN, "x", 1))  # chained behind "head"
        h.executor.on_cancel(m.CancelTasks(RUN, (m.TaskAttempt("x", 1),)), 1)
        touch(gate)
        reports = await all_reported(h, 7)
        assert reports["x"].state == "FAILED" and reports["x"].kind == "cancelled"
        assert all(reports[f"t{i}"].state == "DONE" for i in range(5))
        assert reports["head"].state == "DONE"
        assert not os.path.exists(never)
        assert h.ledger.idle() and h.ledger.max_claims == 1

    run_executor({"cpu": 1}, 1, body)


def test_chaining_never_passes_a_queued_task_of_another_cost(tmp_path):
    """Chains take queued tasks in order and stop at one of another cost: the claims then drain
    to it (a slot started after it may take later tasks, but no chain started before it does)."""

    async def body(h: Harness) -> None:
        pool = h.executor.pool
        assert pool is not None
        chains: dict[Any, list[str]] = {}
        submit_all = pool.submit_all

        def recording(jobs: Any, chain: Any = None) -> None:
            jobs = list(jobs)
            chains.setdefault(chain, []).extend(job.key[1] for job in jobs)
            submit_all(jobs, chain)

        pool.submit_all = recording  # type: ignore[method-assign]
        items = [(f"a{i}", add_one, [i], {"cpu": 1}) for i in range(10)]
        items.append(("big", add_one, [100], {"cpu": 2}))
        items += [(f"b{i}", add_one, [i], {"cpu": 1}) for i in range(10)]
        h.dispatch(items)
        reports = await all_reported(h, 21)
        assert all(r.state == "DONE" for r in reports.values())
        for keys in chains.values():
            assert not (
                any(k.startswith("a") for k in keys)
                and "big" not in keys
                and any(k.startswith("b") for k in keys)
            ), chains
        assert any(len(keys) > 1 for keys in chains.values())  # chaining happened
        assert h.ledger.idle()

    run_executor({"cpu": 2}, 2, body)


def test_a_task_fetching_inputs_is_chained_only_once_they_arrive(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    peer = "127.0.0.1:3"

    async def body(h: Harness) -> None:
        ref = m.InputRef("value", "producer", (peer,), -1, "variadic", -1)
        h.dispatch(
            [
                ("head", blocked, [started, gate], {"cpu": 1}),
                ("needs", add_one, [], {"cpu": 1}),
                ("free", add_one, [1], {"cpu": 1}),
            ],
            inputs={"needs": (ref,)},
        )
        await until(lambda: os.path.exists(started))
        fetch = next(msg for a, msg, _ in h.sent if isinstance(msg, FetchChunks))
        pool = h.executor.pool
        assert pool is not None
        assert (RUN, "free", 1) in pool.live()  # (queued or on a pipe: not ended)
        assert (RUN, "needs", 1) not in pool.live()
        value = values.dumps(41)  # one chunk: no CRC (store.chunks)
        h.executor.on_values(
            ValueChunk(fetch.request_id, RUN, "producer", 0, len(value), fetch.chunk_bytes, -1),
            [value],
        )
        touch(gate)
        reports = await all_reported(h, 3)
        assert all(r.state == "DONE" for r in reports.values())
        assert h.value("needs") == 42 and h.value("free") == 2
        assert h.ledger.idle() and h.ledger.max_claims == 1

    run_executor({"cpu": 1}, 1, body)
