"""What both engine adapters share after planning: the TaskFailed of the step that failed first."""

from __future__ import annotations

import traceback as tb_module
from typing import Any

from handoffd.arguments import as_consumer_failure
from handoffd.engines.plan import Step
from handoffd.errors import TaskFailed


def task_failed(
    step: Step, exc: BaseException, tb: Any, consumers: dict[str, str]
) -> BaseException:
    """The handoffd error for ``step`` failing with ``exc`` (after its retries)."""
    text = "".join(tb_module.format_tb(tb)) if tb is not None else ""
    error = TaskFailed(step.id, step.retries + 1, type(exc).__qualname__, str(exc), text)
    return as_consumer_failure(error, consumers)


__all__ = ["task_failed"]
