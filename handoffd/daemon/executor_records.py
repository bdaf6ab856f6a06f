"""What the executor (handoffd.daemon.executor) keeps per accepted task, per claim and per fetch."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from handoffd.protocol import messages as m

Key = tuple[str, str, int]  # run_id, task_id, attempt

CHAIN_AHEAD = 32  # tasks chained behind the running one of a slot, at most
CHAIN_SECONDS = 0.005  # ... and about this much work (by the mean measured duration)
CHAIN_SCAN = 256  # queued tasks looked at per refill


@dataclass
class Slot:
    """One ledger claim, held by a chain of tasks that run one after another on one worker."""

    id: int
    cost: dict[str, float]
    gpus: list[int]
    env: dict[str, str]
    keys: dict[Key, None] = field(default_factory=dict)  # tasks in the chain, outcome not in yet


@dataclass
class Task:
    run_id: str
    task_id: str
    attempt: int
    owner_address: str
    cost: dict[str, float]
    gpus: list[int]
    argument_inclusion: str
    timeout: float | None
    payload: bytes
    inputs: tuple[m.InputRef, ...]
    frames: dict[int, bytes]  # frame index -> bytes, for the frames this task refers to
    missing: set[str] = field(default_factory=set)  # dependency ids still being fetched
    running: bool = False  # submitted to the worker pool
    claimed: bool = True  # False while in the local queue: holds no ledger claim yet
    slot: Slot | None = None  # set once started: the slot's claim covers it (not its own)


@dataclass
class Fetch:
    run_id: str
    task_ids: tuple[str, ...]
    address: str
    timer: asyncio.TimerHandle | None = None


def failed(task: Task, kind: str, exc_type: str, message: str, traceback: str = "") -> m.TaskReport:
    """The report of an attempt that ended without a value."""
    return m.TaskReport(
        task.task_id, task.attempt, "FAILED", 0, -1, kind, exc_type, message, traceback
    )
