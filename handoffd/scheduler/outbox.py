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

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from handoffd.scheduler.events import (
    CancelAttempts,
    Dispatch,
    DispatchedTask,
    FreeUnneededValues,
    InputRef,
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


_NONE = object()  # (no payload is this: a new batch's first task starts a group)


def _term_in(runs: dict[str, RunState], run_id: str, term: int) -> int:
    """The term a run's batch goes at: the run's own if it is in ``runs``, else ``term``."""
    run = runs.get(run_id)
    return run.term if run is not None else term


class Placed:
    """The tasks placed on one node for one run in one scheduler call, as the columns the owner's
    shell builds its dispatch from (``daemon/dispatch.py``): a ``Dispatch``'s ``items``.

    ``_dispatch`` appends each placed task here, so no ``DispatchedTask`` is made a task and the
    builders read whole lists, not one item's fields a task. Per task, in ``flat``: its id,
    attempt, priority and upward rank, one after another (one list to fill and free, not four;
    a builder takes a column as a slice, ``flat[0::4]``...), and its input refs in ``inputs``
    (None while no task has any: W1's). What consecutive tasks of one function share (the same
    payload, cost, inclusion and timeout objects) is kept once a group: ``groups`` holds
    (index of the group's first task, payload, cost, inclusion, timeout).

    A sequence of ``DispatchedTask`` when read as one (made on demand, for tests and the rare
    per-item paths), equal to the tuple of them: ``Dispatch`` compares, hashes and prints as it
    did with a tuple of items."""

    __slots__ = ("flat", "inputs", "groups", "_payload", "_cost", "_inclusion", "_timeout")

    def __init__(self) -> None:
        self.flat: list[Any] = []
        self.inputs: list[tuple[InputRef, ...]] | None = None
        self.groups: list[tuple[int, bytes, dict[str, float], str, float | None]] = []
        # the last group's objects (``add``'s compares)
        self._payload: Any = _NONE
        self._cost: Any = None
        self._inclusion: Any = None
        self._timeout: Any = None

    def add(
        self,
        task_id: str,
        attempt: int,
        payload: bytes,
        cost: dict[str, float],
        inclusion: str,
        timeout: float | None,
        inputs: tuple[InputRef, ...],
        priority: int,
        rank: float,
    ) -> None:
        """Append one task; it joins the last group when it shares that group's objects."""
        flat = self.flat
        n = len(flat) >> 2
        flat.append(task_id)
        flat.append(attempt)
        flat.append(priority)
        flat.append(rank)
        if inputs:
            if self.inputs is None:
                self.inputs = [()] * n
            self.inputs.append(inputs)
        elif self.inputs is not None:
            self.inputs.append(())
        self._group(n, payload, cost, inclusion, timeout)

    def _group(self, n: int, payload: bytes, cost: Any, inclusion: Any, timeout: Any) -> None:
        """Task ``n`` starts a new group unless it shares the last group's objects (``add`` and
        ``add_all``)."""
        if (
            payload is self._payload
            and cost is self._cost
            and inclusion is self._inclusion
            and timeout is self._timeout
        ):
            return
        self.groups.append((n, payload, cost, inclusion, timeout))
        self._payload = payload
        self._cost = cost
        self._inclusion = inclusion
        self._timeout = timeout

    def add_all(self, run: RunState, recs: list[Any]) -> None:
        """``add`` of each of the task records ``recs`` of ``run`` (a block of a fill pass's walk:
        ``OwnerBooks._dispatch_block``), its fields read from the record and its spec, in one
        loop instead of a call a task."""
        flat = self.flat
        alike = run.alike  # (what every task of the run has, when known: ``RunState.alike``)
        for rec in recs:
            spec = rec.spec
            task_id = rec.id
            n = len(flat) >> 2
            flat.append(task_id)
            flat.append(rec.attempt)
            if alike is not None:  # (no inputs, no timeout: only the payload read from the spec)
                flat.append(alike[0])
                flat.append(rec.upward_rank)
                if self.inputs is not None:
                    self.inputs.append(())
                self._group(n, spec.payload, rec.cost, alike[1], None)
                continue
            flat.append(spec.priority)
            flat.append(rec.upward_rank)
            inputs = run.input_refs(task_id) if spec.deps else ()
            if inputs:
                if self.inputs is None:
                    self.inputs = [()] * n
                self.inputs.append(inputs)
            elif self.inputs is not None:
                self.inputs.append(())
            self._group(n, spec.payload, rec.cost, spec.argument_inclusion, spec.timeout)

    def size(self) -> int:
        """The number of tasks."""
        return len(self.flat) >> 2

    def runs(self) -> list[tuple[int, bytes, dict[str, float], str, float | None]]:
        """``groups`` with each group's size in place of its first task's index."""
        groups = self.groups
        if not groups:
            return []
        if len(groups) == 1:  # (one function's tasks: most dispatches)
            g = groups[0]
            return [(len(self.flat) >> 2, g[1], g[2], g[3], g[4])]
        ends = [g[0] for g in groups[1:]]
        ends.append(len(self.flat) >> 2)
        return [(end - g[0], g[1], g[2], g[3], g[4]) for g, end in zip(groups, ends, strict=True)]

    def tasks(self) -> tuple[DispatchedTask, ...]:
        """The tasks as ``DispatchedTask`` items, in order."""
        out: list[DispatchedTask] = []
        inputs = self.inputs
        flat = self.flat
        i = 0
        for size, payload, cost, inclusion, timeout in self.runs():
            for _ in range(size):
                out.append(
                    DispatchedTask(
                        flat[4 * i],
                        flat[4 * i + 1],
                        payload,
                        cost,
                        inclusion,
                        timeout,
                        inputs[i] if inputs is not None else (),
                        flat[4 * i + 2],
                        flat[4 * i + 3],
                    )
                )
                i += 1
        return tuple(out)

    def __len__(self) -> int:
        return len(self.flat) >> 2

    def __iter__(self) -> Iterator[DispatchedTask]:
        return iter(self.tasks())

    def __getitem__(self, index: Any) -> Any:
        return self.tasks()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Placed):
            return self.tasks() == other.tasks()
        if isinstance(other, tuple):
            return self.tasks() == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.tasks())

    def __repr__(self) -> str:
        return repr(self.tasks())


def placed_of(items: Iterable[DispatchedTask]) -> Placed:
    """``items`` as the columns ``_dispatch`` builds (a ``Dispatch`` made of items elsewhere)."""
    placed = Placed()
    for item in items:
        placed.add(
            item.task_id,
            item.attempt,
            item.payload,
            item.cost,
            item.argument_inclusion,
            item.timeout,
            item.inputs,
            item.priority,
            float(item.rank),
        )
    return placed


class Outbox:
    """What one scheduler call collected, taken (and emptied) by ``take``."""

    __slots__ = ("direct", "cancels", "dispatches", "frees", "withdraws")

    def __init__(self) -> None:
        self.direct: list[Instruction] = []  # in the order they were decided
        # Batched per (node, run), in the order each batch was opened.
        self.cancels: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.dispatches: dict[tuple[str, str], Placed] = {}
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
            # (each made empty and its four slots filled: the dataclass's class call went through
            # a Python-level ``__init__``; its items the batch's columns as they are)
            for (n, r), placed in self.dispatches.items():
                d = _alloc(Dispatch, 0)  # noqa: F821
                d.node = n
                d.run_id = r
                d.term = _term_in(runs, r, term) if runs is not None else term_of(r)  # type: ignore[operator]
                d.items = placed
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
