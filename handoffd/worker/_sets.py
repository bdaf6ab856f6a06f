"""Room for workers in a WorkerPool, per device set: ``max_workers`` processes of any set, plus
one kept for each warm set (started with the pool, never swapped out for another set). Pure: it
looks only at each worker's ``devices``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar


class HasDevices(Protocol):
    devices: str | None


W = TypeVar("W", bound=HasDevices)


class WorkerRoom:
    def __init__(self, max_workers: int, warm: Iterable[str], default: str | None) -> None:
        self.max_workers = max_workers
        # warm device sets in a stable order; the default set is served by max_workers already
        self.warm = tuple(dict.fromkeys(d for d in warm if d != default))

    def missing(self, workers: Collection[HasDevices], devices: str | None) -> bool:
        """A warm set without a worker (its kept one died or was recycled): start one."""
        return devices in self.warm and not any(w.devices == devices for w in workers)

    def full(self, workers: Collection[HasDevices]) -> bool:
        """No worker may be added besides the one kept for each warm set."""
        sets = {w.devices for w in workers}
        kept = sum(1 for d in self.warm if d in sets)
        return len(workers) - kept >= self.max_workers

    def victim(
        self, workers: Collection[W], idle: Mapping[str | None, Sequence[W]], devices: str | None
    ) -> W | None:
        """An idle worker of another device set to make room for one of ``devices``, the coldest
        of its stack first; never the last worker of a warm set."""
        for other, stack in idle.items():
            if other == devices:
                continue
            for worker in stack:
                if worker.devices not in self.warm or any(
                    w is not worker and w.devices == worker.devices for w in workers
                ):
                    return worker
        return None
