"""A run that ends while its standbys still pull its big payloads: the client hears "accepted" at
the end, not after ``FULL_WAIT``. Before, a run refused at once for a value past its limit
answered its client's ``execute`` ~21 s later: the standby's pull of the 10 MB argument had
started, got "missing" once the run's end freed it, and never told the owner it was complete."""

from __future__ import annotations

from typing import Any

from fake_port import FakePort

from handoffd.daemon import replication_payloads as rp
from handoffd.protocol.messages_chunks import PayloadsHeld


def _waiting(port: FakePort, run_id: str = "r") -> tuple[rp.OwnerPayloads, list[str]]:
    """An owner whose run has one far payload its standby "s" lacks, the client's answer held."""
    payloads = rp.OwnerPayloads(port)  # type: ignore[arg-type]
    payloads._far[run_id] = (rp.FarPayload("t", "far-key", 1 << 20, port.address),)
    payloads.held(PayloadsHeld(run_id, 1, 1, 0), "s")
    answered: list[str] = []
    payloads.answer_when_full(run_id, lambda: ("s",), lambda: answered.append(run_id))
    return payloads, answered


def test_the_runs_end_answers_a_client_waiting_for_its_standbys_payloads() -> None:
    port = FakePort(name="owner", address="owner:1")
    payloads, answered = _waiting(port)
    assert answered == []  # (the standby lacks the payload: held, FULL_WAIT at most)
    port.advance(1.0)
    assert answered == []
    payloads.ended("r")
    assert answered == ["r"]
    assert all(t.cancelled for t in port.timers)  # the FULL_WAIT timer is no longer due
    port.advance(rp.FULL_WAIT)
    payloads.ended("r")  # (again, or a run never waited for: nothing more)
    payloads.ended("other")
    assert answered == ["r"]


def test_without_an_end_the_answer_still_waits_for_the_payloads_or_full_wait() -> None:
    port = FakePort(name="owner", address="owner:1")
    payloads, answered = _waiting(port)
    port.advance(rp.FULL_WAIT - 1.0)
    assert answered == []
    payloads.held(PayloadsHeld("r", 1, 0, 1 << 20), "s")  # the standby now holds everything
    assert answered == ["r"]
    port2 = FakePort(name="owner", address="owner:1")
    _, late = _waiting(port2)
    port2.advance(rp.FULL_WAIT)
    assert late == ["r"]


def test_an_accept_of_a_run_that_already_ended_is_answered_at_once(monkeypatch: Any) -> None:
    """The replication shell: the log's ``Accept`` comes after the run failed (its standby acked
    the snapshot): the client is answered with it, not after FULL_WAIT."""
    from handoffd.daemon import replication as shell
    from handoffd.replication import log as rlog

    answered: list[str] = []
    ended: list[str] = []
    io = shell.ReplicationIO.__new__(shell.ReplicationIO)

    class Far:
        def accepted(self, ins: Any, standbys: Any, answer: Any, limit: float) -> None:
            pass  # (held: the standby lacks a payload)

        def ended(self, run_id: str) -> None:
            ended.append(run_id)

    class Run:
        state = "FAILED"

    class Sched:
        def run_state(self, run_id: str) -> Any:
            return Run()

    class Log:
        accept_limit = 5.0

        def standbys(self, run_id: str) -> tuple[str, ...]:
            return ("s",)

    io.far = Far()  # type: ignore[assignment]
    io.scheduler = Sched()  # type: ignore[assignment]
    io.log = Log()  # type: ignore[assignment]
    io._accepts = {"r": lambda: answered.append("r")}
    io._held = {}
    io._execute([rlog.Accept("r", ("s",))])
    assert ended == ["r"]
    Run.state = "RUNNING"
    io._accepts = {"r2": lambda: answered.append("r2")}
    io._execute([rlog.Accept("r2", ("s",))])
    assert ended == ["r"]  # (a running run waits for its standbys as before)
