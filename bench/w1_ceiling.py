"""What overlapping a big run's intake with its execution would give W1 (issue 13), measured
with today's public client: the run sent as K independent slices, each placed while the next is
encoded, sent and built.

    .venv/bin/python bench/w1_ceiling.py [--rounds 5] [--tasks 10000] [--slices 1,5,10,10t]
    .venv/bin/python bench/w1_ceiling.py --code [--tasks 10000]

Round mode starts the peer benchmark's 2 daemons of 1 cpu (``bench/_peers/handoffd_runner.py``,
inside ``unshare -n``), runs W1 once to warm up, then ``--rounds`` rounds; each round runs every
``--slices`` value once, in a rotated order (A/B alternation under a noisy load). Slice count 1
is W1 as the peer bench times it (one ``client.execute`` of ``--tasks`` no-ops). Slice count K
splits the same 10,000 independent no-ops into K DAGs of N/K and, in the timed window,
``client.submit``s them one after another (each submit returns at its RunAccepted: the owner
built the slice and its standby holds it), then reads every slice's ``results()``. The window
holds the same work as W1's (every encoding, upload, build, snapshot, task and result), but
slice i runs on the daemons while slice i+1 is encoded, sent and built: the bound a sliced
submission in the product would approach, with a run's fixed costs (its RunAccepted round
trip, its snapshot to the standby, its outcome) paid K times instead of once. ``Kt``: the K
slices submitted by two client threads (each its own connection, answered once before the
clock), so slice i+1 is encoded and sent while slice i waits for its RunAccepted. W1's tasks
have no edges, so the slices are the run cut by rows. It prints every round's tasks/s per mode,
and per mode the median and the median time a submit took; the machine's load at the start,
after each round and at the end.

``--code`` (in-process, no daemons): the client's per-task cost of shipping the function's code
in each task's payload against once a run: ``dag.wire_tasks`` of the W1 DAG, the
``values.dumps_call`` part of it (best of 5, us a task), and the payload's bytes (the code's
part, the per-task rest), and what a payload without the code (``dumps_call`` of an empty code)
costs and weighs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def w1_dags(handoffd: Any, noop: Any, n: int, k: int) -> list[Any]:
    """The W1 DAG cut into ``k`` DAGs of consecutive ids (the last takes the remainder)."""
    size = -(-n // k)
    dags = []
    for lo in range(0, n, size):
        d = handoffd.DAG()
        for i in range(lo, min(n, lo + size)):
            d.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
        dags.append(d)
    return dags


def one_round(runner: Any, handoffd: Any, noop: Any, n: int, mode: str, pool: Any) -> list[float]:
    """Seconds for W1 in ``mode`` (``K`` slices submitted in turn, ``Kt`` by ``pool``'s two
    threads), then each submit's seconds. The DAGs are built before the clock, as the peer bench
    builds W1's: the window holds each slice's encoding, upload, build, run and results."""
    client = runner.client
    k = int(mode.rstrip("t"))
    dags = w1_dags(handoffd, noop, n, k)
    submits: list[float] = []

    def submit(d: Any) -> Any:
        s0 = time.perf_counter()
        run = client.submit(d)
        submits.append(time.perf_counter() - s0)
        return run

    t0 = time.perf_counter()
    if k == 1:
        got = client.execute(dags[0])
    else:
        if mode.endswith("t"):
            runs = list(pool.map(submit, dags))
        else:
            runs = [submit(d) for d in dags]
        got = {}
        for run in runs:
            got.update(run.results())
    elapsed = time.perf_counter() - t0
    assert len(got) == n and sum(got.values()) == n * (n - 1) // 2, "W1 checksum"
    return [elapsed, *submits]


def rounds_mode(args: argparse.Namespace) -> None:
    import concurrent.futures
    import threading

    from _peers.common import Sizes, noop, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    modes = args.slices.split(",")
    runner = HandoffdRunner(Sizes(False))
    runner.start()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    rates: dict[str, list[float]] = {k: [] for k in modes}
    accepts: dict[str, list[float]] = {k: [] for k in modes}
    print(f"load at start: {load()}")
    try:
        # each pool thread's own connection answered once before the clock: a connection that
        # never heard its daemon's protocol range sends records, not columns (client_conn)
        gate = threading.Barrier(2)
        list(pool.map(lambda _: (gate.wait(), runner.client.nodes()), range(2)))
        one_round(runner, handoffd, noop, args.tasks, "1", pool)  # warm-up: workers, threads
        for r in range(args.rounds):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            line = []
            for k in order:
                s, *subs = one_round(runner, handoffd, noop, args.tasks, k, pool)
                rates[k].append(args.tasks / s)
                accepts[k].extend(subs)
                line.append(f"K={k} {args.tasks / s:,.0f}")
                time.sleep(0.2)
            print(f"round {r + 1} (load {load()}): " + ", ".join(line), flush=True)
    finally:
        pool.shutdown()
        runner.close()
    print(f"load at end: {load()}")
    for k in modes:
        med = statistics.median(rates[k])
        sub = (
            f"; a submit's ms: median {1e3 * statistics.median(accepts[k]):.1f}"
            if accepts[k]
            else ""
        )
        print(
            f"slices {k:>4}: median {med:,.0f} tasks/s{sub}; rounds "
            + ", ".join(f"{x:,.0f}" for x in rates[k])
        )


def best(fn: Any, repeat: int = 5) -> float:
    out = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def code_mode(args: argparse.Namespace) -> None:
    import cloudpickle
    from _peers.common import noop, ship_by_value

    import handoffd
    from handoffd import values

    ship_by_value(cloudpickle)
    n = args.tasks
    (d,) = w1_dags(handoffd, noop, n, 1)
    rows, payloads = d.wire_tasks()
    code = values.dumps_code(noop, ())
    literals = [[i] for i in range(n)]
    empty = values.dumps_code(None, ())

    def calls(c: bytes) -> None:
        for lits in literals:
            values.dumps_call(c, lits, {})

    def plain() -> None:
        import pickle

        for lits in literals:
            pickle.dumps((lits, {}), protocol=5)

    wire = best(lambda: d.wire_tasks())
    with_code = best(lambda: calls(code))
    without = best(lambda: calls(empty))
    bare = best(plain)
    sizes = [len(p) for p in payloads]
    no_code = len(values.dumps_call(empty, [n - 1], {}))
    print(f"W1 of {n} no-ops by value, best of 5, us a task:")
    print(f"  dag.wire_tasks (validation, rows, payloads) {1e6 * wire / n:.2f}")
    print(f"  values.dumps_call with the code ({len(code)} B)  {1e6 * with_code / n:.3f}")
    print(f"  values.dumps_call of an empty code ({len(empty)} B) {1e6 * without / n:.3f}")
    print(f"  pickle.dumps((literals, {{}})) alone          {1e6 * bare / n:.3f}")
    print(
        f"payload bytes a task: {statistics.mean(sizes):.1f} (min {min(sizes)}, max {max(sizes)}), "
        f"of which the code {len(code)}; without it {no_code}; "
        f"a run's payloads {sum(sizes):,} B, the code once {len(code) + n * no_code:,} B"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--slices", default="1,5,10,10t", help="modes, comma-separated")
    parser.add_argument("--code", action="store_true", help="the in-process code-cost figures")
    args = parser.parse_args()
    if args.code:
        code_mode(args)
    else:
        rounds_mode(args)


if __name__ == "__main__":
    main()
