"""Python opcodes and calls per function of the owner daemon over the measured W3 calls.

Wrapper (the owner daemon runs under it; SIGUSR2 starts the count, SIGUSR1 writes it)::

    .venv/bin/python bench/cpu_per_call.py --runs 500 --turns FILE \\
        --owner-wrap ".venv/bin/python bench/owner_opcodes.py FILE"

Summary of FILE, per call (``--runs``: the calls measured)::

    .venv/bin/python bench/owner_opcodes.py --show FILE --runs 500 [--top 60]

Counts every Python opcode the owner's loop thread runs (``sys.settrace`` with
``f_trace_opcodes``) per function, keyed by file, first line and qualified name (a dataclass's
generated ``__init__`` by its class), and prints the totals per call, per layer of the path
(asyncio, transport, codec, node routing, owner shell, scheduler's Python parts, executor, pool,
replication, ...) and per function. Compiled code (the scheduler's Cython modules, C builtins)
runs no opcodes: it shows only through the Python it calls. The tracing slows the owner ~50x, so
work that follows the clock (membership ticks, the memory watch, loop-lag timers, timers' heap
order) is counted per call many times more than at full speed; compare builds by the functions
on the call's own path (deterministic: the same counts run to run). ``cpu_per_call.py`` ends with
a traceback when it tries to print FILE as loop turns: the figures above it are printed already.
"""

from __future__ import annotations

import argparse
import collections
import json
import runpy
import signal
import sys
from typing import Any

_LAYERS = (  # (path prefix inside handoffd, or a stdlib file name) -> layer
    (("transport/",), "transport"),
    (("protocol/", "admission.py"), "codec/protocol/admission"),
    (("daemon/executor", "store/"), "executor"),
    (("worker/_contain", "worker/_watch"), "memory watch (clock)"),
    (("worker/",), "pool"),
    (("daemon/dispatch.py",), "dispatch build"),
    (
        (
            "daemon/owner",
            "daemon/replies.py",
            "daemon/results.py",
            "daemon/reports.py",
            "daemon/ops.py",
            "daemon/task_output.py",
            "daemon/fencing.py",
            "daemon/upload_intake.py",
        ),
        "owner shell",
    ),
    (("daemon/node.py", "daemon/node_routing.py"), "node routing"),
    (("daemon/node_reliability.py", "membership/", "dataclasses.py"), "membership (clock)"),
    (("scheduler/",), "scheduler (Python parts)"),
    (("validation.py", "intake.py", "spec.py", "resources.py"), "submission checks"),
    (("daemon/replication", "replication/", "daemon/leases.py"), "replication"),
    (("daemon/loop_", "observability/"), "loop lag, metrics"),
    (
        ("base_events.py", "events.py", "selector_events.py", "selectors.py", "futures.py"),
        "asyncio",
    ),
)


def _layer(path: str) -> str:
    inner = path.split("/handoffd/")[-1] if "/handoffd/" in path else path.rsplit("/", 1)[-1]
    for prefixes, layer in _LAYERS:
        if inner.startswith(prefixes):
            return layer
    if path.startswith("<"):  # a generated __init__ (dataclasses) or a codec's generated code
        return "generated (dataclass inits, codec)"
    return "other"


def wrap(out: str, command: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` counting opcodes between SIGUSR2 and SIGUSR1."""
    ops: collections.Counter[tuple[str, int, str]] = collections.Counter()
    calls: collections.Counter[tuple[str, int, str]] = collections.Counter()
    keys: dict[int, tuple[str, int, str]] = {}

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            key = keys.get(id(frame))
            if key is None:
                code = frame.f_code
                key = (code.co_filename, code.co_firstlineno, code.co_qualname)
            ops[key] += 1
        elif event == "return":
            keys.pop(id(frame), None)
        return local

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        frame.f_trace_opcodes = True
        code = frame.f_code
        name = code.co_qualname
        if code.co_filename.startswith("<") and "self" in frame.f_locals:
            name = f"{type(frame.f_locals['self']).__qualname__}.{code.co_name}"
        key = keys[id(frame)] = (code.co_filename, code.co_firstlineno, name)
        calls[key] += 1
        return local

    def start(*_: Any) -> None:
        ops.clear()
        calls.clear()
        sys.settrace(on_call)

    def stop(*_: Any) -> None:
        sys.settrace(None)
        rows = [[list(k), ops[k], calls[k]] for k in ops.keys() | calls.keys()]
        with open(out, "w") as f:
            json.dump(rows, f)

    signal.signal(signal.SIGUSR2, start)
    signal.signal(signal.SIGUSR1, stop)
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


def show(path: str, runs: int, top: int) -> None:
    with open(path) as f:
        rows = json.load(f)
    total_ops = sum(r[1] for r in rows)
    total_calls = sum(r[2] for r in rows)
    print(f"per call: {total_ops / runs:.0f} opcodes, {total_calls / runs:.0f} Python calls")
    layers: collections.Counter[str] = collections.Counter()
    layer_calls: collections.Counter[str] = collections.Counter()
    for (file, _, _), n_ops, n_calls in rows:
        layers[_layer(file)] += n_ops
        layer_calls[_layer(file)] += n_calls
    for layer, n_ops in layers.most_common():
        share = 100 * n_ops / max(1, total_ops)
        print(
            f"  {layer:36s} {n_ops / runs:8.0f} ops {share:5.1f} % {layer_calls[layer] / runs:7.1f} calls"
        )
    print("functions:")
    rows.sort(key=lambda r: -r[1])
    for (file, line, name), n_ops, n_calls in rows[:top]:
        where = file.split("/handoffd/")[-1] if "/handoffd/" in file else file.rsplit("/", 1)[-1]
        print(f"  {n_ops / runs:8.1f} ops {n_calls / runs:6.2f} calls  {where}:{line} {name}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] != "--show":  # FILE -- python -m MODULE ARGS
        wrap(sys.argv[1], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--show", required=True, help="the FILE a wrapped owner wrote")
    parser.add_argument("--runs", type=int, required=True, help="calls measured")
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args()
    show(args.show, args.runs, args.top)


if __name__ == "__main__":
    main()
