"""What the client's Python does per W3 call, counted (issue 13, W3): opcodes by function and
Python calls (functions and C functions), for one one-task ``execute`` as ``cpu_per_call.py``
makes it (the DAG built around it included), after ``--warm`` calls.

    .venv/bin/python bench/client_ops.py [--warm 300] [--top 30]

Counts do not move with the machine's load, as CPU figures do on 2 shared cores: a cut that
lowers them runs less Python, though what an opcode costs varies (an attribute read in one C
call, ``operator.attrgetter``, was fewer opcodes and no less CPU than the reads it replaced), so
confirm with CPU (``cpu_per_call.py``, alternating). Starts the peer benchmark's 2 daemons inside
``unshare -n``; run it from a neutral directory with a copy of bench/ (see cpu_per_call.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--top", type=int, default=30, help="functions listed by opcodes")
    args = parser.parse_args()
    from _peers.common import Sizes, noop, reexec_in_netns

    reexec_in_netns()
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    runner = HandoffdRunner(Sizes(True))
    runner.start()
    client: Any = runner.client

    def call(i: int) -> None:
        dag = handoffd.DAG().add_function(handoffd.Function(id="one", code=noop, extra_args=[i]))
        assert client.execute(dag) == {"one": i}

    try:
        for i in range(args.warm):
            call(i)
        opcodes: collections.Counter[str] = collections.Counter()
        calls = [0]

        def trace(frame: Any, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                opcodes[f"{os.path.basename(code.co_filename)}:{code.co_name}"] += 1
            return trace

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event in ("call", "c_call"):
                calls[0] += 1

        sys.settrace(trace)
        call(1)
        sys.settrace(None)
        sys.setprofile(profile)
        call(2)
        sys.setprofile(None)
        print(f"one W3 call: {sum(opcodes.values())} opcodes, {calls[0]} Python calls")
        for name, count in opcodes.most_common(args.top):
            print(f"{count:6d}  {name}")
    finally:
        runner.close()


if __name__ == "__main__":
    main()
