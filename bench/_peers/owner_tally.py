"""Run a daemon with its wire traffic, loop turns and thread names tallied (``bench/owner_breakdown.py``).

    python owner_tally.py OUT_JSON python -m handoffd.cli.daemon start ...

Wraps the daemon's command (the peer runner's ``owner_wrap``): before the daemon's module runs,
``transport.zmq_transport``'s ``send_parts`` and ``ZmqTransport._read_batch`` are wrapped to count
messages and bytes (all frames) by message type, and asyncio's ``_run_once`` and ``Handle._run`` to
count loop turns and callbacks by their qualified name, and the cyclic collector's runs
and time by generation (``gc.callbacks``); a thread writes the running totals and
the process's threads (native id -> name) to OUT_JSON every 0.1 s. Measurement only: the
counting adds its own cost to the daemon, so its CPU is read without this wrapper.
"""

from __future__ import annotations

import asyncio.base_events
import asyncio.events
import collections
import gc
import json
import os
import runpy
import sys
import threading
import time
from typing import Any

import msgpack

from handoffd.protocol import schema
from handoffd.transport import zmq_transport

counts: collections.Counter[str] = collections.Counter()
sizes: collections.Counter[str] = collections.Counter()
loop: collections.Counter[str] = collections.Counter()
collections_gc: collections.Counter[str] = collections.Counter()  # per generation: count, seconds
_gc_start = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
        return
    generation = info.get("generation", -1)
    collections_gc[f"gen{generation} collections"] += 1
    collections_gc[f"gen{generation} us"] += round(1e6 * (time.perf_counter() - _gc_start[0]))
    collections_gc[f"gen{generation} objects collected"] += info.get("collected", 0)


def _type_name(body: Any) -> str:
    """The message type of a body (msgpack array: protocol min, max, type id, ...)."""
    try:
        unpacker = msgpack.Unpacker()
        unpacker.feed(bytes(body[:64]))
        unpacker.read_array_header()
        unpacker.unpack()
        unpacker.unpack()
        cls = schema.MESSAGES.get(unpacker.unpack())
    except Exception:  # noqa: BLE001 - counted as unknown
        return "?"
    return cls.__name__ if cls is not None else "?"


def _note(key: str, frames: Any) -> None:
    counts[key] += 1
    sizes[key] += sum(len(f) for f in frames)


_send_parts = zmq_transport.send_parts


def send_parts(sock: Any, frames: Any) -> None:
    # a DEALER's message is [body, opaque...]; a ROUTER's reply [routing id, body, ...]
    body = frames[0] if len(frames) == 1 or len(frames[0]) > 8 else frames[1]
    _note("out " + _type_name(body), frames)
    _send_parts(sock, frames)


_read_batch = zmq_transport.ZmqTransport._read_batch


def read_batch(self: Any, sock: Any, opaque: int) -> Any:
    batch = _read_batch(self, sock, opaque)
    for parts in batch:
        _note("in " + _type_name(parts[opaque - 1] if len(parts) >= opaque else parts[0]), parts)
    return batch


_run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
_handle_run = asyncio.events.Handle._run


def run_once(self: Any) -> None:
    loop["(loop turns)"] += 1
    _run_once(self)


def handle_run(self: Any) -> None:
    callback = self._callback
    loop[getattr(callback, "__qualname__", None) or type(callback).__name__] += 1
    _handle_run(self)


def _writer(path: str) -> None:
    while True:
        time.sleep(0.1)
        threads = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        state = {
            "messages": dict(counts),
            "bytes": dict(sizes),
            "loop": dict(loop),
            "gc": dict(collections_gc),
            "threads": {str(k): v for k, v in threads.items()},
        }
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    at = args.index("-m")
    module = args[at + 1]
    zmq_transport.send_parts = send_parts  # type: ignore[assignment]
    zmq_transport.ZmqTransport._read_batch = read_batch  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = run_once  # type: ignore[attr-defined]
    asyncio.events.Handle._run = handle_run  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_writer, args=(out,), name="tally", daemon=True).start()
    sys.argv = [module, *args[at + 2 :]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
