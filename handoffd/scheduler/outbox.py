# cython: annotation_typing=False
# (the annotations are for mypy; outbox.pxd beside it gives the compiled build its C types)
"""The instructions one ``OwnerScheduler.handle`` call collects, shared by the scheduler's parts.

One object for the scheduler's lifetime (its parts get it at construction), emptied by ``take`` at the
end of every call. Dispatches, cancels and frees are batched per (node, run): a call sends a node at
most one message of each kind per run, however many tasks it moved.

A C class when compiled (``outbox.pxd``): ``take`` runs at the end of every ``handle_batch`` and
the owner's books write its dispatches, so its fields are C fields, not instance-dict look-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handoffd.scheduler.events import (
    CancelAttempts,
    Dispatch,
    DispatchedTask,
    FreeUnneededValues,
    Instruction,
    Withdraw,
)

if TYPE_CHECKING:
    from handoffd.scheduler.run import RunState

# An instruction made empty, its slots then filled (``take``): ``object.__new__`` here, the
# type's own allocator in the compiled build (outbox.pxd cimports ``PyType_GenericAlloc`` by
# this name; as in ``owner_books``, the pure build's stands in through ``globals()``).
if TYPE_CHECKING:
    _alloc: Callable[[type, int], Any]
globals().setdefault("_alloc", lambda cls, _n: object.__new__(cls))


def _term_in(runs: dict[str, RunState], run_id: str, term: int) -> int:
    """The term a run's batch goes at: the run's own if it is in ``runs``, else ``term``."""
    run = runs.get(run_id)
    return run.term if run is not None else term


class Outbox:
    """What one scheduler call collected, taken (and emptied) by ``take``."""

    __slots__ = ("direct", "cancels", "dispatches", "frees", "withdraws")

    def __init__(self) -> None:
        self.direct: list[Instruction] = []  # in the order they were decided
        # Batched per (node, run), in the order each batch was opened.
        self.cancels: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.dispatches: dict[tuple[str, str], list[DispatchedTask]] = {}
        self.frees: dict[tuple[str, str], list[str]] = {}  # values to delete
        self.withdraws: dict[tuple[str, str], list[tuple[str, int]]] = {}

    def take(
        self, term_of: Callable[[str], int] | dict[str, RunState], term: int = 0
    ) -> list[Instruction]:
        """Everything collected, the batches last (at their run's ``term_of``); empty again after.
        A kind nothing was collected of is left as it is (most calls collect one or two kinds:
        a one-task run's four calls built twelve lists and dicts for nothing). ``term_of`` may
        be the owner's live runs (run id -> run) instead of a callable: a run's ``term`` there,
        else ``term`` (the scheduler's call each batch, where its bound method made and called
        a Python-level function a dispatch)."""
        runs = term_of if type(term_of) is dict else None
        result = self.direct
        self.direct = []
        if self.cancels:
            result += [CancelAttempts(n, r, tuple(items)) for (n, r), items in self.cancels.items()]
            self.cancels = {}
        if self.dispatches:
            # (each made empty and its four slots filled, as the owner's books make a dispatch's
            # items: the dataclass's class call went through a Python-level ``__init__``)
            for (n, r), items in self.dispatches.items():
                d = _alloc(Dispatch, 0)  # noqa: F821
                d.node = n
                d.run_id = r
                d.term = _term_in(runs, r, term) if runs is not None else term_of(r)  # type: ignore[operator]
                d.items = tuple(items)
                result.append(d)
            self.dispatches = {}
        if self.frees:
            result += [
                FreeUnneededValues(
                    n,
                    r,
                    _term_in(runs, r, term) if runs is not None else term_of(r),  # type: ignore[operator]
                    tuple(ids),
                )
                for (n, r), ids in self.frees.items()
            ]
            self.frees = {}
        if self.withdraws:
            result += [
                Withdraw(
                    n,
                    r,
                    _term_in(runs, r, term) if runs is not None else term_of(r),  # type: ignore[operator]
                    tuple(items),
                )
                for (n, r), items in self.withdraws.items()
            ]
            self.withdraws = {}
        return result
