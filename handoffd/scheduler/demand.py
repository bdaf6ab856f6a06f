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

from handoffd._core.api import EPS
from handoffd.scheduler.durations import Durations
from handoffd.scheduler.room_index import Nodes, RoomIndex
from handoffd.scheduler.room_view import RoomView
from handoffd.scheduler.run import TaskRecord

__all__ = ["DispatchKey", "Demand", "add_into"]

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
        # Dispatches sent but not yet answered: node -> (run, task, attempt) -> (cost, the node's
        # resource_version when we sent it: a refusal after a newer report was made on a fresh view,
        # when we sent it). Insertion order is sending order, so the oldest come first.
        self.unacked: dict[str, dict[DispatchKey, tuple[dict[str, float], int, float]]] = {}

    def alive(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and node.alive

    def went_out(self, node: str, rec: TaskRecord) -> None:
        """``rec`` became ASSIGNED/RUNNING on ``node``: its cost and expected work count there."""
        cost = rec.spec.cost
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

    def came_back(self, node: str, rec: TaskRecord) -> None:
        """``rec`` left ``node`` (finished, lost, cancelled, refused, dropped)."""
        load = self.outstanding.get(node)
        if load is None:
            load = self.outstanding[node] = {}
        add_into(load, rec.spec.cost, -1)
        self._dirty_rooms.add(node)
        if rec.charge:
            left = self.work.get(node, 0.0) - rec.charge
            # Only tasks with a cost carry work: none left, no work (no float residue either).
            if load and left > EPS:
                self.work[node] = left
            else:
                self.work.pop(node, None)
            rec.charge = 0.0

    def sent(self, node: str, key: DispatchKey, cost: dict[str, float], now: float) -> None:
        """Record a dispatch to ``node`` (sent at ``now``) until it answers."""
        sent = self.unacked.get(node)
        if sent is None:
            sent = self.unacked[node] = {}
        # (the dict's own get and a C field: ``Nodes``' subscript and ``version`` were two
        # generic Python-level look-ups a dispatch; a dispatch only goes to a known node)
        n = dict.get(self.nodes, node)
        if n is None:
            raise KeyError(node)
        sent[key] = (cost, n.version, now)
        if cost:
            pending = self.pending.get(node)
            if pending is None:
                pending = self.pending[node] = {}
            add_into(pending, cost, 1)
            self._dirty_rooms.add(node)

    def answered(self, node: str, key: DispatchKey) -> tuple[dict[str, float], int, float] | None:
        """Forget an answered dispatch; (its cost, the version and time it was sent at) or None."""
        pending = self.unacked.get(node)
        sent = pending.pop(key, None) if pending is not None else None
        if sent is not None and sent[0]:
            add_into(self.pending[node], sent[0], -1)
            self._dirty_rooms.add(node)
        return sent

    def unanswered(self, node: str, cutoff: float) -> list[DispatchKey]:
        """Forget and return the dispatches to ``node`` sent at or before ``cutoff``, oldest first."""
        pending = self.unacked.get(node)
        late: list[DispatchKey] = []
        if pending:
            for key, (_, _, at) in pending.items():
                if at > cutoff:
                    break
                late.append(key)
            for key in late:
                cost = pending.pop(key)[0]
                if cost:
                    add_into(self.pending[node], cost, -1)
            self._dirty_rooms.add(node)
        return late

    def oldest_unacked(self, node: str) -> float | None:
        """When the oldest dispatch to ``node`` still unanswered was sent, or None."""
        for _, _, at in self.unacked.get(node, {}).values():
            return at
        return None

    def forget_unacked(self, node: str) -> None:
        """``node`` was lost or came back: its answers are not coming / its report is fresh."""
        self.unacked.pop(node, None)
        self.pending.pop(node, None)
        self._dirty_rooms.add(node)

    def forget_run(self, run_id: str) -> None:
        for node, pending in self.unacked.items():
            for key in [k for k in pending if k[0] == run_id]:
                cost = pending.pop(key)[0]
                if cost:
                    add_into(self.pending[node], cost, -1)
                    self._dirty_rooms.add(node)
