"""What a standby's replica costs the cyclic collector (issue 19 item 7; docs/performance.md,
stall19e): a replica of N tasks, each logged ASSIGNED then DONE with its attempt, then the objects
it added to the collector's books and the CPU time of five full collections. In one process, so
the figure does not depend on the machine's load as the daemons' stalls do.

    .venv/bin/python bench/bench_replica_gc.py [N=200000]
"""

import gc
import sys
import time

from handoffd.protocol.messages import ReplicateLog, TaskDelta
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.snapshot import encode_run_data
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
sched = OwnerScheduler("a", now=0.0)
sched.handle(ev.NodeUpdate("b", "b:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
specs = tuple(TaskSpec(id=f"t{i}", deps=(), cost={"cpu": 1.0}, payload=b"p") for i in range(N))
sched.handle(ev.RunSubmitted("r1", specs, RunOptions()), 0.0)
snap = encode_run_data(sched.snapshot("r1"))
del sched, specs
gc.collect()
standby = StandbyStore("b")
standby.on_snapshot("r1", 0, 0, "a", "a:1", ("b",), snap)
base = len(gc.get_objects())
seq = 0
for state in ("ASSIGNED", "DONE"):
    for lo in range(0, N, 1024):
        seq += 1
        ds = tuple(
            TaskDelta(
                f"t{i}",
                state,
                1,
                "node-b",
                8,
                ("node-b",) if state == "DONE" else (),
                0,
                0,
                int(state == "DONE"),
                i - lo if state == "DONE" else -1,
                (AttemptInfo(1, "node-b", state, 1.0, 2.0, 3.0, 7, 1, 2, "", "", "", ""),),
            )
            for i in range(lo, min(N, lo + 1024))
        )
        frames = [b"v%d" % i for i in range(lo, min(N, lo + 1024))] if state == "DONE" else []
        standby.on_log(
            ReplicateLog("r1", 0, seq, ("b",), ds, "RUNNING", False, None), "a:1", frames
        )
gc.collect()
added = len(gc.get_objects()) - base
times = []
for _ in range(5):
    t = time.process_time()
    gc.collect(2)
    times.append(time.process_time() - t)
print(
    f"N={N}: tracked objects added by the replica {added:,}; full collection CPU ms "
    + " ".join(f"{x * 1000:.0f}" for x in times)
)
