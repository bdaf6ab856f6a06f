"""The owner's build of a dispatch to its own node, alone: microseconds a task of
``daemon.dispatch.dispatch_here`` (or, in a build before it, ``dispatch_tasks``) for 20-task
dispatches with 0 and 3 value inputs (half sent along, half held), best of 5:

    cd /tmp && CHECKOUT/.venv/bin/python COPY/bench/dispatch_build.py
"""

import timeit

from handoffd.daemon import dispatch as d
from handoffd.scheduler import events as ev

cost, payload, address_of = {"cpu": 1.0}, b"payload" * 20, {"me": "me:1"}.get
build = getattr(d, "dispatch_here", d.dispatch_tasks)
for k in (0, 3):
    refs = tuple(ev.ValueRef(f"p{i}", ("me",), (b"v%d" % i) if i % 2 else None) for i in range(k))
    tasks = tuple(
        ev.DispatchedTask(f"t{i}", 1, payload, cost, "variadic", None, refs) for i in range(20)
    )
    ins = ev.Dispatch("me", "r", 1, tasks)
    n = 2000
    best = min(timeit.repeat(lambda i=ins: build(i, "me:1", address_of, ()), number=n, repeat=5))
    print(f"{build.__name__}, inputs {k}: {best / n / 20 * 1e6:.2f} us/task")
