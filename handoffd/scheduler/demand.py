# cython: annotation_typing=False
# (the annotations are for mypy; demand.pxd beside it gives the compiled build its C types)
"""The owner's books per node: our outstanding demand, its expected work and our unanswered
dispatches (DESIGN.md 3.3; the base of ``cluster_view.ClusterView``, which places over them).

Pure state, no clock, no I/O; compiled with ``demand.pxd`` beside it (as ``durations``): every
dispatch, answer and task move goes through these methods, so they are the owner's per-task hot
path. The ``.py`` is the pure-Python build and the reference the tests compare the compiled one to.

``outstanding`` (cost of our ASSIGNED/RUNNING tasks per node) is kept in step with task moves by
the scheduler's run listener (``went_out``/``came_back``); ``work`` is their expected seconds
(``durations``). *Effective free* = the free resources a node last reported minus the cost of our
dispatches it has not acknowledged yet (``unacked``, summed in ``pending``); once its answer
arrives its own report accounts for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd._core.api import EPS
from handoffd.scheduler.durations import UNKNOWN_CHARGE, Durations, share
from handoffd.scheduler.room_index import Nodes, RoomIndex
from handoffd.scheduler.room_view import RoomView
from handoffd.scheduler.run import TaskRecord

__all__ = ["DispatchKey", "Demand", "SentBatch", "add_into", "add_times", "take_back"]

#: (run_id, task_id, attempt): one dispatch.
DispatchKey = tuple[str, str, int]


def add_into(total: dict[str, float], cost: dict[str, float], sign: int) -> None:
    """``total += sign * cost`` in place, dropping kinds that reach zero."""
    eps = EPS  # (compiled: a C double read once, not a module look-up and a float per kind)
    for kind, qty in cost.items():
        # (the sum in C doubles when compiled: ``get(kind, 0.0) + sign * qty`` boxed the product
        # and added two objects; a float is made only for the one stored)
        old = total.get(kind)
        left = 0.0 if old is None else old
        left += sign * qty
        if -eps <= left <= eps:
            if old is not None:
                del total[kind]
        else:
            total[kind] = left


def add_times(total: dict[str, float], cost: dict[str, float], k: int) -> None:
    """``add_into(total, cost, 1)`` ``k`` times, in one pass over the kinds: the same sums and
    the same drops at zero, in C doubles when compiled, so a block's books are bit for bit those
    of its tasks added one by one. (A kind's place in ``total`` could differ only if a step
    dropped it and a later one stored it again: adding a cost to books that are not negative
    never does.)"""
    eps = EPS
    for kind, qty in cost.items():
        old = total.get(kind)
        kept = old is not None  # (in ``total`` as of the step before)
        left = 0.0 if old is None else old
        for _ in range(k):
            left += qty
            if -eps <= left <= eps:
                left = 0.0  # (``add_into`` dropped the kind: the next step starts from zero)
                if kept:
                    del total[kind]
                    kept = False
            else:
                kept = True
        if kept:
            total[kind] = left


def take_back(total: dict[str, float], cost: dict[str, float], k: int) -> None:
    """``add_into(total, cost, -1)`` ``k`` times, in one pass over the kinds: the same sums
    (each step's subtraction and its drop at zero, in C doubles when compiled), so the books of
    a batch answered at once are bit for bit those of its tasks answered one by one."""
    eps = EPS
    for kind, qty in cost.items():
        old = total.get(kind)
        left = 0.0 if old is None else old
        for _ in range(k):
            left -= qty
            if -eps <= left <= eps:
                left = 0.0  # (``add_into`` dropped the kind: the next step starts from zero)
        if -eps <= left <= eps:
            if old is not None:
                del total[kind]
        else:
            total[kind] = left


#: A batch with at most this many entries left past its head is searched entry by entry; a
#: longer one through its index (``SentBatch._where``), built on such a search.
_SCAN = 8


class SentBatch:
    """Dispatches to one node, of one run, sent at one time on one version of the node's report,
    of one cost shape: the unanswered entry of a batch of tasks, kept as columns (each task's id
    and attempt appended, in sending order), so a block's dispatch is two list appends a task and
    an answer in sending order (a node's usual) a compare at the column's head, where a dict
    entry a task was stored and deleted. An answered task's id is cleared (None) in ``ids``; the
    batch is dropped when none is left. A task may appear twice (a second attempt sent while its
    first was unanswered): each entry is its own dispatch."""

    __slots__ = (
        "run_id",
        "version",
        "at",
        "cost",
        "ids",
        "tries",
        "head",
        "left",
        "_where",
        "_twice",
    )

    def __init__(self, run_id: str, version: int, at: float, cost: dict[str, float]) -> None:
        self.run_id = run_id
        self.version = version  # the node's resource_version when sent: a refusal after a newer
        # report was made on a fresh view
        self.at = at
        self.cost = cost  # each task's (equal, maybe the same object)
        self.ids: list[str | None] = []  # task ids in sending order; None: answered
        self.tries: list[int] = []  # each entry's attempt
        self.head = 0  # every entry before it is answered (it is the oldest unanswered one)
        self.left = 0  # entries not answered
        # Task id -> the index of its last entry not answered (built by the first search of a
        # batch with more than ``_SCAN`` entries left, then kept in step); None: not built.
        self._where: dict[str, int] | None = None
        self._twice = False  # some id was indexed twice: a search falls back to the entries

    def add(self, task_id: str, attempt: int) -> None:
        """One more dispatch, the newest."""
        where = self._where
        if where is not None:
            if task_id in where:
                self._twice = True
            where[task_id] = len(self.ids)
        self.ids.append(task_id)
        self.tries.append(attempt)
        self.left += 1

    def find(self, task_id: Any, attempt: Any) -> int:
        """The index of the unanswered entry of ``task_id`` ``attempt``, or -1."""
        ids = self.ids
        tries = self.tries
        n = len(ids)
        head = self.head
        if head < n:
            got = ids[head]
            if got is task_id or got == task_id:
                a = tries[head]
                if a is attempt or a == attempt:
                    return head
        if n - head <= _SCAN or self._twice:
            return self._scan(task_id, attempt)
        where = self._where
        if where is None:
            where = {}
            for i in range(head, n):
                got = ids[i]
                if got is not None:
                    if got in where:
                        self._twice = True
                    where[got] = i
            self._where = where
            if self._twice:
                return self._scan(task_id, attempt)
        at = where.get(task_id)
        if at is None:
            return -1
        a = tries[at]
        return at if a is attempt or a == attempt else -1

    def _scan(self, task_id: Any, attempt: Any) -> int:
        ids = self.ids
        tries = self.tries
        for i in range(self.head, len(ids)):
            got = ids[i]
            if got is not None and (got is task_id or got == task_id):
                a = tries[i]
                if a is attempt or a == attempt:
                    return i
        return -1

    def drop(self, at: int) -> None:
        """The entry at ``at`` (unanswered) is answered."""
        ids = self.ids
        where = self._where
        if where is not None:
            task_id = ids[at]
            if where.get(task_id) == at:  # type: ignore[arg-type]
                del where[task_id]  # type: ignore[arg-type]
        ids[at] = None
        self.left -= 1
        if at == self.head:
            n = len(ids)
            at += 1
            while at < n and ids[at] is None:
                at += 1
            self.head = at

    def entries(self) -> list[tuple[str, int]]:
        """The unanswered (task id, attempt) pairs, in sending order."""
        ids = self.ids
        tries = self.tries
        out: list[tuple[str, int]] = []
        for i in range(self.head, len(ids)):
            got = ids[i]
            if got is not None:
                out.append((got, tries[i]))
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentBatch) and (
            (self.run_id, self.version, self.at, self.cost, self.entries())
            == (other.run_id, other.version, other.at, other.cost, other.entries())
        )

    def __repr__(self) -> str:
        return (
            f"SentBatch({self.run_id!r}, {self.version!r}, {self.at!r}, {self.cost!r}, "
            f"{self.entries()!r})"
        )


class Demand(RoomView):
    """Our outstanding demand, work and unanswered dispatches per node, over our view of the nodes
    (``RoomView``: the fields a node's room is computed from)."""

    def __init__(self, queue_seconds: float | None, window: int = 1) -> None:
        # Live nodes' rooms between passes (``room_index``).
        rooms = RoomIndex()
        # (the nodes, the window and budget, ``work``, ``outstanding`` and ``pending``)
        super().__init__(Nodes(rooms.changed, rooms.reordered), queue_seconds, window)
        self._rooms = rooms
        self.durations = Durations()
        # The index's dirty set itself: every dispatch, answer and task move marks its node
        # there, a set add instead of a Python call to ``RoomIndex.changed`` (same effect).
        self._dirty_rooms: set[str] = rooms.dirty
        # Dispatches sent but not yet answered: node -> its ``SentBatch`` batches in sending order (so
        # the oldest come first), none empty. Invariant: pending[node] == the summed cost of the
        # tasks in them.
        self.unacked: dict[str, list[SentBatch]] = {}

    def alive(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and node.alive

    def went_out(self, node: str, rec: TaskRecord) -> None:
        """``rec`` became ASSIGNED/RUNNING on ``node``: its cost and expected work count there."""
        cost = rec.cost
        # (a look-up, not ``setdefault``: its default was a new empty dict on every call)
        load = self.outstanding.get(node)
        if load is None:
            load = self.outstanding[node] = {}
        add_into(load, cost, 1)
        self._dirty_rooms.add(node)
        n = dict.get(self.nodes, node)  # (``Nodes`` adds nothing to a read: the dict's own get)
        capacity = n._capacity if n is not None else {}  # (the field: no property call)
        rec.charge = self.durations.charge_keys(rec.duration_key, rec.shape_key, cost, capacity)
        if rec.charge:
            self.work[node] = self.work.get(node, 0.0) + rec.charge

    def went_out_all(
        self,
        node: str,
        recs: list[TaskRecord],
        cost: dict[str, float],
        seconds: list[float] | None = None,
    ) -> None:
        """``went_out(node, rec)`` for each of ``recs`` in order, every one's ``spec.cost`` the
        object ``cost`` (a block of the window fill): the cost added k times in one pass
        (``add_times``), the node marked once, the node's share of the cost taken once (each
        task's charge is its estimate times that share: ``Durations.charge_keys``'s product),
        the work's sums in one local, in the same order as one by one. ``seconds``: each task's
        estimate as charged (unknown: ``UNKNOWN_CHARGE``), made by the walk; None: made here."""
        k = len(recs)
        if not k:
            return
        load = self.outstanding.get(node)
        if load is None:
            load = self.outstanding[node] = {}
        add_times(load, cost, k)
        self._dirty_rooms.add(node)
        n = dict.get(self.nodes, node)
        capacity = n._capacity if n is not None else {}
        part = share(cost, capacity)
        durations = self.durations
        work = self.work
        had = work.get(node)
        cur = 0.0 if had is None else had
        charged = False
        unknown = UNKNOWN_CHARGE
        for i in range(k):
            rec = recs[i]
            if seconds is not None:
                took = seconds[i]
            else:
                took = durations.estimate_keys(rec.duration_key, rec.shape_key)
                if took < 0.0:
                    took = unknown
            charge = took * part
            rec.charge = charge
            if charge:
                charged = True
                cur = cur + charge
        if charged:
            work[node] = cur

    def came_back(self, node: str, rec: TaskRecord) -> None:
        """``rec`` left ``node`` (finished, lost, cancelled, refused, dropped)."""
        load = self.outstanding.get(node)
        if load is None:
            load = self.outstanding[node] = {}
        add_into(load, rec.cost, -1)
        self._dirty_rooms.add(node)
        if rec.charge:
            left = self.work.get(node, 0.0) - rec.charge
            # Only tasks with a cost carry work: none left, no work (no float residue either).
            if load and left > EPS:
                self.work[node] = left
            else:
                self.work.pop(node, None)
            rec.charge = 0.0

    def came_back_all(self, node: str, recs: list[TaskRecord]) -> None:
        """``came_back(node, rec)`` for each of ``recs`` in order (a success table's attempts):
        the cost of each run of consecutive tasks of one cost shape taken back at once
        (``take_back``: the same C-double steps), the work's steps in one local, the node marked
        once. The same books: a charge is positive, so once the work is dropped no later step
        stores it again, and while the books hold their invariant the load a step reads is empty
        only at the last step (until then the tasks still out hold their positive kinds)."""
        n = len(recs)
        if not n:
            return
        load = self.outstanding.get(node)
        if load is None:
            load = self.outstanding[node] = {}
        work = self.work
        cur = work.get(node, 0.0)
        charged = False
        eps = EPS
        start = 0
        while start < n:
            rec = recs[start]
            cost = rec.cost
            end = start + 1
            while end < n:
                other = recs[end].cost
                if other is not cost and other != cost:
                    break
                end += 1
            take_back(load, cost, end - start)
            for i in range(start, end):
                rec = recs[i]
                charge = rec.charge
                if charge:
                    charged = True
                    cur -= charge
                    if not cur > eps:
                        cur = 0.0  # (dropped: ``get(node, 0.0)`` is what the next step reads)
                    rec.charge = 0.0
            start = end
        self._dirty_rooms.add(node)
        if charged:
            if load and cur > eps:
                work[node] = cur
            else:
                work.pop(node, None)

    def sent(
        self, node: str, run_id: str, task_id: str, attempt: int, cost: dict[str, float], now: float
    ) -> None:
        """Record a dispatch of ``run_id``'s ``task_id`` ``attempt`` to ``node`` (sent at ``now``)
        until it answers: into the node's newest ``SentBatch`` batch when it is of this run, time, node
        version and cost shape (appended to its columns), else into a new one."""
        batches = self.unacked.get(node)
        if batches is None:
            batches = self.unacked[node] = []
        # (the dict's own get and a C field: ``Nodes``' subscript and ``version`` were two
        # generic Python-level look-ups a dispatch; a dispatch only goes to a known node)
        n = dict.get(self.nodes, node)
        if n is None:
            raise KeyError(node)
        version = n.version
        last = batches[-1] if batches else None
        if (
            last is None
            or last.at != now
            or (last.run_id is not run_id and last.run_id != run_id)
            or (last.version is not version and last.version != version)
            or (last.cost is not cost and last.cost != cost)
        ):
            last = SentBatch(run_id, version, now, cost)
            batches.append(last)
        last.add(task_id, attempt)
        if cost:
            pending = self.pending.get(node)
            if pending is None:
                pending = self.pending[node] = {}
            add_into(pending, cost, 1)
            self._dirty_rooms.add(node)

    def sent_all(
        self, node: str, run_id: str, recs: list[TaskRecord], cost: dict[str, float], now: float
    ) -> None:
        """``sent(node, run_id, rec.id, rec.attempt, cost, now)`` for each of ``recs`` in order
        (a block of the window fill, ``cost`` every one's ``spec.cost``): the node, its version
        and its newest batch looked at once, the block's ids and attempts appended to its columns,
        the pending cost added once for all (``add_times``)."""
        k = len(recs)
        if not k:
            return
        batches = self.unacked.get(node)
        if batches is None:
            batches = self.unacked[node] = []
        n = dict.get(self.nodes, node)
        if n is None:
            raise KeyError(node)
        version = n.version
        last = batches[-1] if batches else None
        if last is None or (
            last.at != now
            or (last.run_id is not run_id and last.run_id != run_id)
            or (last.version is not version and last.version != version)
            or (last.cost is not cost and last.cost != cost)
        ):
            last = SentBatch(run_id, version, now, cost)
            batches.append(last)
        if last._where is not None:
            for rec in recs:
                last.add(rec.id, rec.attempt)
        else:  # (the columns appended to as they are: no index to keep)
            ids = last.ids
            tries = last.tries
            for rec in recs:
                ids.append(rec.id)
                tries.append(rec.attempt)
            last.left += k
        if cost:
            pending = self.pending.get(node)
            if pending is None:
                pending = self.pending[node] = {}
            add_times(pending, cost, k)
            self._dirty_rooms.add(node)

    def answered(self, node: str, key: DispatchKey) -> tuple[dict[str, float], int, float] | None:
        """Forget an answered dispatch; (its cost, the version and time it was sent at) or None."""
        batches = self.unacked.get(node)
        if not batches:
            return None
        run_id, task_id, attempt = key
        for at in range(len(batches)):
            b = batches[at]
            if b.run_id != run_id:
                continue
            i = b.find(task_id, attempt)
            if i < 0:
                continue
            b.drop(i)
            if not b.left:
                del batches[at]
            if b.cost:
                add_into(self.pending[node], b.cost, -1)
                self._dirty_rooms.add(node)
            return (b.cost, b.version, b.at)
        return None

    def answered_all(self, node: str, run_id: str, accepted: Iterable[tuple[str, int]]) -> None:
        """Forget the answered dispatches ``accepted`` ((task, attempt) of ``run_id``) to
        ``node``: each batch's pending cost taken back once, for all its tasks answered. A task
        answered in sending order is the head of the batch the last one was found in (a compare
        of its columns' head, nothing looked up)."""
        batches = self.unacked.get(node)
        if not batches:
            return
        hit: SentBatch | None = (
            None  # (the batch the last task was found in: the next is likely too)
        )
        gone = 0  # (tasks answered from ``hit`` since its cost was last taken back)
        for task_id, attempt in accepted:
            if hit is not None:
                ids = hit.ids
                i = hit.head
                n = len(ids)
                if i < n:
                    got = ids[i]
                    if got is task_id or got == task_id:
                        a = hit.tries[i]
                        if a is attempt or a == attempt:
                            if hit._where is not None:
                                hit.drop(i)
                            else:  # (``drop`` of the head, written out: no index to keep)
                                ids[i] = None
                                hit.left -= 1
                                i += 1
                                while i < n and ids[i] is None:
                                    i += 1
                                hit.head = i
                            gone += 1
                            continue
                i = hit.find(task_id, attempt)
                if i >= 0:
                    hit.drop(i)
                    gone += 1
                    continue
            found = None
            i = -1
            for b in batches:
                if b.run_id == run_id:
                    i = b.find(task_id, attempt)
                    if i >= 0:
                        found = b
                        break
            if found is None:
                continue
            if hit is not None:
                self._taken_back(node, batches, hit, gone)
            found.drop(i)
            hit = found
            gone = 1
        if hit is not None:
            self._taken_back(node, batches, hit, gone)

    def _taken_back(self, node: str, batches: list[SentBatch], b: SentBatch, k: int) -> None:
        """``k`` of ``b``'s dispatches answered: their cost leaves the node's pending, once; ``b``
        leaves ``batches`` when none of its dispatches is left unanswered."""
        if b.cost:
            take_back(self.pending[node], b.cost, k)
            self._dirty_rooms.add(node)
        if not b.left:
            for at in range(len(batches)):
                if batches[at] is b:
                    del batches[at]
                    return

    def waiting(self, node: str, run_id: str, task_id: str, attempt: int) -> bool:
        """Whether that dispatch to ``node`` is still unanswered."""
        for b in self.unacked.get(node, ()):
            if b.run_id == run_id and b.find(task_id, attempt) >= 0:
                return True
        return False

    def unacked_of(self, node: str) -> dict[DispatchKey, tuple[dict[str, float], int, float]]:
        """The node's unanswered dispatches, oldest first, each as (cost, version, sent at)."""
        return {
            (b.run_id, task_id, attempt): (b.cost, b.version, b.at)
            for b in self.unacked.get(node, ())
            for task_id, attempt in b.entries()
        }

    def unanswered(self, node: str, cutoff: float) -> list[DispatchKey]:
        """Forget and return the dispatches to ``node`` sent at or before ``cutoff``, oldest first."""
        batches = self.unacked.get(node)
        late: list[DispatchKey] = []
        if batches:
            done = 0
            for b in batches:
                if b.at > cutoff:
                    break
                done += 1
                run_id = b.run_id
                for task_id, attempt in b.entries():
                    late.append((run_id, task_id, attempt))
                if b.cost:
                    take_back(self.pending[node], b.cost, b.left)
            del batches[:done]
            self._dirty_rooms.add(node)
        return late

    def oldest_unacked(self, node: str) -> float | None:
        """When the oldest dispatch to ``node`` still unanswered was sent, or None."""
        batches = self.unacked.get(node)
        return batches[0].at if batches else None

    def forget_unacked(self, node: str) -> None:
        """``node`` was lost or came back: its answers are not coming / its report is fresh."""
        self.unacked.pop(node, None)
        self.pending.pop(node, None)
        self._dirty_rooms.add(node)

    def forget_run(self, run_id: str) -> None:
        for node, batches in self.unacked.items():
            for b in batches:
                if b.run_id == run_id and b.cost:
                    take_back(self.pending[node], b.cost, b.left)
                    self._dirty_rooms.add(node)
            batches[:] = [b for b in batches if b.run_id != run_id]
