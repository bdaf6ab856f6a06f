"""The owner's build of a dispatch from what its scheduler hands over: ``--messages`` dispatches
of ``--tasks`` no-op tasks of one function (W1's shape: one payload, cost and inclusion object)
built by ``daemon.dispatch.dispatch_message`` (``--to other``) or ``dispatch_here`` (``--to
here``; ``lane.one_table`` first, as the owner's shell asks). Each dispatch's ``items`` is what
the checkout's scheduler gives: its ``outbox.Placed`` columns where the checkout has them (built
before the timed part), else a tuple of ``DispatchedTask``. Prints microseconds a task, best of 5;
for an instruction count run it under callgrind collecting only the built loop at two
``--messages`` and take the difference::

    cd /tmp/x && PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=_operator_call CHECKOUT/.venv/bin/python COPY/bench/dispatch_placed.py \\
        --messages 200 --once
"""

from __future__ import annotations

import argparse
import operator
import timeit
from typing import Any

from handoffd.daemon import dispatch as d
from handoffd.daemon import lane
from handoffd.scheduler import events as ev
from handoffd.scheduler import outbox

_placed_of = getattr(outbox, "placed_of", None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--tasks", type=int, default=20, help="tasks a dispatch")
    p.add_argument("--to", choices=("other", "here"), default="other")
    p.add_argument("--once", action="store_true", help="one pass under operator.call, no timing")
    args = p.parse_args()
    cost, payload = {"cpu": 1.0}, b"payload" * 20
    address_of = {"a": "a:1", "b": "b:1"}.get

    def items(j: int) -> Any:
        tasks = tuple(
            ev.DispatchedTask(f"t{j}-{i}", 1, payload, cost, "variadic", None, (), 0, float(i))
            for i in range(args.tasks)
        )
        return tasks if _placed_of is None else _placed_of(tasks)

    messages = [ev.Dispatch("b", "r", 1, items(j)) for j in range(args.messages)]
    checksum = 0

    def build_all() -> None:
        nonlocal checksum
        for ins in messages:
            if args.to == "other":
                msg, _ = d.dispatch_message(ins, "a:1", address_of, ())
                checksum += len(msg.task_ids)
            else:
                built = lane.one_table(ins, "a:1", address_of, ())
                if built is None:
                    built = d.dispatch_here(ins, "a:1", address_of, ())
                checksum += len(built[0].task_ids)

    build_all()  # (warm: first-call costs off the count)
    if args.once:
        operator.call(build_all)
        assert checksum == 2 * args.messages * args.tasks, checksum
        return
    best = min(timeit.repeat(build_all, number=1, repeat=5))
    per_task = best / (args.messages * args.tasks) * 1e6
    print(f"{args.to}, {args.tasks} tasks a dispatch: {per_task:.2f} us/task")


if __name__ == "__main__":
    main()
