"""The worker process alone: its CPU per job, one job at a time (as W3) and in batches (as W1).

    .venv/bin/python bench/bench_worker.py [--jobs 20000] [--batch 64] [--repeat 3] [--cold KIB]
        [--only one,batch] [--profile FILE]

Spawns one worker (``handoffd.worker._process.main``, as a WorkerPool does) and feeds it no-op
jobs straight on its pipe, framed as the pool frames them (``_pipe.pickle_job``), each job a new
payload (the function's literal argument changes per call, as in W3) with a task title: "one"
sends a job and waits for its reply before the next (the worker sleeps between jobs: its wake-up
is in the figure), "batch" sends ``--batch`` jobs in one message (one RUN, as the pool sends
them, or with ``--form short`` and in a build before RUN a SHORT_JOB each) and reads their
replies.
``--cold KIB``: between two jobs of "one" this process walks that much memory (W3's worker wakes
with cold caches). Prints the worker's CPU per job (``/proc/PID/task/*/schedstat``) and this
process's, per repeat and the median. ``--wrap CMD``: the worker runs under CMD (callgrind: instructions, not
noisy CPU time). ``--profile FILE``: the worker runs under cProfile (CPU time) and writes its stats there.
Run it with another checkout's interpreter (or PYTHONPATH) to compare builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any


def noop(i: int) -> int:
    return i


def _cpu(pid: int) -> float:
    """Seconds on a CPU of every thread of ``pid`` (schedstat: nanoseconds, not 10 ms ticks)."""
    ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ns += int(f.read().split()[0])
    return ns / 1e9


def profiled(out: str, *args: Any) -> None:
    """The worker's main under cProfile (CPU time), stats written when its pipe ends."""
    import cProfile

    from handoffd.worker import _process

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        _process.main(*args)
    finally:
        profile.disable()
        profile.dump_stats(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default="")
    parser.add_argument("--only", default="one,batch")
    parser.add_argument(
        "--form",
        default="run",
        choices=("run", "short"),
        help="a batch's message: one RUN (as the pool sends a chain's jobs, where the build has "
        "it) or a SHORT_JOB a job",
    )
    parser.add_argument(
        "--wrap",
        default="",
        help="run the worker's interpreter under this command, e.g. 'valgrind --tool=callgrind "
        "--callgrind-out-file=w.out' (instructions per job: two runs, --jobs N and M, "
        "difference of their totals over the jobs between; no load noise)",
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=0,
        help="KiB of memory this process walks between two jobs of 'one' (as the owner and the "
        "client run between a worker's W3 jobs, taking its data out of the caches)",
    )
    args = parser.parse_args()

    import multiprocessing
    import pickle

    from handoffd import values
    from handoffd.worker import _pipe, _process
    from handoffd.worker._records import Job

    ctx = multiprocessing.get_context("spawn")
    if args.wrap:
        import shlex
        import sys
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
            script.write(f'#!/bin/sh\nexec {args.wrap} {shlex.quote(sys.executable)} "$@"\n')
        os.chmod(script.name, 0o755)
        ctx.set_executable(script.name)
    parent, child = ctx.Pipe(duplex=True)
    setup = ("bench", os.getpid(), "", 0.5)
    try:  # the count of cancels sent, as the pool passes it (a build before it has none)
        from handoffd.worker import _cancels

        cancels = _cancels.Count.create()
        more: tuple = (cancels.for_worker(),) if cancels is not None else ()
    except ImportError:
        more = ()
    if args.profile:
        target: Any = profiled
        targs: tuple = (args.profile, child, None, setup, *more)
    else:
        target, targs = _process.main, (child, None, setup, *more)
    proc = ctx.Process(target=target, args=targs, daemon=True)
    proc.start()
    child.close()
    assert parent.recv_bytes() == _process.READY
    code = values.dumps_code(noop)
    token = 0

    def job(i: int) -> bytes:
        nonlocal token
        token += 1
        payload = values.dumps_call(code, [i], {})
        data, _ = _pipe.pickle_job(token, Job(token, payload, [], title=f"run r1 task t{i}"))
        return data

    def replies(count: int) -> None:
        got = 0
        while got < count:
            data = parent.recv_bytes()
            if data[:1] == getattr(_process, "KEPT", None):  # (a build before it: all pickled)
                got += 1
                continue
            batch = pickle.loads(data)
            for reply in batch:
                assert reply[1] == _process.OK, reply
            got += len(batch)

    walk = bytearray(args.cold * 1024)

    def one(n: int) -> None:
        for i in range(n):
            parent.send_bytes(job(i))
            replies(1)
            if walk:
                walk[::64] = bytes(len(walk) // 64 + (len(walk) % 64 > 0))

    run_message = getattr(_pipe, "run_message", None)  # (a build before it: SHORT_JOBs)

    def batch(n: int) -> None:
        nonlocal token
        for start in range(0, n, args.batch):
            size = min(args.batch, n - start)
            if run_message is not None and args.form == "run":  # as the pool feeds a chain
                first = token + 1
                token += size
                payloads = [values.dumps_call(code, [start + k], {}) for k in range(size)]
                titles = [f"run r1 task t{start + k}" for k in range(size)]
                parent.send_bytes(run_message(first, False, titles, payloads))
            else:
                parent.send_bytes(b"".join(job(start + k) for k in range(size)))
            replies(size)

    modes = {"one": one, "batch": batch}
    chosen = [m for m in args.only.split(",") if m]
    for mode in chosen:
        modes[mode](min(args.jobs, 2000))  # warm
    figures: dict[str, list[float]] = {m: [] for m in chosen}
    for r in range(args.repeat):
        for mode in chosen:
            w0, c0 = _cpu(proc.pid), time.process_time()  # type: ignore[arg-type]
            t0 = time.perf_counter()
            modes[mode](args.jobs)
            wall = time.perf_counter() - t0
            w1, c1 = _cpu(proc.pid), time.process_time()  # type: ignore[arg-type]
            worker_us = (w1 - w0) / args.jobs * 1e6
            figures[mode].append(worker_us)
            print(
                f"repeat {r} {mode:5s}: worker {worker_us:6.1f} us/job, this process "
                f"{(c1 - c0) / args.jobs * 1e6:6.1f} us/job, wall {wall / args.jobs * 1e6:6.1f} us/job"
            )
    for mode in chosen:
        print(f"median {mode:5s}: worker {statistics.median(figures[mode]):.1f} us/job")
    print(f"load {os.getloadavg()[0]:.2f}")
    parent.close()
    proc.join(120 if args.wrap else 10)


if __name__ == "__main__":
    main()
