"""A submission that came whole (one message, not an upload) is taken in by the owner's shell
(``daemon.owner_submit``): a big one is checked and built in the upload thread, not on the loop,
and the cycle walk runs once (the submission's check), not again in the scheduler's graph build.
The errors a bad submission gets are the same on every path (``tests/cluster/test_validation.py``
holds a big run's to the client's and run_local's)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from fake_port import FakePort

from handoffd import validation
from handoffd.daemon import intake_columns, owner_submit, upload_intake
from handoffd.daemon.owner import OwnerIO
from handoffd.protocol import messages as m
from handoffd.scheduler import graph
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.testing import async_wait_for

pytestmark = pytest.mark.timeout(60)


class Ledger:
    capacity = {"cpu": 2.0}
    free = {"cpu": 2.0}
    version = 1


def _owner(port: FakePort) -> OwnerIO:
    return OwnerIO(
        port,
        OwnerScheduler(port.name, now=port.now()),
        resources=Ledger(),
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
    )


def _submission(n: int, run_id: str = "r1", cycle: bool = False) -> tuple[m.SubmitRun, list[bytes]]:
    """A chain of ``n`` functions (each on the one before); ``cycle``: the first on the last."""
    tasks = tuple(
        m.TaskMeta(
            f"t{i}",
            (f"t{i - 1}",) if i else ((f"t{n - 1}",) if cycle else ()),
            {"cpu": 1.0},
            "variadic",
            None,
            None,
            False,
            None,
            None,
            0,
        )
        for i in range(n)
    )
    return m.SubmitRun(1, run_id, tasks, 3, "binpack", None), [b"code"] * n


def _checked_on(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads a submission is checked on, as it is: ``graph.wire_graph`` (plain functions,
    checked with their graph; ``intake_columns.plain_graph_of`` for either form) where the
    owner's shell and the upload thread call it, else ``validation.wire_specs``."""
    seen: list[int] = []
    checks = validation.wire_specs
    plain = intake_columns.plain_graph_of

    def spy(*args: Any) -> Any:
        seen.append(threading.get_ident())
        return checks(*args)

    def plain_spy(*args: Any) -> Any:
        found = plain(*args)
        if found is not None:  # (else wire_specs checks it, and says so)
            seen.append(threading.get_ident())
        return found

    monkeypatch.setattr(validation, "wire_specs", spy)
    monkeypatch.setattr(owner_submit, "plain_graph_of", plain_spy)
    monkeypatch.setattr(upload_intake, "plain_graph_of", plain_spy)
    return seen


@pytest.mark.parametrize("n", [owner_submit.OFF_LOOP_TASKS, owner_submit.OFF_LOOP_TASKS - 1])
def test_a_big_submission_is_checked_and_built_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    seen = _checked_on(monkeypatch)
    port = FakePort()

    async def main() -> Any:
        owner = _owner(port)
        owner.off_loop = upload_intake.PREPARER.submit_whole  # (as the node sets it)
        msg, frames = _submission(n)
        owner.handle(msg, frames, b"client", None)
        await async_wait_for(lambda: owner.scheduler.run_state("r1"), 30, what="the run taken")
        return owner.scheduler.run_state("r1")

    run = asyncio.run(main())
    loop_thread = threading.get_ident()
    assert len(run.tasks) == n and len(seen) == 1
    if n >= owner_submit.OFF_LOOP_TASKS:
        assert seen[0] != loop_thread, "a big submission was checked on the loop"
        assert run.prebuilt is not None  # built in the thread, its snapshot's rows packed there
    else:
        assert seen[0] == loop_thread  # a small one stays where a thread's hop would cost more
        assert run.prebuilt is None
    assert port.take_replies(m.RunRejected) == []


def test_a_big_bad_submission_is_refused_with_the_error_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    msg, frames = _submission(owner_submit.OFF_LOOP_TASKS + 5, cycle=True)
    on_loop = FakePort()
    _owner(on_loop).handle(msg, frames, b"client", None)
    (expected,) = on_loop.take_replies(m.RunRejected)
    seen = _checked_on(monkeypatch)
    port = FakePort()

    async def main() -> OwnerIO:
        owner = _owner(port)
        owner.off_loop = upload_intake.PREPARER.submit_whole
        owner.handle(msg, frames, b"client", None)
        await async_wait_for(lambda: port.replies, 30, what="the refusal")
        return owner

    owner = asyncio.run(main())
    (reply,) = port.take_replies(m.RunRejected)
    assert seen and seen[0] != threading.get_ident()  # (it did go off the loop)
    assert reply.msg == expected.msg and reply.msg.error.validation_kind == "cycle"
    assert "t0 -> t1" in reply.msg.error.message
    assert owner.scheduler.runs() == []


def test_a_submission_checked_on_the_loop_is_not_walked_for_cycles_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def walked(*_: Any) -> Any:
        raise AssertionError("the graph's cycle walk ran for a submission already checked")

    monkeypatch.setattr(graph, "topological", walked)
    port = FakePort()
    owner = _owner(port)
    msg, frames = _submission(50)
    owner.handle(msg, frames, b"client", None)
    assert owner.scheduler.runs() == ["r1"] and port.take_replies(m.RunRejected) == []
    cyclic, frames = _submission(50, "r2", cycle=True)
    owner.handle(cyclic, frames, b"client", None)
    (reply,) = port.take_replies(m.RunRejected)
    assert reply.msg.error.validation_kind == "cycle"  # (the submission's own check found it)
