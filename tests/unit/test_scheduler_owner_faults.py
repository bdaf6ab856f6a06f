"""Owner scheduler under lost messages: dispatches never answered (ack timer) and completion
reports lost while the node stays ALIVE (probes)."""

from __future__ import annotations

from collections.abc import Iterable

from scheduler_harness import CPU, Cluster, dispatches, of_type, placed, spec

from handoffd.errors import TaskFailed
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import ACK_TIMEOUT, PROBE_INTERVAL, REFUSAL_BACKOFF
from handoffd.scheduler.run import EXTRA_LOSSES


def _ack_fired(c: Cluster, node: str, after: float = ACK_TIMEOUT) -> list[ev.Instruction]:
    c.t += after
    return c.feed(ev.TimerFired(("ack", node)))


def _cancelled(out: Iterable[ev.Instruction]) -> set[tuple[str, str, int]]:
    return {(i.node, t, a) for i in of_type(out, ev.CancelAttempts) for t, a in i.items}


def test_unanswered_dispatch_is_lost_after_the_ack_timer_and_a_late_yes_is_cancelled() -> None:
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("t")])
    (first,) = dispatches(out)
    assert ev.StartTimer(("ack", "n1"), ACK_TIMEOUT) in out  # one timer per node, not per task
    # The DispatchTasks (or its reply) is lost; an early firing only re-arms.
    out = _ack_fired(c, "n1", after=1.0)
    assert placed(out) == {} and of_type(out, ev.StartTimer)[0].key == ("ack", "n1")
    assert c.sched.outstanding("n1") == {CPU: 1.0}
    out = _ack_fired(c, "n1")
    assert placed(out) == {"t": ("n1", 2)}  # counted lost, re-placed with a new attempt
    assert _cancelled(out) == {("n1", "t", 1)}  # in case only the reply was lost
    rec = c.sched.run_state("r").tasks["t"]  # type: ignore[union-attr]
    assert (rec.losses, rec.failures) == (1, 0)
    assert c.sched.outstanding("n1") == {CPU: 1.0}  # the new attempt only
    # The late yes for attempt 1: ignored for outstanding demand, and the node is told to drop it.
    out = c.feed(*c.reply(first))
    assert _cancelled(out) == {("n1", "t", 1)} and placed(out) == {}
    assert c.sched.outstanding("n1") == {CPU: 1.0}
    # The node ran attempt 1 anyway (at-least-once execution): its report is stale.
    out = c.succeed("n1", "r", "t", 1, value=b"old")
    assert c.sched.run_status("r").counts["DONE"] == 0  # type: ignore[union-attr]
    assert c.sched.outstanding("n1") == {CPU: 1.0}
    c.accept_all(c.log)
    out = c.succeed("n1", "r", "t", 2, value=b"new")
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE", None)]
    assert c.sched.result_location("r", "t") == (b"new", ("n1",))
    assert c.sched.outstanding("n1") == {}
    assert _cancelled(_ack_fired(c, "n1")) == set()  # everything answered: nothing to do


def test_a_report_answers_a_dispatch_whose_reply_was_lost() -> None:
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("t"), spec("u")])
    assert set(placed(out)) == {"t", "u"}
    assert c.sched.effective_free("n1") == {CPU: 2.0}
    c.used["n1"] = {CPU: 2.0}  # the node runs both; its reply never arrives
    c.costs.update({("r", "t", 1): {CPU: 1.0}, ("r", "u", 1): {CPU: 1.0}})
    c.succeed("n1", "r", "t", 1)
    # Reported 3 free; only u's dispatch is still unanswered (t's was answered by its report).
    assert c.sched.effective_free("n1") == {CPU: 2.0}
    out = _ack_fired(c, "n1")
    assert placed(out) == {"u": ("n1", 2)} and _cancelled(out) == {("n1", "u", 1)}
    assert c.sched.run_status("r").counts["DONE"] == 1  # type: ignore[union-attr]


def test_refusal_before_the_ack_timer_and_the_timer_before_a_refusal() -> None:
    # Refused first: the timer finds nothing unanswered; no loss is counted.
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("t")])
    out = c.feed(c.reply(dispatches(out)[0], refuse=True)[1])  # on an unchanged view: held
    assert ev.StartTimer(("refused",), REFUSAL_BACKOFF) in out
    out = _ack_fired(c, "n1")
    assert placed(out) == {} and _cancelled(out) == set()
    rec = c.sched.run_state("r").tasks["t"]  # type: ignore[union-attr]
    assert rec.losses == 0 and rec.state == "READY" and rec.delayed
    assert placed(c.feed(ev.TimerFired(("refused",)))) == {"t": ("n1", 2)}
    # Timer first: attempt 2 is lost and re-placed as attempt 3; attempt 2's late refusal is stale.
    c.used["n1"] = {CPU: 4.0}  # other owners' work fills the node meanwhile
    c.feed(c.update("n1"))
    out = _ack_fired(c, "n1")
    assert placed(out) == {} and rec.state == "READY" and rec.losses == 1  # no room now
    late = ev.DispatchAnswered("n1", "r", (), (("t", 2, "no room"),))
    assert c.feed(late) == [] and rec.state == "READY" and not rec.delayed
    c.used["n1"] = {}
    out = c.feed(c.update("n1"))
    assert placed(out) == {"t": ("n1", 3)}
    assert c.feed(late) == [] and rec.state == "ASSIGNED" and rec.attempt == 3
    assert c.sched.outstanding("n1") == {CPU: 1.0}


def test_dispatches_that_are_never_answered_are_capped_like_other_losses() -> None:
    c = Cluster({"n1": 4})
    c.submit("r", [spec("t")], max_retries=0)
    for _ in range(EXTRA_LOSSES):
        assert len(placed(_ack_fired(c, "n1"))) == 1
    out = _ack_fired(c, "n1")
    (finished,) = of_type(out, ev.RunFinished)
    assert finished.state == "FAILED" and isinstance(finished.error, TaskFailed)
    assert finished.error.exc_type == "NodeLost"
    assert c.sched.outstanding("n1") == {}


# -- lost reports (probes) ----------------------------------------------------------------------------


def _probe_fired(c: Cluster, after: float = PROBE_INTERVAL) -> list[ev.Instruction]:
    c.t += after
    return c.feed(ev.TimerFired(("probe",)))


def _probes(out: Iterable[ev.Instruction]) -> dict[tuple[str, str], int]:
    """(node, run) -> probe number of every ProbeRun in ``out``."""
    return {(p.node, p.run_id): p.probe for p in of_type(out, ev.ProbeRun)}


def test_lost_report_of_a_held_result_is_adopted_after_two_probes() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    out = c.submit("r", [spec("a", node="n1"), spec("b", "a")])
    assert ev.StartTimer(("probe",), PROBE_INTERVAL) in out  # one timer while tasks are out
    c.accept_all(out)
    c.release("n1", "r", "a", 1)  # a ran and stored its result; its TasksReported is lost
    out = _probe_fired(c)
    ((where, probe),) = _probes(out).items()
    assert where == ("n1", "r") and of_type(out, ev.ProbeRun)[0].term == 0
    assert ev.StartTimer(("probe",), PROBE_INTERVAL) in out
    # First answer: a report may be in flight behind it, so nothing happens yet.
    answer = ev.RunProbed("n1", "r", probe, running=(), held=(("a", 123),))
    assert placed(c.feed(answer)) == {}
    assert c.sched.run_status("r").counts["ASSIGNED"] == 1  # type: ignore[union-attr]
    out = _probe_fired(c)
    probe = _probes(out)[("n1", "r")]
    out = c.feed(ev.RunProbed("n1", "r", probe, running=(), held=(("a", 123),)))
    assert c.sched.result_location("r", "a") == (None, ("n1",))  # held there, value not inline
    rec = c.sched.run_state("r").tasks["a"]  # type: ignore[union-attr]
    assert (rec.size, rec.losses, rec.failures, rec.attempt) == (123, 0, 0, 1)
    (d,) = dispatches(out)
    assert d.items[0].task_id == "b" and d.items[0].inputs == (ev.ValueRef("a", ("n1",)),)
    assert d.node == "n1"  # next to its input
    assert c.sched.outstanding("n1") == {CPU: 1.0} and _cancelled(out) == set()  # b's demand only
    # b was just dispatched: not probed yet; the timer keeps running while it is out.
    out = c.accept_all(out) + _probe_fired(c, after=1.0)
    assert _probes(out) == {} and of_type(out, ev.StartTimer)[-1].key == ("probe",)
    out = c.succeed(d.node, "r", "b", 1, value=b"B")
    assert of_type(out, ev.RunFinished) == [ev.RunFinished("r", "DONE", None)]
    out = _probe_fired(c)  # nothing is out any more: the timer stops
    assert _probes(out) == {} and of_type(out, ev.StartTimer) == []


def test_lost_report_without_a_result_is_replaced_after_two_probes() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("t")], max_retries=0))
    c.release("n1", "r", "t", 1)  # t failed (or its result is gone); the report is lost
    for probes in (1, 2):
        out = _probe_fired(c)
        probe = _probes(out)[("n1", "r")]
        out = c.feed(ev.RunProbed("n1", "r", probe, running=(("t", 9),), held=(("x", 1),)))
        if probes == 1:
            assert placed(out) == {}  # another attempt of t running does not count
    assert placed(out) == {"t": ("n1", 2)}
    rec = c.sched.run_state("r").tasks["t"]  # type: ignore[union-attr]
    assert (rec.losses, rec.failures, rec.state) == (1, 0, "ASSIGNED")
    assert c.sched.outstanding("n1") == {CPU: 1.0}  # the new attempt only
    # The lost report turns up after all: stale, ignored.
    c.feed(ev.TaskSucceeded("r", "t", 1, "n1", 10, b"late"))
    assert rec.state == "ASSIGNED" and rec.attempt == 2


def test_report_or_running_answer_between_probes_cancels_the_suspicion() -> None:
    c = Cluster({"n1": 4})
    c.accept_all(c.submit("r", [spec("t"), spec("u")]))
    # Both finished; their reports are batched behind the answer.
    out = _probe_fired(c)
    c.feed(ev.RunProbed("n1", "r", _probes(out)[("n1", "r")]))
    c.succeed("n1", "r", "t", 1)  # t's report lands: t is done, no longer probed
    out = _probe_fired(c)
    assert placed(c.feed(ev.RunProbed("n1", "r", _probes(out)[("n1", "r")], (("u", 1),)))) == {}
    # u was seen running, so its next miss is a first miss again, not a second.
    out = _probe_fired(c)
    assert placed(c.feed(ev.RunProbed("n1", "r", _probes(out)[("n1", "r")]))) == {}
    assert c.sched.run_status("r").counts["ASSIGNED"] == 1  # type: ignore[union-attr]
    out = _probe_fired(c)
    out = c.feed(ev.RunProbed("n1", "r", _probes(out)[("n1", "r")]))
    assert placed(out) == {"u": ("n1", 2)}
    assert c.sched.run_state("r").tasks["t"].losses == 0  # type: ignore[union-attr]


def test_stale_duplicate_and_foreign_probe_answers_are_ignored() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    c.accept_all(c.submit("r", [spec("t", node="n1")]))
    out = _probe_fired(c)
    first = _probes(out)[("n1", "r")]
    c.feed(ev.RunProbed("n1", "r", first))  # t is a suspect now
    out = _probe_fired(c)
    second = _probes(out)[("n1", "r")]
    assert second != first
    stale = [
        ev.RunProbed("n1", "r", first),  # answers a superseded probe
        ev.RunProbed("n2", "r", second),  # from a node we did not ask
        ev.RunProbed("n1", "other", second),  # about another run
    ]
    for answer in stale:
        assert c.feed(answer) == []
    assert c.sched.run_status("r").counts["ASSIGNED"] == 1  # type: ignore[union-attr]
    # The real answer shows t running: suspicion cleared; a duplicate of it changes nothing more.
    c.feed(ev.RunProbed("n1", "r", second, (("t", 1),)))
    out = _probe_fired(c)
    third = _probes(out)[("n1", "r")]
    c.feed(ev.RunProbed("n1", "r", third))
    assert c.feed(ev.RunProbed("n1", "r", third)) == []  # duplicate: not a second miss
    rec = c.sched.run_state("r").tasks["t"]  # type: ignore[union-attr]
    assert rec.state == "ASSIGNED" and rec.attempt == 1 and rec.losses == 0


def test_unanswered_dispatches_are_left_to_the_ack_timer_and_early_firings_only_rearm() -> None:
    c = Cluster({"n1": 4})
    c.submit("r", [spec("t")])  # the dispatch is never answered
    out = _probe_fired(c, after=1.0)  # early: re-armed for the rest, nobody probed
    assert _probes(out) == {}
    (timer,) = of_type(out, ev.StartTimer)
    assert timer.key == ("probe",) and timer.delay < PROBE_INTERVAL
    out = _probe_fired(c)
    assert _probes(out) == {}  # unanswered: the ack timer's business
    c.accept_all(dispatches(c.log))
    assert _probes(_probe_fired(c)) == {("n1", "r"): 1}


# -- room given back by forgetting a dispatch places what waits for it -------------------------------
# (found by the state machine in test_scheduler_machine.py: a READY task waited forever on an idle
# node, because only forgetting a still-current dispatch used to trigger placement)


def test_an_ack_timeout_that_frees_room_places_a_waiting_task_of_another_run() -> None:
    c = Cluster({"n1": 1})
    assert placed(c.submit("r0", [spec("a")])) == {"a": ("n1", 1)}  # never answered
    c.feed(ev.CancelRequested("r0"))  # the run ends; the dispatch still holds the cpu in our view
    assert placed(c.submit("r1", [spec("b")])) == {}  # no room while it is unanswered
    out = _ack_fired(c, "n1")
    assert placed(out) == {"b": ("n1", 1)}  # the idle node's free never changes: nothing else
    assert c.sched.outstanding("n1") == {CPU: 1.0}  # would have placed b


def test_a_stale_report_that_answers_a_dispatch_places_a_waiting_task() -> None:
    c = Cluster({"n1": 1})
    out = c.submit("r0", [spec("a")])  # its reply is lost
    c.feed(ev.CancelRequested("r0"))
    assert placed(c.submit("r1", [spec("b")])) == {}
    # The node ran a anyway and reports it (the same free as before: no view change on its own).
    c.reply(dispatches(out)[0])  # (the node's side only: takes the cpu, then releases it)
    out = c.succeed("n1", "r0", "a", 1)
    assert placed(out) == {"b": ("n1", 1)}


def test_a_restarted_node_is_probed_at_once_and_one_answer_settles_its_attempts() -> None:
    c = Cluster({"n1": 4, "n2": 4})
    out = c.submit("r", [spec("a", node="n1"), spec("b", node="n1"), spec("c", node="n1")])
    (d,) = dispatches(out)
    c.accept_all(out)  # a, b, c answered: out on n1's old process
    out = c.feed(ev.PeerRestarted("n2"))  # nothing out there: nothing asked
    assert _probes(out) == {}
    out = c.feed(ev.PeerRestarted("n1"))
    probe = _probes(out)[("n1", "r")]  # at once, not after a probe interval
    # The new process got b (a dispatch that reached it) and holds c's value; a is gone.
    out = c.feed(ev.RunProbed("n1", "r", probe, running=(("b", 1),), held=(("c", 7),)))
    assert placed(out) == {"a": ("n1", 2)}  # one answer, not two
    state = c.sched.run_state("r")
    assert state is not None
    assert (state.tasks["a"].losses, state.tasks["b"].state, state.tasks["c"].state) == (
        1,
        "ASSIGNED",
        "DONE",
    )
    assert c.sched.outstanding("n1") == {CPU: 2.0}  # a's new attempt and b


def test_a_report_that_frees_room_lets_a_held_refusal_go_before_its_timer() -> None:
    # Held on an unchanged view; a report that frees room lets it go at once, not at the timer
    # (the owner asks the held tasks only when some are held).
    c = Cluster({"n1": 4})
    c.used["n1"] = {CPU: 2.0}
    c.feed(c.update("n1"))
    out = c.submit("r", [spec("t")])
    out = c.feed(c.reply(dispatches(out)[0], refuse=True)[1])
    assert placed(out) == {} and ev.StartTimer(("refused",), REFUSAL_BACKOFF) in out
    c.used["n1"] = {}
    assert placed(c.feed(c.update("n1"))) == {"t": ("n1", 2)}
    assert placed(c.feed(ev.TimerFired(("refused",)))) == {}  # nothing held any more
