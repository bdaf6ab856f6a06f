"""Pure: what one client may make an owner hold, checked when a submission arrives (issue 19).

The codec bounds each message (body and frame bytes, frame count); these bounds are about what a
well-formed submission asks for: the run id's shape, the number of tasks, the length of ids, and how
many unfinished runs one client connection has. Each refusal is a ``ValidationError`` saying which
limit, its value and the flag that changes it (``handoffd start --limit NAME=VALUE``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from handoffd.config import Limits
from handoffd.errors import ValidationError

_FLAG = "handoffd start --limit {name}=N"


# Control characters (newlines in log lines, NUL in file names) never belong in an id. One regex
# search per id: a generator over its characters was ~1 us per task of every submission.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (none belongs in an id or a node name)."""
    return _CONTROL(text) is not None


def check_id(what: str, value: str, limits: Limits, function_id: str | None = None) -> None:
    """A run id, task id or node name: 1..``max_id_chars`` characters, no control characters."""
    if not value:
        raise ValidationError(f"invalid_{what}", function_id, f"the {what} is empty; name it")
    if len(value) > limits.max_id_chars:
        raise ValidationError(
            f"invalid_{what}",
            function_id,
            f"the {what} {value[:40]!r}... has {len(value)} characters, over max_id_chars="
            f"{limits.max_id_chars}; shorten it (or {_FLAG.format(name='max_id_chars')})",
        )
    if has_control(value):
        raise ValidationError(
            f"invalid_{what}",
            function_id,
            f"the {what} {value[:80]!r} contains control characters; use printable ones",
        )


def check_submission(run_id: str, task_ids: list[str], limits: Limits) -> None:
    """The run id, the number of tasks and every task id of one submission."""
    check_id("run_id", run_id, limits)
    if len(task_ids) > limits.max_tasks_per_run:
        raise ValidationError(
            "too_many_tasks",
            None,
            f"the run has {len(task_ids)} functions, over max_tasks_per_run="
            f"{limits.max_tasks_per_run}; split it into several runs (or "
            f"{_FLAG.format(name='max_tasks_per_run')} on the daemon)",
        )
    longest = limits.max_id_chars
    try:  # (all of them at once in C calls: the loop below finds the one to name, if any)
        if max(map(len, task_ids), default=0) <= longest:
            joined = "".join(task_ids)
            # (no control character is printable: most runs' ids are told so by one C loop
            # over a table, the search kept for what is not printable)
            if joined.isprintable() or not _CONTROL(joined):
                return
    except TypeError:  # an id that is no str: the loop skips it (the DAG's checks refuse it)
        pass
    for task_id in task_ids:
        if type(task_id) is str and (len(task_id) > longest or has_control(task_id)):
            check_id("function_id", task_id, limits, task_id[:40])


class ClientRuns:
    """Unfinished runs per client connection. ``running(run_id)`` says whether a run still counts;
    finished ones are pruned when a client reaches its limit, so the check costs O(1) per submit."""

    def __init__(self, limits: Limits, running: Callable[[str], bool]) -> None:
        self.limits = limits
        self._running = running
        self._runs: dict[Any, set[str]] = {}

    def admit(self, client: Any, run_id: str) -> None:
        """Count ``run_id`` for ``client``; raises ValidationError at the limit."""
        runs = self._runs.setdefault(client, set())
        if len(runs) >= self.limits.max_runs_per_client:
            runs.difference_update([r for r in runs if not self._running(r)])
            if len(runs) >= self.limits.max_runs_per_client:
                raise ValidationError(
                    "too_many_runs",
                    None,
                    f"this client has {len(runs)} unfinished runs on this node, the limit is "
                    f"max_runs_per_client={self.limits.max_runs_per_client}; wait for some to "
                    f"finish (or {_FLAG.format(name='max_runs_per_client')} on the daemon)",
                )
        runs.add(run_id)
        if len(self._runs) > 4 * self.limits.max_runs_per_client:
            self.prune()

    def prune(self) -> None:
        """Drop finished runs and clients left with none (connections come and go)."""
        for client in list(self._runs):
            runs = self._runs[client]
            runs.difference_update([r for r in runs if not self._running(r)])
            if not runs:
                del self._runs[client]

    def count(self, client: Any) -> int:
        return len(self._runs.get(client, ()))
