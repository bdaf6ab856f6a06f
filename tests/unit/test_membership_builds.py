"""Both builds of the SWIM machine and its simulator (``membership/{swim,probing,records,
lifeguard,sim}.py`` compiled by Cython, setup.py, and the same ``.py`` files run as plain Python)
play a seeded run with loss, a crash, a partition, a heal and a restart identically: the compiled
one is what the daemon and the simulator import when it was built, the plain one the reference."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import handoffd.membership.sim as built_sim
import handoffd.membership.swim as built_swim
from handoffd.config import MembershipConfig
from handoffd.membership.events import Leave

COMPILED = ("swim", "probing", "records", "gossip", "lifeguard", "sim")
#: The modules with a .pxd beside them, and the classes it makes C classes.
TYPED = {
    "records": (
        "Counters",
        "Member",
        "ProbeInFlight",
        "Relay",
        "IndexedSet",
        "Timers",
        "PeerIndex",
    ),
    "gossip": ("GossipQueue",),
    "probing": ("Prober",),
    "swim": ("Membership",),
    "sim": ("Calendar", "SimNode", "SimStats", "Simulation"),
}
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes made by a class statement have it
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


def _latency(rng: random.Random) -> float:
    return 0.0003 + rng.lognormvariate(-8.0, 0.8)


def _run_digest(sim_module: ModuleType) -> tuple[str, int]:
    # A latency distribution and every 3rd message encoded: the simulator's delay and byte
    # sampling paths, typed in sim.pxd, are in the digest too.
    sim = sim_module.Simulation(
        MembershipConfig.lan(), seed=11, loss=0.05, delay=_latency, measure_bytes=3
    )
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
    sim.local_resources("n3", {"cpu": 1.5})
    sim.run_until(sim.converged, timeout=60, check_every=0.02)
    sim.inject("n5", Leave())
    sim.run_for(3.0)
    h = hashlib.sha256()
    for at, observer, change in sim.changes:
        h.update(f"{at:.9f} {observer} {type(change).__name__} {change.name}".encode())
        h.update(repr(getattr(change, "new", None)).encode())
    stats = sim.stats
    h.update(
        repr((stats.sent, stats.delivered, stats.lost, sorted(stats.by_type.items()))).encode()
    )
    h.update(repr((sorted(sim.sampled.items()), sim.bytes_estimate(), sim.now)).encode())
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
        for source in (PACKAGE / f"{name}.py", PACKAGE / f"{name}.pxd"):
            assert not source.exists() or so.stat().st_mtime >= source.stat().st_mtime, (
                f"{so.name} is older than {source.name}: run `make build` (tests would run"
                " old code)"
            )


def test_the_pxd_files_make_the_hot_classes_c_classes() -> None:
    """Each .pxd took effect: its classes are C types without an instance __dict__ in the
    compiled build (a .pxd Cython did not pick up would leave them Python classes, slower and
    unnoticed), and plain Python classes in the pure one. Every .pxd beside the five is listed."""
    assert {p.stem for p in PACKAGE.glob("*.pxd")} == set(TYPED)
    try:
        import handoffd._core.sched  # noqa: F401
    except ImportError:
        return
    with _pure_modules():
        pure = {n: importlib.import_module(f"handoffd.membership.{n}") for n in TYPED}
        for module, names in TYPED.items():
            for cls_name in names:
                assert hasattr(getattr(pure[module], cls_name), "__module__")
    for module, names in TYPED.items():
        built = importlib.import_module(f"handoffd.membership.{module}")
        for cls_name in names:
            cls = getattr(built, cls_name)
            assert not cls.__flags__ & _HEAPTYPE and cls.__dictoffset__ == 0, (
                f"{module}.{cls_name} is not a C class: is {module}.pxd built (make build)?"
            )


def test_the_pure_and_the_compiled_build_play_a_run_identically() -> None:
    with _pure_modules() as pure_sim:
        assert pure_sim.__file__.endswith(".py") and pure_sim is not built_sim
        pure = _run_digest(pure_sim)
    assert sys.modules["handoffd.membership.sim"] is built_sim  # put back
    built = _run_digest(built_sim)
    assert pure[1] > 100  # the run did something
    assert pure == built
