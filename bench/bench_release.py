"""A run's end on the owner: the CPU of releasing a finished run, and what a released run keeps.

Runs W1 (10,000 independent tasks) or W2 (50 x 100 layered DAG) through ``OwnerScheduler`` with
``bench_owner``'s simulated nodes, then feeds ``ResultsReleased`` and counts, per task: the process
CPU of the release (its call, and the deallocation of what it drops), the bytes still allocated
after it (tracemalloc, from before the submission; the bench's own specs excluded), the CPU of the
first full history query of the released run, and of ``forget``. A big run's release goes in
slices, each a batch of its own on a timer of 0 s (``("release", run)``): ``hold`` is the longest
of those batches (wall time, ms; what the owner's loop is held at a time), ``release`` their CPU
summed. ``--tasks N`` adds ``big``: N independent tasks. Usage::

    .venv/bin/python bench/bench_release.py --only w1,w2 --repeat 5
    .venv/bin/python bench/bench_release.py --only big --tasks 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_owner import Sim, w1_specs, w2_specs  # noqa: E402

from handoffd.scheduler import events as ev  # noqa: E402
from handoffd.spec import RunOptions  # noqa: E402


def once(specs: list, memory: bool) -> dict[str, float]:
    sim = Sim(2, 1.0, 32, 4)
    if memory:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] if memory else 0
    sim.feed([ev.RunSubmitted("run", specs, RunOptions())])
    while "run" not in sim.finished:
        if not sim.step():
            raise RuntimeError("the simulation stalled with the run unfinished")
    n = len(specs)
    gc.collect()
    release, hold, slices = 0.0, 0.0, 0
    batch: list = [ev.ResultsReleased("run")]
    while batch:
        t0, w0 = time.process_time(), time.perf_counter()
        out = sim.sched.handle_batch(batch, sim.now + 1.0)
        release += time.process_time() - t0
        hold = max(hold, time.perf_counter() - w0)
        slices += 1
        batch = [
            ev.TimerFired(i.key)
            for i in out
            if isinstance(i, ev.StartTimer) and i.key[0] == "release"
        ]
    kept = 0.0
    if memory:
        gc.collect()
        kept = (tracemalloc.get_traced_memory()[0] - base) / n
        tracemalloc.stop()
    t0 = time.process_time()
    h = sim.sched.run_history("run")
    assert h is not None and len(h.tasks) == n
    query = time.process_time() - t0
    del h
    t0 = time.process_time()
    sim.sched.forget("run")
    forget = time.process_time() - t0
    return {
        "release": release / n * 1e6,
        "hold": hold * 1e3,
        "slices": slices,
        "kept": kept,
        "query": query / n * 1e6,
        "forget": forget / n * 1e6,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", default="w1,w2")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--tasks", type=int, default=100_000, help="tasks of the big shape")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    args = p.parse_args()
    shapes = {
        "w1": lambda: w1_specs(10_000),
        "w2": lambda: w2_specs(50, 100),
        "big": lambda: w1_specs(args.tasks),
    }
    for name in args.only.split(","):
        specs = shapes[name]()
        rows = [once(specs, memory=False) for _ in range(args.repeat)]
        kept = 0.0 if args.no_memory else once(specs, memory=True)["kept"]
        keys = ("release", "hold", "slices", "query", "forget")
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        print(
            f"{name}: {len(specs)} tasks: longest batch {med['hold']:.1f} ms "
            f"(max {max(r['hold'] for r in rows):.1f}, {med['slices']:.0f} batches); "
            f"us/task release {med['release']:.2f} "
            f"(min {min(r['release'] for r in rows):.2f}), first history query {med['query']:.2f}, "
            f"forget {med['forget']:.2f}; retained after release {kept:.0f} B/task"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
