"""W1 and W3 with the dashboard open, against the same two daemons, alternating (issue 16).

    .venv/bin/python bench/bench_dashboard.py [--rounds 6] [--browser]

One 2-daemon cluster (1 cpu each, as bench_vs_peers) on loopback; the first serves HTTP. Each round
runs W1 (10,000 no-op tasks in one run) and W3 (200 one-task runs) twice: once with nobody on the
HTTP port, once with the dashboard open in another process (``_peers.dashboard_watcher``: the
cluster's and the newest run's event streams and a /metrics scrape every second; with
``--browser``, headless chromium on the cluster page and the newest run's page instead). The
order within a round alternates. Prints each pair and the medians, with the ratio "open / closed".
Runs inside the caller's network (loopback only: every address is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _watch(base: str, token: str, browser: bool, stop: Any) -> None:
    from _peers.dashboard_watcher import DashboardWatcher

    watcher = DashboardWatcher(base, token, browser=browser)
    watcher.start()
    stop.wait()
    watcher.close()


def _w1(client: Any, n: int) -> float:
    from _peers.common import noop

    import handoffd

    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    t0 = time.perf_counter()
    out = client.execute(dag)
    elapsed = time.perf_counter() - t0
    assert len(out) == n and sum(out.values()) == n * (n - 1) // 2
    return elapsed


def _w3(client: Any, n: int) -> list[float]:
    from _peers.common import noop

    import handoffd

    samples = []
    for i in range(n):
        dag = handoffd.DAG().add_function(handoffd.Function(id="one", code=noop, extra_args=[i]))
        t0 = time.perf_counter()
        assert client.execute(dag) == {"one": i}
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--w1", type=int, default=10_000)
    parser.add_argument("--w3", type=int, default=200)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    import cloudpickle
    from _peers.common import ship_by_value

    import handoffd
    from handoffd.observability.tokens import http_token
    from handoffd.testing import DaemonCluster, free_port, wait_for
    from handoffd.transport.keys import load_local_key

    ship_by_value(cloudpickle)
    http = free_port()
    cluster = DaemonCluster()
    try:
        d0 = cluster.start(cpu=1, memory=4000, extra=["--http-port", str(http)])
        cluster.start(cpu=1, memory=4000, seeds=[d0.address], extra=["--http-port", "0"])
        token = http_token(load_local_key(os.path.join(cluster.workdir, "local.key")).secret)
        base = f"http://127.0.0.1:{http}"
        ctx = multiprocessing.get_context("spawn")
        with handoffd.connect(d0.address, timeout=30) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="two daemons")
            _w1(client, 2000)  # warm up: workers, imports, the HTTP process
            rows: dict[str, list[tuple[float, float, float]]] = {"closed": [], "open": []}
            for r in range(args.rounds):
                order = ("closed", "open") if r % 2 == 0 else ("open", "closed")
                for mode in order:
                    stop = ctx.Event()
                    proc = None
                    if mode == "open":
                        proc = ctx.Process(target=_watch, args=(base, token, args.browser, stop))
                        proc.start()
                        time.sleep(3.0)  # the page is open before the workload starts
                    w1 = _w1(client, args.w1)
                    w3 = sorted(_w3(client, args.w3))
                    if proc is not None:
                        stop.set()
                        proc.join(60)
                    p50 = w3[len(w3) // 2] * 1000
                    p99 = w3[int(len(w3) * 0.99) - 1] * 1000
                    rows[mode].append((w1, p50, p99))
                    print(
                        f"round {r} {mode:6}: W1 {w1:.2f} s ({args.w1 / w1:,.0f} tasks/s), "
                        f"W3 p50 {p50:.2f} ms p99 {p99:.2f} ms",
                        flush=True,
                    )
    finally:
        cluster.close()
    med = {m: [statistics.median(v[i] for v in rows[m]) for i in range(3)] for m in rows}
    print(f"median closed: W1 {med['closed'][0]:.2f} s, W3 p50 {med['closed'][1]:.2f} ms, p99 "
          f"{med['closed'][2]:.2f} ms")  # fmt: skip
    print(f"median open:   W1 {med['open'][0]:.2f} s, W3 p50 {med['open'][1]:.2f} ms, p99 "
          f"{med['open'][2]:.2f} ms")  # fmt: skip
    print(
        "open / closed: W1 time x{:.3f}, W3 p50 x{:.3f}, p99 x{:.3f}".format(
            *(med["open"][i] / med["closed"][i] for i in range(3))
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
