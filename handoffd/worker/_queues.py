"""The chains of a WorkerPool that wait for a worker: one FIFO per device set, served oldest first.

A chain may be queued twice, or be over (its last job ended or was cancelled) by the time it comes
to the front: ``front`` drops those. ``chains`` is the pool's own id -> live chain map.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable

from handoffd.worker._records import Chain, Job, expand


class WaitingChains:
    def __init__(self, chains: dict[Hashable, Chain]) -> None:
        self._chains = chains
        self._queues: dict[str | None, deque[Chain]] = {}
        self._seq = itertools.count()  # arrival order, across device sets

    def push(self, chain: Chain) -> None:
        """At the back: it waits after every chain queued before it."""
        chain.seq = next(self._seq)
        self._queues.setdefault(chain.devices, deque()).append(chain)

    def served(self, chain: Chain) -> None:
        """A new chain got an idle worker with no chain waiting (it was the oldest): it never
        queued, but keeps its place in time for ``push_front`` should it lose its worker."""
        chain.seq = next(self._seq)

    def empty(self) -> bool:
        """Nothing queued, not even an over or stale chain: no look at any front needed."""
        return not self._queues

    def push_front(self, chain: Chain) -> None:
        """Back to the front of its set (it lost its worker), with its old place in time."""
        self._queues.setdefault(chain.devices, deque()).appendleft(chain)

    def front(self, devices: str | None) -> Chain | None:
        """The first chain of the set that waits for a worker (drops the over or stale ones)."""
        queue = self._queues.get(devices)
        chains = self._chains
        while queue:
            chain = queue[0]
            if chains.get(chain.id) is chain and chain.worker is None and not chain.held:
                if chain.jobs:
                    return chain
                del chains[chain.id]
            queue.popleft()  # over, or queued twice
        self._queues.pop(devices, None)
        return None

    def pop(self, devices: str | None) -> Chain:
        """The front chain of ``devices`` (``front`` said there is one)."""
        return self._queues[devices].popleft()

    def waiting(self) -> bool:
        return any(self.front(devices) is not None for devices in list(self._queues))

    def order(self) -> list[str | None]:
        """The device sets with a waiting chain, the one whose front chain waits longest first."""
        fronts = []
        for devices in list(self._queues):
            chain = self.front(devices)
            if chain is not None:
                fronts.append((chain.seq, devices))
        fronts.sort(key=lambda front: front[0])
        return [devices for _, devices in fronts]

    def take_all(self) -> list[Job]:
        """Empty every queue; the jobs of the chains it held, in order."""
        jobs = [
            job for queue in self._queues.values() for chain in queue for job in expand(chain.jobs)
        ]
        self._queues.clear()
        return jobs

    def clear(self) -> None:
        self._queues.clear()
