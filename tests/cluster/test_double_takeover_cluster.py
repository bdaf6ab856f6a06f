"""Two standbys taking one run over at the same term (issue 19, race19), on an in-process
cluster of 3 (MemoryNetwork, real workers).

With inconsistent views of membership (a partition, a false suspicion) each of two standbys can
see itself as the first live one and take the run over at the same term. Both used to stand back
on hearing of the other (``OtherOwner`` at our term): nobody ran the run. A total order on
(term, owner name) now settles it: the higher name keeps the run, the other yields and follows it.
"""

from __future__ import annotations

from typing import Any

import cluster_jobs
import pytest

import handoffd
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)


def force_first(node: Any, ahead: str) -> None:
    """``node``'s takeover decisions see standby ``ahead`` as dead (it is alive, and asked)."""
    real = node.replication._status_of

    def status_of(name: str) -> int | None:
        return m.DEAD if name == ahead else real(name)

    node.replication._status_of = status_of


_CLAIMS = (m.ReconcileRun, m.ReplicateRun, m.ReplicateLog, m.FollowOwner, m.ProbeHoldings)


def claiming(node: Any, run_id: str) -> bool:
    """``node`` is taking ``run_id`` over at term 1 or owns it."""
    rep = node.replication
    return (
        rep.takeovers.term_of(run_id) is not None
        or run_id in rep._restoring
        or node.scheduler.term_of(run_id) is not None
    )


def hold_rivals(cluster: ThreadedCluster, run_id: str, pair: tuple[Any, Any]) -> Any:
    """Hold what each of ``pair`` says about ``run_id`` at term >= 1 to the other until both
    started taking it over (so both surely do, at term 1); returns the release."""
    held: list[tuple[Any, Any, Any, Any]] = []
    originals = {}
    for node, rival in (pair, pair[::-1]):
        original = originals[node.name] = node.replication.handle

        def handle(
            msg: Any, frames: Any, envelope: Any, original: Any = original, rival: Any = rival
        ) -> None:
            if (
                isinstance(msg, _CLAIMS)
                and msg.run_id == run_id
                and msg.term >= 1
                and envelope is not None
                and envelope.sender == rival.name
            ):
                held.append((original, msg, frames, envelope))
                return
            original(msg, frames, envelope)

        node.replication.handle = handle

    def release() -> None:
        for node in pair:
            node.replication.handle = originals[node.name]
        for original, msg, frames, envelope in held:
            original(msg, frames, envelope)

    def both() -> bool:
        return all(cluster.run(claiming, n, run_id) for n in pair)

    def done() -> None:
        wait_for(both, 60, what="both standbys took the run over at term 1")
        cluster.run(release)

    return done


def owners(cluster: ThreadedCluster, run_id: str, live: tuple[int, ...] = (1, 2)) -> list[Any]:
    """(name, term) of each live node that owns the run."""

    def check() -> list[tuple[str, int]]:
        out = []
        for n in (cluster.nodes[i] for i in live):
            term = n.scheduler.term_of(run_id)
            if term is not None:
                out.append((n.name, term))
        return out

    return list(cluster.run(check))


def accepted_once(cluster: ThreadedCluster, owner: str, run_id: str) -> dict[str, int]:
    """task -> times its value was accepted, per the owner's run, where more than once."""
    node = next(n for n in cluster.nodes if n.name == owner)

    def check() -> dict[str, int]:
        run = node.scheduler.run_state(run_id)
        return {t: r.completions for t, r in run.tasks.items() if r.completions != 1}

    return dict(cluster.run(check))


def test_two_takeovers_at_one_term_leave_exactly_one_owner(tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        run_id, first, second = cluster_jobs.gated_run(cluster, gate, 12)
        index = {n: cluster.names().index(n) for n in (first, second)}
        force_first(cluster.nodes[index[second]], first)
        release = hold_rivals(cluster, run_id, (cluster.nodes[1], cluster.nodes[2]))
        cluster.crash(0)
        release()  # both took over at term 1; now each hears of the other
        open(gate, "w").close()
        winner = max(first, second)
        wait_for(
            lambda: owners(cluster, run_id) == [(winner, 1)],
            60,
            what=f"exactly one owner, {winner} at term 1 (owners: {owners(cluster, run_id)})",
        )
        loser = cluster.nodes[index[min(first, second)]]

        def replica_of_winner() -> bool:
            replica = loser.replication.standby.replicas.get(run_id)
            return replica is not None and (replica.owner, replica.term) == (winner, 1)

        # The one that yielded is the winner's standby now: its state re-replicated to it.
        wait_for(lambda: cluster.run(replica_of_winner), 30, what="the loser holds the winner's")
        with handoffd.connect(cluster.url(index[min(first, second)]), timeout=30) as client:
            follow = client.run(run_id)
            final = follow.wait(120)
            assert final.state == "DONE" and final.term == 1
            assert follow.results() == {f"t{i}": i for i in range(12)}
        assert owners(cluster, run_id) == [(winner, 1)]
        assert accepted_once(cluster, winner, run_id) == {}


def _owner_of(cluster: ThreadedCluster, run_id: str, live: list[int]) -> list[tuple[str, int]]:
    return owners(cluster, run_id, tuple(live))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kills_and_double_takeovers_end_with_one_owner_per_run(
    tmp_path: Any, seed: int
) -> None:
    """From ``seed``: 3 runs over 4 nodes, then two owners killed, each (at random) with its two
    standbys made to both take the run over at one term (one sees the other as dead). Every run
    ends DONE with its results, exactly one live owner each, no task's value accepted twice
    unless a loss explains it."""
    import random

    rng = random.Random(seed)
    gate = str(tmp_path / "gate")
    sizes = [rng.randint(6, 12) for _ in range(3)]
    with ThreadedCluster([{"cpu": 2}] * 4) as cluster:
        live = [0, 1, 2, 3]
        names = cluster.names()
        runs: list[str] = []
        for r, size in enumerate(sizes):
            dag = handoffd.DAG()
            for i in range(size):
                dag.add_function(
                    handoffd.Function(
                        id=f"t{i}", code=cluster_jobs.gated, extra_args=[gate, r * 100 + i]
                    )
                )
            with handoffd.connect(cluster.url(rng.choice(live)), timeout=30) as client:
                runs.append(client.submit(dag).id)
        faults = []
        for _ in range(2):
            run_id = rng.choice(runs)
            (owner_name, _term), *_ = _owner_of(cluster, run_id, live)
            owner = names.index(owner_name)

            def held(run_id: str = run_id, owner: int = owner) -> bool:
                standbys = cluster.run(
                    lambda: cluster.nodes[owner].replication.log.standbys(run_id)
                )
                return len(standbys) == 2 and all(
                    cluster.run(
                        lambda s=s: (
                            run_id in cluster.nodes[names.index(s)].replication.standby.replicas
                        )
                    )
                    for s in standbys
                )

            wait_for(held, 60, what=f"two standbys hold {run_id}")
            first, second = cluster.run(cluster.nodes[owner].replication.log.standbys, run_id)
            double = rng.random() < 0.75
            release = None
            if double:
                pair = (cluster.nodes[names.index(first)], cluster.nodes[names.index(second)])
                force_first(pair[1], first)
                release = hold_rivals(cluster, run_id, pair)
            faults.append((run_id, owner_name, double))
            cluster.crash(owner)
            if release is not None:
                release()
            live.remove(owner)
            # Every run the dead node owned ends up with exactly one live owner.
            for rid in runs:
                wait_for(
                    lambda rid=rid: len(_owner_of(cluster, rid, live)) == 1,
                    60,
                    what=f"one owner of {rid} after {faults} "
                    f"(owners: {_owner_of(cluster, rid, live)})",
                )
        open(gate, "w").close()
        for r, run_id in enumerate(runs):
            with handoffd.connect(cluster.url(live[0]), timeout=30) as client:
                follow = client.run(run_id)
                final = follow.wait(120)
                assert final.state == "DONE", (run_id, faults)
                assert follow.results() == {f"t{i}": r * 100 + i for i in range(sizes[r])}
            ((owner_name, _), *more) = _owner_of(cluster, run_id, live)
            assert not more, (run_id, _owner_of(cluster, run_id, live), faults)
            node = cluster.nodes[names.index(owner_name)]

            def twice(node: Any = node, run_id: str = run_id) -> dict[str, tuple[int, int]]:
                run = node.scheduler.run_state(run_id)
                return {
                    t: (rec.completions, rec.losses)
                    for t, rec in run.tasks.items()
                    if rec.completions > 1 + rec.losses
                }

            assert cluster.run(twice) == {}, (run_id, faults)
