"""Task and run states and the one table of legal task moves (``scheduler.run``'s; it
re-exports them). A module of their own so the run's checks (``run_checks``) can use them."""

from __future__ import annotations

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
