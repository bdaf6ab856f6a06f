"""The rig the executing side's one-process benches share (``own_cycle``, ``own_feed``,
``back_cycle``, ``exec_one``): an executor of one cpu on ``node:1`` whose reports come back to the
bench, and a feed of no-op tasks dispatched to it as the owner's scheduler hands its own node a
``Dispatch`` (``dispatch_here``'s table to ``Executor.on_dispatch``). The task's code stays the
bench's own (its ``__main__`` function travels by value to real workers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from handoffd import values
from handoffd.daemon import dispatch
from handoffd.daemon.executor import Executor
from handoffd.daemon.executor_events import ReportedHere
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger


def executor(here: Callable[[Any], None]) -> Executor:
    """An executor of one cpu that hands its reports (``ReportedHere``) to ``here``."""
    made = Executor(
        address="node:1",
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        send=lambda *a, **k: None,
        inline_result_bytes=1 << 16,
        on_resources_changed=lambda: None,
    )
    made.here = here
    return made


class Feed:
    """Tasks ``t0``, ``t1``, ... of run ``run_id`` (one payload, 1 cpu each; with ``call_code``,
    task ``ti``'s payload is ``values.dumps_call(call_code, [i], {})``, W1's own form: one code
    part and an int each) dispatched to an executor in batches, ``total`` of them a round."""

    def __init__(self, executor: Executor, payload: bytes, call_code: bytes | None = None) -> None:
        self.executor = executor
        self.payload = payload
        self.call_code = call_code
        if call_code is not None:
            values.dumps_call(call_code, [0], {})  # (the code's head kept: each next one W1's form)
        self.cost = {"cpu": 1.0}
        self.run_id = "r0"
        self.total = 0
        self.sent = 0

    def round(self, run_id: str, total: int) -> None:
        """Start a round: run ``run_id`` of ``total`` tasks, none sent yet."""
        self.run_id, self.total, self.sent = run_id, total, 0

    def send(self, n: int) -> None:
        """Dispatch the round's next ``n`` tasks (fewer at its end)."""
        first = self.sent
        n = min(n, self.total - first)
        if n <= 0:
            return
        self.sent = first + n
        payload, cost, code = self.payload, self.cost, self.call_code
        items = tuple(
            ev.DispatchedTask(
                f"t{i}",
                1,
                payload if code is None else values.dumps_call(code, [i], {}),
                cost,
                "variadic",
                None,
                (),
            )
            for i in range(first, first + n)
        )
        ins = ev.Dispatch("node", self.run_id, 1, items)
        msg, frames = dispatch.dispatch_here(ins, "node:1", lambda name: "node:1")
        self.executor.on_dispatch(msg, frames, 1)


class Window:
    """A steady window on an executor of its own (``executor``, ``feed``): each report answered
    by as many new tasks, as the owner keeps its window, until a round's tasks are all reported."""

    def __init__(self, payload: bytes, call_code: bytes | None = None) -> None:
        self.reported = 0
        self.done = asyncio.Event()
        self.executor = executor(self.here)
        self.feed = Feed(self.executor, payload, call_code)

    def here(self, ins: Any) -> None:
        if type(ins) is ReportedHere:
            n = len(ins.values)
            self.reported += n
            if self.reported >= self.feed.total:
                self.done.set()
            else:
                self.feed.send(n)

    async def round(self, run_id: str, total: int, window: int, batch: int) -> float:
        """Run ``total`` tasks, ``window`` outstanding (``batch`` a first dispatch), then free the
        run; the process's CPU seconds of the round."""
        self.feed.round(run_id, total)
        self.reported = 0
        self.done.clear()
        cpu0 = time.process_time()
        for _ in range(window // batch):
            self.feed.send(batch)
        await self.done.wait()
        cpu = time.process_time() - cpu0
        self.executor.on_free_run(m.FreeRun(run_id), 1)
        return cpu
