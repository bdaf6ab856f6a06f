"""How ``handoffctl status`` through a survivor answers while a run's owner changes (issue 19,
item 6; status19): three daemons on loopback, a run of ``--tasks`` sleeping tasks, the owner
SIGKILLed once ``--done`` of them are DONE; then ``client.run(RUN_ID).status()`` (what
``handoffctl status`` calls) through a survivor in a loop until the new owner answers. Prints per
call: seconds since the kill, the call's own seconds, state, owner, term, DONE count, and
whether it said "owner changing"; then a summary line.

    .venv/bin/python bench/status_during_takeover.py --tasks 20000 --done 200

Run it against another checkout with PYTHONPATH=that/checkout (its daemons too: they are
started with this interpreter and inherit the environment).
"""

from __future__ import annotations

import argparse
import sys
import time

import cloudpickle

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def nap(i: int, sleep: float) -> int:
    time.sleep(sleep)
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--done", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.02)
    args = parser.parse_args()
    with DaemonCluster() as cluster:
        a = cluster.start(cpu=2, memory=2000)
        rest = [cluster.start(cpu=2, memory=2000, seeds=[a.address]) for _ in range(2)]
        with handoffd.connect(a.address, timeout=30) as client:
            wait_for(lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3, 60)
            dag = handoffd.DAG()
            for i in range(args.tasks):
                dag.add_function(
                    handoffd.Function(id=f"t{i}", code=nap, extra_args=[i, args.sleep])
                )
            run = client.submit(dag)
            wait_for(lambda: run.status().counts.get("DONE", 0) >= args.done, 300, 0.05)
        killed = time.monotonic()
        a.kill()
        calls = []
        with handoffd.connect(rest[0].address, timeout=5) as reader:
            while time.monotonic() - killed < 300:
                began = time.monotonic()
                status = reader.run(run.id).status()
                took = time.monotonic() - began
                changing = getattr(status, "changing", False)
                calls.append((began - killed, took, changing))
                print(
                    f"{began - killed:7.3f} s  call {took:6.3f} s  {status.state:8} "
                    f"owner {status.owner} term {status.term} done "
                    f"{status.counts.get('DONE', 0)}  {'OWNER CHANGING' if changing else ''}",
                    flush=True,
                )
                if status.owner != a.name and not changing:
                    break
                time.sleep(0.05)
        new_owner_at = calls[-1][0] + calls[-1][1]
        print(
            f"summary: first answer at {calls[0][0] + calls[0][1]:.3f} s, calls {len(calls)}, "
            f"owner changing {sum(c[2] for c in calls)}, "
            f"longest call {max(c[1] for c in calls):.3f} s, new owner's state at "
            f"{new_owner_at:.3f} s after the kill"
        )


if __name__ == "__main__":
    main()
