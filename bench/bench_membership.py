"""Membership benchmarks.

Part 1 (here): gossip convergence and failure detection of N in-process SWIM state machines on
the deterministic simulator (handoffd.membership.sim) with lan() settings: virtual time (what a
real cluster would see, network latency ~0.3-0.7 ms) and the wall time the simulation took.
Part 2 (``bench_daemon_kill``): SIGKILL of a real daemon (subprocess on loopback, lan() settings)
-> DEAD in every survivor's view, wall clock, median of ``--kills`` (default 5).
Part 3 (``bench_codec``): membership messages per second through the codec (encode + decode).

    .venv/bin/python bench/bench_membership.py [--nodes 5,20,50] [--seeds 3] [--loss 0.0] [--kills 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from handoffd.config import MembershipConfig
from handoffd.membership.sim import Simulation
from handoffd.membership.swim import MemberChanged
from handoffd.protocol.messages import DEAD


def cluster(n: int, seed: int, loss: float) -> Simulation:
    sim = Simulation(MembershipConfig.lan(), seed=seed, loss=loss)
    sim.add_node("n0", {"cpu": 8.0})
    for i in range(1, n):
        sim.add_node(f"n{i}", {"cpu": float(i % 16 + 1)}, join=["n0"])
    return sim


def one_run(n: int, seed: int, loss: float) -> dict[str, float]:
    wall = time.perf_counter()
    sim = cluster(n, seed, loss)
    join = sim.run_until(sim.converged, timeout=60)
    sim.run_for(3.0)
    sim.local_resources(f"n{n // 2}", {"cpu": 0.5})
    spread = sim.run_until(sim.converged, timeout=30)
    sim.run_for(2.0)
    victim = f"n{n - 1}"
    sim.crash(victim)
    crashed_at = sim.now
    first = sim.run_until(
        lambda: any(
            isinstance(c, MemberChanged) and c.name == victim and c.new == DEAD
            for _, _, c in sim.changes[-200:]
        ),
        timeout=30,
    )
    everyone = sim.run_until(lambda: sim.all_see(victim, DEAD), timeout=30) + first
    false_dead = sum(
        1
        for _, _, c in sim.changes
        if isinstance(c, MemberChanged) and c.new == DEAD and c.name != victim
    )
    assert sim.now >= crashed_at
    return {
        "join": join,
        "spread": spread,
        "detect_first": first,
        "detect_all": everyone,
        "false_dead": false_dead,
        "msgs": sim.stats.sent,
        "wall": time.perf_counter() - wall,
    }


def bench_gossip(nodes: list[int], seeds: int, loss: float) -> None:
    cfg = MembershipConfig.lan()
    print(
        f"lan(): probe {cfg.probe_interval}s, timeouts {cfg.probe_timeout}+{cfg.indirect_timeout}s, "
        f"suspicion {cfg.suspicion_timeout}s, gossip every {cfg.gossip_interval}s x{cfg.gossip_fanout}; "
        f"loss {loss:.0%}; median of {seeds} seeds (virtual seconds unless noted)"
    )
    header = (
        f"{'nodes':>5} {'join':>7} {'free->all':>9} {'1st DEAD':>9} {'all DEAD':>9}"
        f" {'false':>5} {'msgs':>7} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for n in nodes:
        runs = [one_run(n, seed, loss) for seed in range(1, seeds + 1)]

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"{n:>5} {med('join'):>7.3f} {med('spread'):>9.3f} {med('detect_first'):>9.3f}"
            f" {med('detect_all'):>9.3f} {sum(r['false_dead'] for r in runs):>5.0f}"
            f" {med('msgs'):>7.0f} {med('wall'):>7.2f}"
        )


def bench_daemon_kill(kills: int) -> None:
    """SIGKILL a real daemon and time DEAD on every survivor (wall clock, polled every 5 ms)."""
    import handoffd
    from handoffd.testing import DaemonCluster, wait_for

    times: list[float] = []
    with DaemonCluster() as cluster:
        first = cluster.start(cpu=1)
        survivors = [first, cluster.start(cpu=1, seeds=[first.address])]
        clients = [handoffd.connect(d.address) for d in survivors]
        try:
            for _ in range(kills):
                victim = cluster.start(cpu=1, seeds=[first.address])
                wait_for(
                    lambda v=victim: all(
                        c.nodes().get(v.name) is not None and c.nodes()[v.name].status == "ALIVE"
                        for c in clients
                    ),
                    timeout=30,
                    what="victim joined",
                )
                start = time.monotonic()
                victim.kill()
                wait_for(
                    lambda v=victim: all(c.nodes()[v.name].status == "DEAD" for c in clients),
                    timeout=30,
                    interval=0.005,
                    what="victim DEAD everywhere",
                )
                times.append(time.monotonic() - start)
        finally:
            for c in clients:
                c.close()
    print(f"\nkill -9 of a real daemon -> DEAD on both survivors (lan(), loopback, {kills} kills)")
    print(
        f"  median {statistics.median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s"
    )


def bench_codec(count: int = 20000) -> None:
    """Ping with 3 piggybacked MemberStates: encode + decode per second."""
    from handoffd.protocol import codec
    from handoffd.protocol.messages import MemberState, Ping

    states = tuple(
        MemberState(
            f"node{i}", f"127.0.0.{i + 2}:7788", "default", 3, 0, {"cpu": 8.0}, {"cpu": 4.0}, 9
        )
        for i in range(3)
    )
    msg = Ping(1, states)
    start = time.perf_counter()
    for _ in range(count):
        codec.decode(codec.encode(msg, sender="node0"))
    elapsed = time.perf_counter() - start
    print(f"\ncodec: Ping + 3 MemberStates encode+decode: {count / elapsed:,.0f} messages/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="5,20,50")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--kills", type=int, default=5, help="real-daemon kills (0 to skip)")
    args = parser.parse_args()
    bench_gossip([int(x) for x in args.nodes.split(",")], args.seeds, args.loss)
    if args.kills:
        bench_daemon_kill(args.kills)
    bench_codec()


if __name__ == "__main__":
    main()
