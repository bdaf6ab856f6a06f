"""Membership at scale on the simulator (issue 20): 200 nodes, bounds in virtual time and in
message sizes (never wall time). bench/bench_scale.py measures the same up to 1,000 nodes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handoffd.config import MembershipConfig
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import MemberChanged
from handoffd.protocol.messages import DEAD, SUSPECT

CFG = MembershipConfig.lan()
CHECK = 0.02  # virtual seconds between whole-cluster checks; reported times are exact


def storm(n: int, *, seed: int = 3, config: MembershipConfig = CFG) -> Simulation:
    """Every node starts at once and joins through n0."""
    sim = Simulation(config, seed=seed)
    sim.add_node("n0", {"cpu": 4.0})
    for i in range(1, n):
        sim.add_node(f"n{i}", {"cpu": float(1 + i % 8)}, join=["n0"])
    return sim


def declared(sim: Simulation, status: int, since: int = 0) -> list[str]:
    return [
        c.name
        for _, _, c in sim.changes[since:]
        if isinstance(c, MemberChanged) and c.new == status
    ]


@pytest.mark.timeout(600)
def test_two_hundred_nodes_join_spread_and_detect_within_bounds() -> None:
    sim = storm(200)
    # A storm of 200 joins through one seed: every view complete (measured 2.7 s before a
    # push-pull that teaches us members brings the next one forward; 1.13 s, 3 push-pull rounds
    # of 0.375 s, since the syncs go on for two that teach nothing).
    storm_took = sim.run_until(sim.converged, timeout=30, check_every=CHECK)
    assert storm_took < 1.6, storm_took
    # The backlog of news that storm left drains: the cluster goes quiet.
    sim.run_until(
        lambda: not any(sim.nodes[n].membership.news_pending for n in sim.live()),
        timeout=60,
        check_every=0.5,
    )
    # One more node, through two seeds, is known everywhere and knows everyone within
    # O(log n) gossip rounds (log2(200) ~ 8 rounds of 0.1 s; measured 0.10-0.20 s, seeds 1-4).
    sim.add_node("late", {"cpu": 2.0}, join=["n0", "n100"])
    join_took = sim.run_until(sim.converged, timeout=10, check_every=CHECK)
    assert join_took < 0.5, join_took
    # A free-resource change reaches all 200 within the same few rounds.
    sim.run_for(2.0)
    sim.local_resources("n42", {"cpu": 0.5})
    spread = sim.run_until(sim.converged, timeout=10, check_every=CHECK)
    assert spread < 0.5, spread  # (measured 0.14-0.25 s, seeds 1-4)
    # A crash is DEAD in every view within the first prober's wait + probe timeouts + the
    # suspicion's low bound (0.6 s, flat in n) once two other members' probes confirmed it +
    # dissemination (measured 1.21 s; 1.0-1.5 s typical over seeds, the first probe's wait
    # is the tail).
    since = len(sim.changes)
    sim.crash("n7")
    detect = sim.run_until(lambda: sim.all_see("n7", DEAD), timeout=10, check_every=CHECK)
    assert detect < 1.8, detect
    assert declared(sim, DEAD, since) and set(declared(sim, DEAD, since)) == {"n7"}
    assert declared(sim, SUSPECT) == ["n7"] * len(declared(sim, SUSPECT))  # nobody else, ever
    # No message grew with the cluster: piggyback and push-pull pages stay within their limits
    # (the joiner's answers included: the whole view, but a page per message).
    largest = sim.stats.largest
    assert largest["PushPull"] <= CFG.push_pull_page, largest
    for kind in ("Gossip", "Ping", "Ack"):
        assert largest[kind] <= CFG.max_piggyback, largest


def steady_rate(n: int, config: MembershipConfig) -> tuple[float, int]:
    """Messages per node per virtual second in a settled cluster, and the largest push-pull."""
    sim = storm(n, seed=5, config=config)
    sim.run_until(sim.converged, timeout=30, check_every=CHECK)
    sim.run_until(
        lambda: not any(sim.nodes[m].membership.news_pending for m in sim.live()),
        timeout=60,
        check_every=0.5,
    )
    sim.run_for(2.0)
    sent = sim.stats.sent
    sim.stats.largest.clear()
    sim.run_for(15.0)
    return (sim.stats.sent - sent) / n / 15.0, sim.stats.largest.get("PushPull", 0)


@pytest.mark.timeout(600)
def test_message_rate_and_push_pull_size_do_not_grow_with_the_cluster() -> None:
    # Small pages, so a cluster of 120 is many pages large while the test stays cheap.
    config = replace(CFG, push_pull_page=8)
    small_rate, small_page = steady_rate(30, config)
    large_rate, large_page = steady_rate(120, config)
    assert small_page <= 8 and large_page <= 8, (small_page, large_page)
    # Probes and push-pulls only: the same per node (measured 10.7 vs 10.7 msgs/s at 200/1,000).
    assert large_rate < 1.25 * small_rate, (small_rate, large_rate)


def test_a_node_joining_a_cluster_many_pages_large_learns_everyone_at_once() -> None:
    config = replace(CFG, push_pull_page=8)
    sim = storm(60, seed=9, config=config)
    sim.run_until(sim.converged, timeout=30, check_every=CHECK)
    sim.run_for(5.0)
    sim.add_node("late", {"cpu": 1.0}, join=["n0"])
    took = sim.run_until(sim.converged, timeout=10, check_every=CHECK)
    # The seed answers with its whole view (8 pages): no waiting for periodic pages (3 s apart).
    assert took < 1.0, took
    assert len(sim.nodes["late"].membership.members()) == 61
