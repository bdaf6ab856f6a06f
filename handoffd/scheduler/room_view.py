# cython: annotation_typing=False
# (the annotations are for mypy; room_view.pxd beside it gives the compiled build its C types)
"""What a node's room is computed from: our view of the nodes, the dispatch window and time
budget, our outstanding demand, expected work and unanswered dispatches per node.

The base of ``demand.Demand`` (and so of ``cluster_view.ClusterView``), split out so that
``room_index.RoomIndex.refresh`` can take the view as a typed object: ``room_index`` cannot cimport
``demand`` or ``cluster_view``, which cimport it. Compiled with ``room_view.pxd``, a refresh reads
these fields and calls these methods through C, where it went through Python attribute lookups on
an untyped view for every node it refreshed (twice a placement pass).

Pure state, no clock, no I/O; the ``.py`` is the pure-Python build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoffd._core.api import EPS

if TYPE_CHECKING:
    from handoffd.scheduler.room_index import NodeState

__all__ = ["RoomView"]


class RoomView:
    """The nodes and our books on them that a node's room depends on (``Demand`` keeps them)."""

    def __init__(
        self, nodes: dict[str, NodeState], queue_seconds: float | None, window: int
    ) -> None:
        self.nodes = nodes
        # None: the window's depth alone bounds queued work (see ``cluster_view.QUEUE_SECONDS``).
        self.queue_seconds = queue_seconds
        # Outstanding demand per node, in multiples of its capacity (``cluster_view.WINDOW``).
        self.window = window
        # Invariant: work[node] == summed ``charge`` of our ASSIGNED/RUNNING tasks there.
        self.work: dict[str, float] = {}
        # Invariant: outstanding[node] == summed cost of our ASSIGNED/RUNNING tasks there (running
        # or in the node's queue: the demand the dispatch window bounds).
        self.outstanding: dict[str, dict[str, float]] = {}
        # Invariant: pending[node] == summed cost of our unanswered dispatches there (kinds at
        # zero dropped; ``Demand.unacked`` holds them).
        self.pending: dict[str, dict[str, float]] = {}

    def effective_free(self, node: str) -> dict[str, float]:
        """What we may still dispatch to ``node``: reported free minus unacknowledged dispatches."""
        free = dict(self.nodes[node].free)
        for kind, qty in self.pending.get(node, {}).items():
            free[kind] = free.get(kind, 0.0) - qty
        return free

    def budget(self, node: str) -> float:
        """Seconds of expected work ``node`` may still be given to queue (``QUEUE_SECONDS``)."""
        assert self.queue_seconds is not None
        return self.queue_seconds - self.work.get(node, 0.0)

    def may_take_part(self, n: NodeState) -> bool:
        """Whether ``n``'s window could take part in a top-up (``window_fill``'s test before the
        low-water mark): room in some kind it has, and budget left if there is a time budget."""
        if self.queue_seconds is not None and not self.budget(n.name) > 0.0:
            return False
        window = float(self.window)
        load = self.outstanding.get(n.name, {})
        for k, q in n.capacity.items():
            if q > 0.0 and q * window - float(load.get(k, 0.0)) > EPS:
                return True
        return False

    def room_of(self, n: NodeState) -> dict[str, float]:
        """What a placement pass may use on ``n``: effective free, capped by the window room."""
        f = dict(n.free)
        pending = self.pending.get(n.name)
        if pending:
            for k, q in pending.items():
                f[k] = f.get(k, 0.0) - q
        return self.capped(n, f)

    def capped(self, n: NodeState, f: dict[str, float]) -> dict[str, float]:
        """``f`` (``n``'s effective free, a copy of ours to change) capped by the window room,
        in place: ``room_of`` once the effective free is at hand (the room index's refresh has
        it already, for its free set)."""
        window = self.window
        if window > 1:  # outstanding demand never exceeds the window, queued or not
            load = self.outstanding.get(n.name, {})
            for k, q in n.capacity.items():
                f[k] = min(f.get(k, 0.0), q * window - load.get(k, 0.0))
        return f
