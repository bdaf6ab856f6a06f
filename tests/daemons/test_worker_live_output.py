"""Live output from a real WorkerPool (``on_output``): what a running job prints reaches the pool's
owner while the job runs, before its outcome, whose ``output`` holds only the rest (nothing twice);
a job that prints nothing sends nothing and starts no thread; a job whose process is killed (its
cancel) keeps what it printed before; the per-attempt bound holds over live text and outcome together.

Jobs block on gate files the test creates only after it saw their lines: no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

import pytest
from pool_harness import job, run_pool, until, wait_for_file

from handoffd import values
from handoffd.worker import capture

pytestmark = pytest.mark.timeout(90)


# -- functions run in the workers -----------------------------------------------------------------
def print_then_wait(gate: str) -> str:
    print("first line")
    print("partial", end="")  # no newline: it still leaves (a turn later)
    wait_for_file(gate)
    print(" end")
    print("after the gate")
    return "ok"


def silent(n: int) -> list[str]:
    return [t.name for t in threading.enumerate()]


def print_then_hang(gate: str) -> None:
    print("before the hang", flush=True)
    wait_for_file(gate)


def chatty(gate: str) -> str:
    line = "z" * 99 + "\n"
    for _ in range(capture.HEAD // len(line) + 10):
        print(line, end="")
    wait_for_file(gate)
    for i in range(2000):
        print(f"tail {i:04d}" + "." * 90)
    return "done"


class Lines:
    """What ``on_output`` delivered, per job key."""

    def __init__(self) -> None:
        self.texts: dict[Hashable, list[str]] = {}

    def __call__(self, key: Hashable, text: str) -> None:
        self.texts.setdefault(key, []).append(text)

    def joined(self, key: Hashable) -> str:
        return "".join(self.texts.get(key, []))


def test_running_job_output_arrives_before_its_outcome_and_not_twice(tmp_path: Any) -> None:
    lines = Lines()
    gate = str(tmp_path / "gate")

    async def body(pool: Any, done: Any) -> None:
        pool.submit(job("p", print_then_wait, gate))
        await until(lambda: "partial" in lines.joined("p"))
        assert lines.joined("p") == "first line\npartial" and not done.outcomes
        open(gate, "w").close()
        (outcome,) = await done.wait(1)
        assert outcome.ok and values.loads(outcome.value) == "ok"
        # Each text once: live, or (what was not sent before the job ended) with the outcome.
        whole = lines.joined("p") + outcome.output
        assert whole == "first line\npartial end\nafter the gate\n"

        pool.submit(job("s", silent, 1))
        (_, quiet) = await done.wait(2)
        assert "s" not in lines.texts and quiet.output == ""
        assert "handoffd-live" in values.loads(quiet.value)  # the worker that printed has it

    run_pool(1, body, on_output=lines)


def test_a_job_that_prints_nothing_sends_nothing_and_starts_no_thread() -> None:
    lines = Lines()

    async def body(pool: Any, done: Any) -> None:
        for i in range(20):
            pool.submit(job(i, silent, i))
        outcomes = await done.wait(20)
        assert lines.texts == {}
        for outcome in outcomes:
            assert outcome.ok and outcome.output == ""
            assert "handoffd-live" not in values.loads(outcome.value)

    run_pool(2, body, on_output=lines)


def test_output_of_a_job_killed_while_running_is_kept(tmp_path: Any) -> None:
    lines = Lines()
    gate = str(tmp_path / "never")

    async def body(pool: Any, done: Any) -> None:
        pool.submit(job("h", print_then_hang, gate, timeout=30.0))
        await until(lambda: lines.joined("h") == "before the hang\n")
        pool.cancel("h")
        (outcome,) = await done.wait(1)
        assert outcome.kind == "cancelled"

    run_pool(1, body, on_output=lines)


def test_bound_holds_over_live_text_and_outcome(tmp_path: Any) -> None:
    lines = Lines()
    gate = str(tmp_path / "gate")

    async def body(pool: Any, done: Any) -> None:
        pool.submit(job("c", chatty, gate))
        await until(lambda: len(lines.joined("c")) == capture.HEAD)  # the head left live
        open(gate, "w").close()
        (outcome,) = await done.wait(1)
        assert len(lines.joined("c")) == capture.HEAD  # nothing more left live after the head
        assert outcome.output.count("characters of output truncated") == 1
        assert outcome.output.endswith("tail 1999" + "." * 90 + "\n")
        assert len(lines.joined("c")) + len(outcome.output) < capture.LIMIT + 200

    run_pool(1, body, on_output=lines)


def test_without_on_output_everything_comes_with_the_outcome(tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    open(gate, "w").close()

    async def body(pool: Any, done: Any) -> None:
        pool.submit(job("p", print_then_wait, gate))
        (outcome,) = await done.wait(1)
        assert outcome.output == "first line\npartial end\nafter the gate\n"

    run_pool(1, body)


def say_twice(word: str) -> str:
    print(f"{word} once")
    print(f"{word} twice")
    return word


def test_run_local_prints_each_line_once(capsys: Any) -> None:
    import handoffd

    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="t", code=say_twice, extra_args=["hi"]))
    assert handoffd.run_local(dag, max_workers=1) == {"t": "hi"}
    assert capsys.readouterr().out.splitlines() == ["[t] hi once", "[t] hi twice"]
