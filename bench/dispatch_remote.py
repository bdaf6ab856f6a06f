"""The owner's build of a dispatch to another node, alone: ``daemon.dispatch.dispatch_message``
(the scheduler's ``Dispatch`` to the ``DispatchColumns`` and frames sent) over ``--messages``
dispatches of ``--tasks`` tasks with ``--inputs`` value inputs each (half of them sent along, half
held on a node). Prints microseconds a task, best of 5. For an instruction count, run it under
callgrind collecting only the timed loop (it runs under ``operator.call`` once) at two
``--messages`` and take the difference (``--w1``: W1's payloads, a one-int call a task;
``--calls``: to a node of protocol 9, which reads them as calls; ``--intake``: the receiving
node's decode and read instead)::

    cd /tmp/x && valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        CHECKOUT/.venv/bin/python COPY/bench/dispatch_remote.py --messages 200 --once
"""

from __future__ import annotations

import argparse
import operator
import timeit

from handoffd import values
from handoffd.daemon import dispatch as d
from handoffd.protocol.codec import Codec
from handoffd.protocol.columns import received_dispatch
from handoffd.scheduler import events as ev
from handoffd.scheduler.outbox import placed_of


def _w1_task(i: int) -> int:
    """W1's function shape: one int in, one out."""
    return i + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--tasks", type=int, default=20, help="tasks a dispatch")
    p.add_argument("--inputs", type=int, default=0, help="value inputs a task")
    p.add_argument("--once", action="store_true", help="one pass under operator.call, no timing")
    p.add_argument(
        "--w1", action="store_true", help="W1's payloads: a one-int call of one function a task"
    )
    p.add_argument("--calls", action="store_true", help="to a node reading calls (protocol 9)")
    p.add_argument(
        "--intake", action="store_true", help="time the receiving node's read instead (encoded)"
    )
    args = p.parse_args()
    cost, payload = {"cpu": 1.0}, b"payload" * 20
    address_of = {"a": "a:1", "b": "b:1"}.get
    refs = tuple(
        ev.ValueRef(f"p{i}", ("b",), (b"v%d" % i) if i % 2 else None) for i in range(args.inputs)
    )
    code = values.dumps_code(_w1_task) if args.w1 else b""
    messages = [  # (the scheduler's columns, as the owner's shell gets them: outbox.Placed)
        ev.Dispatch(
            "b",
            "r",
            1,
            placed_of(
                [
                    ev.DispatchedTask(
                        f"t{j}-{i}",
                        1,
                        values.dumps_call(code, [j * args.tasks + i], {}) if args.w1 else payload,
                        cost,
                        "variadic",
                        None,
                        refs,
                    )
                    for i in range(args.tasks)
                ]
            ),
        )
        for j in range(args.messages)
    ]
    calls = args.calls

    def build_all() -> None:
        for ins in messages:
            d.dispatch_message(ins, "a:1", address_of, (), None, calls)

    if args.intake:  # (what d1 reads: the head decoded, the table and frames made)
        codec = Codec()
        received = []
        for ins in messages:
            msg, frames = d.dispatch_message(ins, "a:1", address_of, (), None, calls)
            sent = codec.encode(msg, sender="a", frames=frames)
            received.append(sent)
        size = sum(len(f) for sent in received for f in sent)
        print(f"{size / (args.messages * args.tasks):.1f} bytes a task on the wire")

        def build_all() -> None:
            for sent in received:
                got = codec.decode(sent)
                assert got is not None
                received_dispatch(got.msg, got.frames)

    build_all()  # (warm: first-call costs off the count)
    if args.once:
        operator.call(build_all)
        return
    best = min(timeit.repeat(build_all, number=1, repeat=5))
    per_task = best / (args.messages * args.tasks) * 1e6
    print(f"dispatch_message, {args.tasks} tasks, {args.inputs} inputs: {per_task:.2f} us/task")


if __name__ == "__main__":
    main()
