"""A big run enters the owner's ready queue in slices (``scheduler.intake``, issue 19): the slices
end in exactly the states the one-batch intake gives, and the run finishes the same way."""

from __future__ import annotations

import math
import random

import pytest
from scheduler_harness import Cluster, dispatches

from handoffd.scheduler import events as ev
from handoffd.scheduler import intake
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec


def _dag(rng: random.Random, n: int) -> list[TaskSpec]:
    specs = []
    for i in range(n):
        deps = tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))})) if i else ()
        if rng.random() < 0.5:
            deps = ()  # plenty of roots, spread over the placement order
        cpu = rng.choice((0.5, 1.0, 2.0))
        specs.append(TaskSpec(f"t{i}", deps, {"cpu": cpu}, b"p", priority=rng.choice((0, 0, 1, 5))))
    return specs


def _intake(cluster: Cluster, out: list[ev.Instruction]) -> int:
    """Fire every intake timer the scheduler asks for at once; how many fired."""
    fired = 0
    while True:
        keys = [i.key for i in out if isinstance(i, ev.StartTimer) and i.key[0] == "intake"]
        if not keys:
            return fired
        assert len(keys) == 1
        fired += 1
        out = cluster.feed(ev.TimerFired(keys[0]))


def _states(cluster: Cluster, run_id: str) -> dict[str, str]:
    run = cluster.sched.run_state(run_id)
    assert run is not None
    return {tid: rec.state for tid, rec in run.tasks.items()}


@pytest.mark.parametrize("seed", range(12))
def test_slices_end_in_the_states_of_one_batch(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    specs = _dag(rng, rng.randrange(1, 400))
    size = rng.choice((1, 2, 7, 64))
    # No room anywhere: nothing is dispatched, so the states are the intake's alone.
    whole = Cluster({"a": 2, "b": 4}, free={"a": 0, "b": 0})
    whole.submit("r", specs)
    monkeypatch.setattr(intake, "SLICE", size)
    sliced = Cluster({"a": 2, "b": 4}, free={"a": 0, "b": 0})
    out = sliced.submit("r", specs)
    assert _intake(sliced, out) == math.ceil(len(specs) / size) - 1
    assert _states(sliced, "r") == _states(whole, "r")
    assert len(sliced.sched._ready) == len(whole.sched._ready)


def _run_to_end(cluster: Cluster, out: list[ev.Instruction], rng: random.Random) -> int:
    """Play the nodes: accept every dispatch, finish the started tasks in random order, fire
    intake timers when asked; returns how many dispatches went out."""
    sent = 0
    running: list[tuple[str, str, str, int]] = []
    while True:
        more: list[ev.Instruction] = []
        for ins in out:
            if isinstance(ins, ev.StartTimer) and ins.key[0] == "intake":
                more += cluster.feed(ev.TimerFired(ins.key))
        for d in dispatches(out):
            sent += len(d.items)
            node_update, answered = cluster.reply(d)
            more += cluster.feed(node_update, answered)
            assert isinstance(answered, ev.DispatchAnswered)
            running += [(d.node, d.run_id, t, a) for t, a in answered.accepted]
        if not more and running:
            node, run_id, task_id, attempt = running.pop(rng.randrange(len(running)))
            more = cluster.succeed(node, run_id, task_id, attempt)
        if not more and not running:
            return sent
        out = more


@pytest.mark.parametrize("seed", range(8))
def test_a_sliced_run_finishes_like_a_whole_one(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(100 + seed)
    specs = _dag(rng, rng.randrange(50, 300))
    whole = Cluster({"a": 2, "b": 4})
    sent_whole = _run_to_end(whole, whole.submit("r", specs), random.Random(seed))
    monkeypatch.setattr(intake, "SLICE", rng.choice((1, 3, 16)))
    sliced = Cluster({"a": 2, "b": 4})
    sent_sliced = _run_to_end(sliced, sliced.submit("r", specs), random.Random(seed))
    for cluster in (whole, sliced):
        status = cluster.sched.run_status("r")
        assert status is not None and status.state == "DONE"
        run = cluster.sched.run_state("r")
        assert run is not None
        assert all(rec.completions == 1 for rec in run.tasks.values())
    assert sent_whole == sent_sliced == len(specs)  # every task dispatched once, no more


def test_cancelled_halfway_in_the_rest_stays_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "SLICE", 10)
    cluster = Cluster({"a": 1})
    out = cluster.submit("r", [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(100)])
    (key,) = [i.key for i in out if isinstance(i, ev.StartTimer) and i.key[0] == "intake"]
    cluster.feed(ev.CancelRequested("r"))
    after = cluster.feed(ev.TimerFired(key))  # a slice due after the cancel takes nothing in
    assert not [i for i in after if isinstance(i, ev.StartTimer)]
    assert set(_states(cluster, "r").values()) == {"CANCELLED"}


def test_the_run_built_off_the_loop_is_the_one_owned() -> None:
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(5)]
    cluster = Cluster({"a": 1})
    options = RunOptions()
    built = RunState("r", specs, options, graph=build_graph(specs, None, cluster.sched.order))
    built.prebuilt = intake.Prebuilt((b"", b""), intake.probes(built))
    out = cluster.feed(ev.RunSubmitted("r", specs, options, None, built))
    assert cluster.sched.run_state("r") is built
    # Untouched until the batch that accepted it was carried out (its snapshot is prebuilt).
    assert built.untouched() and not dispatches(out)
    assert [i.key for i in out if isinstance(i, ev.StartTimer)] == [intake.intake_key("r")]
    assert dispatches(cluster.feed(ev.TimerFired(intake.intake_key("r"))))
    assert not built.untouched()
    built = RunState("r", specs, options, graph=build_graph(specs, None, cluster.sched.order))
    # One that was touched already (or is another run's) is not trusted: the owner builds its own.
    built.intake = 1
    cluster.feed(ev.RunSubmitted("r2", specs, options, None, built))
    assert cluster.sched.run_state("r2") is not built


@pytest.mark.parametrize("seed", range(30))
def test_checks_on_probes_refuse_what_checks_on_every_task_refuse(seed: int) -> None:
    rng = random.Random(500 + seed)
    specs = []
    for i in range(rng.randrange(1, 60)):
        pin = rng.choice((None, None, None, "a", "b") + (("gone",) if seed % 3 == 0 else ()))
        cpu = rng.choice((0.5, 1.0, 1.0, 2.0, 3.0, 8.0) if rng.random() < 0.3 else (1.0,))
        group = f"t{rng.randrange(i)}" if i and rng.random() < 0.1 else None
        specs.append(
            TaskSpec(
                f"t{i}",
                (),
                {"cpu": cpu},
                b"p",
                node=pin if group is None else None,
                collocate_with=group,
            )
        )
    answers = []
    for prebuilt in (False, True):
        cluster = Cluster({"a": 2, "b": 4})
        options = RunOptions()
        event = ev.RunSubmitted("r", specs, options)
        if prebuilt:
            run = RunState("r", specs, options, graph=build_graph(specs, None, cluster.sched.order))
            run.prebuilt = intake.Prebuilt((b"", b""), intake.probes(run))
            assert len(run.prebuilt.probes) <= len(specs)
            event = ev.RunSubmitted("r", specs, options, None, run)
        out = cluster.feed(event)
        refused = [i for i in out if isinstance(i, ev.SubmissionRejected)]
        answers.append(str(refused[0].error) if refused else "accepted")
    assert answers[0] == answers[1]
