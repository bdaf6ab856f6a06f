"""What a big run's finished tasks cost the cyclic collector on their owner (issue 19 item 7;
docs/performance.md, gc19): a run of N tasks is built and frozen (``gc.freeze``, as an upload's
build and a takeover's rebuild leave it), then every task is dispatched, reported (the history's
``observe_done``, as a node's report) and succeeded; then the tracked objects this added and the
CPU time of five full collections. In one process, so the figures do not depend on the machine's
load as the daemons' stalls do; only APIs main has too, so main's build runs it for an A/B:

    .venv/bin/python bench/bench_owner_gc.py [N=200000] [chain]
    env -u PYTHONPATH /work/main/.venv/bin/python bench/bench_owner_gc.py [N] [chain]

``chain``: each task takes the previous one's result and only the last is an output (each
finished task frees its input), dispatched one at a time.
"""

import gc
import sys
import time

from handoffd.scheduler import events as ev
from handoffd.scheduler import history
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
CHAIN = sys.argv[2:3] == ["chain"]
BATCH = 1024
sched = OwnerScheduler("a", now=0.0)
version = 1
big = {"cpu": 1e9}
sched.handle(ev.NodeUpdate("b", "b:1", True, big, big, version), 0.0)
specs = tuple(
    TaskSpec(
        id=f"t{i}", deps=(f"t{i - 1}",) if CHAIN and i else (), cost={"cpu": 1.0}, payload=b"p"
    )
    for i in range(N)
)
options = RunOptions(outputs=(f"t{N - 1}",)) if CHAIN else RunOptions()
out = list(sched.handle(ev.RunSubmitted("r1", specs, options), 0.0))
del specs
gc.collect()
gc.freeze()  # the built run: what the collector no longer walks
base = len(gc.get_objects())
t = 0.0
done = 0
cpu0 = time.process_time()
while done < N:
    t += 0.001
    events: list = []
    accepted: list = []
    for ins in out:
        if isinstance(ins, ev.StartTimer):
            events.append(ev.TimerFired(ins.key))
        elif isinstance(ins, ev.Dispatch):
            pairs = [(it.task_id, it.attempt) for it in ins.items]
            events.append(ev.DispatchAnswered(ins.node, ins.run_id, pairs, ()))
            accepted += pairs
    out = []
    for e in events:
        out += sched.handle(e, t)
    for lo in range(0, len(accepted), BATCH):
        part = accepted[lo : lo + BATCH]
        ids = [p[0] for p in part]
        tries = [p[1] for p in part]
        n = len(part)
        run = sched.run_state("r1")
        history.observe_done(
            run.tasks,
            "b",
            tuple(ids),
            tries,
            [7] * n,
            [t] * n,
            [t] * n,
            [1] * n,
            [8] * n,
            [],
        )
        version += 1
        out += sched.handle(ev.NodeUpdate("b", "b:1", True, big, big, version), t)
        succeeded = ev.TasksSucceeded("r1", "b", ids, tries, [8] * n, [None] * n, [0.001] * n)
        out += sched.handle(succeeded, t)
        done += n
    if not events and not accepted:
        raise SystemExit(f"stuck at {done} of {N} tasks done")
cpu_run = time.process_time() - cpu0
gc.collect()
added = len(gc.get_objects()) - base
times = []
for _ in range(5):
    c = time.process_time()
    gc.collect(2)
    times.append(time.process_time() - c)
print(
    f"N={N}{' chain' if CHAIN else ''}: run {cpu_run:.1f} CPU s; tracked objects added by the finished tasks {added:,}"
    f" ({added / N:.2f} per task); full collection CPU ms "
    + " ".join(f"{x * 1000:.0f}" for x in times)
)
