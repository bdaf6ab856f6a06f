"""One Client shared by many threads, and an asyncio caller (issue 14, problem 3), on real daemons:
16 threads call ``execute`` on one client at once and each gets its own correct results; several
threads wait on one Run; ``await client.execute_async(dag)`` leaves the event loop free."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def scaled(x: int, k: int) -> int:
    return x * k


def add(*xs: int) -> int:
    return sum(xs)


def nap_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def _dag(k: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(3):
        dag.add_function(handoffd.Function(id=f"s{i}", code=scaled, extra_args=[i, k]))
    dag.add_function(handoffd.Function(id="sum", code=add, args=["s0", "s1", "s2"]))
    return dag


@pytest.fixture
def cluster(daemons: Any) -> Any:
    first = daemons.start(cpu=2, memory=1000)
    daemons.start(cpu=2, memory=1000, seeds=[first.address])
    with handoffd.connect(first.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 2,
            timeout=30,
            what="two daemons joined",
        )
    return first


def test_sixteen_threads_share_one_client(cluster: Any) -> None:
    results: dict[int, Any] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(16)

    with handoffd.connect(cluster.address) as client:

        def worker(k: int) -> None:
            try:
                start.wait(30)
                for round_ in range(3):
                    out = client.execute(_dag(k * 10 + round_))
                    results[(k, round_)] = out  # type: ignore[index]
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert len(results) == 48
        for (k, round_), out in results.items():  # type: ignore[misc]
            factor = k * 10 + round_
            assert out == {"s0": 0, "s1": factor, "s2": 2 * factor, "sum": 3 * factor}

        # Several threads wait on one run, each gets its end.
        run = client.submit(
            handoffd.DAG().add_function(
                handoffd.Function(id="n", code=nap_then, extra_args=[0.5, 7])
            )
        )
        states: list[str] = []
        waiters = [
            threading.Thread(target=lambda: states.append(run.wait(60).state)) for _ in range(4)
        ]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(90)
        assert states == ["DONE"] * 4
        assert run.results() == {"n": 7}


def test_an_asyncio_caller_awaits_runs_without_blocking_its_loop(cluster: Any) -> None:
    async def main() -> tuple[list[dict[str, int]], int, dict[str, int]]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        with handoffd.connect(cluster.address) as client:
            beat = asyncio.create_task(ticker())
            slow = handoffd.DAG().add_function(
                handoffd.Function(id="n", code=nap_then, extra_args=[1.0, 5])
            )
            outs = await asyncio.gather(
                client.execute_async(slow), *(client.execute_async(_dag(k)) for k in range(4))
            )
            run = await client.submit_async(_dag(9))
            await run.wait_async(60)
            later = await run.results_async()
            stop.set()
            await beat
        return list(outs), ticks, later

    outs, ticks, later = asyncio.run(main())
    assert outs[0] == {"n": 5}
    for k, out in enumerate(outs[1:]):
        assert out == {"s0": 0, "s1": k, "s2": 2 * k, "sum": 3 * k}
    assert later == {"s0": 0, "s1": 9, "s2": 18, "sum": 27}
    # The loop kept running while the one-second task ran: it ticked many times meanwhile.
    assert ticks > 20
