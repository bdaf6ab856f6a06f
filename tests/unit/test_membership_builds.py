"""Both builds of the SWIM machine and its simulator (``membership/{swim,probing,records,
lifeguard,sim}.py`` compiled by Cython, setup.py, and the same ``.py`` files run as plain Python)
play a seeded run with loss, a crash, a partition, a heal and a restart identically: the compiled
one is what the daemon and the simulator import when it was built, the plain one the reference."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import handoffd.membership.sim as built_sim
import handoffd.membership.swim as built_swim
from handoffd.config import MembershipConfig

COMPILED = ("swim", "probing", "records", "lifeguard", "sim")
PACKAGE = Path(built_swim.__file__).parent


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Finds the compiled membership modules as their .py sources."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "handoffd.membership" or name not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, PACKAGE / f"{name}.py")


@contextmanager
def _pure_modules() -> Iterator[ModuleType]:
    """``handoffd.membership.sim`` and what it imports of the compiled five, from the .py files;
    the modules imported before are put back afterwards."""
    names = [f"handoffd.membership.{n}" for n in COMPILED]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    finder = _SourceOnly()
    sys.meta_path.insert(0, finder)
    try:
        yield importlib.import_module("handoffd.membership.sim")
    finally:
        sys.meta_path.remove(finder)
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def _run_digest(sim_module: ModuleType) -> tuple[str, int]:
    sim = sim_module.Simulation(MembershipConfig.lan(), seed=11, loss=0.05)
    sim.add_node("n0")
    for i in range(1, 30):
        sim.add_node(f"n{i}", join=["n0"])
    sim.run_until(sim.converged, timeout=20, check_every=0.02)
    sim.run_for(2.0)
    sim.crash("n7")
    sim.run_for(4.0)
    sim.partition([f"n{i}" for i in range(20, 30)], [f"n{i}" for i in range(20) if i != 7])
    sim.run_for(6.0)
    sim.heal()
    sim.restart("n7", join=["n0"])
    sim.run_until(sim.converged, timeout=60, check_every=0.02)
    h = hashlib.sha256()
    for at, observer, change in sim.changes:
        h.update(f"{at:.9f} {observer} {type(change).__name__} {change.name}".encode())
        h.update(repr(getattr(change, "new", None)).encode())
    stats = sim.stats
    h.update(
        repr((stats.sent, stats.delivered, stats.lost, sorted(stats.by_type.items()))).encode()
    )
    for name in sorted(sim.nodes):
        m = sim.nodes[name].membership
        h.update(repr(sorted((s.name, s.status, s.incarnation) for s in m.members())).encode())
    return h.hexdigest(), len(sim.changes)


def test_the_compiled_build_is_imported_and_not_older_than_its_source() -> None:
    try:
        import handoffd._core.sched  # noqa: F401
    except ImportError:  # a build without Cython: the .py files are the only build
        assert built_swim.__file__.endswith(".py")
        return
    for module in (built_swim, built_sim):
        assert module.__file__ is not None and module.__file__.endswith((".so", ".pyd"))
    for name in COMPILED:
        (so,) = [p for p in PACKAGE.glob(f"{name}.*") if p.suffix in (".so", ".pyd")]
        source = PACKAGE / f"{name}.py"
        assert so.stat().st_mtime >= source.stat().st_mtime, (
            f"{so.name} is older than {source.name}: run `make build` (tests would run old code)"
        )


def test_the_pure_and_the_compiled_build_play_a_run_identically() -> None:
    with _pure_modules() as pure_sim:
        assert pure_sim.__file__.endswith(".py") and pure_sim is not built_sim
        pure = _run_digest(pure_sim)
    assert sys.modules["handoffd.membership.sim"] is built_sim  # put back
    built = _run_digest(built_sim)
    assert pure[1] > 100  # the run did something
    assert pure == built
