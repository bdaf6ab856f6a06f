"""Run a daemon with every call into its scheduler recorded (``bench/owner_replay.py``).

    python owner_record.py OUT_PICKLE python -m handoffd.cli.daemon start ...

Wraps the daemon's command (the peer runner's ``owner_wrap``): before the daemon's module runs,
``daemon.node``'s ``OwnerScheduler`` is replaced by a factory that builds the real scheduler and
hands back a proxy. The proxy forwards everything; its state-changing entry points
(``handle_batch``, ``handle``, ``forget``, ``hold_dispatch``, ``step_down``) append
``(method, args, now, summary of the instructions)`` to a list that a thread pickles to OUT_PICKLE
every 0.5 s. A replay (``owner_replay.py``) then runs the same calls in one process, under
callgrind if wanted: the batching the real daemons made, without valgrind's ~50x slowdown
changing it. A submission's prebuilt run (the upload thread's) is dropped from its event: the
replay's scheduler builds it from the specs, as the owner does without the upload thread.
Measurement only: recording costs the daemon its own CPU.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import runpy
import sys
import threading
import time
from typing import Any

from handoffd.daemon import node as node_module
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler

calls: list[tuple[Any, ...]] = []
created: list[dict[str, Any]] = []
_RECORDED = ("handle_batch", "handle", "forget", "hold_dispatch", "step_down")


def _portable(event: Any) -> Any:
    if type(event) is ev.RunSubmitted and (event.run is not None or event.graph is not None):
        return dataclasses.replace(event, specs=tuple(event.specs), graph=None, run=None)
    return event


def summary(instructions: Any) -> list[tuple[str, str, int]]:
    """Each instruction's type, node and task count (a dispatch's): the replay's check."""
    out = []
    for ins in instructions or ():
        items = getattr(ins, "items", None)
        out.append(
            (type(ins).__name__, getattr(ins, "node", ""), len(items) if items is not None else -1)
        )
    return out


class Recorded:
    """A scheduler whose state-changing calls are appended to ``calls``."""

    def __init__(self, real: OwnerScheduler) -> None:
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in _RECORDED:
            return attr

        def call(*args: Any) -> Any:
            if name in ("handle_batch",):
                args = (tuple(_portable(e) for e in args[0]), *args[1:])
            elif name == "handle":
                args = (_portable(args[0]), *args[1:])
            result = attr(*args)
            calls.append((name, args, summary(result) if isinstance(result, list) else result))
            return result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)


def _factory(*args: Any, **kwargs: Any) -> Any:
    created.append({"args": args, "kwargs": kwargs})
    return Recorded(OwnerScheduler(*args, **kwargs))


def _writer(path: str) -> None:
    while True:
        time.sleep(0.5)
        n = len(calls)
        state = {"created": created, "calls": calls[:n]}
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "wb") as f:
                pickle.dump(state, f, protocol=5)
        except Exception as e:  # noqa: BLE001 - said once, the recording goes on
            sys.stderr.write(f"owner_record: {e!r}\n")
            continue
        os.replace(tmp, path)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    at = args.index("-m")
    module = args[at + 1]
    node_module.OwnerScheduler = _factory  # type: ignore[misc,assignment]
    threading.Thread(target=_writer, args=(out,), name="record", daemon=True).start()
    sys.argv = [module, *args[at + 2 :]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
