"""run_local: argument passing, inline functions, retries, timeouts, crashes, fail-fast, concurrency.

Calls happen in worker processes, so counts and barriers go through files in tmp_path.
"""

from __future__ import annotations

import os
import pathlib
import time

import pytest

import handoffd
from handoffd import Function

pytestmark = pytest.mark.timeout(120)


# -- helpers run in the workers -------------------------------------------------------------------
def record(counter: str) -> int:
    """Append one line to ``counter``; return how many calls there have been (this one included)."""
    with open(counter, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return calls(counter)


def calls(counter: str) -> int:
    try:
        return len(pathlib.Path(counter).read_text().splitlines())
    except FileNotFoundError:
        return 0


def arrive(directory: str, name: str, parties: int) -> str:
    pathlib.Path(directory, name).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("barrier not reached: the functions did not run concurrently")
        time.sleep(0.005)
    return name


def dag_of(*functions: Function) -> handoffd.DAG:
    dag = handoffd.DAG()
    for function in functions:
        dag.add_function(function)
    return dag


# -- argument passing ------------------------------------------------------------------------------
def test_chain():
    dag = dag_of(
        Function(id="a", code=lambda: 2),
        Function(id="b", code=lambda x: x * 10, args=["a"]),
        Function(id="c", code=lambda x: x + 1, args=["b"]),
    )
    assert handoffd.run_local(dag, max_workers=2) == {"a": 2, "b": 20, "c": 21}


def test_diamond_sink_receives_branch_results_in_args_order():
    dag = dag_of(
        Function(id="root", code=lambda: 3),
        Function(id="left", code=lambda x: ("L", x), args=["root"]),
        Function(id="right", code=lambda x: ("R", x), args=["root"]),
        Function(id="sink", code=lambda *parts: parts, args=["right", "left", "root"]),
    )
    results = handoffd.run_local(dag, max_workers=2)
    assert results["sink"] == (("R", 3), ("L", 3), 3)
    assert set(results) == {"root", "left", "right", "sink"}


def test_extra_args_follow_dependency_results_and_kwargs_are_passed():
    def combine(a, b, c, d, *, mode, scale=1):
        return [a, b, c, d, mode, scale]

    dag = dag_of(
        Function(id="a", code=lambda: "A"),
        Function(id="b", code=lambda: "B"),
        Function(
            id="f",
            code=combine,
            args=["b", "a"],
            extra_args=["x", 4],
            kwargs={"mode": "fast", "scale": 2},
        ),
    )
    assert handoffd.run_local(dag, max_workers=2)["f"] == ["B", "A", "x", 4, "fast", 2]


def test_as_list_passes_one_list_then_extra_args():
    dag = dag_of(
        Function(id="x", code=lambda: 1),
        Function(id="y", code=lambda: 2),
        Function(id="z", code=lambda: 3),
        Function(
            id="total",
            code=lambda values, offset: (values, sum(values) + offset),
            args=["z", "x", "y"],
            extra_args=[100],
            argument_inclusion="as_list",
        ),
    )
    assert handoffd.run_local(dag, max_workers=2)["total"] == ([3, 1, 2], 106)


def test_closures_and_values_that_need_exact_round_trips():
    factor = 3

    def scale(values):
        return tuple(v * factor for v in values)

    dag = dag_of(
        Function(id="seed", code=lambda: (1, 2**80)),
        Function(id="scaled", code=scale, args=["seed"]),
    )
    results = handoffd.run_local(dag, max_workers=1)
    assert results["scaled"] == (3, 3 * 2**80) and isinstance(results["scaled"], tuple)


def test_inline_function_runs_once_per_consumer_and_is_not_in_results(tmp_path):
    counter = str(tmp_path / "inline-calls")

    def inline_step(base):
        record(counter)
        return base + 1

    dag = dag_of(
        Function(id="base", code=lambda: 10),
        Function(id="inl", code=inline_step, args=["base"], type="inline"),
        Function(id="c1", code=lambda v: v * 2, args=["inl"]),
        Function(id="c2", code=lambda v, b: v + b, args=["inl", "base"]),
        Function(id="c3", code=lambda v: -v, args=["inl"]),
    )
    results = handoffd.run_local(dag, max_workers=2)
    assert results == {"base": 10, "c1": 22, "c2": 21, "c3": -11}
    assert calls(counter) == 3


def test_inline_chain_inside_one_consumer():
    dag = dag_of(
        Function(id="a", code=lambda: 1),
        Function(id="i1", code=lambda a: a + 1, args=["a"], type="inline"),
        Function(id="i2", code=lambda x, a: x * 10 + a, args=["i1", "a"], type="inline"),
        Function(id="out", code=lambda v: v, args=["i2"]),
    )
    assert handoffd.run_local(dag, max_workers=1) == {"a": 1, "out": 21}


# -- retries ---------------------------------------------------------------------------------------
def test_fail_once_then_succeed_is_called_exactly_twice(tmp_path):
    counter = str(tmp_path / "calls")

    def flaky():
        if record(counter) == 1:
            raise RuntimeError("first call fails")
        return "ok"

    results = handoffd.run_local(dag_of(Function(id="f", code=flaky)), max_retries=1)
    assert results == {"f": "ok"} and calls(counter) == 2


def test_retries_exhaust_after_max_retries_plus_one_calls(tmp_path):
    counter = str(tmp_path / "calls")

    def always_fails(x):
        n = record(counter)
        raise ValueError(f"bad input {x} on call {n}")

    dag = dag_of(
        Function(id="src", code=lambda: 5), Function(id="f", code=always_fails, args=["src"])
    )
    with pytest.raises(handoffd.TaskFailed) as info:
        handoffd.run_local(dag, max_workers=1, max_retries=2)
    failure = info.value
    assert calls(counter) == 3
    assert (failure.function_id, failure.attempts, failure.exc_type) == ("f", 3, "ValueError")
    assert failure.exc_message == "bad input 5 on call 3"
    assert "always_fails" in failure.traceback and "ValueError" in failure.traceback


def test_per_function_max_retries_overrides_the_run_level(tmp_path):
    counter = str(tmp_path / "calls")

    def fails():
        record(counter)
        raise RuntimeError("nope")

    dag = dag_of(Function(id="f", code=fails, max_retries=0))
    with pytest.raises(handoffd.TaskFailed) as info:
        handoffd.run_local(dag, max_retries=5)
    assert info.value.attempts == 1 and calls(counter) == 1


def test_failure_stops_downstream_and_cancels_running_siblings(tmp_path):
    downstream = str(tmp_path / "downstream")
    sibling_started = str(tmp_path / "sibling-started")
    sibling_finished = str(tmp_path / "sibling-finished")

    def sibling():
        pathlib.Path(sibling_started).touch()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # would run on unless cancelled
            time.sleep(0.01)
        pathlib.Path(sibling_finished).touch()

    def failing():
        while not os.path.exists(sibling_started):  # fail only once the sibling is running
            time.sleep(0.005)
        raise OSError("disk on fire")

    dag = dag_of(
        Function(id="sib", code=sibling),
        Function(id="bad", code=failing, max_retries=0),
        Function(id="after", code=lambda x: record(downstream), args=["bad"]),
        Function(id="after_sib", code=lambda x: record(downstream), args=["sib"]),
    )
    with pytest.raises(handoffd.TaskFailed) as info:
        handoffd.run_local(dag, max_workers=2)
    assert info.value.function_id == "bad" and info.value.exc_type == "OSError"
    assert calls(downstream) == 0
    assert os.path.exists(sibling_started) and not os.path.exists(sibling_finished)


def test_timeout_kills_a_hung_attempt_and_is_retried(tmp_path):
    counter = str(tmp_path / "calls")

    def hangs_first():
        # Self-contained (no test-module globals), so the worker need not import this module, and
        # the first thing it does is count: the timeout cannot expire before the call is recorded.
        with open(counter, "a+") as handle:
            handle.write("call\n")
            handle.seek(0)
            first = len(handle.read().split()) == 1
        if first:
            time.sleep(600)
        return "second try"

    dag = dag_of(Function(id="slow", code=hangs_first, timeout=2.0, max_retries=1))
    assert handoffd.run_local(dag, max_workers=1) == {"slow": "second try"}
    assert calls(counter) == 2


def test_timeout_exhausted_reports_timeout(tmp_path):
    dag = dag_of(Function(id="hang", code=lambda: time.sleep(600), timeout=0.3, max_retries=0))
    with pytest.raises(handoffd.TaskFailed) as info:
        handoffd.run_local(dag, max_workers=1)
    assert info.value.exc_type == "Timeout" and info.value.attempts == 1


def test_worker_killed_with_sigkill_is_a_crash_and_retried(tmp_path):
    counter = str(tmp_path / "calls")

    def dies_first():
        if record(counter) == 1:
            os.kill(os.getpid(), 9)
        return os.getpid()

    dag = dag_of(Function(id="x", code=dies_first))
    results = handoffd.run_local(dag, max_workers=1, max_retries=1)
    pids = [int(line) for line in pathlib.Path(counter).read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1] and results["x"] == pids[1]


def test_crash_exhausting_retries_is_reported_as_worker_crashed():
    dag = dag_of(Function(id="x", code=lambda: os.kill(os.getpid(), 9), max_retries=1))
    with pytest.raises(handoffd.TaskFailed) as info:
        handoffd.run_local(dag, max_workers=1)
    assert info.value.exc_type == "WorkerCrashed" and info.value.attempts == 2
    assert "SIGKILL" in info.value.exc_message


# -- scheduling ------------------------------------------------------------------------------------
def test_independent_functions_run_concurrently(tmp_path):
    directory = str(tmp_path / "barrier")
    os.mkdir(directory)
    dag = dag_of(
        Function(id="p", code=arrive, extra_args=[directory, "p", 2]),
        Function(id="q", code=arrive, extra_args=[directory, "q", 2]),
        Function(id="join", code=lambda a, b: a + b, args=["p", "q"]),
    )
    assert handoffd.run_local(dag, max_workers=2)["join"] == "pq"


def test_priority_orders_ready_functions_with_one_worker(tmp_path):
    log = str(tmp_path / "order")

    def note(name):
        with open(log, "a") as handle:
            handle.write(name + "\n")

    dag = dag_of(
        Function(id="low", code=note, extra_args=["low"], priority=0),
        Function(id="high", code=note, extra_args=["high"], priority=10),
        Function(id="mid", code=note, extra_args=["mid"], priority=5),
    )
    handoffd.run_local(dag, max_workers=1)
    assert pathlib.Path(log).read_text().split() == ["high", "mid", "low"]


def test_invalid_dag_is_rejected_before_anything_runs(tmp_path):
    counter = str(tmp_path / "calls")
    dag = dag_of(
        Function(id="a", code=lambda: record(counter)),
        Function(id="b", code=lambda x: x, args=["a", "missing"]),
    )
    with pytest.raises(handoffd.ValidationError) as info:
        handoffd.run_local(dag)
    assert info.value.kind == "missing_dependency" and calls(counter) == 0


def test_empty_and_inline_only_dags():
    assert handoffd.run_local(handoffd.DAG()) == {}
    dag = dag_of(Function(id="i", code=lambda: 1, type="inline"))
    assert handoffd.run_local(dag) == {}


def test_run_local_from_inside_a_running_event_loop():
    import asyncio

    async def main():
        return handoffd.run_local(dag_of(Function(id="a", code=lambda: "nested")), max_workers=1)

    assert asyncio.run(main()) == {"a": "nested"}
