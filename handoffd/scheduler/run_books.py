"""A run's books worked out from its tasks' states: ``remaining``, ``tally``, ``placed`` and
``unfinished``, which ``RunState`` otherwise keeps as tasks move. For a run whose states were set
all at once: ``RunState.from_snapshot``, and a takeover's merge (``replication.takeover.merge_run``,
run in a thread for a big run: this module is not compiled, so its loops let the GIL go).
"""

from __future__ import annotations

from typing import Any

from handoffd.scheduler.states import DONE, TASK_STATES

YIELD_EVERY = 256  # task records built between two chances for other threads to run


def let_go() -> None:
    """Called every ``YIELD_EVERY`` records by the compiled loops that build a big run in a
    thread: compiled code never lets the GIL go by itself, but entering a Python function checks
    for a request from a thread waiting for it (the event loop, after the 5 ms switch interval)
    and hands it over then, only then. ``os.sched_yield`` let it go every time, and gave the CPU
    away too: on a loaded machine each call could cost the thread a time slice."""


def recount(run: Any) -> None:
    remaining = 0
    tally = dict.fromkeys(TASK_STATES, 0)
    placed: dict[str, str] = {}
    for tid, r in run.tasks.items():
        tally[r.state] += 1
        if r.state != DONE:
            remaining += 1
        if r.node is not None:
            placed[tid] = r.node
    run.remaining, run.tally, run.placed = remaining, tally, placed
    if run.unfinished:
        tasks = run.tasks
        for tid, users in run.consumers.items():
            run.unfinished[tid] = sum(tasks[c].state != DONE for c in users)
