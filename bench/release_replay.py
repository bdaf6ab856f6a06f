"""A recorded W1 round's release alone (``owner_replay.py``'s recording), for callgrind A/B.

Each W1 round ends with the previous run's release (``ResultsReleased``: a batch of its own in
the recording); ``owner_replay.py replay --rounds K`` counts it with the rest of the round. This
replays the recording up to the first measured round's release, ``--upto before`` it or
``--upto after`` it, and leaves with ``os._exit`` (no teardown: the two runs differ only by the
release call, the run's deallocation included)::

    cd /tmp/X && PYTHONHASHSEED=0 PYTHONPATH=CHECKOUT valgrind --tool=callgrind \\
        --callgrind-out-file=before.out CHECKOUT/.venv/bin/python CHECKOUT/bench/release_replay.py \\
        REC.pkl --upto before          (then --upto after: (after - before) / the run's tasks)

``--memory``: the bytes a task the released run keeps (tracemalloc from the start: what is
allocated after the release less what is after ``forget``). ``--history``: a digest of every
query of the released runs (``OwnedRuns.history``, ``status``, ``times``): an A/B must not change
it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path")
    parser.add_argument("--upto", choices=("before", "after"), default="after")
    parser.add_argument("--memory", action="store_true", help="bytes kept a task (tracemalloc)")
    parser.add_argument("--history", action="store_true", help="digest of the history queries")
    args = parser.parse_args()
    if args.memory:
        tracemalloc.start()
    import owner_replay

    from handoffd.cli.daemon_run import tune_gc
    from handoffd.scheduler import events as ev

    calls, starts, _, scheduler = owner_replay.load(args.path, 1)
    tune_gc()  # (the daemon's collector, as ``owner_replay replay``)
    measured = _events(calls[starts[2]])[0].run_id  # (after the check run and the warm-up)
    release = next(
        i
        for i, call in enumerate(calls)
        if any(type(e) is ev.ResultsReleased and e.run_id == measured for e in _events(call))
    )
    tasks = sum(len(e.specs) for e in _events(calls[starts[2]]) if type(e) is ev.RunSubmitted)
    for name, call_args, _ in calls[:release]:
        getattr(scheduler, name)(*call_args)
    owned = scheduler._owned
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] if args.memory else 0
    if args.upto == "after" or args.memory:
        name, call_args, _ = calls[release]
        getattr(scheduler, name)(*call_args)
    print(f"run {measured}: {tasks} tasks, release at call {release} ({args.upto})")
    if args.history:
        digest = hashlib.sha256()
        for run_id in owned.ids():
            for since, brief in ((0.0, False), (0.0, True), (1e12, False)):
                digest.update(repr(owned.history(run_id, since, brief)).encode())
            digest.update(repr((owned.status(run_id), owned.times(run_id))).encode())
        print(f"digest of the history queries: {digest.hexdigest()[:16]}")
    if args.memory:
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        owned.forget(measured)
        gc.collect()
        gone = tracemalloc.get_traced_memory()[0]
        print(
            f"the released run keeps {(after - gone) / tasks:.1f} bytes a task"
            f" (the release freed {(held - after) / tasks:.1f})"
        )
    sys.stdout.flush()
    os._exit(0)  # (no teardown: the two runs of an A/B differ by the release call alone)


def _events(call: tuple) -> tuple:
    name, args, _ = call
    return args[0] if name == "handle_batch" else (args[0],) if name == "handle" else ()


if __name__ == "__main__":
    main()
