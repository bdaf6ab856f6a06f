"""Where the design stops: membership and scheduling of 50 / 200 / 1,000 nodes, simulated (issue 20).

Membership (``handoffd.membership.sim``: the real SWIM state machines on a virtual clock, lan()
settings, latency 0.3-0.7 ms; virtual seconds unless noted; "rounds" are gossip intervals, 0.1 s):
- storm: every node starts at once and joins through one seed -> every node sees every node ALIVE
  with its resources; then the gossip backlog that storm left drains (every queue empty);
- join: one more node into the settled cluster through 3 seeds -> converged again;
- free: one node's free resources change -> every node sees the new value;
- detect: a node is killed -> the first DEAD anywhere, then DEAD in every view (median of
  ``--victims`` nodes killed one after the other; "max" the slowest "all");
- false DEAD during ``--steady`` virtual seconds at 0 / 5 / 10 % random loss;
- msg/s and B/s: messages and bytes each node sends per second in the settled cluster (bytes from
  every 20th message encoded through the real codec, scaled by type); "storm msg/s" and "storm B/s"
  the same during the storm and its backlog; "states" the most member states in any one message
  of the run, "max B" the largest message encoded (sampled): both bounded by max_piggyback and
  push_pull_page whatever n is; "rounds": the storm in gossip rounds;
- virtual s / cpu s / wall s: how long the whole scenario ran in virtual time, and what it cost
  this machine in process CPU seconds and in wall seconds (wall is inflated by other load: the
  machine is shared, so CPU seconds are the figure to compare).
Scheduling (``scale_owner``): the real ``OwnerScheduler`` placing ``--tasks`` x n/1,000 tasks
(100,000 at 1,000 nodes; a tenth without the dispatch window) of exponential virtual duration (mean 1 s, 1 cpu) over n nodes of 4 cpus,
a quarter of which is busy with work the owner learns of only through the gossiped free view (late
by the "free" spread measured above). Prints the owner's CPU per placement decision (flat in n is
the goal), decisions per second, refusals, and dispatches that could not start on arrival.
``--gossip-membership``: the owner's view comes from the membership simulation running alongside
(every node's free changes gossiped for real); "view age" is then the measured mean age of a free
value when it reached the owner (counted from the gossip round that sent it).
``--heal`` instead measures the heal of a partition (a tenth of the cluster cut off, then healed):
per node, messages and bytes until the views are complete and the queues empty, the member states
each node learned, and DEAD declared of members of the observer's own side.
``--long`` instead runs 10 virtual minutes of a 1,000-node cluster with loss, a latency
distribution, churn and a partition, and prints the wall time it took.

    .venv/bin/python bench/bench_scale.py [--nodes 50,200,1000] [--steady 30] [--tasks 100000]
    .venv/bin/python bench/bench_scale.py --heal [--nodes 200,1000] [--partition 30]
    .venv/bin/python bench/bench_scale.py --long [--nodes 1000] [--minutes 10] [--config loaded]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_owner import ScaleSim  # noqa: E402

from handoffd.config import MembershipConfig  # noqa: E402
from handoffd.membership.sim import LogNormalDelay, Simulation  # noqa: E402
from handoffd.membership.swim import MemberChanged  # noqa: E402
from handoffd.protocol.messages import DEAD  # noqa: E402

CHECK = 0.02  # virtual seconds between whole-cluster checks (times reported are exact anyway)
LONG_MEASURE_BYTES = 100  # --long: every 100th message encoded for its size


CONFIGS = {
    "lan": MembershipConfig.lan,
    "loaded": MembershipConfig.loaded,
    "wan": MembershipConfig.wan,
}


def storm(
    n: int, seed: int, config: str = "lan", measure_bytes: int = 20, **kw: object
) -> Simulation:
    sim = Simulation(CONFIGS[config](), seed=seed, measure_bytes=measure_bytes, **kw)  # type: ignore[arg-type]
    sim.add_node("n0", {"cpu": 4.0})
    for i in range(1, n):
        sim.add_node(f"n{i}", {"cpu": 4.0}, join=["n0"])
    return sim


def drained(sim: Simulation) -> bool:
    """No node has news left to gossip (checked every 0.5 s: not exact like the others)."""
    return all(not sim.nodes[name].membership.news_pending for name in sim.live())


def false_dead(sim: Simulation, since: int, victims: set[str]) -> int:
    return sum(
        1
        for _, _, c in sim.changes[since:]
        if isinstance(c, MemberChanged) and c.new == DEAD and c.name not in victims
    )


def sent_bytes(sim: Simulation) -> int:
    """Bytes sent so far, estimated from every ``measure_bytes``-th message encoded. (Not
    ``bytes_estimate``, which scales each type's count by its mean size over the whole run: the
    difference between two of its readings charged a window with the storm's mix of sizes.)"""
    return sum(total for _, total in sim.sampled.values()) * sim.measure_bytes


def rates(sim: Simulation, seconds: float) -> tuple[float, float]:
    n = len(sim.live())
    sent, size = sim.stats.sent, sent_bytes(sim)
    sim.run_for(seconds)
    return (sim.stats.sent - sent) / n / seconds, (sent_bytes(sim) - size) / n / seconds


def membership_row(n: int, seed: int, steady: float, n_victims: int = 5) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    sim = storm(n, seed)
    row: dict[str, float] = {"n": n}
    row["storm"] = sim.run_until(sim.converged, timeout=300, check_every=CHECK)
    sim.run_until(lambda: drained(sim), timeout=600, check_every=0.5)
    row["backlog"] = sim.now  # the storm started at 0
    row["storm_bps"] = sent_bytes(sim) / n / sim.now
    row["storm_msgs"] = sim.stats.sent / n / sim.now
    sim.run_for(5.0)
    row["msgs"], row["bps"] = rates(sim, 10.0)
    # One join into the settled cluster, through three seeds.
    sim.add_node(f"n{n}", {"cpu": 4.0}, join=["n0", f"n{n // 3}", f"n{2 * n // 3}"])
    row["join"] = sim.run_until(sim.converged, timeout=60, check_every=CHECK)
    sim.run_for(5.0)
    sim.local_resources(f"n{n // 2}", {"cpu": 1.5})
    row["free"] = sim.run_until(sim.converged, timeout=60, check_every=CHECK)
    sim.run_for(3.0)
    firsts: list[float] = []
    alls: list[float] = []
    victims: set[str] = set()
    for k in range(n_victims):
        victim = f"n{n - 1 - k}"
        victims.add(victim)
        sim.crash(victim)
        since = len(sim.changes)
        first = sim.run_until(
            lambda victim=victim, since=since: any(
                isinstance(c, MemberChanged) and c.name == victim and c.new == DEAD
                for _, _, c in sim.changes[since:]
            ),
            timeout=30,
        )
        firsts.append(first)
        everyone = sim.run_until(
            lambda victim=victim: sim.all_see(victim, DEAD), timeout=30, check_every=CHECK
        )
        alls.append(first + everyone)
        sim.run_for(1.0)
    row["detect_first"] = statistics.median(firsts)
    row["detect_all"] = statistics.median(alls)
    row["detect_max"] = max(alls)
    for loss in (0.0, 0.05, 0.10):
        sim.loss = loss
        since = len(sim.changes)
        sim.run_for(steady)
        row[f"false_{int(loss * 100)}"] = false_dead(sim, since, victims)
    sim.loss = 0.0
    row["states"] = max(sim.stats.largest.values())
    row["max_bytes"] = max(sim.largest_bytes.values())
    row["wall"] = time.perf_counter() - wall
    row["cpu"] = time.process_time() - cpu
    row["virtual"] = sim.now
    return row


def heal_row(n: int, seed: int, partition: float = 30.0) -> dict[str, float]:
    """A tenth of a settled cluster cut off for ``partition`` virtual s (long enough for both sides
    to hold the other DEAD and drain that news), then healed: what the heal costs until every view
    is complete again and every gossip queue is empty."""
    sim = storm(n, seed)
    sim.run_until(sim.converged, timeout=300, check_every=CHECK)
    sim.run_until(lambda: drained(sim), timeout=600, check_every=0.5)
    sim.run_for(3.0)
    side = {f"n{i}" for i in range(n - n // 10, n)}
    rest = [name for name in sim.nodes if name not in side]
    sim.partition(side, rest)
    sim.run_for(partition)
    sim.run_until(lambda: drained(sim), timeout=600, check_every=0.5)
    row: dict[str, float] = {"n": n}
    row["held_dead"] = sum(  # views of the other side's members that hold them DEAD
        sim.status(a, b) == DEAD for a in sim.nodes for b in sim.nodes if (a in side) != (b in side)
    )
    cpu = time.process_time()
    sent, size, since, start = sim.stats.sent, sent_bytes(sim), len(sim.changes), sim.now
    learned = sum(node.membership.view_changes for node in sim.nodes.values())
    sim.heal()
    row["converged"] = sim.run_until(sim.converged, timeout=300, check_every=CHECK)
    sim.run_until(lambda: drained(sim), timeout=600, check_every=0.5)
    row["drained"] = took = sim.now - start
    row["msgs"] = (sim.stats.sent - sent) / n
    row["bytes"] = (sent_bytes(sim) - size) / n
    row["msg_rate"], row["byte_rate"] = row["msgs"] / took, row["bytes"] / took
    row["learned"] = (
        sum(node.membership.view_changes for node in sim.nodes.values()) - learned
    ) / n
    # DEAD declared after the heal of a member of the observer's own side (it never left it)
    row["own_dead"] = sum(
        1
        for _, observer, c in sim.changes[since:]
        if isinstance(c, MemberChanged) and c.new == DEAD and (observer in side) == (c.name in side)
    )
    row["cpu"] = time.process_time() - cpu
    return row


def print_heal(rows: list[dict[str, float]], partition: float) -> None:
    print(
        f"heal: a tenth of the cluster cut off for {partition:g} virtual s, then healed; per node"
        " from the heal until every view is complete and every gossip queue empty"
    )
    header = (
        f"{'nodes':>5} {'held DEAD':>9} {'converged':>9} {'drained':>7} {'msgs':>6} {'KB':>6}"
        f" {'msg/s':>6} {'B/s':>7} {'learned':>7} {'own-side DEAD':>13} {'cpu s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>5.0f} {r['held_dead']:>9.0f} {r['converged']:>9.2f} {r['drained']:>7.1f}"
            f" {r['msgs']:>6.0f} {r['bytes'] / 1024:>6.0f} {r['msg_rate']:>6.1f}"
            f" {r['byte_rate']:>7.0f} {r['learned']:>7.0f} {r['own_dead']:>13.0f} {r['cpu']:>6.1f}"
        )
        sys.stdout.flush()


def print_membership(rows: list[dict[str, float]], steady: float) -> None:
    cfg = MembershipConfig.lan()
    print(
        f"membership, lan(): probe {cfg.probe_interval}s, suspicion {cfg.suspicion_timeout}s, "
        f"gossip {cfg.gossip_interval}s x{cfg.gossip_fanout}, <= {cfg.max_piggyback} states a "
        f"message, push-pull page {cfg.push_pull_page} every {cfg.push_pull_interval}s "
        f"(virtual seconds; false DEAD over {steady:g} s per loss level)"
    )
    header = (
        f"{'nodes':>5} {'storm':>6} {'rounds':>6} {'backlog':>7} {'join':>5} {'free':>5}"
        f" {'1st DEAD':>8} {'all DEAD':>8} {'max':>5} {'false 0/5/10%':>13} {'msg/s':>5}"
        f" {'B/s':>6} {'storm msg/s':>11} {'storm B/s':>9} {'states':>6} {'max B':>6}"
        f" {'virtual s':>9} {'cpu s':>6} {'wall s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        false = f"{r['false_0']:.0f}/{r['false_5']:.0f}/{r['false_10']:.0f}"
        rounds = r["storm"] / cfg.gossip_interval
        print(
            f"{r['n']:>5.0f} {r['storm']:>6.2f} {rounds:>6.1f} {r['backlog']:>7.1f}"
            f" {r['join']:>5.2f} {r['free']:>5.2f} {r['detect_first']:>8.2f}"
            f" {r['detect_all']:>8.2f} {r['detect_max']:>5.2f} {false:>13} {r['msgs']:>5.1f}"
            f" {r['bps']:>6.0f} {r['storm_msgs']:>11.1f} {r['storm_bps']:>9.0f}"
            f" {r['states']:>6.0f} {r['max_bytes']:>6.0f} {r['virtual']:>9.0f}"
            f" {r['cpu']:>6.0f} {r['wall']:>6.0f}"
        )
        sys.stdout.flush()


def scheduling(
    nodes: list[int], tasks_at_1000: int, spreads: dict[int, float], membership: bool = False
) -> None:
    print(
        "\nscheduling: one OwnerScheduler, tasks of 1 cpu, exp. duration mean 1 s, nodes of 4 cpu"
        " (25% busy with work the owner learns of by gossip only)"
    )
    header = (
        f"{'nodes':>5} {'tasks':>7} {'window':>6} {'us/decision':>11} {'decisions/s':>11}"
        f" {'refused %':>9} {'not startable %':>15} {'makespan':>8} {'ideal':>5} {'view age':>8}"
        f" {'wall s':>6}"
    )
    print(header)
    print("-" * len(header))
    for n in nodes:
        for window in (32, 1):
            # Without the window every pass walks every node to place about one task: a tenth of
            # the tasks is enough to measure that (and the full count would take many minutes).
            tasks = max(1000, tasks_at_1000 * n // 1000 // (1 if window > 1 else 10))
            sim = ScaleSim(
                n, window=window, gossip_delay=spreads.get(n, 0.3), membership=membership
            )
            r = sim.run(tasks)
            print(
                f"{n:>5} {tasks:>7} {window:>6} {r['decision_us']:>11.1f}"
                f" {r['decisions_per_s']:>11,.0f} {r['refused_pct']:>9.2f} {r['stale_pct']:>15.2f}"
                f" {r['makespan']:>8.1f} {r['ideal']:>5.1f} {r['view_age']:>8.3f} {r['wall']:>6.0f}"
            )
            sys.stdout.flush()


def long_run(n: int, minutes: float, seed: int, config: str = "lan") -> None:
    """``minutes`` virtual minutes of ``n`` nodes: lognormal latency, 1% loss, a node crashed and
    restarted every 10 s, a 30 s partition of a tenth of the cluster (false DEAD: outside the
    partition and the 10 s after its heal)."""
    wall, cpu = time.perf_counter(), time.process_time()

    # 0.3 ms + lognormvariate(-8.0, 0.8) (median ~0.6 ms, a long tail), drawn in C: the same floats
    latency = LogNormalDelay(0.0003, -8.0, 0.8)

    # The views hold millions of objects and the simulation makes no cyclic garbage of its own
    # (209 objects after 2 virtual min of 200 nodes with the collector off): its passes over them
    # were 15 % of the storm's CPU, and a few % of the partition's. So none for the whole run.
    gc.disable()
    try:
        _long_run(n, minutes, seed, config, latency, wall, cpu)
    finally:
        gc.enable()


def _long_run(
    n: int,
    minutes: float,
    seed: int,
    config: str,
    latency: LogNormalDelay,
    wall: float,
    cpu: float,
) -> None:
    # Every 100th message's bytes (not every 20th): ~100,000 samples in 10 minutes of 1,000
    # nodes still pin the mean, and encoding every 20th was 4 % of the run's CPU.
    sim = storm(n, seed, config, LONG_MEASURE_BYTES, delay=latency, loss=0.01)
    end = minutes * 60.0
    rng = random.Random(seed)
    joined = sim.run_until(sim.converged, timeout=end, check_every=0.05)
    print(
        f"{n} nodes: storm converged after {joined:.2f} virtual s"
        f" ({time.process_time() - cpu:.0f} s CPU)",
        flush=True,
    )
    down: list[str] = []
    partitioned = False
    excused = (0.0, -1.0)
    since = len(sim.changes)
    victims: set[str] = set()
    while sim.now < end:
        sim.run_for(min(10.0, end - sim.now))
        if int(sim.now) % 60 < 10:  # progress, so a run cut short still tells its rate
            print(
                f"  t={sim.now:.0f} virtual s: {time.process_time() - cpu:.0f} s CPU,"
                f" {time.perf_counter() - wall:.0f} s wall",
                flush=True,
            )
        if down:
            sim.restart(down.pop(), join=["n0"])
        victim = f"n{rng.randrange(1, n)}"
        if victim not in victims:
            victims.add(victim)
            sim.crash(victim)
            down.append(victim)
        if not partitioned and sim.now >= end / 2:
            side = [f"n{i}" for i in range(n - n // 10, n)]
            sim.partition(side, [name for name in sim.nodes if name not in side])
            partitioned = True
            sim.run_for(30.0)
            sim.heal()
            # DEAD across the partition is right, not false, and so are the obituaries each side
            # then spreads about the other until refuted (SWIM's heal): DEAD declared from the
            # partition until 10 s after the heal is not counted.
            excused = (sim.now - 30.0, sim.now + 10.0)
    healed = sim.run_until(sim.converged, timeout=120, check_every=0.05)
    sim.changes[since:] = [
        (at, observer, c)
        for at, observer, c in sim.changes[since:]
        if not (isinstance(c, MemberChanged) and c.new == DEAD and excused[0] <= at <= excused[1])
    ]
    print(
        f"{minutes:g} virtual min, {n} nodes, {config} (1% loss, lognormal latency, a crash+restart every"
        f" 10 s, a 30 s partition of {n // 10}): {time.process_time() - cpu:.0f} s CPU,"
        f" {time.perf_counter() - wall:.0f} s wall;"
        f" converged {healed:.1f} s after the last event; {sim.stats.sent / n / sim.now:.1f}"
        f" msg/node/s, {sent_bytes(sim) / n / sim.now:.0f} B/node/s;"
        f" false DEAD {false_dead(sim, since, victims)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="50,200,1000")
    parser.add_argument("--steady", type=float, default=30.0, help="virtual s per loss level")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks at 1,000 nodes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--victims", type=int, default=5, help="nodes killed one by one")
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--heal", action="store_true", help="only the heal of a partition")
    parser.add_argument("--partition", type=float, default=30.0, help="--heal: virtual s cut off")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--config", default="lan", choices=sorted(CONFIGS), help="--long only")
    parser.add_argument("--skip", default="", help="membership or scheduling")
    parser.add_argument(
        "--gossip-membership",
        action="store_true",
        help="scheduling: the owner's view through the real membership simulation, not a delay",
    )
    args = parser.parse_args()
    nodes = [int(x) for x in args.nodes.split(",")]
    if args.long:
        long_run(nodes[-1], args.minutes, args.seed, args.config)
        return
    if args.heal:
        for n in nodes:
            print_heal([heal_row(n, args.seed, args.partition)], args.partition)
        return
    spreads: dict[int, float] = {}
    if args.skip != "membership":
        rows = []
        for n in nodes:
            rows.append(membership_row(n, args.seed, args.steady, args.victims))
            spreads[n] = rows[-1]["free"]
            print_membership(rows[-1:], args.steady)  # row by row: 1,000 nodes take a while
    if args.skip != "scheduling":
        scheduling(nodes, args.tasks, spreads, args.gossip_membership)


if __name__ == "__main__":
    main()
