# cython: annotation_typing=False
"""The instructions one ``OwnerScheduler.handle`` call collects, shared by the scheduler's parts.

One object for the scheduler's lifetime (its parts get it at construction), emptied by ``take`` at the
end of every call. Dispatches, cancels and frees are batched per (node, run): a call sends a node at
most one message of each kind per run, however many tasks it moved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from handoffd.scheduler.events import (
    CancelAttempts,
    Dispatch,
    DispatchedTask,
    FreeUnneededValues,
    Instruction,
    Withdraw,
)


@dataclass
class Outbox:
    direct: list[Instruction] = field(default_factory=list)  # in the order they were decided
    cancels: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    dispatches: dict[tuple[str, str], list[DispatchedTask]] = field(default_factory=dict)
    frees: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # values to delete
    withdraws: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)

    def take(self, term_of: Callable[[str], int]) -> list[Instruction]:
        """Everything collected, the batches last (at their run's ``term_of``); empty again after.
        A kind nothing was collected of is left as it is (most calls collect one or two kinds:
        a one-task run's four calls built twelve lists and dicts for nothing)."""
        result = self.direct
        self.direct = []
        if self.cancels:
            result += [CancelAttempts(n, r, tuple(items)) for (n, r), items in self.cancels.items()]
            self.cancels = {}
        if self.dispatches:
            result += [
                Dispatch(n, r, term_of(r), tuple(items))
                for (n, r), items in self.dispatches.items()
            ]
            self.dispatches = {}
        if self.frees:
            result += [
                FreeUnneededValues(n, r, term_of(r), tuple(ids))
                for (n, r), ids in self.frees.items()
            ]
            self.frees = {}
        if self.withdraws:
            result += [
                Withdraw(n, r, term_of(r), tuple(items)) for (n, r), items in self.withdraws.items()
            ]
            self.withdraws = {}
        return result
