"""Whole clusters of membership state machines on the deterministic simulator (virtual time)."""

from __future__ import annotations

import pytest

from handoffd.config import MembershipConfig
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import Leave, MemberChanged
from handoffd.protocol.messages import ALIVE, DEAD, LEFT, SUSPECT


def start(
    n: int, *, seed: int = 1, config: MembershipConfig | None = None, **kw: float
) -> Simulation:
    sim = Simulation(config or MembershipConfig.lan(), seed=seed, validate=True, **kw)
    sim.add_node("n0", {"cpu": 8.0, "memory": 16000.0})
    for i in range(1, n):
        sim.add_node(f"n{i}", {"cpu": float(2 + i), "memory": 1000.0 * i}, join=["n0"])
    return sim


def declared(sim: Simulation, status: int) -> list[tuple[float, str, str]]:
    return [
        (t, observer, c.name)
        for t, observer, c in sim.changes
        if isinstance(c, MemberChanged) and c.new == status
    ]


def test_five_nodes_converge_with_everyones_capacity() -> None:
    sim = start(5)
    sim.run_until(sim.converged, timeout=10)
    view = {m.name: m.capacity for m in sim.nodes["n4"].membership.members()}
    assert view["n0"] == {"cpu": 8.0, "memory": 16000.0}
    assert view["n3"] == {"cpu": 5.0, "memory": 3000.0}
    assert len(view) == 5


def test_killed_node_is_declared_dead_by_all_within_bound() -> None:
    sim = start(5)
    sim.run_until(sim.converged, timeout=10)
    sim.run_for(3.0)
    sim.crash("n2")
    took = sim.run_until(lambda: sim.all_see("n2", DEAD), timeout=5.0)
    # lan(): <= probe_interval wait + 0.1 + 0.2 + 0.6 suspicion + gossip; bounded well under 2 s.
    assert took < 2.0, took
    assert all(name == "n2" for _, _, name in declared(sim, DEAD))


def test_partitioned_then_healed_node_is_refuted_back_to_alive() -> None:
    sim = start(5, seed=3)
    sim.run_until(sim.converged, timeout=10)
    before = sim.nodes["n4"].membership.me.incarnation
    sim.partition(["n4"], ["n0", "n1", "n2", "n3"])
    sim.run_until(lambda: sim.all_see("n4", DEAD), timeout=5)
    # Alone, n4 is the only accuser of each peer, and its failing probes slow it down (Lifeguard):
    # it takes the longest suspicion timeout, after probes up to 9x apart.
    sim.run_until(lambda: all(sim.status("n4", o) == DEAD for o in ("n0", "n1", "n2", "n3")), 30)
    sim.heal()
    sim.run_until(sim.converged, timeout=30)
    assert sim.nodes["n4"].membership.me.incarnation > before  # it refuted its obituary


def test_no_false_dead_with_ten_percent_loss() -> None:
    sim = start(6, seed=7, loss=0.10)
    sim.run_until(sim.converged, timeout=20)
    sim.run_for(300.0)
    assert declared(sim, DEAD) == []
    assert sim.converged()


def test_graceful_leave_is_left_everywhere_not_dead() -> None:
    sim = start(4)
    sim.run_until(sim.converged, timeout=10)
    sim.inject("n1", Leave())
    sim.run_until(lambda: sim.all_see("n1", LEFT), timeout=1.0)
    sim.crash("n1")  # the daemon exits after leaving
    sim.run_for(5.0)
    assert sim.all_see("n1", LEFT)
    assert declared(sim, DEAD) == []


def test_restarted_node_rejoins_with_higher_incarnation() -> None:
    sim = start(4)
    sim.run_until(sim.converged, timeout=10)
    sim.crash("n3")
    sim.run_until(lambda: sim.all_see("n3", DEAD), timeout=5)
    old = sim.nodes["n0"].membership.get("n3")
    assert old is not None
    fresh = sim.restart("n3", join=["n1"])
    sim.run_until(sim.converged, timeout=10)
    assert fresh.me.incarnation > old.incarnation
    assert fresh.me.resource_version >= old.resource_version


@pytest.mark.parametrize("n", [50])
def test_fifty_nodes_converge_and_free_change_reaches_everyone(n: int) -> None:
    sim = start(n, seed=11)
    joined = sim.run_until(sim.converged, timeout=30)
    sim.run_for(2.0)
    sim.local_resources("n17", {"cpu": 1.5, "memory": 200.0})
    spread = sim.run_until(sim.converged, timeout=10)
    print(
        f"\n{n} nodes: membership converged in {joined:.3f} virtual s, free change in {spread:.3f}"
    )
    assert all(sim.nodes[o].membership.get("n17").free["cpu"] == 1.5 for o in sim.live())  # type: ignore[union-attr]
    assert spread < 1.0
    assert declared(sim, SUSPECT) == []


def test_runs_are_deterministic_for_a_seed() -> None:
    def trace(seed: int) -> list[tuple[float, str, str, int]]:
        sim = start(6, seed=seed, loss=0.05)
        sim.run_for(3.0)
        sim.crash("n5")
        sim.run_for(3.0)
        return [(t, o, c.name, c.new) for t, o, c in sim.changes if isinstance(c, MemberChanged)]

    assert trace(5) == trace(5)
    assert all(s == ALIVE for *_, s in trace(5)[:5])
