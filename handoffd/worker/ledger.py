"""The executing node's own resource ledger: the last word on what this node can accept.

Several owners dispatch to the same node from their own (possibly stale) views; the ledger refuses
what does not fit right now, and the owner re-places. GPUs are whole devices: a task costing
``gpu: 2`` is given two of the node's devices, exported to it as CUDA_VISIBLE_DEVICES: their ids as the
daemon was given them (its own CUDA_VISIBLE_DEVICES, e.g. "3,5"), else 0..gpu-1. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from handoffd import resources

# The one tolerance of "it fits", the owner's and the placement core's: what the owner thinks fits
# here, the ledger accepts (``resources.fits`` is the core's test).
EPS = resources.EPS
fits = resources.fits


class Ledger:
    def __init__(self, capacity: Mapping[str, float], devices: Sequence[str] | None = None) -> None:
        self.capacity: dict[str, float] = dict(capacity)
        self.free: dict[str, float] = dict(capacity)  # invariant: 0 <= free[k] <= capacity[k]
        self.version = 1  # bumped on every change; gossiped with ``free``
        gpus = int(capacity.get("gpu", 0))
        # device index -> the id a task sees in CUDA_VISIBLE_DEVICES
        self.devices = tuple(devices) if devices is not None else tuple(map(str, range(gpus)))
        if len(self.devices) < gpus:
            raise ValueError(
                f"gpu capacity {gpus} but only {len(self.devices)} device ids "
                f"({','.join(self.devices) or 'none'}): give as many ids as GPUs"
            )
        self.gpus = gpus  # devices handed out: indices 0..gpus-1 of ``devices``
        self._gpus_free: list[int] = list(range(gpus))  # device indices not given to any task

    def try_claim(self, cost: Mapping[str, float]) -> list[int] | None:
        """Claim ``cost``; returns the GPU indices given (maybe empty), or None if it does not fit."""
        free = self.free
        if not fits(cost, free):
            return None
        gpu = cost.get("gpu")
        if gpu is not None and gpu > 0:
            need_gpus = int(math.ceil(gpu - EPS))
            if need_gpus > len(self._gpus_free):
                return None
            gpus = self._gpus_free[:need_gpus]
            del self._gpus_free[:need_gpus]
        else:
            gpus = []  # (no GPU asked: no slicing)
        for kind, qty in cost.items():
            free[kind] = free.get(kind, 0.0) - qty
        self.version += 1
        return gpus

    def visible(self, gpus: Sequence[int]) -> str:
        """CUDA_VISIBLE_DEVICES for the device indices ``gpus`` ("" for none)."""
        return ",".join(self.devices[g] for g in gpus)

    def release(self, cost: Mapping[str, float], gpus: list[int]) -> None:
        free, capacity = self.free, self.capacity
        for kind, qty in cost.items():  # (each task's end: ``min`` written out, one look-up each)
            back, most = free.get(kind, 0.0) + qty, capacity.get(kind, 0.0)
            free[kind] = back if back < most else most
        if gpus:
            self._gpus_free.extend(gpus)
            self._gpus_free.sort()
        self.version += 1

    def idle(self) -> bool:
        return all(abs(self.free.get(k, 0.0) - v) < EPS for k, v in self.capacity.items())

    def validate(self) -> None:
        for kind, cap in self.capacity.items():
            assert -EPS <= self.free.get(kind, 0.0) <= cap + EPS, (kind, self.free, self.capacity)
        assert len(set(self._gpus_free)) == len(self._gpus_free)
