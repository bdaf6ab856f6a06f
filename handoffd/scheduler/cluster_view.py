# cython: annotation_typing=False
# (the annotations are for mypy; cluster_view.pxd beside it gives the compiled build its C types)
"""The owner's view of the cluster and the placement pass over it (DESIGN.md 3.3).

Pure state, like the scheduler that owns it: no clock, no I/O. ``OwnerScheduler`` decides *what* is
ready and *what* a dispatch carries; this module keeps *where* things can go:

Resource view: for each ALIVE node, *effective free* = the free resources it last reported (newest
``resource_version`` wins) minus the cost of our dispatches it has not acknowledged yet (``unacked``);
once its answer (``DispatchAnswered``) arrives its own report accounts for them. ``outstanding``
(cost of our ASSIGNED/RUNNING tasks per node) is kept in step with task moves by the scheduler's run
listener.

Pipelining (the dispatch window): a node runs what its ledger admits and keeps a local queue of the
rest, starting the next queued task itself as soon as one finishes (claiming it from its ledger then,
so resources are never over-committed) and reporting completions in batches. The owner therefore
dispatches beyond a node's free resources: after the tasks that fit free resources now (placed by the
run's policy), further ready tasks go to nodes whose *outstanding* demand -- ``outstanding``, queued
or running -- stays within ``window`` x their capacity, chosen by the same policy treating outstanding
demand as load. Such a task stays ASSIGNED until it reports. Collocation groups never go to a window:
they wait for free resources. ``window <= 1`` disables it.

Time budget (``queue_seconds``, default ``QUEUE_SECONDS``): the window's depth is only the upper
bound. Each task out on a node charges it its expected work (``durations``: the seconds its function
ran lately x its share of the node; unknown = long), and a node is topped up only while its summed
work is below the budget, about a round trip plus a few ms. So tiny tasks still fill the window
(throughput), while tasks of a second go only where they start now, and nothing of ours queues
behind our own long work on a node while another node idles. A task of unknown duration may still
go to a node where we have nothing out at all: one kept busy by other owners never looks free to
us, and its local queue starts work by priority.

One wave beside other owners' work: with a time budget, a node whose capacity our outstanding
demand does not fill (the rest is busy with other owners' work, or its report is older than our
last ones) is also given ready tasks up to its capacity, whatever their durations
(``_fill_waves``). Each waits in the node's queue only behind other owners' work, never behind
ours, and the node starts it by priority as a slot frees, before the other owners' later
dispatches: an urgent run no longer waits at its owner, which sees another owner's node free only
when a report says so, while that owner refills every slot as it frees (one task per such node
before, the rest a whole task later). Re-placement moves such a task when another node frees.

When windows are filled: in a pass that placed something on free resources, every node; otherwise
(every pass with a time budget; with the depth alone, only passes that find nothing free anywhere,
in any kind) only nodes whose outstanding demand fell to ``LOW_WATER`` of the window (hysteresis:
one dispatch carries half a window, passes run rarely). With the depth alone, a pass that finds
something free (say memory) but no queued task fitting it leaves the windows alone: queueing a long
task behind a busy node while another frees up unbalances several owners.

Placement: one batch of ready tasks across all runs, in queue order (priority, upward rank, older run,
position), goes through ``placement.place``. Batches are cut short where nothing more can fit
(aggregate free, consecutive misses), so a deep queue costs little per call. Collocation: the first
member placed takes a request for the whole group's remaining cost and fixes the group's node;
members ready in the same batch ride along; later members are pinned there.

The placement core (``handoffd._core.api``) takes every decision: what fits (its ``fits`` and its
one tolerance ``EPS``, the ledger's too), where a batch goes (through ``placement.place``; riders
follow their leader there with ``follow``), which node a task's inputs make it prefer (``prefer``),
whether a node's window is due (``below_low_water``) and which node a window task goes to
(``window_fill``). This module keeps the state those decisions are taken on and walks the queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd._core import api as core
from handoffd.errors import Unschedulable
from handoffd.scheduler import fitness, placement
from handoffd.scheduler.fill_passes import LOW_WATER as LOW_WATER
from handoffd.scheduler.fill_passes import MAX_MISSES as MAX_MISSES
from handoffd.scheduler.fill_passes import BlockFn as BlockFn
from handoffd.scheduler.fill_passes import DispatchFn as DispatchFn
from handoffd.scheduler.fill_passes import FillPasses
from handoffd.scheduler.invariants import validate_view
from handoffd.scheduler.ready import ReadyQueue
from handoffd.scheduler.room_index import NodeState as NodeState
from handoffd.scheduler.run import READY, RUN_RUNNING, RunState, TaskRecord

MAX_BATCH = 4096  # ready tasks offered to placement per call
MAX_SHAPES = 16  # distinct (pin, cost) shapes queued beyond which placement does not pre-check them
WINDOW = 64  # outstanding demand per node, in multiples of its capacity (1 = no pipelining)
#: Work (expected seconds at full parallelism, ``durations``) a node may hold of ours beyond what
#: starts at once: about a dispatch's round trip plus a few ms. A node whose work is above it gets
#: nothing queued. A task of unknown duration counts as ``UNKNOWN_CHARGE`` (long): it is queued
#: only on a node where we have nothing out -- one busy with other owners' work, which never looks
#: free to us for long; there it waits its turn by priority (the node's local queue) -- and
#: then closes that node's budget.
QUEUE_SECONDS = 0.005
EPS = core.EPS


def _none_positive(total: dict[str, float]) -> bool:
    for q in total.values():
        if q > 0.0:
            return False
    return True


def _shape(pin: str | None, need: dict[str, float], rec: TaskRecord) -> tuple[Any, ...]:
    """A walked task's (pin, cost items): what a miss remembers (its record's items unless its
    need is its group's cost)."""
    return (pin, rec.cost_items if need is rec.cost else tuple(need.items()))


def any_free(free: dict[str, dict[str, float]]) -> bool:
    """Some node of ``free`` (name -> its free resources) has some kind above ``EPS``: else only
    windows can take tasks (``ClusterView.place``'s branch; ``lane_entry`` asks the same)."""
    for f in free.values():
        for q in f.values():
            if q > EPS:
                return True
    return False


class ClusterView(FillPasses):
    """Nodes as we see them, our outstanding demand on them, our unanswered dispatches (``Demand``,
    compiled); places ready tasks (the fill passes: ``FillPasses``)."""

    def __init__(
        self,
        *,
        window: int = WINDOW,
        backend: str | None = None,
        queue_seconds: float | None = QUEUE_SECONDS,
    ) -> None:
        # None: the window's depth alone bounds queued work (no time budget, unknown durations
        # queued too): the behaviour before durations were learned, kept for tests of the depth.
        # (the nodes, their rooms, the window, our outstanding demand, work and unanswered
        # dispatches)
        super().__init__(queue_seconds, window)
        self.backend = backend
        self._core = core.kernels(backend)
        # The kernels read once (each use was a module attribute look-up, several a pass).
        self._fits = self._core.fits
        self._prefer = self._core.prefer
        self._place_kernel = self._core.place
        self._window_fill = self._core.window_fill
        self._below = self._core.below_low_water
        # The last queued shape's cost items and that cost as a dict (``_shape_cost``).
        self._shape_items: tuple[tuple[str, float], ...] | None = None
        self._shape_dict: dict[str, float] = {}
        # ``short`` False: every batch goes through the adapter (``place_batch``: the reference
        # ``_place_short`` is tested against).
        self.short = True
        # The last placement pass found nothing free anywhere (only windows could take tasks).
        self.saturated = True
        self.passes = 0  # placement passes run (``place`` with something ready): benches, tests

    # -- bookkeeping -------------------------------------------------------------------------------

    def could_take(self, pin: str | None, cost: dict[str, float]) -> bool:
        """Whether a newly ready task (pinned to ``pin`` or not) may be placed now: some node it
        may go to is at or below its window's low-water mark or has room for it free."""
        if self.window <= 1:
            return True
        fits = self._fits
        if pin is not None:
            nodes = [self.nodes[pin]] if pin in self.nodes else []
        elif self.indexed and not _none_positive(cost):
            # A task with some cost can go only where the room index has room, wave room, a
            # window that may take part or no capacity to rule it out: on a saturated cluster
            # that is a few nodes, where every node made each newly ready task O(n).
            rooms = self._rooms
            rooms.refresh(self)
            if not (
                rooms._with_room.members
                or rooms._with_wave.members
                or rooms._fillable.members
                or rooms._hollow
            ):
                # (``may_take`` is empty: no node to check. A saturated owner's usual answer,
                # read off the sets' sizes, where their union was three new sets a call)
                return False
            nodes = [dict.get(self.nodes, name) for name in rooms.may_take()]  # type: ignore[misc]
        else:
            nodes = list(self.nodes.values())
        for n in nodes:
            if n.alive and (
                (self._may_fill() and self._fill_due(n))
                or fits(cost, self._room(n))
                or fits(cost, self._wave_room(n))
            ):
                return True
        return False

    def _may_fill(self) -> bool:
        """Whether a pass that places nothing on free resources may still fill windows: always
        with a time budget (it bounds what is queued); with the depth alone only when nothing is
        free anywhere (else a long task could queue behind a busy node while another frees)."""
        return self.saturated or self.queue_seconds is not None

    def _fill_due(self, n: NodeState) -> bool:
        """``n``'s window may be topped up: below its low-water mark and within its budget."""
        return self._below_low_water(n) and (
            self.queue_seconds is None or self.budget(n.name) > 0.0
        )

    def _below_low_water(self, n: NodeState) -> bool:
        return self._below(n.capacity, self.outstanding.get(n.name, {}), self.window, LOW_WATER)

    def _room(self, n: NodeState) -> dict[str, float]:
        """Effective free on ``n`` capped by its window room (what the free pass may use)."""
        f = self.effective_free(n.name)
        load = self.outstanding.get(n.name, {})
        for k, q in n.capacity.items():
            f[k] = min(f.get(k, 0.0), q * self.window - load.get(k, 0.0))
        return f

    def _wave_room(self, n: NodeState) -> dict[str, float]:
        """What ``_fill_waves`` may still queue on ``n``: its capacity minus our outstanding
        demand there (nothing without a time budget: the depth-only window keeps its rules)."""
        if self.queue_seconds is None or self.window <= 1:
            return {}
        f: dict[str, float] = {}
        load = self.outstanding.get(n.name, {})
        for k, q in n.capacity.items():
            f[k] = q - load.get(k, 0.0)
        return f

    def room_opened(self, node: str, ready: ReadyQueue) -> bool:
        """Whether demand that left ``node`` may let placement do something there: the node is
        at or below its window's low-water mark, or some ready shape fits what it has free (both
        what the two passes of ``place`` look at; nothing else changed)."""
        n = self.nodes.get(node)
        if n is None or not n.alive or not ready:
            return False
        if self.window <= 1 or len(ready.shapes) > MAX_SHAPES:
            return True
        if self._may_fill() and self._fill_due(n):
            return True
        f = self._room(n)
        wave = self._wave_room(n)
        fits = self._fits
        # (loops, not generator expressions, here and below: a compiled cpdef method holds no
        # closure)
        for pin, cost in ready.shapes:
            if pin is None or pin == node:
                need = self._shape_cost(cost)
                if fits(need, f) or fits(need, wave):
                    return True
        return False

    # -- placement ---------------------------------------------------------------------------------

    def place(self, ready: ReadyQueue, dispatch: DispatchFn, block: BlockFn | None = None) -> None:
        """Place ready tasks (walked in queue order) and ``dispatch`` each one placed: first what
        fits free resources now, then (``window > 1``) node windows below their low-water mark
        (with ``block``, their walks send a node's consecutive tasks of one cost by one call:
        ``FillPasses._walk``)."""
        if not ready:
            return
        self.passes += 1
        rooms = self._rooms
        rooms.refresh(self)
        alive = rooms.alive(self.nodes)
        if not alive:
            return
        window = self.window
        # Only nodes with room, unless a weightless task (it fits a full node) is queued.
        indexed = self.indexed and not ready.weightless
        # (the ordered list by a C call: ``with_room()`` is a Python method and an iterator)
        names = rooms._with_room.ordered(rooms._position) if indexed else [n.name for n in alive]
        # (the index's own dicts, not copies: a pass never changes one in place, it replaces
        # its entry in ``free`` with what is left: ``placement.place_batch``)
        room = rooms.room
        free = {name: room[name] for name in names}
        anything = any_free(free)
        self.saturated = not anything
        if window > 1 and not anything:
            # Nothing is free anywhere: only the window can take tasks (zero-cost ones included).
            self._fill_windows(alive, ready, dispatch, True, block)
            self._fill_waves(alive, ready, dispatch, block)
            return
        most: dict[str, float] = {}
        for f in free.values():
            for kind, qty in f.items():
                if qty > most.get(kind, 0.0):
                    most[kind] = qty
        if len(ready.shapes) <= MAX_SHAPES and not self._some_shape_fits(
            ready, free, most
        ):  # (a group needs at least what its member needs: no shape fits, no group does)
            if window > 1 and self.queue_seconds is not None:
                self._fill_windows(alive, ready, dispatch, True, block)
                self._fill_waves(alive, ready, dispatch, block)
            return
        placed = self._place_free(free, most, ready, dispatch)
        if window > 1 and ready and (placed or self.queue_seconds is not None):
            # after a placement every node is topped up; else only those due (hysteresis)
            self._fill_windows(alive, ready, dispatch, not placed, block)
            self._fill_waves(alive, ready, dispatch, block)

    def _some_shape_fits(
        self, ready: ReadyQueue, free: dict[str, dict[str, float]], most: dict[str, float]
    ) -> bool:
        """Some queued (pin, cost) shape fits what is free (its pinned node's, else the most)."""
        fits = self._fits
        for pin, cost in ready.shapes:
            if fits(self._shape_cost(cost), most if pin is None else free.get(pin, {})):
                return True
        return False

    def _shape_cost(self, items: tuple[tuple[str, float], ...]) -> dict[str, float]:
        """A queued shape's cost items as a dict for the core's ``fits`` (read only): the last
        one's again when asked for the very same items object (a run's tasks of one cost share
        it, so most passes ask for one), where building the dict was most of a shape's check."""
        if items is not self._shape_items:
            self._shape_dict = dict(items)
            self._shape_items = items
        return self._shape_dict

    def _place_free(
        self,
        free: dict[str, dict[str, float]],
        most: dict[str, float],
        ready: ReadyQueue,
        dispatch: DispatchFn,
    ) -> int:
        """The policy's placement of ready tasks on free resources (cut short where nothing more
        can fit: aggregate free, consecutive misses); returns how many were dispatched."""
        total: dict[str, float] = {}
        for k in most:
            summed = 0.0
            for f in free.values():
                summed += max(f.get(k, 0.0), 0.0)
            total[k] = summed
        # (run, rec, demand, pin, preferred node, leader) in walk order; a group's riders follow
        # its leader (the index of its entry; -1: placed on its own).
        batch: list[tuple[RunState, TaskRecord, dict[str, float], Any, Any, int]] = []
        leaders: dict[tuple[str, str], int] = {}
        missed: set[tuple[Any, ...]] = set()
        misses = 0
        fits = self._fits
        prefer = self._prefer
        # Nothing positive is left anywhere. Not "<= EPS": a quantity is 0 or above EPS (parse
        # refuses the rest), and it fits free + EPS, so only free <= 0 everywhere holds it back,
        # just as the core and the ledger would.
        exhausted = _none_positive(total)
        # (read once: only the dispatches after the walk change the queue)
        weightless = ready.weightless > 0
        try:
            ready.begin()
            while True:
                if exhausted and not leaders and not weightless:
                    # The next task would cost something (a queued one that costs nothing is
                    # counted in ``weightless``; a group's cost holds its member's): it would stop
                    # the walk below, and stepping to it took and put back a heap entry.
                    break
                item = ready.step()
                if item is None:
                    break
                run, rec = item
                gid = run.group_of.get(rec.id)
                # (``run.pin_of(rec.id)`` written out: the record and its group are at hand)
                pin = rec.pin
                if pin is None and gid is not None:
                    pin = run.group_node.get(gid)
                if gid is not None and pin is None and (run.run_id, gid) in leaders:
                    # its cost is in its leader's request: the core puts it where that one goes
                    lead = leaders[(run.run_id, gid)]
                    batch.append((run, rec, {}, None, None, lead))
                    continue
                need = run.group_cost(rec.id) if gid is not None and pin is None else rec.cost
                if exhausted and need and not weightless:
                    break  # nothing left anywhere and nothing queued that needs nothing
                # Free only shrinks during a pass: a demand that missed once misses again.
                # (the shape tuple only once something missed: a walk that fits builds none)
                if missed and _shape(pin, need, rec) in missed:
                    misses += 1
                    if misses >= MAX_MISSES:
                        break
                    continue
                room = free.get(pin) if pin is not None else most
                if room is None or not fits(need, room) or not fits(need, total):
                    missed.add(_shape(pin, need, rec))
                    misses += 1
                    if misses >= MAX_MISSES or missed.issuperset(ready.shapes):
                        break  # (every shape queued missed: the rest would too)
                    continue
                misses = 0
                if need:
                    for kind, qty in need.items():
                        total[kind] = total.get(kind, 0.0) - qty
                    exhausted = _none_positive(total)
                if gid is not None and pin is None:
                    leaders[(run.run_id, gid)] = len(batch)
                # (no inputs, no bound method made for the call: most tasks of a big run)
                held = (
                    run.input_bytes(rec.id, self._rooms.room.__contains__)  # live nodes
                    if run.effective_deps[rec.id]
                    else None
                )
                batch.append((run, rec, need, pin, prefer(held) if held else None, -1))
                if len(batch) >= MAX_BATCH:
                    break
            if not batch:
                return 0
            chosen = self._place_short(free, batch) if self.short else None
            if chosen is None:
                chosen = placement.place_batch(self, free, batch)
            sent = 0
            for i, (run, rec, _, _, _, _) in enumerate(batch):
                node = chosen[i]
                # (a rider's group may have ended with a dispatch before it: not sent then)
                if node is not None and rec.state == READY and run.state == RUN_RUNNING:
                    dispatch(run, rec, node, False)
                    sent += 1
            return sent
        finally:
            ready.restore()

    def _place_short(
        self, free: dict[str, dict[str, float]], batch: list[tuple[Any, ...]]
    ) -> list[str | None] | None:
        """``placement.place_batch`` for a batch of one policy and no collocation riders (every
        one-task run, most batches): the core's ``place`` called on the candidates' lists at
        once, with no ``NodeView``/``TaskRequest`` records nor the adapter's index between; None
        for any other batch. Same candidates (``_candidates``), order, pins and preferences
        (``tests/unit/test_place_short.py`` holds them equal)."""
        if len(batch) == 1:
            return self._place_one(free, batch[0])
        policy = batch[0][0].options.policy
        demands: list[dict[str, float]] = []
        for run, _, need, _, _, lead in batch:
            if lead >= 0 or run.options.policy != policy:
                return None
            demands.append(need)
        chosen: list[str | None] = [None] * len(batch)
        names, frees = self._candidates(free, demands)
        if not names:
            return chosen
        index: dict[str, int] = {}
        capacities: list[dict[str, float]] = []
        nodes = self.nodes
        for i, name in enumerate(names):
            index[name] = i
            capacities.append(nodes[name].capacity)
        todo: list[int] = []
        pins: list[int] = []
        prefs: list[int] = []
        demands = []
        for i, (_, _, need, pin, pref, _) in enumerate(batch):
            if pin is not None:
                at = index.get(pin, -1)
                if at < 0:
                    continue  # pinned to a node that is not a candidate: unplaceable now
                pins.append(at)
                prefs.append(-1)
            else:
                pins.append(-1)
                prefs.append(index.get(pref, -1) if pref is not None else -1)
            demands.append(need)
            todo.append(i)
        picks = self._place_kernel(demands, frees, capacities, pins, prefs, policy, None)
        # (``free`` is not charged for them: the whole batch is placed at once, and nothing
        # reads ``free`` after it in the pass)
        for j, n in enumerate(picks):
            if n >= 0:
                chosen[todo[j]] = names[n]
        return chosen

    def _place_one(
        self, free: dict[str, dict[str, float]], entry: tuple[Any, ...]
    ) -> list[str | None] | None:
        """``_place_short`` for a batch of one task (most passes of a busy owner: one freed
        slot refilled): the core's ``place_one``, the candidates' ``fits`` and ``place`` in one
        call (the same candidates, pin and preference as ``_candidates`` and ``place``; no
        index or position lists between); None for a rider, or a task that costs nothing
        (``_candidates`` widens the nodes for it: the adapter's batch)."""
        run, _, need, pin, pref, lead = entry
        if lead >= 0 or not need:
            return None
        nodes = self.nodes
        capacities: list[dict[str, float]] = []
        for name in free:  # (live nodes: the dict's own get, not ``Nodes``' subscript)
            capacities.append(dict.get(nodes, name)._capacity)  # type: ignore[union-attr]
        return [self._core.place_one(need, free, capacities, pin, pref, run.options.policy)]

    def _candidates(
        self, free: dict[str, dict[str, float]], demands: list[dict[str, float]]
    ) -> tuple[list[str], list[dict[str, float]]]:
        """Live nodes (names, what each has free) that could hold at least the smallest demand
        of each kind."""
        # (loops, not generator expressions: compiled, each was a coroutine object per pass, and
        # a minimum over a batch of demands per kind)
        least: dict[str, float] = {}
        if len(demands) == 1:
            least = demands[0]  # (its own kinds and quantities: most batches are one task)
        elif demands:
            kinds = set(demands[0])
            for d in demands[1:]:
                kinds &= set(d)
            for k in kinds:
                low = demands[0][k]
                for d in demands:
                    if d[k] < low:
                        low = d[k]
                least[k] = low
        fits = self._fits
        room = self._rooms.room
        if not least and len(free) < len(room):
            # No kind common to every demand: nodes without room pass the filter too (none can
            # take a task, but they count in the core's scoring: capacity scales).
            alive = self._rooms.alive(self.nodes)
            free = {n.name: free[n.name] if n.name in free else dict(room[n.name]) for n in alive}
        names: list[str] = []
        frees: list[dict[str, float]] = []
        for name, f in free.items():
            if fits(least, f):
                names.append(name)
                frees.append(f)
        return names, frees

    # -- fitness and invariants (fitness.py, invariants.py) ----------------------------------------

    def misfit(
        self, run: RunState, ids: Iterable[str] | None = None, finished: bool = False
    ) -> Unschedulable | None:
        """``fitness.misfit`` over this view."""
        return fitness.misfit(self, run, ids, finished)

    def validate(
        self, outstanding: dict[str, dict[str, float]], work: dict[str, float] | None = None
    ) -> None:
        """``invariants.validate_view`` over this view."""
        validate_view(self, outstanding, work)
