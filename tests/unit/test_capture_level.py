"""A captured block's root logger level: INFO inside (the user's info lines show), the level from
before afterwards, and in a worker (``root_at_info`` at start) no ``setLevel`` per job: each one
clears every logger's cache under the logging lock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from handoffd.worker import capture


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    level = logger.level
    yield logger
    logger.setLevel(level)


def _counted(root: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    set_level = root.setLevel

    def counted(level: Any) -> None:
        calls.append(level)
        set_level(level)

    monkeypatch.setattr(root, "setLevel", counted)
    return calls


def test_in_a_worker_a_job_s_block_sets_no_level(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.setLevel(logging.WARNING)
    capture.root_at_info()
    assert root.level == logging.INFO
    calls = _counted(root, monkeypatch)
    for _ in range(3):
        with capture.capture() as out:
            logging.getLogger("user").info("hello")
        assert "INFO user: hello" in out.text()
    assert calls == [] and root.level == logging.INFO


def test_a_job_that_changes_the_level_leaves_no_trace(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture.root_at_info()
    with capture.capture():
        root.setLevel(logging.ERROR)
    assert root.level == logging.INFO
    with capture.capture() as out:  # the next job sees INFO again
        logging.getLogger("user").info("again")
    assert "again" in out.text()


@pytest.mark.parametrize("before", [logging.WARNING, logging.NOTSET, logging.DEBUG])
def test_outside_a_worker_the_level_from_before_comes_back(
    root: logging.Logger, before: int
) -> None:
    root.setLevel(before)
    with capture.capture():
        assert root.level == (logging.DEBUG if before == logging.DEBUG else logging.INFO)
    assert root.level == before
