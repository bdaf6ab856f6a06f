# cython: annotation_typing=False
"""Which live nodes have room, kept between placement passes (issue 20).

A placement pass needs each live node's *room*: the free resources it last reported, minus our
unanswered dispatches there (``pending``), capped by its dispatch window (``window`` x capacity minus
our ``outstanding`` demand there). Building that for every node on every pass made a pass O(n): a
1,000-node owner without the window spent ~750 us per decision in it. This index keeps each live
node's room and recomputes it only for nodes whose inputs changed since the last pass (marked
``dirty``: a node report, a dispatch, an answer, a task going out or coming back), and keeps the set
of nodes with any room (some kind above 0), so a pass visits only those.

A node without room can take no task that costs something (a quantity is 0 or above ``EPS`` and
fits only ``free + EPS``, so it needs free above 0), so leaving it out changes no decision; the
view falls back to every live node when it could matter (weightless tasks queued, or a batch whose
demands share no kind: ``ClusterView._candidates``). The rooms are computed exactly as the full pass did
(same arithmetic, same key order), so placement is identical; tests/unit/test_room_index.py
checks that against the full pass with random clusters and workloads.

Pure bookkeeping: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from handoffd import resources
from handoffd.resources import EPS

if TYPE_CHECKING:
    from handoffd.scheduler.room_view import RoomView

_NO_LOAD: dict[str, float] = {}  # (read only: a node without outstanding demand)

#: ``RoomIndex.report``'s answer, bits: the node's capacity shrunk (some task may no longer fit
#: anywhere); its free resources changed (the owner's next pass may place more); the node is not
#: a live node of the view (nothing written: the owner takes it whole).
SHRUNK = 1
FREED = 2
ABSENT = 4

#: A node's memberships of the index's sets, as ``NodeState._sets`` bits: with room, fillable,
#: with effective free, with wave room, hollow (no capacity).
IN_ROOM = 1
IN_FILLABLE = 2
IN_FREE = 4
IN_WAVE = 8
IN_HOLLOW = 16


class NodeState:
    """Our view of one node. Assigning ``alive``, ``capacity`` or ``free`` tells the index
    watching it (``_watch``) that the node's room must be recomputed (the owner updates nodes in
    place). A C class compiled (node_state fields in room_index.pxd): the index's refresh and
    ``RoomIndex.report`` read and write the fields as C fields, where a dataclass's instance
    dict cost a look-up per field and its ``__setattr__`` a Python-level call per write; Python
    code reads and writes them through the properties below."""

    def __init__(
        self,
        name: str,
        address: str,
        alive: bool,
        capacity: dict[str, float],
        free: dict[str, float],  # as last reported (newest resource_version)
        version: int,
    ) -> None:
        self.name = name
        self.address = address
        self._alive = alive
        self._capacity = capacity
        self._free = free
        self.version = version
        self._watch: Callable[[str, bool], None] | None = None
        # Which of the sets of the index ``_sets_of`` this node is in (``IN_*`` bits), as that
        # index's last renew of it wrote them: a renew touches a set only where a bit changes,
        # where each put was a membership test (and most left the set as it was). Any other
        # index (None: the node just entered a view) writes every set once.
        self._sets = 0
        self._sets_of: RoomIndex | None = None

    @property
    def alive(self) -> bool:
        return self._alive

    @alive.setter
    def alive(self, value: bool) -> None:
        same = self._alive == value
        self._alive = value
        if not same and self._watch is not None:
            self._watch(self.name, True)

    @property
    def capacity(self) -> dict[str, float]:
        return self._capacity

    @capacity.setter
    def capacity(self, value: dict[str, float]) -> None:
        same = self._capacity == value  # (the owner re-sets capacity every report)
        self._capacity = value
        if not same and self._watch is not None:
            self._watch(self.name, True)

    @property
    def free(self) -> dict[str, float]:
        return self._free

    @free.setter
    def free(self, value: dict[str, float]) -> None:
        same = self._free == value
        self._free = value
        if not same and self._watch is not None:
            self._watch(self.name, False)

    def _fields(self) -> tuple[Any, ...]:
        return (self.name, self.address, self._alive, self._capacity, self._free, self.version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeState):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # (mutable, compared by value)

    def __repr__(self) -> str:
        return (
            f"NodeState(name={self.name!r}, address={self.address!r}, alive={self._alive!r}, "
            f"capacity={self._capacity!r}, free={self._free!r}, version={self.version!r})"
        )


class Nodes(dict[str, NodeState]):
    """``ClusterView.nodes``: a dict that tells the index when a node is added or replaced."""

    def __init__(self, changed: Callable[[str, bool], None], reordered: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed
        self._reordered = reordered

    def __setitem__(self, name: str, node: NodeState) -> None:
        if name not in self:
            self._reordered()  # a new key goes last in iteration order
        super().__setitem__(name, node)
        node._watch = self._changed
        node._sets_of = None  # (its set bits are not known to the index: written whole once)
        self._changed(name, True)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self._reordered()

    def pop(self, name: str, *default: Any) -> Any:  # type: ignore[override]
        had = name in self
        value = super().pop(name, *default)
        if had:
            self._reordered()
        return value

    def clear(self) -> None:
        super().clear()
        self._reordered()


class _Ordered:
    """A set of node names that keeps its members in ``nodes`` order until one comes or goes:
    a pass asks for the order several times between changes to a few nodes, and sorting the set
    on every call was an O(n log n) step per pass on a big cluster. A C class compiled (a set
    subclass before: each ``add``, ``discard`` and ``ordered`` was a Python method call, a few
    per refreshed node and per pass)."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.order: list[str] | None = None

    def put(self, name: str, inside: bool) -> None:
        """``name`` in the set if ``inside``, else out of it."""
        members = self.members
        if inside:
            if name not in members:
                members.add(name)
                self.order = None
        elif name in members:
            members.discard(name)
            self.order = None

    def ordered(self, position: dict[str, int]) -> list[str]:
        if self.order is None:
            members = self.members
            # (none or one: no sort, no key call; with one node freeing and filling its only
            # slot per task, the sets come and go by one member and this is most calls)
            if len(members) < 2:
                # (a comprehension: compiled, a C walk of the set; ``list(members)`` went
                # through the sequence protocol, an iterator and a resize, most of this
                # method's cost, several calls a task)
                self.order = [name for name in members]  # noqa: C416
            else:
                self.order = sorted(members, key=position.__getitem__)
        return self.order


class RoomIndex:
    """Each live node's room and the live nodes with some, brought up to date by ``refresh``."""

    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.room: dict[str, dict[str, float]] = {}  # live nodes only
        self._with_room = _Ordered()
        self._position: dict[str, int] = {}  # node -> its place in ``nodes`` iteration order
        self._alive: list[NodeState] | None = None  # live nodes in order (None: rebuild)
        self._window = -1  # the window the rooms were computed for
        self._budgeted: float | None = -1.0  # the queue_seconds ``fillable`` was computed for
        # Live nodes whose window could take part in a top-up (room in some kind, budget left).
        self._fillable = _Ordered()
        # Live nodes whose reported free minus our unanswered dispatches has a kind above EPS
        # (``Rebalance.offer`` asks for queued work for those), whose capacity is above our
        # outstanding demand in some kind (``_fill_waves``), and with no capacity at all (a
        # window check cannot rule them out): each pass visits these instead of every node.
        self._with_free = _Ordered()
        self._with_wave = _Ordered()
        self._hollow: set[str] = set()
        self._top: dict[str, float] | None = None  # the largest capacity of each kind, live nodes

    def changed(self, name: str, shape: bool = False) -> None:
        """``name``'s room may have changed (``shape``: so may its liveness or capacity)."""
        self.dirty.add(name)
        if shape:
            self._alive = None
            self._top = None

    def report(
        self,
        nodes: dict[str, NodeState],
        name: str,
        address: str,
        capacity: dict[str, float],
        version: int,
        free: dict[str, float],
    ) -> int:
        """A report (``NodeUpdate``) from ``name``, alive, written into its node in ``nodes``
        (the view's, watched by this index) if that node is alive: its address and capacity as
        they are now, its free resources if the report is newer (``resource_version``). The
        same writes and marks as assigning the fields (``NodeState``'s setters), in one C call
        writing the node's C fields: the owner's two reports a task (an answer and a report
        carry the node's free) made a look-up, a ``renew`` call and two Python-level
        ``__setattr__`` calls each, the scheduler's costliest step per report. Returns
        ``SHRUNK | FREED`` bits, or ``ABSENT`` (nothing written) for a node unknown or dead."""
        if not isinstance(nodes, dict):  # (compiled, the get below reads it as a dict unchecked)
            raise TypeError(f"RoomIndex.report: nodes must be a dict, not {type(nodes).__name__}")
        n = dict.get(nodes, name)  # (``Nodes`` adds nothing to a read: the dict's own get)
        if n is None:
            return ABSENT
        node: NodeState = n
        if not node._alive:
            return ABSENT
        out = 0
        if node.address != address:
            node.address = address
        old = node._capacity
        if old != capacity:  # (the owner sends the same capacity with every report)
            if not resources.fits(old, capacity):
                out = SHRUNK
            node._capacity = dict(capacity)
            self.changed(name, True)
        if version > node.version:
            node.version = version
            if free != node._free:
                if type(free) is dict:
                    # (a dict's own copy: the call of the ``dict`` type went through the
                    # generic call and the mapping protocol, twice a task)
                    plain = free
                    node._free = plain.copy()
                else:
                    node._free = dict(free)
                self.dirty.add(name)  # (``changed(name)``)
                out |= FREED
        return out

    def reordered(self) -> None:
        self._position.clear()
        self._alive = None
        for members in (self._with_room, self._fillable, self._with_free, self._with_wave):
            members.order = None

    def alive(self, nodes: dict[str, NodeState]) -> list[NodeState]:
        """Live nodes in ``nodes`` order (cached until a node changes)."""
        if self._alive is None:
            self._alive = [n for n in nodes.values() if n.alive]
        return self._alive

    def refresh(self, view: RoomView) -> None:
        """Recompute the rooms of the dirty nodes (all of them if the window changed)."""
        nodes = view.nodes
        budget = view.queue_seconds
        # (identity first: the view's budget is the same object pass after pass, and an equal
        # compare of two objects was a rich compare a pass)
        if view.window != self._window or (
            budget is not self._budgeted and budget != self._budgeted
        ):
            self._window = view.window
            self._budgeted = budget
            self.dirty.update(nodes)
        if not self._position:
            self._position = {name: i for i, name in enumerate(nodes)}
        if not isinstance(nodes, dict):  # (compiled, the get below reads it as a dict unchecked)
            raise TypeError(f"RoomIndex.refresh: nodes must be a dict, not {type(nodes).__name__}")
        with_room = self._with_room
        fillable = self._fillable
        for name in self.dirty:
            n = dict.get(nodes, name)  # (``Nodes`` adds nothing to a read: the dict's own get)
            if n is None or not n._alive:
                self.room.pop(name, None)
                with_room.put(name, False)
                fillable.put(name, False)
                self._with_free.put(name, False)
                self._with_wave.put(name, False)
                self._hollow.discard(name)
                if n is not None:
                    n._sets_of = None  # (out of every set: its bits no longer say so)
                continue
            self._renew(view, n)
        self.dirty.clear()

    def _renew(self, view: RoomView, n: NodeState) -> None:
        """The live node ``n``'s room and which of the sets it is in now, in one walk over its
        capacity: ``RoomView.room_of``'s arithmetic in its order (effective free, then capped by
        the window room), the free set on the effective free, the wave and hollow sets and
        ``may_take_part`` (the fillable set) on the capacity and our outstanding demand. (Four
        view calls and as many walks over the capacity before, a fifth of the owner's pass.) A set
        is written only where the node's membership changed (its ``_sets`` bits)."""
        name = n.name
        # The room is the reported free itself until a kind must differ (a pending dispatch, a
        # cap below it, a kind it lacks): then a copy of it. Neither is ever changed in place (a
        # report or the setter replaces a node's free; a pass replaces its entry of a room),
        # and most renews of a busy owner write nothing (no dispatch unanswered, the window's
        # cap above the free), where the copy and the old room's release were a third of one.
        f = n._free
        copied = False
        pending = view.pending.get(name)
        if pending:
            f = f.copy()
            copied = True
            for k, q in pending.items():
                f[k] = f.get(k, 0.0) - q
        free = False
        for q in f.values():
            if q > EPS:
                free = True
                break
        load = view.outstanding.get(name)
        if load is None:
            load = _NO_LOAD
        window = view.window
        depth = float(window)
        capped = window > 1  # outstanding demand never exceeds the window, queued or not
        budget = view.queue_seconds
        if budget is None:
            budgeted = True
        else:
            # (in C doubles when compiled: the object subtraction made a float a renew)
            spent = view.work.get(name)
            budgeted = float(budget) - (0.0 if spent is None else float(spent)) > 0.0
        wave = positive = part = False
        for k, q in n._capacity.items():
            used = load.get(k, 0.0)
            if q > 0.0:
                positive = True
                if not wave and q - used > 0.0:
                    wave = True
                if not part and q * depth - float(used) > EPS:
                    part = True
            if capped:
                cap = q * window - used
                have = f.get(k)
                if have is None:  # (``min(0.0, cap)``: the first of equals)
                    if not copied:
                        f = f.copy()
                        copied = True
                    f[k] = cap if cap < 0.0 else 0.0
                elif cap < float(have):  # (``min(have, cap)``)
                    if not copied:
                        f = f.copy()
                        copied = True
                    f[k] = cap
                # (else ``have`` stays: the same value at the same key, not written again)
        self.room[name] = f
        roomy = False
        for q in f.values():
            if q > 0.0:
                roomy = True
                break
        now = IN_ROOM if roomy else 0
        if budgeted and part:
            now |= IN_FILLABLE
        if free:
            now |= IN_FREE
        if wave:
            now |= IN_WAVE
        if not positive:
            now |= IN_HOLLOW
        if n._sets_of is self:
            changed = now ^ n._sets
            if not changed:
                return
        else:  # (the node is new to this index, or came back: every set written once)
            changed = IN_ROOM | IN_FILLABLE | IN_FREE | IN_WAVE | IN_HOLLOW
            n._sets_of = self
        n._sets = now
        # (only a changed bit's set is touched: W1's nodes of one cpu go full <-> free every
        # task, flipping two or three of the five, and each put was a membership test)
        if changed & IN_FREE:
            self._with_free.put(name, free)
        if changed & IN_WAVE:
            self._with_wave.put(name, wave)
        if changed & IN_HOLLOW:
            if positive:
                self._hollow.discard(name)
            else:
                self._hollow.add(name)
        if changed & IN_FILLABLE:
            self._fillable.put(name, budgeted and part)
        if changed & IN_ROOM:
            self._with_room.put(name, roomy)

    def any_free(self) -> bool:
        """Whether some live node's effective free has a kind above ``EPS``."""
        return bool(self._with_free.members)

    def with_free(self) -> list[str]:
        """Live nodes whose effective free has a kind above ``EPS``, in ``nodes`` order."""
        return self._with_free.ordered(self._position)

    def with_wave(self) -> list[str]:
        """Live nodes with capacity above our outstanding demand in some kind, in ``nodes``
        order (a superset of what ``_fill_waves`` takes: it checks against ``EPS``)."""
        return self._with_wave.ordered(self._position)

    def may_take(self) -> set[str]:
        """Live nodes where a newly ready task with some cost could be placed or queued: room,
        wave room, a window that may take part (a window due for a top-up is one), or no
        capacity at all (``could_take``'s other nodes cannot take it)."""
        return (
            self._with_room.members
            | self._with_wave.members
            | self._fillable.members
            | self._hollow
        )

    def with_room(self) -> Iterator[str]:
        """Live nodes with some room, in ``nodes`` order."""
        return iter(self._with_room.ordered(self._position))

    def fillable(self) -> list[str]:
        """Live nodes whose window may take part in a top-up, in ``nodes`` order."""
        return self._fillable.ordered(self._position)

    def top(self, alive: list[NodeState]) -> dict[str, float]:
        """The largest capacity of each kind over the live nodes (recomputed when one changes)."""
        if self._top is None:
            top: dict[str, float] = {}
            for n in alive:
                for kind, q in n.capacity.items():
                    top[kind] = max(q, top[kind]) if kind in top else q
            self._top = top
        return self._top
