# cython: annotation_typing=False
# (the annotations are for mypy; ready.pxd beside it gives the compiled build its C types)
"""The owner's ready queue: READY, not delayed tasks of running runs, in placement order.

Order: priority, upward rank, older run, position (the key the scheduler always used). Each run keeps
indices into ``RunState.ordered`` (its tasks sorted by that key within the run), so pushing and
popping compare ints; a walk merges the runs' heads. A run's entries are two sorted sets: a line
read by a cursor (``ready_line`` from ``ready_at``) for what is pushed in order (a run taken in:
all its ready tasks ascending; a walk's restore: the entry just before the cursor), and a heap
(``ready_heap``) for what comes out of order (successors made ready by reports); the least of the
two heads is the run's head, so the order is the one heap's. A pop from the line reads a slot,
where a pop from a 10,000-entry heap sifted through 13 levels. Deletion is lazy: ``discard`` clears the
record's ``queued`` flag and the heap entry is dropped when a walk reaches it (a record is at most
once in its heap: ``in_heap``), so taking a task out costs O(1) instead of a sorted list's memmove.

A walk (``begin``, then ``step`` until None) pops the entries it gives; whoever walks dispatches
what it placed (which discards them) and then calls ``restore`` to put back the ones still queued. Nothing else may push or pop
between the two. A run may be held (``held``: its owner's dispatch lease lapsed): its tasks stay
queued and walks skip it until it is let go. Pure bookkeeping: no clock, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from handoffd.scheduler.run import RUN_RUNNING, RunState, TaskRecord


def _sift_down(heap: list[int], start: int, pos: int) -> None:
    """``heapq``'s ``_siftdown`` over a run's heap of positions (ints): the same moves."""
    item = heap[pos]
    value = item
    while pos > start:
        parent = (pos - 1) >> 1
        above = heap[parent]
        higher = above  # (compiled: a C integer, compared without a Python call)
        if value < higher:
            heap[pos] = above
            pos = parent
            continue
        break
    heap[pos] = item


def _sift_up(heap: list[int], pos: int) -> None:
    """``heapq``'s ``_siftup``: the same moves."""
    end = len(heap)
    start = pos
    item = heap[pos]
    child = 2 * pos + 1
    while child < end:
        right = child + 1
        if right < end:
            first = heap[child]
            second = heap[right]
            if not first < second:
                child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _sift_down(heap, start, pos)


def _heap_push(heap: list[int], order: int) -> None:
    """``heapq.heappush`` for a run's heap of positions, compiled: the heap module's function
    through a module attribute and a Python call was most of a push, a step and a restore."""
    heap.append(order)
    _sift_down(heap, 0, len(heap) - 1)


def _heap_pop(heap: list[int]) -> int:
    """``heapq.heappop`` for a run's heap of positions (not empty), compiled as ``_heap_push``."""
    last = heap.pop()
    if not heap:
        return last
    top = heap[0]
    heap[0] = last
    _sift_up(heap, 0)
    return top


#: A line whose cursor read this many entries, and half of it, cuts them off (amortised: the
#: entries moved are no more than those cut), so a line that keeps growing at its end while it is
#: read (successors made ready in order) holds what is left, not all it ever held.
_LINE_CUT = 4096


def _entry_push(run: RunState, order: int) -> None:
    """Add ``order`` (not among them) to ``run``'s entries: at the end of the line when it goes
    last, into the read slot before the cursor when it goes first, else into the heap."""
    line = run.ready_line
    at = run.ready_at
    n = len(line)
    if at == n:  # (an empty line: it starts again with this entry)
        line.append(order)
        return
    last = line[n - 1]  # (compiled: C integers compared)
    first = line[at]
    if order > last:
        line.append(order)
    elif at and order < first:
        at -= 1
        line[at] = order
        run.ready_at = at
    else:
        _heap_push(run.ready_heap, order)


def _entry_head(run: RunState) -> int:
    """The least of ``run``'s entries, left in place; -1: it has none."""
    heap = run.ready_heap
    at = run.ready_at
    if at < len(run.ready_line):
        top = run.ready_line[at]
        if heap:
            first = heap[0]  # (compiled: C integers compared, as in the sifts)
            if first < top:
                return first
        return top
    if heap:
        first = heap[0]
        return first
    return -1


def _entry_pop(run: RunState) -> int:
    """The least of ``run``'s entries (it has one), taken out."""
    heap = run.ready_heap
    line = run.ready_line
    at = run.ready_at
    n = len(line)
    if at < n:
        top = line[at]
        value = top
        if heap:
            first = heap[0]
            if first < value:
                return _heap_pop(heap)
        line[at] = 0  # (the read slot lets its int go now, not all of them at the end)
        at += 1
        if at == n:
            line.clear()
            at = 0
        elif at >= _LINE_CUT and 2 * at >= n:
            del line[:at]
            at = 0
        run.ready_at = at
        return top  # type: ignore[no-any-return]
    return _heap_pop(heap)


def _entries_clear(run: RunState) -> None:
    run.ready_heap.clear()
    run.ready_line.clear()
    run.ready_at = 0


def has_entries(run: RunState) -> bool:
    """Whether ``run`` holds an entry (line or heap)."""
    return bool(run.ready_heap) or run.ready_at < len(run.ready_line)


def entries(run: RunState) -> list[int]:
    """``run``'s entries, ascending (tests, checks)."""
    return sorted(run.ready_heap + run.ready_line[run.ready_at :])


def _key(run: RunState, rec: TaskRecord) -> tuple[int, float, int, int]:
    return (-rec.spec.priority, -rec.upward_rank, run.seq, rec.order)


class ReadyQueue:
    def __init__(self) -> None:
        self.size = 0  # records queued (``queued`` set)
        self.weightless = 0  # of which cost nothing (they fit anywhere, even a full cluster)
        # (pin, cost items) -> queued records of that shape: a walk that missed every shape queued
        # can stop at once instead of after MAX_MISSES. Its readers read its keys only; the count
        # of the hot shape (below) is ``_hot_n``, its value here stale (``shape_counts``: all).
        self.shapes: dict[tuple[str | None, tuple[tuple[str, float], ...]], int] = {}
        # The hot shape: one shape counted outside ``shapes``, recognised by the record's cost
        # items and pin (the same objects for a run's tasks of one cost, else equal), so a
        # push or discard of it builds no tuple and looks nothing up: only its first push and
        # last discard put its key in ``shapes`` and take it out (a queue that empties and fills
        # each pass keeps its hot shape, at 0). None: none is hot yet.
        self._hot: tuple[str | None, tuple[tuple[str, float], ...]] | None = None
        self._hot_items: tuple[tuple[str, float], ...] | None = None
        self._hot_node: str | None = None
        self._hot_n = 0
        self.runs: dict[str, RunState] = {}  # runs whose heap may hold entries
        # Runs whose dispatch lease lapsed (``replication/lease.py``): their tasks stay queued but
        # a walk skips them (a check per run and walk, none per task; empty nearly always).
        self.held: set[str] = set()
        self._taken: list[tuple[RunState, TaskRecord]] = []
        # What a walk's ``take_like`` took, a list a block (``restore`` reads them as ``_taken``).
        self._blocks: list[tuple[RunState, list[TaskRecord]]] = []
        # A walk's cursor (``begin``/``step``): the runs' heads merged, or the one run walked.
        self._heads: list[tuple[tuple[int, float, int, int], RunState]] = []
        self._single: RunState | None = None
        self._last: RunState | None = None  # the run the last step took from

    def __len__(self) -> int:
        return self.size

    def push(self, run: RunState, rec: TaskRecord) -> bool:
        """Queue ``rec``; False if it already was."""
        if rec.queued:
            return False
        rec.queued = True
        self.size += 1
        # (``cost_items`` is the spec's cost as items, empty with it: a C field, where
        # ``spec.cost`` was two Python attribute reads a push and a discard)
        items = rec.cost_items
        if not items:
            self.weightless += 1
        node = rec.pin
        hot_items = self._hot_items
        # (identity first: a run's tasks of one cost share their items; else equal ones, as
        # another run's, still count here with a compare, not a tuple built and looked up)
        if (items is hot_items or (hot_items is not None and items == hot_items)) and (
            node is self._hot_node or node == self._hot_node
        ):
            if not self._hot_n:
                # (its count is ``_hot_n``; ``_hot`` is set: its items matched)
                self.shapes[self._hot] = 0  # type: ignore[index]
            self._hot_n += 1
        else:
            self._count((node, items), 1)
        if not rec.in_heap:
            rec.in_heap = True
            _entry_push(run, rec.order)
            self.runs[run.run_id] = run
        return True

    def push_all(self, run: RunState, recs: list[TaskRecord]) -> list[TaskRecord]:
        """``push`` of each of ``recs`` (of ``run``, in order: a slice taken in), each run of
        consecutive records of one cost items and pin object counted once, by how many of it
        were new: what each one's ``push`` counted. The first newly queued record of each such
        run, in order (the caller's room check asks once a shape)."""
        firsts: list[TaskRecord] = []
        k = len(recs)
        i = 0
        while i < k:
            first = recs[i]
            items = first.cost_items
            node = first.pin
            n = 0
            head: TaskRecord | None = None
            while i < k:
                rec = recs[i]
                if rec.cost_items is not items or rec.pin is not node:
                    break
                i += 1
                if rec.queued:
                    continue
                rec.queued = True
                n += 1
                if head is None:
                    head = rec
                if not rec.in_heap:
                    rec.in_heap = True
                    _entry_push(run, rec.order)
                    self.runs[run.run_id] = run
            if not n:
                continue
            firsts.append(head)  # type: ignore[arg-type]
            self.size += n
            if not items:
                self.weightless += n
            hot_items = self._hot_items
            if (items is hot_items or (hot_items is not None and items == hot_items)) and (
                node is self._hot_node or node == self._hot_node
            ):
                if not self._hot_n:
                    self.shapes[self._hot] = 0  # type: ignore[index]
                self._hot_n += n
            else:
                self._count((node, items), n)
        return firsts

    def adopt(self, run: RunState, queued: tuple | None) -> None:
        """Count ``run``'s queued tasks, flagged and in its heap already (a takeover prepared
        them off the loop: ``scheduler.takeover.prepare``): ``queued`` is (size, weightless,
        shapes), what ``push`` of each would have counted, without 200,000 pushes on the loop.
        None: nothing (the run's tasks were pushed one by one)."""
        if queued is None:
            return
        size, weightless, shapes = queued
        self.size += size
        self.weightless += weightless
        for shape, count in shapes.items():
            self._count(shape, count)
        if has_entries(run):
            self.runs[run.run_id] = run

    def discard(self, rec: TaskRecord) -> None:
        if rec.queued:
            rec.queued = False
            self.size -= 1
            items = rec.cost_items
            if not items:
                self.weightless -= 1
            node = rec.pin
            hot_items = self._hot_items
            if (
                self._hot_n
                and (items is hot_items or items == hot_items)
                and (node is self._hot_node or node == self._hot_node)
            ):
                self._hot_n -= 1
                if not self._hot_n:
                    del self.shapes[self._hot]  # type: ignore[arg-type]
            else:
                self._count((node, items), -1)

    def _count(self, shape: tuple[str | None, tuple[tuple[str, float], ...]], delta: int) -> None:
        """``delta`` more queued records of ``shape`` (the way of all but the hot shape's pushes
        and discards): a shape equal to the hot one counts there, and a shape new to ``shapes``
        when none is hot or the hot one is at 0 becomes the hot one."""
        hot = self._hot
        if hot is not None and shape == hot:
            left = self._hot_n + delta
            if left < 0:
                raise KeyError(shape)  # (a discard of a shape not counted, as ``shapes[shape]``)
            if left and not self._hot_n:
                self.shapes[hot] = 0
            elif not left and self._hot_n:
                del self.shapes[hot]
            self._hot_n = left
            return
        # (a discard of a shape not counted fails here, as it always did)
        left = (self.shapes[shape] if delta < 0 else self.shapes.get(shape, 0)) + delta
        if not left:
            self.shapes.pop(shape, None)
        elif (hot is None or not self._hot_n) and left == delta:
            self.shapes[shape] = 0  # (its count is ``_hot_n``)
            self._hot = shape
            self._hot_node, self._hot_items = shape
            self._hot_n = left
        else:
            self.shapes[shape] = left

    def shape_counts(self) -> dict[tuple[str | None, tuple[tuple[str, float], ...]], int]:
        """``shapes`` with the hot shape's count: queued records per shape (tests, checks)."""
        counts = dict(self.shapes)
        hot = self._hot
        if self._hot_n and hot is not None:
            counts[hot] = self._hot_n
        return counts

    def drop_run(self, run: RunState) -> None:
        """Forget every entry of ``run`` (stepped down, forgotten)."""
        for rec in run.ordered:
            rec.in_heap = False
            self.discard(rec)
        _entries_clear(run)
        self.runs.pop(run.run_id, None)

    def drop_ended(self, run: RunState, lo: int, hi: int) -> None:
        """A run that ended closes its tasks by slices (``RunState.close``): ``ordered[lo:hi]``
        were just closed, so their entries go (in slices too: 200,000 queued entries at once
        held the loop); the run leaves the walks at its first slice (``lo`` 0) and its heap is
        cleared with its last (``hi`` past the end)."""
        if lo == 0:
            self.runs.pop(run.run_id, None)
        ordered = run.ordered
        for at in range(lo, hi):
            rec = ordered[at]
            if rec.in_heap or rec.queued:
                rec.in_heap = False
                self.discard(rec)
        if hi >= len(ordered):
            _entries_clear(run)

    def _head(self, run: RunState) -> TaskRecord | None:
        """The run's first queued record, dropping stale entries on the way (all of them when the
        run no longer runs)."""
        live = run.state == RUN_RUNNING
        top = _entry_head(run)
        while top >= 0:
            rec = run.ordered[top]
            if rec.queued and live:
                return rec
            _entry_pop(run)
            top = _entry_head(run)
            rec.in_heap = False
            if not live:
                self.discard(rec)
        self.runs.pop(run.run_id, None)
        return None

    def walk(self) -> Iterator[tuple[RunState, TaskRecord]]:
        """Queued tasks in order, each popped from its heap as it is yielded (``restore`` after):
        ``begin`` and ``step`` as a generator (tests; the placement pass steps itself)."""
        self.begin()
        item = self.step()
        while item is not None:
            yield item
            item = self.step()

    def begin(self) -> None:
        """Start a walk: each ``step`` gives the next queued task in order, popped from its heap
        (``restore`` after). A cursor, not a generator: a pass stops its walk early, and closing a
        compiled generator throws GeneratorExit into it, a traceback built on every pass."""
        heads: list[tuple[tuple[int, float, int, int], RunState]] = []
        held = self.held
        runs = self.runs
        if len(runs) == 1:
            # One run queued (most passes): no copy of the runs to walk (``_head`` may drop it
            # from them) and no lists of the live ones; the same cursor as below.
            for run in runs.values():  # noqa: B007 (the one run: a C walk, no iterator)
                break
            self._last = None
            self._heads = heads
            self._single = None
            if not (held and run.run_id in held) and self._head(run) is not None:
                self._single = run
            return
        live: list[RunState] = []
        recs: list[TaskRecord] = []
        for run in list(runs.values()):
            if held and run.run_id in held:
                continue
            rec = self._head(run)
            if rec is not None:
                live.append(run)
                recs.append(rec)
        self._last = None
        if len(live) == 1:  # one run: its heap is the order, no merge of heads (and no keys)
            self._single = live[0]
            self._heads = []
            return
        for i, run in enumerate(live):
            heads.append((_key(run, recs[i]), run))
        self._single = None
        heapq.heapify(heads)  # keys differ in run.seq: runs are never compared
        self._heads = heads

    def step(self) -> tuple[RunState, TaskRecord] | None:
        """The walk's next queued task (None: none left). Its run's next head is looked at only
        on the next step: what the walker dispatched meanwhile is discarded from the queue."""
        run = self._single
        if run is not None:
            rec = self._head(run)
            if rec is None:
                self._single = None
                return None
            _entry_pop(run)
            rec.in_heap = False
            self._taken.append((run, rec))
            return run, rec
        heads = self._heads
        last = self._last
        if last is not None:
            self._last = None
            nxt = self._head(last)
            if nxt is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (_key(last, nxt), last))
        while heads:
            key, run = heads[0]
            rec = self._head(run)  # the head seen when it was keyed, unless discarded since
            if rec is None:
                heapq.heappop(heads)
                continue
            if _key(run, rec) != key:
                heapq.heapreplace(heads, (_key(run, rec), run))
                continue
            _entry_pop(run)
            rec.in_heap = False
            self._taken.append((run, rec))
            self._last = run
            return run, rec
        return None

    def like_next(self, run: RunState, rec: TaskRecord) -> bool:
        """Whether the walk's next step would give a record of ``rec``'s cost object and pin,
        in a walk of ``run`` alone (``take_like``)."""
        if self._single is not run:
            return False
        nxt = self._head(run)
        return nxt is not None and nxt.cost is rec.cost and nxt.pin is rec.pin

    def take_like(self, run: RunState, rec: TaskRecord, limit: int) -> list[TaskRecord]:
        """In a walk of ``run`` alone (its order is the walk's: no other run's task is passed
        over), the records the next steps would give while each has ``rec``'s cost object and
        pin, up to ``limit``, taken as those steps take them (``give_back`` returns the last
        ones unused). Another walk: none."""
        taken: list[TaskRecord] = []
        if self._single is not run:
            return taken
        cost = rec.cost
        pin = rec.pin
        if not run.ready_heap and run.state == RUN_RUNNING:
            # Its entries all in the line (a run taken in whole: W1's): the steps below read
            # in one loop over the line's slots, each as ``_head`` then ``_entry_pop`` read it
            # (a stale entry dropped, a cut where a pop cuts), not two calls and their checks a
            # task.
            line = run.ready_line
            ordered = run.ordered
            at = run.ready_at
            n = len(line)
            while len(taken) < limit:
                if at >= n:  # (no entry left: ``_head`` lets the run go)
                    self.runs.pop(run.run_id, None)
                    break
                top = line[at]
                slot = ordered[top]
                if slot.queued and (slot.cost is not cost or slot.pin is not pin):
                    break
                line[at] = 0
                at += 1
                if at == n:
                    line.clear()
                    at = n = 0
                elif at >= _LINE_CUT and 2 * at >= n:
                    del line[:at]
                    n -= at
                    at = 0
                slot.in_heap = False
                if slot.queued:
                    taken.append(slot)
            run.ready_at = at
            if taken:
                self._blocks.append((run, taken))
            return taken
        while len(taken) < limit:
            nxt = self._head(run)
            if nxt is None or nxt.cost is not cost or nxt.pin is not pin:
                break
            _entry_pop(run)
            nxt.in_heap = False
            taken.append(nxt)
        if taken:  # (the list itself: ``restore`` reads it, ``give_back`` cuts it)
            self._blocks.append((run, taken))
        return taken

    def give_back(self, run: RunState, keep: int) -> None:
        """Undo the last ``take_like`` after its first ``keep`` records (its list is cut to
        them): the walk's next steps give the others again."""
        if not self._blocks:
            return
        taken = self._blocks[-1][1]
        for i in range(len(taken) - 1, keep - 1, -1):
            rec = taken[i]
            rec.in_heap = True
            _entry_push(run, rec.order)
        del taken[keep:]
        self.runs[run.run_id] = run

    def discard_all(self, recs: list[TaskRecord]) -> None:
        """``discard`` of each of ``recs``, whose pins and cost items are the first's (a
        block's): their shape counted once, by how many were queued."""
        first = recs[0]
        items = first.cost_items
        node = first.pin
        n = 0
        for rec in recs:
            if (rec.cost_items is not items and rec.cost_items != items) or (
                rec.pin is not node and rec.pin != node
            ):
                self.discard(rec)
            elif rec.queued:
                rec.queued = False
                n += 1
        if not n:
            return
        self.size -= n
        if not items:
            self.weightless -= n
        hot_items = self._hot_items
        if (
            self._hot_n
            and (items is hot_items or items == hot_items)
            and (node is self._hot_node or node == self._hot_node)
        ):
            if n > self._hot_n:
                raise KeyError((node, items))  # (more than counted, as ``discard`` would)
            self._hot_n -= n
            if not self._hot_n:
                del self.shapes[self._hot]  # type: ignore[arg-type]
        else:
            self._count((node, items), -n)

    def restore(self) -> None:
        """Put back what the last walk took and left queued."""
        self._single = self._last = None
        self._heads = []
        # (``_put_back`` only for what is still queued and out of its run's entries: a walk's
        # dispatches took most of what it took out of the queue, a call a task for nothing)
        for run, rec in self._taken:
            if rec.queued and not rec.in_heap:
                self._put_back(run, rec)
        self._taken.clear()
        if self._blocks:
            for run, taken in self._blocks:
                for rec in taken:
                    if rec.queued and not rec.in_heap:
                        self._put_back(run, rec)
            self._blocks.clear()

    def _put_back(self, run: RunState, rec: TaskRecord) -> None:
        """``restore`` of one record a walk took."""
        if rec.queued and not rec.in_heap and run.state == RUN_RUNNING:
            rec.in_heap = True
            _entry_push(run, rec.order)
            self.runs[run.run_id] = run
        elif rec.queued and not rec.in_heap:
            self.discard(rec)

    def validate(self, runs: dict[str, RunState]) -> set[tuple[str, str]]:
        """Check the heaps against the flags; return the queued (run, task) pairs."""
        queued: set[tuple[str, str]] = set()
        closing: set[tuple[str, str]] = set()  # still counted until their slice
        for run in runs.values():
            heap = run.ready_heap
            if run.closing < len(run.ordered):  # ended, closing: its entries go by slices
                for rec in run.ordered[run.closing :]:
                    if rec.queued:
                        closing.add((run.run_id, rec.id))
                continue
            assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap))), "not a heap"
            line = run.ready_line[run.ready_at :]
            assert 0 <= run.ready_at <= len(run.ready_line), f"run {run.run_id}: cursor"
            assert all(line[i - 1] < line[i] for i in range(1, len(line))), "line not ascending"
            every = heap + line
            assert len(set(every)) == len(every), f"run {run.run_id}: an entry twice"
            in_heap = {run.ordered[i].id for i in every}
            assert not every or run.run_id in self.runs, f"run {run.run_id}: heap not listed"
            for i, rec in enumerate(run.ordered):
                assert rec.order == i, f"{rec.id}: order {rec.order} at {i}"
                assert rec.in_heap == (rec.id in in_heap), f"{rec.id}: in_heap {rec.in_heap}"
                if rec.queued:
                    assert rec.in_heap, f"{rec.id} queued but not in its run's heap"
                    queued.add((run.run_id, rec.id))
        counted = queued | closing
        assert self.size == len(counted), f"size {self.size} != {len(counted)}"
        weightless = sum(not runs[r].tasks[t].cost for r, t in counted)
        assert self.weightless == weightless, f"weightless {self.weightless} != {weightless}"
        shapes: dict[tuple[str | None, tuple[tuple[str, float], ...]], int] = {}
        for r, t in counted:
            rec = runs[r].tasks[t]
            shape = (rec.pin, rec.cost_items)
            shapes[shape] = shapes.get(shape, 0) + 1
        counts = self.shape_counts()
        assert counts == shapes, f"shapes {counts} != {shapes}"
        hot = self._hot
        assert self._hot_n >= 0 and (hot is not None or not self._hot_n), f"hot {self._hot_n}"
        assert (hot is not None and hot in self.shapes) == (self._hot_n > 0), "hot shape listed"
        assert hot is None or (self._hot_node, self._hot_items) == hot, "hot shape's parts"
        assert hot is None or (self._hot_node is hot[0] and self._hot_items is hot[1])
        return queued
