"""Placement kernel throughput: compiled core vs its pure-Python twin.

Array kernels: places 100,000 tasks (4 resource kinds, mixed sizes, fixed seed) on 10, 100 and 1,000
nodes with each policy and each backend, and prints placements per second, the placed fraction and
the compiled/Python ratio measured in the same run. The Python twin is a naive full scan (it is the
test oracle), so it runs on the first 2,000 tasks of the same sequence and its rate is scaled to
per-second.

Entry point (what the owner calls, ``handoffd._core.api``): microseconds per call of ``place`` on
resource dicts for batches of 1 to 4,096 tasks on 2 to 100 nodes (the owner places up to 4,096 per
call), and of one dispatch-window ``pick`` on 2 to 100 nodes, per backend (best of 5).

``--json`` prints one JSON document: ``{"arrays": [{"policy", "nodes", "backend",
"placements_per_s", ...}], "entry": [{"kernel", "nodes", "tasks", "backend", "us_per_call"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from handoffd._core import api, binpack_py

try:
    from handoffd._core import binpack as binpack_c
except ImportError:  # pragma: no cover - the Makefile builds it
    binpack_c = None

KINDS = ("cpu", "memory", "gpu", "ssd")
SEED = 20240601
HEADROOM = 1.15  # total capacity / total demand, per kind


def make_tasks(n_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """Mixed sizes: 70% small, 20% medium, 8% GPU, 2% large (cpu, memory MB, gpu, ssd GB)."""
    kind = rng.choice(4, size=n_tasks, p=[0.70, 0.20, 0.08, 0.02])
    demand = np.zeros((n_tasks, len(KINDS)))
    cpu_small = rng.choice([0.25, 0.5, 1.0], size=n_tasks)
    demand[:, 0] = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            cpu_small,
            rng.integers(2, 5, n_tasks),
            rng.integers(1, 5, n_tasks),
            rng.integers(8, 17, n_tasks),
        ],
    )
    demand[:, 1] = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            rng.integers(128, 1025, n_tasks),
            rng.integers(2048, 8193, n_tasks),
            rng.integers(4096, 16385, n_tasks),
            rng.integers(16384, 65537, n_tasks),
        ],
    ).astype(float)
    demand[:, 2] = (kind == 2).astype(float)
    demand[:, 3] = np.where(rng.random(n_tasks) < 0.3, rng.integers(1, 51, n_tasks), 0)
    return demand


def make_nodes(n_nodes: int, demand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heterogeneous nodes (size factor 1, 2 or 4) whose total capacity is HEADROOM x total demand."""
    factor = rng.choice([1.0, 2.0, 4.0], size=n_nodes)
    share = factor / factor.sum()
    capacity = np.outer(share, demand.sum(axis=0) * HEADROOM)
    # Every node must hold the largest single task, or big tasks could never run anywhere.
    capacity = np.maximum(capacity, demand.max(axis=0))
    return np.ceil(capacity)


def run_one(module, demand, capacity, policy: str, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` placements per second and the placed fraction."""
    n_tasks = demand.shape[0]
    order = np.arange(n_tasks, dtype=np.int64)
    none = np.full(n_tasks, -1, dtype=np.int64)
    best = float("inf")
    placed = 0
    for _ in range(repeats):
        free = capacity.copy()
        start = time.perf_counter()
        _, placed = module.place_batch(demand, free, capacity, order, none, none, policy)
        best = min(best, time.perf_counter() - start)
    return n_tasks / best, placed / n_tasks


def _best_us(fn, repeats: int) -> float:
    """Best of 5 timings of ``repeats`` calls, in microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def entry_records(backends: list[str]) -> list[dict]:
    """The entry point's ``place`` and window ``pick`` on resource dicts, per call."""
    rng = np.random.default_rng(SEED)
    demand = make_tasks(4096, rng)
    records = []
    for n_nodes in (2, 16, 100):
        capacity = make_nodes(n_nodes, demand, np.random.default_rng(SEED + n_nodes))
        caps = [dict(zip(KINDS, row.tolist(), strict=True)) for row in capacity]
        frees = [
            {k: v * f for k, v in c.items()} for c, f in zip(caps, rng.random(n_nodes), strict=True)
        ]
        needs = [{k: v for k, v in zip(KINDS, row.tolist(), strict=True) if v} for row in demand]
        for backend in backends:
            core = api.kernels(backend)
            for n_tasks in (1, 16, 256, 4096):
                if backend == "python" and n_tasks > 256:
                    continue
                batch = needs[:n_tasks]
                none = [-1] * n_tasks
                us = _best_us(
                    lambda: core.place(batch, frees, caps, none, none, "binpack"),  # noqa: B023
                    max(3, 20_000 // (n_tasks + n_nodes)),
                )
                records.append(
                    {
                        "kernel": "place",
                        "nodes": n_nodes,
                        "tasks": n_tasks,
                        "backend": backend,
                        "us_per_call": round(us, 2),
                    }
                )
            loads = [{k: v * 16 for k, v in f.items()} for f in frees]
            fill = core.window_fill(caps, loads, 32)
            need = needs[0]
            us = _best_us(lambda: fill.pick(need, -1, "binpack"), 2_000)  # noqa: B023
            records.append(
                {
                    "kernel": "window pick",
                    "nodes": n_nodes,
                    "tasks": 1,
                    "backend": backend,
                    "us_per_call": round(us, 2),
                }
            )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--python-tasks", type=int, default=2_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    demand = make_tasks(args.tasks, rng)
    subset = demand[: args.python_tasks]
    backends = [("python", binpack_py, subset, 1)]
    if binpack_c is not None:
        backends.insert(0, ("cython", binpack_c, demand, 3))
    records = []
    for n_nodes in args.nodes:
        capacity = make_nodes(n_nodes, demand, np.random.default_rng(SEED + n_nodes))
        for policy in binpack_py.POLICIES:
            rates = {}
            for name, module, tasks, repeats in backends:
                rate, fraction = run_one(module, tasks, capacity, policy, repeats)
                rates[name] = rate
                records.append(
                    {
                        "policy": policy,
                        "nodes": n_nodes,
                        "backend": name,
                        "placements_per_s": round(rate),
                        "tasks": int(tasks.shape[0]),
                        "placed_fraction": round(fraction, 4),
                    }
                )
            if "cython" in rates:
                records[-2]["ratio_vs_python"] = round(rates["cython"] / rates["python"], 1)
    entry = entry_records(["cython", "python"] if binpack_c is not None else ["python"])
    if args.json:
        json.dump({"arrays": records, "entry": entry}, sys.stdout, indent=1)
        print()
        return 0
    print(
        f"placement: {args.tasks:,} tasks x {len(KINDS)} kinds ({', '.join(KINDS)}), seed {SEED}; "
        f"the Python twin (naive full scan) places the first {args.python_tasks:,} of them and "
        "its rate is scaled to per-second"
    )
    print(
        f"{'policy':<10} {'nodes':>6} {'backend':<7} {'tasks':>8} {'placed':>7} {'placements/s':>14} {'cy/py':>8}"
    )
    for r in records:
        ratio = f"{r['ratio_vs_python']:.0f}x" if "ratio_vs_python" in r else ""
        print(
            f"{r['policy']:<10} {r['nodes']:>6} {r['backend']:<7} {r['tasks']:>8,} "
            f"{r['placed_fraction']:>7.1%} {r['placements_per_s']:>14,} {ratio:>8}"
        )
    print(
        f"\nentry point (handoffd._core.api, resource dicts, binpack; chosen backend: {api.BACKEND})"
    )
    print(f"{'kernel':<12} {'nodes':>6} {'tasks':>6} {'backend':<7} {'us/call':>10} {'us/task':>8}")
    for r in entry:
        print(
            f"{r['kernel']:<12} {r['nodes']:>6} {r['tasks']:>6} {r['backend']:<7} "
            f"{r['us_per_call']:>10,.2f} {r['us_per_call'] / r['tasks']:>8.2f}"
        )
    if binpack_c is None:
        print("compiled core not importable: only the Python twin was measured")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
