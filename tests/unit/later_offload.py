"""An ``Offload`` for unit tests whose jobs run when the test says, as a thread would, later
(``daemon/replication``'s packing off the loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Later:
    """Keeps each ``run(fn, done)``; ``finish()`` runs them in order and hands each result to its
    ``done``."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], Callable[[Any, Any], None]]] = []

    def run(self, fn: Callable[[], Any], done: Callable[[Any, Any], None]) -> None:
        self.jobs.append((fn, done))

    def finish(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, done in jobs:
            done(fn(), None)

    def close(self) -> None:
        pass
