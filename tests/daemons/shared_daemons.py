"""Two daemons started for a test, or kept for a module's tests (``shared``): what the fixtures
of tests/daemons/conftest.py and the files with a pair of their own build on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def start_pair(daemons: Any, cpu: float = 2, memory: float = 2000) -> tuple[Any, Any]:
    """Two daemons of ``daemons``, the second seeded with the first, both ALIVE. Started side by
    side (the second retries its seed until the first listens), not one after the other."""
    import handoffd
    from handoffd.testing import wait_for

    a = daemons.start(cpu=cpu, memory=memory, wait=False)
    b = daemons.start(cpu=cpu, memory=memory, seeds=[a.address], wait=False)
    daemons.started(a, b)
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE", "ALIVE"],
            timeout=30,
            what="two daemons joined",
        )
    return a, b


def settled(daemons: Any) -> None:
    """Raise unless every daemon of ``daemons`` is running, sees the others ALIVE, owns no run
    still going and has its whole capacity free again: what the next test sharing them starts
    from, as it would from new daemons (apart from finished runs, which no test reads by
    position)."""
    import handoffd
    from handoffd.testing import wait_for

    dead = [d.name for d in daemons.daemons if not d.alive()]
    if dead:
        raise RuntimeError(f"shared daemons {dead} ended during the test")

    def quiet() -> bool:
        for daemon in daemons.daemons:
            with handoffd.connect(daemon.address, timeout=5) as client:
                nodes = client.nodes().values()
                if len(nodes) != len(daemons.daemons) or any(
                    n.status != "ALIVE" or n.free != n.capacity for n in nodes
                ):
                    return False
                if any(r.state not in ("DONE", "FAILED", "CANCELLED") for r in client.runs()):
                    return False
        return True

    wait_for(quiet, timeout=30, interval=0.05, what="the shared daemons settled after the test")


@contextlib.contextmanager
def shared(daemons: Any, cpu: float, memory: float) -> Iterator[tuple[Any, Any]]:
    """``start_pair``'s two daemons in the module's ``daemons``, started by the first test that
    asks and kept for the next ones. After each test they must be ``settled``; if not, that test
    fails at its teardown and the pair is killed, so the next test starts a new one and a test
    that left work behind cannot fail the tests after it."""
    if not daemons.daemons:
        try:
            start_pair(daemons, cpu, memory)
        except BaseException:
            _kill(daemons)  # (a half-started pair is not left for the next test)
            raise
    a, b = daemons.daemons
    try:
        yield a, b
    finally:
        print(daemons.logs())  # shown only for a failed test (the captured teardown output)
        try:
            settled(daemons)
        except BaseException:
            _kill(daemons)
            raise


def _kill(daemons: Any) -> None:
    daemons.close()
    daemons.daemons.clear()
