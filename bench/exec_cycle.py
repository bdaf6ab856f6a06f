"""The executor's CPU per task in-process: DispatchColumns read (columns.DispatchTable),
ExecutorState admission/chains, each job's end, the report flush and its ReportColumns, as the
shell does for a remote owner; no daemon, no worker, so an A/B holds under a loaded machine:

    cd /tmp && CHECKOUT/.venv/bin/python COPY/bench/exec_cycle.py [inputs per task] [rounds] [items]

``queued``: each dispatch comes while the previous one's last job still runs (the cpu held, its
other tasks queued), as a node's dispatches come in a steady window. ``items``: hand the
executor ``DispatchTasks`` as built (the per-item path), not the received columns read.
``here``: what the owner on our own node does, from the scheduler's ``Dispatch``:
``daemon.dispatch.dispatch_here`` (or, in a build before it, ``dispatch_tasks``) then the
executor's intake, both counted.
"""

import statistics
import sys
import time

from handoffd.daemon.executor_events import (
    FLUSH,
    Dispatched,
    Execute,
    ReportedHere,
    SendMessage,
    Soon,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import columns
from handoffd.protocol import messages as m
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker._records import Outcome
from handoffd.worker.ledger import Ledger

K = int(sys.argv[1]) if len(sys.argv) > 1 else 0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
N, BATCH = 2000, 20
read = getattr(columns, "DispatchTable", columns.dispatch_items)
ITEMS = len(sys.argv) > 3 and sys.argv[3] == "items"
# ``queued``: each dispatch comes while the jobs of the one before still run (the slot holds the
# cpu, tasks wait in the queue), as a node's dispatches come in a steady window (d1's in W1);
# else every batch is run to its end before the next
QUEUED = len(sys.argv) > 3 and sys.argv[3] == "queued"
HERE = len(sys.argv) > 3 and sys.argv[3] == "here"
if HERE:
    from handoffd.daemon import dispatch as _dispatch
    from handoffd.scheduler import events as ev

    to_here = getattr(_dispatch, "dispatch_here", _dispatch.dispatch_tasks)


def run_once(seed):
    st = ExecutorState(
        address="me:1",
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=1024,
    )
    now = 0.0
    soon = []
    jobs = []
    sent = 0

    def drive(out):
        nonlocal sent
        for ins in out:
            if isinstance(ins, Execute):
                jobs.extend(ins.jobs)
            elif isinstance(ins, Soon):
                soon.append(ins.event)
            elif isinstance(ins, ReportedHere):  # (to the owner on our own node: ``here``)
                sent += len(ins.table) if hasattr(ins, "table") else len(ins.reports)
            elif isinstance(ins, SendMessage):
                msg, frames = ins.msg, ins.frames
                if type(msg) is m.TasksReported:
                    sizes, frames = columns.join_frames(frames)
                    columns.report_columns(msg, sizes)
                    sent += len(msg.reports)
                elif type(msg) is ReportColumns:
                    # (built straight as columns for a remote owner since session 17)
                    sent += msg.states.count(1)
                elif type(msg) is m.DispatchReplied:
                    columns.replied_columns(msg)

    for b in range(0, N, BATCH):
        frames = [b"payload" * 20] + [b"v%d" % i for i in range(K)]
        # inputs held here (in the store, one holder: this node), as most of W2's are
        refs = tuple(m.InputRef("value", f"p{i}", ("me:1",), -1, "variadic", -1) for i in range(K))
        for i in range(K):
            st.store.put(f"r{seed}", f"p{i}", b"v%d" % i)
        items = tuple(
            m.DispatchItem(f"s{seed}t{b + i}", 1, {"cpu": 1.0}, "variadic", None, 0, refs, 0, 1.0)
            for i in range(BATCH)
        )
        msg = m.DispatchTasks(f"r{seed}", "owner:1", items, (), ())
        if HERE:
            # (the scheduler's items: one cost dict and one payload shared, as a run's tasks of
            # one function share them; the inputs held here)
            cost, payload = {"cpu": 1.0}, frames[0]
            vrefs = tuple(ev.ValueRef(f"p{i}", ("me",), None) for i in range(K))
            tasks = tuple(
                ev.DispatchedTask(f"s{seed}t{b + i}", 1, payload, cost, "variadic", None, vrefs)
                for i in range(BATCH)
            )
            ins = ev.Dispatch("me", f"r{seed}", 1, tasks)
            msg, frames = to_here(ins, "me:1", {"me": "me:1"}.get, ())
        elif not ITEMS:
            # (what the node's _route does with the received columns: read into a DispatchTable
            # the executor accepts from, or, in a build before it, into DispatchTasks)
            msg = read(columns.dispatch_columns(msg))
        drive(st.handle(Dispatched(msg, frames, 1), now))
        if QUEUED and b + BATCH < N:
            # end the jobs out but the last one (the slot keeps the cpu), as one read brings them
            while soon:
                drive(st.handle(soon.pop(0), now))
            done = [
                Outcome(j.key, True, b"\x80\x05K\x01.", duration=1e-5, pid=1) for j in jobs[:-1]
            ]
            del jobs[:-1]
            drive(st.tasks_ended(done, now))
            drive(st.handle(FLUSH, now))
            continue
        while jobs or soon:
            while soon:
                drive(st.handle(soon.pop(0), now))
            if jobs:
                # the outcomes of the jobs out, as one read of a worker's pipe brings them
                done = [Outcome(j.key, True, b"\x80\x05K\x01.", duration=1e-5, pid=1) for j in jobs]
                jobs.clear()
                if hasattr(st, "tasks_ended"):
                    drive(st.tasks_ended(done, now))
                else:  # (a build before tasks_ended: one call per outcome)
                    for outcome in done:
                        drive(st.task_ended(outcome, now))
                drive(st.handle(FLUSH, now))
    return sent


per = []
for r in range(ROUNDS):
    t = time.process_time()
    n = run_once(r)
    per.append((time.process_time() - t) / N * 1e6)
    assert n == N, n
print(
    f"inputs {K}{' (items)' if ITEMS else ' (here)' if HERE else ' (queued)' if QUEUED else ''}: median {statistics.median(per):.2f} us/task, min {min(per):.2f}, rounds {ROUNDS}"
)
