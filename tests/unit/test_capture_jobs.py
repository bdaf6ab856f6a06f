"""A worker's job blocks (``capture.JobBlocks``): each job's prints and log lines land in its own
buffer, while the log handler stays on the root logger between jobs (no add and remove of it, each
under the logging lock, per job), and what a job does to the logging setup leaves no trace."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from handoffd.worker import capture


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    monkeypatch.setattr(capture, "_handler", None)  # a fresh process's
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _counted(root: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("addHandler", "removeHandler", "setLevel"):
        method = getattr(root, name)

        def counted(*args: Any, _name: str = name, _method: Any = method) -> None:
            calls.append(_name)
            _method(*args)

        monkeypatch.setattr(root, name, counted)
    return calls


def test_jobs_capture_their_own_output_and_touch_no_handler_or_level(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout = sys.stdout
    blocks = capture.JobBlocks()
    calls = _counted(root, monkeypatch)
    log = logging.getLogger("user.task")
    texts = []
    for i in range(3):
        with blocks.into(capture.Captured()) as out:
            print("print", i)
            log.info("job %d", i)
        assert sys.stdout is stdout
        log.info("between jobs: nowhere")
        log.warning("between jobs %d: the process's stderr", i)
        texts.append(out.text())
    assert calls == []
    assert texts == [f"print {i}\nINFO user.task: job {i}\n" for i in range(3)]
    err = capsys.readouterr().err
    assert "between jobs 2: the process's stderr" in err and "nowhere" not in err


def test_a_job_that_drops_the_handler_or_sets_the_level_leaves_no_trace(
    root: logging.Logger,
) -> None:
    blocks = capture.JobBlocks()
    log = logging.getLogger("user.task")
    with blocks.into(capture.Captured()):
        logging.basicConfig(force=True, level=logging.ERROR)  # removes every root handler
    assert root.level == logging.INFO
    with blocks.into(capture.Captured()) as out:
        log.info("seen again")
    assert "INFO user.task: seen again" in out.text()


def test_a_block_inside_a_job_gets_the_innermost_lines(root: logging.Logger) -> None:
    blocks = capture.JobBlocks()
    log = logging.getLogger("user.task")
    with blocks.into(capture.Captured()) as job:
        log.info("job 1")
        with capture.capture() as inner:
            log.info("inner")
        log.info("job 2")
    assert inner.text() == "INFO user.task: inner\n"
    assert job.text() == "INFO user.task: job 1\nINFO user.task: job 2\n"


def test_one_buffer_serves_every_job_and_holds_only_the_one_that_runs_now() -> None:
    from handoffd.worker import _live

    sent: list[bytes] = []
    sender = _live.LiveSender(sent.append, 60.0)
    first = sender.start(1)
    first.wake = None  # no live thread in a unit test
    first.write("x" * (capture.LIMIT * 2) + "\npartial")  # a cut, a tail and a partial line
    first.take()
    with sender:
        assert "truncated" in first.text()
    second = sender.start(2)
    assert second is first  # no buffer made (and finalized) per job
    assert second.text() == "" and second.take() == ("", False)
    second.write("two\n")
    with sender:
        assert second.text() == "two\n"
