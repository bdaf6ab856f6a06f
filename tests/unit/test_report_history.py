"""A table of DONE reports whose history the scheduler writes (``daemon.reports``: the shell's
``observe_table(later=True)`` records nothing and ``table_events(history=True)`` hands the
report's columns on in its ``TasksSucceeded`` with a list for the latencies; ``successes.apply``
builds each accepted attempt's row once with its close, every other row observed at its place in
report order, and counts the latencies as it goes) leaves every task record, its attempt rows
included, the instructions and the latency histogram as the shell writing the rows first did
(``observe_done``, then the scheduler closing the accepted ones). Random tables over a small DAG: accepted, stale,
duplicate, unknown and wrong-attempt rows, starts and ends said or not, a node dead and a run
cancelled (the scheduler's rows one by one), a lone report (the shell's ``TaskSucceeded``)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import scheduler_harness
from scheduler_harness import Cluster, dispatches, spec
from test_scheduler_twin import PURE

from handoffd.daemon import reports
from handoffd.observability.latency import Buckets
from handoffd.protocol.columns import ReportTable
from handoffd.scheduler import events as ev

pytestmark = pytest.mark.timeout(120)


def _state(c: Cluster, latency: Buckets) -> Any:
    run = c.sched.run_state("r")
    tasks = None
    if run is not None:
        tasks = sorted(
            (t, rec.state, rec.attempt, rec.node, list(rec.attempts), list(rec.moves))
            for t, rec in run.tasks.items()
        )
    return (tasks, latency.counts, latency.count, repr(latency.sum))


def drive(later: bool, seed: int) -> list[Any]:
    rng = random.Random(seed)
    c = Cluster({"n0": 4.0, "n1": 4.0}, window=8)
    specs = [
        spec(f"t{i}", *({f"t{rng.randrange(i)}"} if i and rng.random() < 0.4 else ()))
        for i in range(12)
    ]
    latency = Buckets()
    trace: list[Any] = []
    out = c.submit("r", specs)
    for _ in range(30):
        for d in dispatches(out):
            if not c.alive[d.node]:
                continue
            out = c.feed(*c.reply(d))
            trace.append(repr(out))
        run = c.sched.run_state("r")
        if run is None:
            break
        roll = rng.random()
        if roll < 0.05:
            trace.append(repr(c.feed(ev.CancelRequested("r"))))
        out_now = [(t, rec.attempt, rec.node) for t, rec in run.tasks.items() if rec.node]
        if not out_now:
            break
        node = rng.choice(["n0", "n1"])
        rows = []
        for t, attempt, _at in rng.sample(out_now, min(len(out_now), rng.randint(1, 5))):
            if rng.random() < 0.15:
                attempt += 1  # (an attempt the owner never made)
            if rng.random() < 0.1:
                t = "unknown"
            began = rng.choice([0.0, c.t + 0.5])
            rows.append(
                (t, attempt, 1, rng.randint(0, 9), 0.01, rng.randint(1, 99), began,
                 rng.choice([0.0, c.t + 0.75]), rng.choice([0, 8]))
            )  # fmt: skip
        if rng.random() < 0.2 and rows:
            rows.insert(rng.randrange(len(rows)), rows[0])  # a duplicate
        for r in rows:
            if ("r", r[0], r[1]) in c.costs and run.tasks[r[0]].node == node:
                c.release(node, "r", r[0], r[1])
        if rng.random() < 0.05 and c.alive["n0"] and c.alive["n1"]:
            # (a dead node's late report: its rows one by one; the scheduler moves between a
            # report's receipt and its event only with the events held before it, none here)
            trace.append(repr(c.kill(node)))
        table = ReportTable.of_rows(rows, [-1] * len(rows), ())
        events: list[Any] = []
        told = reports.observe_table(run, node, table, latency, later)
        assert told == (later and len(rows) > 1)
        delays: list[float] = []
        reports.table_events("r", node, table, [None] * len(rows), events, told, delays)
        if told:
            (event,) = events
            assert event.pids == table.pids and event.bytes_in == table.bytes_in
            assert event.delays is delays
        out = c.feed(*events)
        latency.observe_all(delays)  # (the shell's, after the scheduler's batch)
        trace.append(repr(out))
        trace.append(_state(c, latency))
    return trace


@pytest.mark.parametrize("seed", range(40))
def test_the_scheduler_writes_the_reported_history_as_the_shell_did(seed: int) -> None:
    assert drive(True, seed) == drive(False, seed)


@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_the_pure_python_scheduler_writes_it_and_counts_the_latencies_alike(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with the scheduler from source (``successes.py``: its rows and latencies)."""
    pure_owner = PURE["handoffd.scheduler.owner"]
    assert pure_owner.successes.__file__.endswith(".py")
    monkeypatch.setattr(scheduler_harness, "OwnerScheduler", pure_owner.OwnerScheduler)
    assert drive(True, seed) == drive(False, seed)
