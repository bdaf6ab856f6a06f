"""Live task output in the worker's buffer (``worker.capture.Captured.take``): what leaves while a
task runs is complete lines, a partial line leaves on the next take, nothing leaves twice, the
outcome's text is exactly the rest, and the per-attempt bound holds with the cut said once."""

from __future__ import annotations

import logging

from handoffd.worker import capture
from handoffd.worker.capture import Captured


def test_take_sends_complete_lines_and_the_outcome_only_the_rest() -> None:
    wakes: list[int] = []
    out = Captured(lambda: wakes.append(1))
    out.write("one\ntw")
    assert wakes == [1]
    out.write("o")  # nothing taken since the wake: no second wake
    assert wakes == [1]
    assert out.take() == ("one\n", True)  # the partial line waits a turn
    out.write("o\nthree")
    assert out.take() == ("twoo\n", True)
    assert out.take() == ("", True)  # a partial line alone: left once
    assert out.take() == ("three", False)  # then it goes anyway
    assert out.take() == ("", False)
    out.write("four\n")
    assert wakes == [1, 1]  # the buffer was empty: the sender is woken again
    out.write("five")
    assert out.text() == "four\nfive"  # the outcome carries what was not taken, once


def test_nothing_printed_wakes_nobody() -> None:
    wakes: list[int] = []
    out = Captured(lambda: wakes.append(1))
    out.write("")
    assert wakes == [] and out.take() == ("", False) and out.text() == ""


def test_live_head_then_tail_with_the_cut_said_once() -> None:
    out = Captured(lambda: None)
    sent: list[str] = []
    line = "y" * 99 + "\n"
    for i in range(5000):
        out.write(line)
        if i % 100 == 0:
            sent.append(out.take()[0])
    sent.append(out.take()[0])
    live = "".join(sent)
    rest = out.text()
    assert len(live) == capture.HEAD  # the head left live, the middle was cut
    assert rest.count("characters of output truncated") == 1
    assert rest.startswith("[... ") and rest.endswith(line)
    assert len(live) + len(rest) < capture.LIMIT + 200
    dropped = int(rest.split()[1])
    assert len(live) + dropped + capture.TAIL == 5000 * len(line)


def test_each_capture_gets_its_own_log_lines_and_nested_ones_the_innermost() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    log = logging.getLogger("user.task")
    outputs = []
    for i in range(3):  # one handler serves every job in turn: lines never go to an older job
        with capture.capture() as out:
            log.info("job %d", i)
        outputs.append(out.text())
        log.warning("between jobs")  # not captured by anyone
        assert root.handlers == before
    assert outputs == [f"INFO user.task: job {i}\n" for i in range(3)]
    with capture.capture() as outer:
        log.info("outer 1")
        with capture.capture() as inner:
            log.info("inner")
        log.info("outer 2")
    assert inner.text() == "INFO user.task: inner\n"
    assert outer.text() == "INFO user.task: outer 1\nINFO user.task: outer 2\n"
    assert root.handlers == before
