"""Run the owner daemon counting its asyncio loop's turns and the callbacks each turn runs.

    bench/cpu_per_call.py --turns FILE     # (starts the owner under this module)

``python bench/loop_turns.py FILE -- python -m MODULE ARGS`` runs the daemon with
``BaseEventLoop._run_once`` and ``Handle._run`` counted (a cancelled handle is not run, but its
turn is counted); SIGUSR2 marks the start of the measured calls, SIGUSR1 writes the counts since
the mark to FILE as JSON: ``turns``, ``turns_ready`` (turns that began with a callback ready, so
``epoll_wait(0)``), ``callbacks`` and one ``cb:QUALNAME`` per callback.
"""

from __future__ import annotations

import collections
import json
import runpy
import signal
import sys
from asyncio import base_events, events
from typing import Any

counts: collections.Counter[str] = collections.Counter()
mark: collections.Counter[str] = collections.Counter()


def main() -> None:
    out, command = sys.argv[1], sys.argv[3:]  # FILE -- python -m MODULE ARGS
    run_once, run = base_events.BaseEventLoop._run_once, events.Handle._run

    def counted_once(self: Any) -> None:
        counts["turns"] += 1
        if self._ready:
            counts["turns_ready"] += 1
        run_once(self)

    def counted_run(self: Any) -> None:
        name = getattr(self._callback, "__qualname__", type(self._callback).__name__)
        counts["cb:" + name] += 1
        counts["callbacks"] += 1
        run(self)

    base_events.BaseEventLoop._run_once = counted_once  # type: ignore[method-assign]
    events.Handle._run = counted_run  # type: ignore[method-assign]

    def start(*_: Any) -> None:
        mark.clear()
        mark.update(counts)

    def dump(*_: Any) -> None:
        since = {k: v - mark[k] for k, v in counts.items() if v - mark[k]}
        with open(out, "w") as f:
            json.dump(since, f)

    signal.signal(signal.SIGUSR2, start)
    signal.signal(signal.SIGUSR1, dump)
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
