"""Run a daemon with its loop thread's CPU split by part (``bench/owner_cpu_split.py``).

    python owner_cpu.py OUT_JSON python -m handoffd.cli.daemon start ...

Wraps the daemon's command (the peer runner's ``owner_wrap``): before the daemon's module runs,
each function of ``PARTS`` is wrapped to add the calling thread's CPU time (``time.thread_time``,
user + system, not wall time: a loaded machine's waits are not counted) it took, inclusive, and
its calls; asyncio's ``Handle._run`` is counted by callback and ``_run_once`` as a whole (the
loop's own work is a turn's time less its callbacks'); the cyclic collector's runs on the loop
thread by generation (``gc.callbacks``). A thread writes the running totals to OUT_JSON every
0.1 s. Measurement only: each wrapped call pays two ``thread_time`` calls (~0.5-1 us), so compare
parts and runs of this tool with each other, never with a plain daemon's CPU.
"""

from __future__ import annotations

import asyncio.base_events
import asyncio.events
import collections
import functools
import gc
import importlib
import json
import os
import runpy
import sys
import threading
import time
from time import thread_time
from typing import Any

#: (module, attribute path, label): what is timed. Nested parts count in each (inclusive).
PARTS = (
    ("handoffd.transport.zmq_transport", "ZmqTransport._read_batch", "transport: read a batch"),
    ("handoffd.transport.zmq_transport", "ZmqTransport.send", "transport: send"),
    ("handoffd.transport.zmq_transport", "send_parts", "transport: send_parts"),
    ("handoffd.transport.zmq_transport", "ZmqTransport._check_sent", "transport: check sent"),
    ("handoffd.protocol.codec", "Codec.decode", "codec: decode"),
    ("handoffd.protocol.codec", "Codec.encode", "codec: encode"),
    ("handoffd.daemon.node_routing", "NodeRouting._on_frames", "node: a message in (decoded)"),
    ("handoffd.daemon.node_routing", "NodeRouting._deliver", "node: our own answers fed"),
    ("handoffd.daemon.node_routing", "NodeRouting._to_executor", "node: a dispatch to us"),
    ("handoffd.daemon.node_routing", "NodeRouting.send", "node: send"),
    ("handoffd.daemon.node_reliability", "NodeReliability._run_membership", "node: membership"),
    ("handoffd.daemon.owner_nodes", "NodeViews.member_updates", "owner: member updates"),
    ("handoffd.daemon.owner", "OwnerIO._feed_all", "owner: scheduler batch"),
    ("handoffd.daemon.owner", "OwnerIO.handle", "owner: a message"),
    ("handoffd.daemon.owner", "OwnerIO.from_here", "owner: our executor's record"),
    ("handoffd.daemon.owner", "OwnerIO.tick", "owner: tick"),
    ("handoffd.daemon.reports", "observe_table", "owner: reports' history"),
    ("handoffd.daemon.replication", "ReplicationIO.tasks_changed", "replication: changes"),
    ("handoffd.daemon.replication", "ReplicationIO._flush", "replication: flush"),
)

cpu: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()
_LOOP_THREAD = threading.main_thread().ident


def _timed(fn: Any, label: str) -> Any:
    @functools.wraps(fn)  # (a timed callback is counted under its own name too)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu[label] += thread_time() - started
            calls[label] += 1

    return timed


def _wrap(module: str, path: str, label: str) -> None:
    owner: Any = importlib.import_module(module)
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    setattr(owner, name, _timed(getattr(owner, name), label))


_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if threading.get_ident() != _LOOP_THREAD:
        return
    if phase == "start":
        _gc_started[0] = thread_time()
        return
    label = f"gc: generation {info.get('generation', -1)}"
    cpu[label] += thread_time() - _gc_started[0]
    calls[label] += 1


_run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
_handle_run = asyncio.events.Handle._run


def run_once(self: Any) -> None:
    started = thread_time()
    _run_once(self)
    cpu["(loop turns)"] += thread_time() - started
    calls["(loop turns)"] += 1


def handle_run(self: Any) -> None:
    callback = self._callback
    label = "callback: " + (getattr(callback, "__qualname__", None) or type(callback).__name__)
    started = thread_time()
    _handle_run(self)
    cpu[label] += thread_time() - started
    calls[label] += 1


def _writer(path: str) -> None:
    while True:
        time.sleep(0.1)
        with open(f"{path}.tmp", "w") as f:
            json.dump({"cpu": dict(cpu), "calls": dict(calls)}, f)
        os.replace(f"{path}.tmp", path)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    at = args.index("-m")
    module = args[at + 1]
    for part in PARTS:
        _wrap(*part)
    asyncio.base_events.BaseEventLoop._run_once = run_once  # type: ignore[attr-defined]
    asyncio.events.Handle._run = handle_run  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_writer, args=(out,), name="cpu-tally", daemon=True).start()
    sys.argv = [module, *args[at + 2 :]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
