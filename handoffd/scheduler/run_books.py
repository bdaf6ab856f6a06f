"""A run's books worked out from its tasks' states: ``remaining``, ``tally``, ``placed`` and
``unfinished``, which ``RunState`` otherwise keeps as tasks move. For a run whose states were set
all at once: ``RunState.from_snapshot``, and a takeover's merge (``replication.takeover.merge_run``,
run in a thread for a big run: this module is not compiled, so its loops let the GIL go).
"""

from __future__ import annotations

from typing import Any

from handoffd._core._consts import let_others_run as let_go  # (bytecode: see there)
from handoffd.scheduler.states import DONE, TASK_STATES

# Task records built between two chances for other threads to run: the compiled loops that build
# a big run in a thread call ``let_go`` this often.
YIELD_EVERY = 256

__all__ = ["YIELD_EVERY", "let_go", "recount"]


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
