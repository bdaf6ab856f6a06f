"""A histogram cheap enough for the daemon's hot loop: fixed bucket bounds, one ``bisect`` and two
additions per observation, no lock (only the loop observes; /metrics copies it on the loop)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

#: Seconds: 50 us to 10 s.
BOUNDS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0)


class Buckets:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_all(self, values: list[float]) -> None:
        """``observe`` of each of ``values`` (a message's reports): sorted once, then one step a
        bucket they fall in (a message's usually share one or two), not one a bound: the next
        value's bucket bisected in the bounds, its share in the values (no Python call a value)."""
        if len(values) < 3:  # (a lone task's report: a bisect each, no sort)
            if values:
                counts, bounds = self.counts, self.bounds
                for value in values:
                    counts[bisect_left(bounds, value)] += 1
                self.sum += sum(values)
                self.count += len(values)
            return
        ordered = sorted(values)
        bounds, counts = self.bounds, self.counts
        last, n, at = len(bounds), len(ordered), 0
        while at < n:
            # bucket i (bisect_left(bounds, v) == i) holds bounds[i - 1] < v <= bounds[i]
            i = bisect_left(bounds, ordered[at])
            upto = bisect_right(ordered, bounds[i], at) if i < last else n
            if upto <= at:  # (never for numbers: bounds[i] >= ordered[at]; a guard all the same)
                upto = at + 1
            counts[i] += upto - at
            at = upto
        self.sum += sum(values)
        self.count += len(values)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (le, observations <= le), ending with +Inf."""
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def copy(self) -> Buckets:
        return Buckets.from_data(self.to_data())

    def to_data(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Buckets:
        other = cls(tuple(data["bounds"]))
        other.counts, other.sum = list(data["counts"]), float(data["sum"])
        other.count = sum(other.counts)
        return other


__all__ = ["BOUNDS", "Buckets"]
