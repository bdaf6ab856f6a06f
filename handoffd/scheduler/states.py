"""Task and run states, the one table of legal task moves and its error (``scheduler.run``'s;
it re-exports them). A module of their own so the run's checks (``run_checks``) can use them."""

from __future__ import annotations

from typing import Any

PENDING, READY, ASSIGNED, RUNNING = "PENDING", "READY", "ASSIGNED", "RUNNING"
DONE, FAILED, CANCELLED = "DONE", "FAILED", "CANCELLED"
TASK_STATES = (PENDING, READY, ASSIGNED, RUNNING, DONE, FAILED, CANCELLED)
ACTIVE = (ASSIGNED, RUNNING)  # counted in the outstanding demand on its node
TERMINAL = (FAILED, CANCELLED)

#: The one table of legal moves: state -> states it may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({READY, FAILED, CANCELLED}),
    # READY -> PENDING: a dependency's only result copy was lost (lineage recompute).
    READY: frozenset({ASSIGNED, PENDING, FAILED, CANCELLED}),
    # ASSIGNED -> READY: refused, node lost, retry; -> PENDING: an input was lost before it started;
    # -> DONE: the success report overtook the start report.
    ASSIGNED: frozenset({RUNNING, READY, PENDING, DONE, FAILED, CANCELLED}),
    # RUNNING -> PENDING: lost or failed while an input is being recomputed.
    RUNNING: frozenset({DONE, READY, PENDING, FAILED, CANCELLED}),
    # DONE -> READY/PENDING: its only result copy was lost while still needed.
    DONE: frozenset({READY, PENDING}),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

RUN_RUNNING, RUN_DONE, RUN_FAILED, RUN_CANCELLED = "RUNNING", "DONE", "FAILED", "CANCELLED"


class InvalidTransition(RuntimeError):
    """A task was asked to make a move the transition table forbids."""

    def __init__(self, run_id: str, task_id: str, old: str, new: str, history: list[Any]) -> None:
        self.history = list(history)
        lines = "\n".join(f"  t={t:.3f} {a} -> {b} ({cause})" for t, a, b, cause in self.history)
        super().__init__(
            f"run {run_id!r} task {task_id!r}: illegal move {old} -> {new}; history:\n{lines}"
        )
